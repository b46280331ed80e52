//! Connection requests (PROTOCOL.md §5, §11.1–§11.2): sending one,
//! deciding on received ones, and opening the Accept or Reject that answers
//! ours.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::envelope::Freshness;
use crate::handshake::{self, Answer, ConnectionRequest, HandshakeError};
use crate::identity::{Fingerprint, PublicCert};
use crate::limits::{ENVELOPE_MAX_AGE_SECS, MAX_FUTURE_SKEW_SECS};
use crate::session::KeyShare;
use crate::store::{ContactId, ContactState, NewContact, PendingRequest, SessionRecord, Store};

use super::inner::Inner;
use super::records::session_parts;
use super::{Event, NodeError, NodeHandle, ReceivedRequest, poller};

impl NodeHandle {
    /// Sends a connection request to the owner of `to` (its one `@name`)
    /// through the mailbox. Returns the contact (state Requested). Refuses
    /// ([`NodeError::KeyChanged`]) if that name is pinned to another key.
    pub async fn request(&self, to: &PublicCert, note: &str) -> Result<ContactId, NodeError> {
        self.request_with(to, note, false).await
    }

    /// [`NodeHandle::request`]; with `allow_key_change`, a name pinned to
    /// another key is re-pinned to `to` (verified mark cleared, any old
    /// session ended).
    pub async fn request_with(
        &self,
        to: &PublicCert,
        note: &str,
        allow_key_change: bool,
    ) -> Result<ContactId, NodeError> {
        self.request_opts(to, note, allow_key_change, false).await
    }

    /// [`NodeHandle::request_with`]. A contact with an established session
    /// is refused ([`NodeError::AlreadyConnected`]) unless `rekey`: then the
    /// request, once accepted, replaces that session (PROTOCOL.md §12.2).
    pub async fn request_opts(
        &self,
        to: &PublicCert,
        note: &str,
        allow_key_change: bool,
        rekey: bool,
    ) -> Result<ContactId, NodeError> {
        if !rekey {
            let fpr = to.fingerprint().to_hex();
            let connected = self
                .inner
                .store
                .run(move |s| -> Result<bool, crate::store::Error> {
                    match s.contact_by_fingerprint(&fpr)? {
                        Some(c) => Ok(s.session_for_contact(c.id)?.is_some()),
                        None => Ok(false),
                    }
                })
                .await??;
            if connected {
                return Err(NodeError::AlreadyConnected);
            }
        }
        let mailbox = self.inner.mailbox.clone().ok_or(NodeError::NotFound {
            what: "Handshaker mailbox (configure a Handshaker)",
        })?;
        let (contact, envelope, _) = self.make_request(to, note, allow_key_change).await?;
        let username = to.username().map_err(|_| NodeError::Invalid {
            what: "certificate",
            reason: "it does not carry exactly one self-signed @name user ID",
        })?;
        mailbox.deposit(username.as_str(), envelope).await?;
        Ok(contact)
    }

    /// Builds a ConnectionRequest to `to` and records it (pending request,
    /// contact in state Requested) without sending it: the caller delivers
    /// the envelope (the mailbox, or a group join stream, PROTOCOL.md
    /// §20.7.3). Returns the contact, the envelope and the request id.
    pub(super) async fn make_request(
        &self,
        to: &PublicCert,
        note: &str,
        allow_key_change: bool,
    ) -> Result<(ContactId, String, [u8; 16]), NodeError> {
        let username = to.username().map_err(|_| NodeError::Invalid {
            what: "certificate",
            reason: "it does not carry exactly one self-signed @name user ID",
        })?;
        let binding = self.inner.own_binding().await?;
        let (to_cert, to_name, note) = (to.clone(), username.clone(), note.to_owned());
        let (envelope, pending) = self
            .inner
            .openpgp(move |i| {
                handshake::make_request(
                    &i.identity,
                    &to_cert,
                    &to_name,
                    i.address.as_str(),
                    &note,
                    &binding,
                )
            })
            .await??;
        let request_id = pending.request_id;
        let secret = pending.share.to_secret_bytes();
        let record = PendingRequest {
            request_id: pending.request_id,
            to_username: username.as_str().to_owned(),
            session_half: zeroize::Zeroizing::new(secret[..32].to_vec()),
            ephemeral_secret: zeroize::Zeroizing::new(secret[32..].to_vec()),
            created_at: crate::time::now_secs(),
        };
        let new = NewContact {
            username: username.as_str().to_owned(),
            fingerprint: to.fingerprint().to_hex(),
            public_cert: to.to_bytes().map_err(HandshakeError::Identity)?,
            onion_address: None,
            state: ContactState::Requested,
            verified: false,
        };
        let (contact, ended) = self
            .inner
            .store
            .run(move |s| -> Result<_, NodeError> {
                let (id, ended) = pin_contact(s, &new, allow_key_change)?;
                s.add_pending_request(&record)?;
                Ok((id, ended))
            })
            .await??;
        if let Some(ended) = ended {
            self.inner.report_ended(contact, ended, false);
        }
        Ok((contact, envelope, request_id))
    }

