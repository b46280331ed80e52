//! The mailbox poller: fetches ConnectionRequests (and Rejects) from the
//! Handshaker mailbox, verifies and stores them for the user's decision.

use std::collections::HashMap;
use std::sync::Arc;

use crate::envelope::{Freshness, SenderLookup};
use crate::error::HasKind;
use crate::handshake::{self, ConnectionRequest, HandshakeError, SeenRequests};
use crate::identity::{Fingerprint, PublicCert};
use crate::limits::{ENVELOPE_MAX_AGE_SECS, MAX_FUTURE_SKEW_SECS};
use crate::redact::Sensitive;

use super::inner::Inner;
use super::mailbox::{MailItem, Mailbox};
use super::{Event, NodeError};

/// Records issuer handles and vouches for nobody (first pass of opening a
/// request: learn who signed it).
pub(super) struct Issuers(Vec<Fingerprint>);

impl SenderLookup for &mut Issuers {
    fn lookup(&mut self, issuers: &[sequoia_openpgp::KeyHandle]) -> Option<PublicCert> {
        for h in issuers {
            if let sequoia_openpgp::KeyHandle::Fingerprint(sequoia_openpgp::Fingerprint::V4(b)) = h
            {
                self.0.push(Fingerprint::from_bytes(*b));
            }
        }
        None
    }
}

/// Request ids seen at receipt, with the time after which their envelope
/// would be refused as too old anyway (then they are pruned: housekeeping).
pub(super) struct SeenSet<'a>(&'a mut HashMap<[u8; 16], u64>);

/// Replay check at receipt, in memory: received requests are not stored yet
/// (no table), so the durable record ([`Store::seen_request_id`]) is made when
/// the user accepts; until then a restart re-fetches the unacknowledged item.
impl SeenRequests for SeenSet<'_> {
    fn record_if_new(
        &mut self,
        id: [u8; 16],
        expires_at: u64,
    ) -> Result<bool, handshake::SeenError> {
        Ok(self.0.insert(id, expires_at).is_none())
    }
}

pub(super) async fn mailbox_loop(inner: Arc<Inner>) {
    loop {
        // A poll can wait on the network for minutes: never hold up a shutdown.
        let polled = tokio::select! {
            r = poll_mailbox(&inner) => r,
            _ = inner.shutdown.cancelled() => return,
        };
        if let Err(e) = polled {
            tracing::debug!(kind = ?e.kind(), "mailbox poll failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.config.mailbox_poll) => {}
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

pub(super) async fn poll_mailbox(inner: &Arc<Inner>) -> Result<(), NodeError> {
    let Some(mailbox) = inner.mailbox.clone() else {
        return Ok(());
    };
    let me = inner.identity.username().as_str().to_owned();
    for item in mailbox.fetch(&me).await? {
        if !inner.table(|t| t.seen_mail.insert(item.id)) {
            continue;
        }
        match open_mail(inner, mailbox.as_ref(), &item).await {
            Ok(Some((request, cert))) => {
                // Stored with its replay record before the item is acked
                // (PROTOCOL.md §11.2): a crash in between re-fetches it,
                // and the replay record then drops the copy.
                if let Some(event) = store_request(inner, request, cert).await? {
                    let _ = inner.events.send(event);
                }
            }
            Ok(None) | Err(_) => {
                // Maybe an answer to one of our requests (a Reject travels
                // through the mailbox); otherwise refused (replay, forgery,
                // expired...). Either way it leaves the mailbox.
                if inner
                    .open_envelope(item.envelope.clone().into_bytes(), None)
                    .await
                    .is_err()
                {
                    tracing::debug!("dropping a refused mailbox item");
                }
            }
        }
        if let Err(e) = mailbox.ack(&me, item.id).await {
            tracing::debug!(kind = ?e.kind(), "mailbox ack failed; the item comes back and is dropped as a replay");
        }
    }
    Ok(())
}

/// Stores a verified request for the user's decision; `None` if it is a
/// replay. Flags a key change: the name pinned to another key, or the key
/// pinned under another name.
pub(super) async fn store_request(
    inner: &Arc<Inner>,
    request: ConnectionRequest,
    cert: PublicCert,
) -> Result<Option<Event>, NodeError> {
    let fingerprint = cert.fingerprint();
    let record = crate::store::ReceivedRequestRecord {
        request_id: request.request_id,
        from_username: request.from_username.clone(),
        fingerprint: fingerprint.to_hex(),
        public_cert: cert.to_bytes().map_err(HandshakeError::Identity)?,
        payload: zeroize::Zeroizing::new(
            handshake::HandshakeMessage::Request(request.clone()).encode()?,
        ),
        note: request.note.clone(),
        received_at: crate::time::now_secs(),
        expires_at: request
            .created_at
            .saturating_add(ENVELOPE_MAX_AGE_SECS + MAX_FUTURE_SKEW_SECS),
        key_changed: false,
    };
    let (stored, key_changed) = inner
        .store
        .run(move |s| -> Result<_, crate::store::Error> {
            let mut record = record;
            let by_name = s.contact_by_username(&record.from_username)?;
            let by_fpr = s.contact_by_fingerprint(&record.fingerprint)?;
            record.key_changed = by_name.is_some_and(|c| c.fingerprint != record.fingerprint)
                || by_fpr.is_some_and(|c| c.username != record.from_username);
            Ok((s.add_received_request(&record)?, record.key_changed))
        })
        .await??;
    Ok(stored.then(|| Event::RequestReceived {
        request_id: Sensitive::new(request.request_id),
        from: Sensitive::new(request.from_username),
        fingerprint: Sensitive::new(fingerprint),
        key_changed,
    }))
}

pub(super) async fn open_mail(
    inner: &Arc<Inner>,
    mailbox: &dyn Mailbox,
    item: &MailItem,
) -> Result<Option<(ConnectionRequest, PublicCert)>, NodeError> {
    let env = item.envelope.as_bytes();
    let mut issuers = Issuers(Vec::new());
    let mut scratch = HashMap::new();
    // First pass: learn the signer (fails: nobody is vouched for yet).
    let _ = handshake::open_request(
        env,
        &inner.identity,
        &mut issuers,
        &mut SeenSet(&mut scratch),
        Freshness::default(),
    );
    for fpr in issuers.0 {
        let Some(cert) = mailbox.certificate(&fpr).await? else {
            continue;
        };
        let mut seen = HashMap::new();
        let opened = handshake::open_request(
            env,
            &inner.identity,
            &cert,
            &mut SeenSet(&mut seen),
            Freshness::default(),
        );
        return match opened {
            Ok((req, _)) => {
                let expires = seen.get(&req.request_id).copied().unwrap_or(u64::MAX);
                let fresh =
                    inner.table(|t| t.seen_requests.insert(req.request_id, expires).is_none());
                Ok(fresh.then_some((req, cert)))
            }
            Err(e) => Err(e.into()),
        };
    }
    Ok(None)
}
