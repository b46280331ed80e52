//! The mailbox poller: fetches ConnectionRequests (and Rejects) from the
//! Handshaker mailbox, verifies and stores them for the user's decision.

use std::collections::HashMap;
use std::sync::Arc;

use crate::envelope::{EnvelopeError, Freshness, SenderLookup};
use crate::error::HasKind;
use crate::handshake::{self, ConnectionRequest, HandshakeError, SeenRequests, TrustAnchor};
use crate::identity::{Fingerprint, PublicCert};
use crate::limits::{ENVELOPE_MAX_AGE_SECS, MAX_FUTURE_SKEW_SECS};
use crate::redact::Sensitive;

use super::inner::Inner;
use super::mailbox::MailItem;
use super::{Event, NodeError};

/// Records issuer handles and vouches for nobody (first pass of opening an
/// envelope: learn who signed it).
struct Issuers(Vec<Fingerprint>);

/// The fingerprints an envelope addressed to `me` names as its signers: one
/// decryption that verifies and trusts nothing (the open fails: nobody is
/// vouched for). Used to pick the one certificate or pending request to
/// open it against.
pub(super) fn claimed_signers(envelope: &[u8], me: &crate::identity::Identity) -> Vec<Fingerprint> {
    let mut issuers = Issuers(Vec::new());
    let _ = crate::envelope::open(envelope, me, &mut issuers, Freshness::default());
    issuers.0
}

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
            _ = tokio::time::sleep(jittered(inner.config.mailbox_poll)) => {}
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

/// The wait before the next poll: uniform in [poll / 2, 2 × poll] (30 to
/// 120 s by default), so that the Handshaker does not get a clock-exact
/// timeline of when each user is online (SECURITY-2026-11 H2).
fn jittered(poll: std::time::Duration) -> std::time::Duration {
    let mut b = [0u8; 8];
    crate::session::fill_random(&mut b);
    let frac = u64::from_le_bytes(b) as f64 / u64::MAX as f64;
    poll / 2 + (poll * 2 - poll / 2).mul_f64(frac)
}

/// One poll: fetch, open, store, ack. Polls never overlap (see
/// `Inner::polling`).
pub(super) async fn poll_mailbox(inner: &Arc<Inner>) -> Result<(), NodeError> {
    let Some(mailbox) = inner.mailbox.clone() else {
        return Ok(());
    };
    let _one_at_a_time = inner.polling.lock().await;
    let me = inner.identity.username().as_str().to_owned();
    let batch = mailbox.fetch(&me).await?;
    // The pinned key (pinned now on first use) checks both our fresh
    // binding and every request in the batch.
    let anchor = inner.anchor().await?;
    if let Some(hex_text) = &batch.binding
        && let Err(e) = inner.remember_binding(&anchor, hex_text).await
    {
        tracing::warn!(error = %e, "the Handshaker's binding of our name does not verify");
    }
    for item in batch.items {
        if !inner.table(|t| t.seen_mail.insert(item.id)) {
            continue;
        }
        let opened = open_mail(inner, &anchor, &item).await;
        if let Err(e) = &opened
            && retry_later(e)
        {
            // Not a decision about the item (PROTOCOL.md §12.1): it stays in
            // the mailbox and the next poll tries again. Items expire at the
            // Handshaker after its retention, so nothing is kept forever.
            tracing::debug!(kind = ?e.kind(), "mailbox item kept for a later poll");
            inner.table(|t| t.seen_mail.remove(&item.id));
            continue;
        }
        match opened {
            Ok(Some((request, cert))) => {
                // Stored with its replay record before the item is acked
                // (PROTOCOL.md §11.2): a crash in between re-fetches it,
                // and the replay record then drops the copy.
                match store_request(inner, request, cert).await {
                    Ok(Some(event)) => {
                        let _ = inner.events.send(event);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        inner.table(|t| t.seen_mail.remove(&item.id));
                        return Err(e);
                    }
                }
            }
            Ok(None) | Err(_) => {
                // Maybe an answer to one of our requests (a Reject travels
                // through the mailbox); otherwise refused on purpose
                // (replay, forgery, expired...). Either way it leaves the
                // mailbox.
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

/// Whether opening a mailbox item failed for a reason that says nothing
/// about the item (SECURITY-2026-11 L6): our own record of it could not be
/// made, or the item was signed "in the future" by our clock (our
/// clock may be slow; the item becomes acceptable later). Everything else is
/// a decision about the item (forged, replayed, expired, malformed, not for
/// us) and the item is acked.
fn retry_later(e: &NodeError) -> bool {
    match e {
        NodeError::Store(_) | NodeError::Handshake(HandshakeError::Seen(_)) => true,
        // Further ahead than the Handshaker keeps items: no clock is that
        // wrong; dropped like any other refusal.
        NodeError::Handshake(HandshakeError::Envelope(EnvelopeError::FromFuture {
            ahead_secs,
        })) => *ahead_secs <= ENVELOPE_MAX_AGE_SECS,
        _ => false,
    }
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

/// Opens a mailbox item as a connection request (PROTOCOL.md §5.6): no
/// directory call, the request carries its certificate and binding.
/// `None`: a replay of a request opened before.
pub(super) async fn open_mail(
    inner: &Arc<Inner>,
    anchor: &TrustAnchor,
    item: &MailItem,
) -> Result<Option<(ConnectionRequest, PublicCert)>, NodeError> {
    let env: Arc<str> = item.envelope.as_str().into();
    let anchor = anchor.clone();
    let (opened, seen) = inner
        .openpgp(move |i| {
            let mut seen = HashMap::new();
            let opened = handshake::open_request(
                env.as_bytes(),
                &i.identity,
                &anchor,
                &mut SeenSet(&mut seen),
                Freshness::default(),
            );
            (opened, seen)
        })
        .await?;
    let (req, cert) = opened?;
    let expires = seen.get(&req.request_id).copied().unwrap_or(u64::MAX);
    let fresh = inner.table(|t| t.seen_requests.insert(req.request_id, expires).is_none());
    Ok(fresh.then_some((req, cert)))
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::jittered;
    use std::time::Duration;

    #[test]
    fn polls_are_jittered_between_half_and_twice_the_interval() {
        let poll = Duration::from_secs(60);
        let waits: Vec<Duration> = (0..200).map(|_| jittered(poll)).collect();
        assert!(waits.iter().all(|w| *w >= poll / 2 && *w <= poll * 2));
        let (min, max) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
        assert!(
            *max - *min > Duration::from_secs(30),
            "spread {min:?}..{max:?}"
        );
    }
}