    /// Cancels our unanswered request(s) to `username` (PROTOCOL.md §11.1
    /// Cancelled): their ephemeral secrets are erased, so a late Accept
    /// fails. The mailbox item cannot be recalled. A contact that exists
    /// only because of the request (no session, no history) is removed.
    /// Returns how many requests were cancelled; none is
    /// [`NodeError::NotFound`].
    pub async fn cancel_request(&self, username: &str) -> Result<usize, NodeError> {
        let name = username.to_owned();
        self.inner
            .store
            .run(move |s| -> Result<usize, NodeError> {
                let n = s.cancel_pending_requests_to(&name)?;
                if n == 0 {
                    return Err(NodeError::NotFound {
                        what: "pending request to that user",
                    });
                }
                if let Some(c) = s.contact_by_username(&name)?
                    && c.state == ContactState::Requested
                    && s.session_for_contact(c.id)?.is_none()
                    && s.history(c.id, 1)?.is_empty()
                {
                    s.delete_contact(c.id)?;
                }
                Ok(n)
            })
            .await?
    }

    /// Received connection requests awaiting a decision, oldest first
    /// (expired ones are deleted).
    pub async fn requests(&self) -> Result<Vec<ReceivedRequest>, NodeError> {
        let now = crate::time::now_secs();
        let rows = self
            .inner
            .store
            .run(move |s| -> Result<_, crate::store::Error> {
                s.expire_received_requests(now)?;
                let mut out = Vec::new();
                for r in s.received_requests(now)? {
                    let rekey = match s.contact_by_fingerprint(&r.fingerprint)? {
                        Some(c) => s.session_for_contact(c.id)?.is_some(),
                        None => false,
                    };
                    out.push((r, rekey));
                }
                Ok(out)
            })
            .await??;
        Ok(rows
            .into_iter()
            .filter_map(|(r, rekey)| {
                Some(ReceivedRequest {
                    request_id: r.request_id,
                    fingerprint: Fingerprint::from_hex(&r.fingerprint).ok()?,
                    from: r.from_username,
                    note: r.note,
                    received_at: r.received_at,
                    key_changed: r.key_changed,
                    rekey,
                })
            })
            .collect())
    }

    /// Rejects a received request: it is deleted (its replay record stays).
    /// With `notify`, a signed Reject goes to the requester's mailbox
    /// (optional in the protocol: silence reveals less).
    pub async fn reject(&self, request_id: &[u8; 16], notify: bool) -> Result<(), NodeError> {
        let rid = *request_id;
        let rec = self
            .inner
            .store
            .run(move |s| s.received_request(&rid))
            .await??
            .ok_or(NodeError::NotFound {
                what: "connection request",
            })?;
        let envelope = if notify {
            let cert =
                PublicCert::from_bytes(&rec.public_cert).map_err(HandshakeError::Identity)?;
            let request = decode_request(&rec.payload)?;
            Some(handshake::make_reject(
                &self.inner.identity,
                &cert,
                &request,
            )?)
        } else {
            None
        };
        self.inner
            .store
            .run(move |s| s.delete_received_request(&rid))
            .await??;
        if let (Some(env), Some(m)) = (envelope, self.inner.mailbox.clone()) {
            m.deposit(&rec.from_username, env).await?;
        }
        Ok(())
    }

    /// Polls the mailbox now (the poller also runs on its interval). Waits
    /// for a poll in progress first: on return, every item fetched so far
    /// was handled.
    pub async fn poll_mailbox(&self) -> Result<(), NodeError> {
        poller::poll_mailbox(&self.inner).await
    }

    /// Accepts a received request: derives and stores the session, then
    /// delivers the Accept directly to the requester (retried until it
    /// arrives, also across restarts). Returns the contact. Refuses a
    /// request whose key changed ([`NodeError::KeyChanged`]); see
    /// [`NodeHandle::accept_with`].
    pub async fn accept(&self, request_id: &[u8; 16]) -> Result<ContactId, NodeError> {
        self.accept_with(request_id, false).await
    }

    /// [`NodeHandle::accept`]; with `allow_key_change`, a request whose key
    /// differs from the pinned one is accepted too: the contact's pinned
    /// key is replaced, its `verified` mark cleared and any old session
    /// ended.
    pub async fn accept_with(
        &self,
        request_id: &[u8; 16],
        allow_key_change: bool,
    ) -> Result<ContactId, NodeError> {
        let rid = *request_id;
        let now = crate::time::now_secs();
        let rec = self
            .inner
            .store
            .run(move |s| s.received_request(&rid))
            .await??
            .filter(|r| r.expires_at >= now)
            .ok_or(NodeError::NotFound {
                what: "connection request",
            })?;
        if rec.key_changed && !allow_key_change {
            return Err(NodeError::KeyChanged);
        }
        let cert = PublicCert::from_bytes(&rec.public_cert).map_err(HandshakeError::Identity)?;
        let req = decode_request(&rec.payload)?;
        let (c, r) = (cert.clone(), req.clone());
        let (envelope, session) = self
            .inner
            .openpgp(move |i| handshake::make_accept(&i.identity, &c, &r, i.address.as_str()))
            .await??;
        let expires = req
            .created_at
            .saturating_add(ENVELOPE_MAX_AGE_SECS + MAX_FUTURE_SKEW_SECS);
        let new = NewContact {
            username: req.from_username.clone(),
            fingerprint: cert.fingerprint().to_hex(),
            public_cert: cert.to_bytes().map_err(HandshakeError::Identity)?,
            onion_address: Some(req.onion_address.clone()),
            state: ContactState::Accepted,
            verified: false,
        };
        let (sid, send, recv) = session_parts(&session);
        drop(session);
        let env = envelope.clone();
        let rec_expires = rec.expires_at;
        // PROTOCOL.md §12.2 rule 5: if the two requests crossed, the request
        // of the lower fingerprint wins on both sides.
        let ours_loses = self.inner.identity.fingerprint().to_hex() > new.fingerprint;
        let (contact, ended, replaced) = self
            .inner
            .store
            .run(move |s| -> Result<_, NodeError> {
                if !s.delete_received_request(&rid)? {
                    return Err(NodeError::NotFound {
                        what: "connection request",
                    });
                }
                // A strictly older copy arriving later is a leftover (rule
                // 2): the requester erases its pending requests made before
                // this one when our Accept arrives, so accepting that copy
                // would split the conversation. One made in the same second
                // stays acceptable: the requester keeps it too.
                s.answer_received_requests_from(&new.fingerprint, rec_expires.saturating_sub(1))?;
                let (id, ended) = pin_contact(s, &new, allow_key_change)?;
                let replaced = s.session_for_contact(id)?.is_some();
                if ours_loses {
                    s.cancel_pending_requests_to(&new.username)?;
                }
                s.create_session(&SessionRecord {
                    contact: id,
                    session_id: sid,
                    send,
                    recv,
                    created_at: crate::time::now_secs(),
                })?;
                s.put_pending_accept(id, &env, expires)?;
                Ok((id, ended, replaced))
            })
            .await??;
        if let Some(ended) = ended {
            self.inner.report_ended(contact, ended, false);
        }
        if replaced {
            // A re-key or a crossing: the old session's connection goes.
            self.inner.drop_connection(contact);
        }
        self.inner
            .table(|t| t.accepts.insert(contact, (sid, envelope)));
        self.inner.ensure_dialer(contact);
        self.inner.wake(contact);
        Ok(contact)
    }
}

/// Whether `frame` is a Hello sealed under the session `sid` with these
/// chains (opened on a throw-away copy).
fn hello_opens(
    sid: [u8; 16],
    send: &crate::store::ChainState,
    recv: &crate::store::ChainState,
    frame: &[u8],
) -> bool {
    if frame.len() < crate::session::SEALED_HEADER_LEN || frame[2..18] != sid {
        return false;
    }
    let Ok(mut trial) = crate::session::Session::from_chains(
        sid,
        (&send.chain_key, send.seq),
        (&recv.chain_key, recv.seq),
    ) else {
        return false;
    };
    trial
        .open(frame)
        .ok()
        .and_then(|pt| crate::wire::PeerMessage::decode(&pt).ok())
        .is_some_and(|m| matches!(m, crate::wire::PeerMessage::Hello(_)))
}

/// Finds or creates the contact for `new` (by fingerprint, then by name).
/// A name pinned to another key is an error unless `allow_key_change`;
/// then the contact is re-pinned (verified cleared) and its old session
/// ended (returned, for the events). New requests and accepts keep the
/// contact's existing row so its history stays.
pub(super) fn pin_contact(
    s: &mut Store,
    new: &NewContact,
    allow_key_change: bool,
) -> Result<(ContactId, Option<crate::store::Ended>), NodeError> {
    let by_fpr = s.contact_by_fingerprint(&new.fingerprint)?;
    let by_name = s.contact_by_username(&new.username)?;
    match (by_fpr, by_name) {
        (Some(mut c), _) if c.username == new.username => {
            if new.onion_address.is_some() {
                c.onion_address = new.onion_address.clone();
            }
            if c.state != ContactState::Accepted || new.state == ContactState::Accepted {
                c.state = new.state;
            }
            s.update_contact(&c)?;
            Ok((c.id, None))
        }
        // The key is known under another name, or the name under another key.
        (Some(_), _) | (None, Some(_)) if !allow_key_change => Err(NodeError::KeyChanged),
        (Some(_), _) => Err(NodeError::Invalid {
            what: "key change",
            reason: "this key is pinned for another contact; end and remove that contact first",
        }),
        (None, Some(mut c)) => {
            let ended = s.end_session_with(c.id)?;
            c.fingerprint = new.fingerprint.clone();
            c.public_cert = new.public_cert.clone();
            c.onion_address = new.onion_address.clone();
            c.state = new.state;
            c.verified = false;
            s.update_contact(&c)?;
            s.delete_pending_accept(c.id)?;
            Ok((c.id, ended.existed.then_some(ended)))
        }
        (None, None) => Ok((s.add_contact(new)?, None)),
    }
}

/// The ConnectionRequest in a stored canonical payload.
pub(super) fn decode_request(payload: &[u8]) -> Result<ConnectionRequest, NodeError> {
    match handshake::HandshakeMessage::decode(payload)? {
        handshake::HandshakeMessage::Request(r) => Ok(r),
        _ => Err(NodeError::Internal {
            what: "a stored request is not a request",
        }),
    }
}

impl Inner {
    /// Requester side: an Envelope frame on an inbound connection. Opens it
    /// against every pending request; a valid Accept establishes the session.
    /// `hello`: the frame that followed the Envelope on a peer connection.
    /// An Accept is applied only if that frame is a Hello that opens under
    /// the Accept's session; otherwise the acceptor has replaced that
    /// session since (PROTOCOL.md §12.2) and the Accept is ignored.
    pub(super) async fn open_envelope(
        self: &Arc<Self>,
        envelope: Vec<u8>,
        hello: Option<&[u8]>,
    ) -> Result<(), NodeError> {
        let digest: [u8; 32] = Sha256::digest(&envelope).into();
        if self.table(|t| t.accepted.contains(&digest)) {
            return Ok(()); // re-delivered identical Accept (PROTOCOL.md §5.5)
        }
        let mut candidates = self
            .store
            .run(|s| -> Result<Vec<_>, crate::store::Error> {
                let mut out = Vec::new();
                for p in s.pending_requests()? {
                    if let Some(c) = s.contact_by_username(&p.to_username)? {
                        out.push((p, c));
                    }
                }
                Ok(out)
            })
            .await??;
        // With several pending requests, open the envelope only against the
        // one(s) to its signer, never against each (SECURITY-2026-11 M2:
        // every open is a decryption and a signature check). With none or
        // one, the open below costs no more than learning the signer would.
        let envelope: Arc<[u8]> = envelope.into();
        if candidates.len() > 1 {
            let e = envelope.clone();
            let signers = self
                .openpgp(move |i| poller::claimed_signers(&e, &i.identity))
                .await?;
            candidates.retain(|(_, c)| {
                Fingerprint::from_hex(&c.fingerprint)
                    .is_ok_and(|f| signers.iter().any(|s| s.ct_eq(&f)))
            });
        }
        for (pending, contact) in candidates {
            let Ok(cert) = PublicCert::from_bytes(&contact.public_cert) else {
                continue;
            };
            let mut secret = zeroize::Zeroizing::new(Vec::with_capacity(64));
            secret.extend_from_slice(&pending.session_half);
            secret.extend_from_slice(&pending.ephemeral_secret);
            let mut share = Some(KeyShare::from_secret_bytes(&secret)?);
            let rid = pending.request_id;
            let to_fingerprint = cert.fingerprint();
            let e = envelope.clone();
            let answer = self
                .openpgp(move |i| {
                    handshake::open_answer(
                        &e,
                        &i.identity,
                        &cert,
                        &mut |id| {
                            (*id == rid).then(|| share.take()).flatten().map(|share| {
                                handshake::PendingRequest {
                                    request_id: rid,
                                    to_fingerprint,
                                    share,
                                }
                            })
                        },
                        Freshness::default(),
                    )
                })
                .await?;
            let cid = contact.id;
            match answer {
                Ok(Answer::Accepted { accept, session }) => {
                    let (sid, send, recv) = session_parts(&session);
                    drop(session);
                    if let Some(h) = hello
                        && !hello_opens(sid, &send, &recv, h)
                    {
                        tracing::debug!("ignoring an Accept whose session the acceptor replaced");
                        return Ok(());
                    }
                    let address = accept.onion_address.clone();
                    let made_at = pending.created_at;
                    let username = pending.to_username.clone();
                    let their_fpr = contact.fingerprint.clone();
                    // Received requests from them made no later than this
                    // Accept (a crossing's leftovers; the same second
                    // counts: timestamps are in seconds): their
                    // `expires_at` is `created_at` plus the window.
                    let stale_before = accept
                        .created_at
                        .saturating_add(ENVELOPE_MAX_AGE_SECS + MAX_FUTURE_SKEW_SECS);
                    let replaced = self
                        .store
                        .run(move |s| -> Result<bool, NodeError> {
                            s.take_pending_request(&rid)?
                                .ok_or(HandshakeError::UnknownRequest)?;
                            let mut c = s
                                .contact(cid)?
                                .ok_or(NodeError::NotFound { what: "contact" })?;
                            c.state = ContactState::Accepted;
                            c.onion_address = Some(address);
                            s.update_contact(&c)?;
                            // PROTOCOL.md §12.2 rule 4.
                            let replaced = s.session_for_contact(cid)?.is_some();
                            s.create_session(&SessionRecord {
                                contact: cid,
                                session_id: sid,
                                send,
                                recv,
                                created_at: crate::time::now_secs(),
                            })?;
                            s.drop_pending_requests_made_before(&username, made_at)?;
                            s.delete_pending_accept(cid)?;
                            s.answer_received_requests_from(&their_fpr, stale_before)?;
                            Ok(replaced)
                        })
                        .await??;
                    self.table(|t| {
                        t.accepts.remove(&cid);
                        t.accepted.insert(digest)
                    });
                    if replaced {
                        self.drop_connection(cid);
                    }
                    let _ = self.events.send(Event::RequestAnswered {
                        contact: cid,
                        accepted: true,
                    });
                    self.ensure_dialer(cid);
                    return Ok(());
                }
                Ok(Answer::Rejected(_)) => {
                    self.store
                        .run(move |s| -> Result<(), NodeError> {
                            s.take_pending_request(&rid)?;
                            s.set_contact_state(cid, ContactState::Rejected)?;
                            Ok(())
                        })
                        .await??;
                    let _ = self.events.send(Event::RequestAnswered {
                        contact: cid,
                        accepted: false,
                    });
                    return Err(NodeError::Handshake(HandshakeError::UnknownRequest));
                }
                Err(_) => continue,
            }
        }
        Err(HandshakeError::UnknownRequest.into())
    }
}
