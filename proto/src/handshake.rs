//! Connection requests, accepts and rejects: the payloads carried inside
//! OpenPGP envelopes, and the checks around them (docs/PROTOCOL.md,
//! "Handshake messages").
//!
//! Payload encoding: `version (2) || kind || postcard(body)`; kind 1 is a
//! [`ConnectionRequest`], 2 an [`Accept`], 3 a [`Reject`]. Decoding is
//! strict: unknown versions or kinds and trailing bytes are refused.
//!
//! The functions here are sans-IO: they turn identities and bytes into
//! envelopes and sessions; the daemon moves the bytes.

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::envelope::{self, EnvelopeError, Freshness, SenderLookup};
use crate::error::{ErrorKind, HasKind};
use crate::handshaker_api::binding::{BindingError, BindingKey, MAX_BINDING, SignedBinding};
use crate::identity::{Fingerprint, Identity, PublicCert, Username};
use crate::limits::{MAX_ADDRESS, MAX_CERT, MAX_FUTURE_SKEW_SECS, MAX_NOTE};
use crate::session::{Binding, KeyShare, PeerShare, Role, Session, SessionError, fill_random};
use crate::time::{now_secs, unix_secs};

/// Version byte of handshake payloads. Version 2 (PROTOCOL.md §5.6): a
/// request carries the requester's certificate and its Handshaker binding.
pub const HANDSHAKE_VERSION: u8 = 2;
const KIND_REQUEST: u8 = 1;
const KIND_ACCEPT: u8 = 2;
const KIND_REJECT: u8 = 3;

/// Errors from building or checking handshake messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The envelope was refused.
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The payload does not decode.
    #[error("malformed handshake payload: {0}")]
    Malformed(&'static str),
    /// A version this client does not speak.
    #[error("unsupported handshake version {0}; one of the two clients needs an update")]
    UnsupportedVersion(u8),
    /// A different kind of message was expected.
    #[error("unexpected handshake message: expected {expected}")]
    UnexpectedKind {
        /// What was expected.
        expected: &'static str,
    },
    /// A field is over its limit or has the wrong form.
    #[error("invalid {field} in handshake message")]
    InvalidField {
        /// Which field.
        field: &'static str,
    },
    /// The payload names a sender other than the key that signed it.
    #[error("sender mismatch: the message claims a sender other than its signer")]
    SwappedSender,
    /// The payload's `from_username` is not the one username of the signer's
    /// certificate.
    #[error("sender username does not match the signer's certificate")]
    UsernameMismatch,
    /// The body's `created_at` disagrees with the signature time.
    #[error("handshake time does not match its signature time")]
    TimeMismatch,
    /// The request is addressed to another user.
    #[error("request is addressed to another user")]
    NotForMe,
    /// The request id was already seen.
    #[error("replayed connection request (this request id was already received)")]
    Replay,
    /// An accept or reject for a request we do not have pending.
    #[error("no pending request matches this answer")]
    UnknownRequest,
    /// The request id could not be recorded, so the request was dropped.
    #[error(transparent)]
    Seen(#[from] SeenError),
    /// Deriving the session failed.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// A local identity problem, or the certificate a request carries is
    /// unusable.
    #[error(transparent)]
    Identity(#[from] crate::identity::IdentityError),
    /// The requester's Handshaker binding does not prove its name
    /// (PROTOCOL.md §5.6).
    #[error("the requester's name is not proven: {0}")]
    Binding(#[from] BindingError),
}

impl HasKind for HandshakeError {
    fn kind(&self) -> ErrorKind {
        match self {
            HandshakeError::Envelope(e) => e.kind(),
            HandshakeError::Malformed(_) | HandshakeError::InvalidField { .. } => {
                ErrorKind::InvalidInput
            }
            HandshakeError::UnsupportedVersion(_)
            | HandshakeError::UnexpectedKind { .. }
            | HandshakeError::NotForMe
            | HandshakeError::UnknownRequest => ErrorKind::Protocol,
            HandshakeError::SwappedSender | HandshakeError::UsernameMismatch => {
                ErrorKind::BadSignature
            }
            HandshakeError::TimeMismatch => ErrorKind::InvalidInput,
            HandshakeError::Replay => ErrorKind::Replay,
            HandshakeError::Seen(_) => ErrorKind::Io,
            HandshakeError::Session(e) => e.kind(),
            HandshakeError::Identity(e) => e.kind(),
            HandshakeError::Binding(e) => e.kind(),
        }
    }
}

/// Kind 1: "I, `from_username`, would like to talk; reach me at
/// `onion_address`." Travels through the recipient's Handshaker mailbox.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionRequest {
    /// Random id chosen by the requester; replay key.
    pub request_id: [u8; 16],
    /// The requester's username (folded, without `@`).
    pub from_username: String,
    /// The requester's fingerprint; MUST equal the envelope's signer.
    pub from_fingerprint: [u8; 20],
    /// The requester's public certificate (binary, stripped): the recipient
    /// verifies the envelope against it and asks no directory (§5.6).
    pub from_cert: Vec<u8>,
    /// The requester's Handshaker binding ([`SignedBinding`] bytes):
    /// `from_username` is `from_fingerprint`'s at the recipient's Handshaker.
    pub binding: Vec<u8>,
    /// The recipient's username (folded, without `@`).
    pub to_username: String,
    /// Where the requester's node listens: `<56 chars>.onion`, or
    /// `host:port` in the direct (LAN/test) mode.
    pub onion_address: String,
    /// The requester's random session-key half.
    pub session_half: [u8; 32],
    /// The requester's ephemeral X25519 public key.
    pub ephemeral_public: [u8; 32],
    /// A note for the recipient, ≤ [`MAX_NOTE`] bytes.
    pub note: String,
    /// Requester's clock, Unix seconds.
    pub created_at: u64,
}

/// Kind 2: the acceptor's answer, sent directly to the requester's address.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    /// The request being accepted.
    pub request_id: [u8; 16],
    /// The acceptor's username.
    pub from_username: String,
    /// The acceptor's fingerprint; MUST equal the envelope's signer.
    pub from_fingerprint: [u8; 20],
    /// Where the acceptor's node listens.
    pub onion_address: String,
    /// The acceptor's random session-key half.
    pub session_half: [u8; 32],
    /// The acceptor's ephemeral X25519 public key.
    pub ephemeral_public: [u8; 32],
    /// Acceptor's clock, Unix seconds.
    pub created_at: u64,
}

/// Kind 3: an explicit refusal (optional; a client MAY just drop a request).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reject {
    /// The request being refused.
    pub request_id: [u8; 16],
    /// The refuser's fingerprint; MUST equal the envelope's signer.
    pub from_fingerprint: [u8; 20],
    /// Refuser's clock, Unix seconds.
    pub created_at: u64,
}

/// A decoded handshake payload.
#[derive(Clone, PartialEq, Eq)]
pub enum HandshakeMessage {
    /// Kind 1.
    Request(ConnectionRequest),
    /// Kind 2.
    Accept(Accept),
    /// Kind 3.
    Reject(Reject),
}

fn check_address(addr: &str) -> Result<(), HandshakeError> {
    if addr.is_empty() || addr.len() > MAX_ADDRESS || !addr.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HandshakeError::InvalidField { field: "address" });
    }
    Ok(())
}

fn check_username(name: &str, field: &'static str) -> Result<(), HandshakeError> {
    match Username::parse(name) {
        Ok(u) if u.as_str() == name => Ok(()),
        _ => Err(HandshakeError::InvalidField { field }),
    }
}

impl HandshakeMessage {
    /// Encodes the payload.
    pub fn encode(&self) -> Result<Vec<u8>, HandshakeError> {
        self.validate()?;
        let (kind, body) = match self {
            HandshakeMessage::Request(r) => (KIND_REQUEST, postcard::to_stdvec(r)),
            HandshakeMessage::Accept(a) => (KIND_ACCEPT, postcard::to_stdvec(a)),
            HandshakeMessage::Reject(r) => (KIND_REJECT, postcard::to_stdvec(r)),
        };
        let body = body.map_err(|_| HandshakeError::Malformed("does not encode"))?;
        let mut out = Vec::with_capacity(body.len() + 2);
        out.extend_from_slice(&[HANDSHAKE_VERSION, kind]);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes a payload strictly.
    pub fn decode(bytes: &[u8]) -> Result<HandshakeMessage, HandshakeError> {
        let [version, kind, rest @ ..] = bytes else {
            return Err(HandshakeError::Malformed("truncated"));
        };
        if *version != HANDSHAKE_VERSION {
            return Err(HandshakeError::UnsupportedVersion(*version));
        }
        fn take<'a, T: Deserialize<'a>>(rest: &'a [u8]) -> Result<T, HandshakeError> {
            let (v, tail) = postcard::take_from_bytes(rest)
                .map_err(|_| HandshakeError::Malformed("body does not decode"))?;
            if !tail.is_empty() {
                return Err(HandshakeError::Malformed("trailing bytes"));
            }
            Ok(v)
        }
        let msg = match *kind {
            KIND_REQUEST => HandshakeMessage::Request(take(rest)?),
            KIND_ACCEPT => HandshakeMessage::Accept(take(rest)?),
            KIND_REJECT => HandshakeMessage::Reject(take(rest)?),
            _ => return Err(HandshakeError::Malformed("unknown kind")),
        };
        msg.validate()?;
        if msg.encode()? != bytes {
            return Err(HandshakeError::Malformed("non-canonical encoding"));
        }
        Ok(msg)
    }

    fn validate(&self) -> Result<(), HandshakeError> {
        match self {
            HandshakeMessage::Request(r) => {
                check_username(&r.from_username, "from_username")?;
                check_username(&r.to_username, "to_username")?;
                check_address(&r.onion_address)?;
                if r.note.len() > MAX_NOTE {
                    return Err(HandshakeError::InvalidField { field: "note" });
                }
                if r.from_cert.is_empty() || r.from_cert.len() > MAX_CERT {
                    return Err(HandshakeError::InvalidField { field: "from_cert" });
                }
                if r.binding.is_empty() || r.binding.len() > MAX_BINDING {
                    return Err(HandshakeError::InvalidField { field: "binding" });
                }
            }
            HandshakeMessage::Accept(a) => {
                check_username(&a.from_username, "from_username")?;
                check_address(&a.onion_address)?;
            }
            HandshakeMessage::Reject(_) => {}
        }
        Ok(())
    }

    fn sender_fingerprint(&self) -> [u8; 20] {
        match self {
            HandshakeMessage::Request(r) => r.from_fingerprint,
            HandshakeMessage::Accept(a) => a.from_fingerprint,
            HandshakeMessage::Reject(r) => r.from_fingerprint,
        }
    }
}

/// Remembers which request ids were already received (the store implements
/// this durably; [`MemorySeen`] is for tests and the demo).
pub trait SeenRequests {
    /// Records `id` as seen until `expires_at` (Unix seconds) unless it is
    /// already recorded. Returns `Ok(true)` if it was new, `Ok(false)` if it
    /// was seen before (a replay; nothing is changed then).
    ///
    /// Check and record are one step, so that two copies of a request
    /// arriving together cannot both pass.
    fn record_if_new(&mut self, id: [u8; 16], expires_at: u64) -> Result<bool, SeenError>;
}

/// Recording a request id failed (e.g. the store could not be written).
/// The request must then be dropped: it may be a replay.
#[derive(Debug, thiserror::Error)]
#[error("cannot record the connection request id")]
pub struct SeenError {
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl SeenError {
    /// Wraps the error of a [`SeenRequests`] implementation.
    pub fn new(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        SeenError {
            source: Box::new(source),
        }
    }
}

/// An in-memory [`SeenRequests`].
#[derive(Default, Debug)]
pub struct MemorySeen(std::collections::HashMap<[u8; 16], u64>);

impl SeenRequests for MemorySeen {
    fn record_if_new(&mut self, id: [u8; 16], expires_at: u64) -> Result<bool, SeenError> {
        match self.0.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => Ok(false),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(expires_at);
                Ok(true)
            }
        }
    }
}

/// What the requester keeps (in the encrypted store) until the answer
/// arrives.
pub struct PendingRequest {
    /// The request id.
    pub request_id: [u8; 16],
    /// The recipient's fingerprint (the only key whose accept is valid).
    pub to_fingerprint: Fingerprint,
    /// My secret share.
    pub share: KeyShare,
}

/// Opens an envelope from a verified sender and decodes its payload, checking
/// that the payload names its signer.
fn open_payload<L: SenderLookup>(
    envelope_bytes: &[u8],
    me: &Identity,
    senders: L,
    freshness: Freshness,
) -> Result<(HandshakeMessage, Fingerprint), HandshakeError> {
    let opened = envelope::open(envelope_bytes, me, senders, freshness)?;
    let msg = HandshakeMessage::decode(&opened.payload)?;
    let claimed = Fingerprint::from_bytes(msg.sender_fingerprint());
    if !claimed.ct_eq(&opened.signer) {
        return Err(HandshakeError::SwappedSender);
    }
    let created = match &msg {
        HandshakeMessage::Request(r) => r.created_at,
        HandshakeMessage::Accept(a) => a.created_at,
        HandshakeMessage::Reject(r) => r.created_at,
    };
    if created.abs_diff(unix_secs(opened.signed_at)) > MAX_FUTURE_SKEW_SECS {
        return Err(HandshakeError::TimeMismatch);
    }
    let from_username = match &msg {
        HandshakeMessage::Request(r) => Some(&r.from_username),
        HandshakeMessage::Accept(a) => Some(&a.from_username),
        HandshakeMessage::Reject(_) => None,
    };
    // The claimed name must be the signer certificate's one username
    // (PROTOCOL.md §5.5 row 7): a certificate with several `@` user IDs has
    // none, so a key cannot speak for a name that is not its own.
    if let Some(name) = from_username
        && !opened
            .signer_cert
            .username()
            .is_ok_and(|u| u.as_str() == name)
    {
        return Err(HandshakeError::UsernameMismatch);
    }
    Ok((msg, opened.signer))
}

/// Builds a connection request from `me` to `to`: returns the armored
/// envelope (for the recipient's mailbox) and what to keep until answered.
/// `binding` is the Handshaker's binding of `me` (PROTOCOL.md §17.11); it
/// travels inside the request so the recipient checks `me`'s name offline.
pub fn make_request(
    me: &Identity,
    to: &PublicCert,
    to_username: &Username,
    my_address: &str,
    note: &str,
    binding: &SignedBinding,
) -> Result<(String, PendingRequest), HandshakeError> {
    // A binding of someone else would only make the recipient refuse us.
    if binding.binding.username != me.username().as_str() {
        return Err(BindingError::Mismatch("username").into());
    }
    if &binding.binding.fingerprint != me.fingerprint().as_bytes() {
        return Err(BindingError::Mismatch("key").into());
    }
    let share = KeyShare::generate();
    let mut request_id = [0u8; 16];
    fill_random(&mut request_id);
    let msg = HandshakeMessage::Request(ConnectionRequest {
        request_id,
        from_username: me.username().as_str().to_owned(),
        from_fingerprint: *me.fingerprint().as_bytes(),
        from_cert: me.public_cert()?.stripped()?.to_bytes()?,
        binding: binding.encode()?,
        to_username: to_username.as_str().to_owned(),
        onion_address: my_address.to_owned(),
        session_half: share.half(),
        ephemeral_public: share.ephemeral_public(),
        note: note.to_owned(),
        created_at: now_secs(),
    });
    let payload = Zeroizing::new(msg.encode()?);
    let sealed = envelope::seal(&payload, me, to)?;
    Ok((
        sealed,
        PendingRequest {
            request_id,
            to_fingerprint: to.fingerprint(),
            share,
        },
    ))
}

/// What a recipient trusts to check a requester's name (PROTOCOL.md §5.6):
/// its Handshaker's canonical address and the binding key pinned for it.
#[derive(Debug, Clone)]
pub struct TrustAnchor {
    /// The canonical Handshaker address bindings must name.
    pub address: String,
    /// The Handshaker's pinned binding key.
    pub key: BindingKey,
}

/// Opens a connection request addressed to `me` (PROTOCOL.md §5.6), with
/// no directory call: the request carries the requester's certificate and
/// binding. Pass 1 decrypts without verifying, only to read the claimed
/// certificate; pass 2 opens the same bytes verified against it. Then the
/// binding must be signed by `anchor`'s key and bind exactly the signer's
/// fingerprint to `from_username` at `anchor`'s address, valid when the
/// request was signed.
///
/// A replayed request id is refused, and `seen` is only updated when every
/// other check passed (the id is remembered until the request could no
/// longer pass the `freshness` check). Returns the request and the
/// requester's certificate.
pub fn open_request(
    envelope_bytes: &[u8],
    me: &Identity,
    anchor: &TrustAnchor,
    seen: &mut dyn SeenRequests,
    freshness: Freshness,
) -> Result<(ConnectionRequest, PublicCert), HandshakeError> {
    let (claimed_bytes, claimed) = {
        let unverified = envelope::peek(envelope_bytes, me)?;
        let HandshakeMessage::Request(req) = HandshakeMessage::decode(&unverified)? else {
            return Err(HandshakeError::UnexpectedKind {
                expected: "connection request",
            });
        };
        let cert = PublicCert::from_bytes(&req.from_cert)?;
        (req.from_cert, cert)
    };
    let (msg, signer) = open_payload(envelope_bytes, me, &claimed, freshness)?;
    let HandshakeMessage::Request(req) = msg else {
        return Err(HandshakeError::UnexpectedKind {
            expected: "connection request",
        });
    };
    // The verified payload carries exactly the certificate it was verified
    // with (no second parse: the bytes must be the same).
    if req.from_cert != claimed_bytes {
        return Err(HandshakeError::SwappedSender);
    }
    if req.to_username != me.username().as_str() {
        return Err(HandshakeError::NotForMe);
    }
    let from = Username::parse(&req.from_username).map_err(|_| HandshakeError::InvalidField {
        field: "from_username",
    })?;
    SignedBinding::decode(&req.binding)?.check(
        &anchor.key,
        &from,
        &signer,
        &anchor.address,
        req.created_at,
    )?;
    // A copy of this request is accepted as fresh until its signature is older than
    // `max_age`; the signature time is at most MAX_FUTURE_SKEW_SECS after `created_at`.
    let expires_at = req
        .created_at
        .saturating_add(freshness.max_age.as_secs())
        .saturating_add(MAX_FUTURE_SKEW_SECS);
    if !seen.record_if_new(req.request_id, expires_at)? {
        return Err(HandshakeError::Replay);
    }
    Ok((req, claimed))
}

/// Accepts `request` (already opened and checked by [`open_request`]):
/// returns the armored accept envelope for the requester and the session.
pub fn make_accept(
    me: &Identity,
    requester: &PublicCert,
    request: &ConnectionRequest,
    my_address: &str,
) -> Result<(String, Session), HandshakeError> {
    if !requester
        .fingerprint()
        .ct_eq(&Fingerprint::from_bytes(request.from_fingerprint))
    {
        return Err(HandshakeError::SwappedSender);
    }
    let share = KeyShare::generate();
    let msg = HandshakeMessage::Accept(Accept {
        request_id: request.request_id,
        from_username: me.username().as_str().to_owned(),
        from_fingerprint: *me.fingerprint().as_bytes(),
        onion_address: my_address.to_owned(),
        session_half: share.half(),
        ephemeral_public: share.ephemeral_public(),
        created_at: now_secs(),
    });
    let payload = Zeroizing::new(msg.encode()?);
    let sealed = envelope::seal(&payload, me, requester)?;
    let binding = Binding {
        request_id: request.request_id,
        requester: requester.fingerprint(),
        acceptor: me.fingerprint(),
    };
    let peer = PeerShare {
        half: request.session_half,
        ephemeral_public: request.ephemeral_public,
    };
    let session = Session::derive(Role::Acceptor, share, &peer, &binding)?;
    Ok((sealed, session))
}

/// Builds an explicit reject envelope (optional in the protocol).
pub fn make_reject(
    me: &Identity,
    requester: &PublicCert,
    request: &ConnectionRequest,
) -> Result<String, HandshakeError> {
    let msg = HandshakeMessage::Reject(Reject {
        request_id: request.request_id,
        from_fingerprint: *me.fingerprint().as_bytes(),
        created_at: now_secs(),
    });
    Ok(envelope::seal(&msg.encode()?, me, requester)?)
}

/// The answer to one of my pending requests.
pub enum Answer {
    /// Accepted: the session is established.
    Accepted {
        /// The accept (the peer's address and username).
        accept: Accept,
        /// The derived session.
        session: Box<Session>,
    },
    /// Refused.
    Rejected(Reject),
}

/// Opens an accept or reject from `peer` for the pending request it names.
/// `find_pending` returns (and the caller then removes) the matching pending
/// request; the share is consumed by the derivation.
pub fn open_answer(
    envelope_bytes: &[u8],
    me: &Identity,
    peer: &PublicCert,
    find_pending: &mut dyn FnMut(&[u8; 16]) -> Option<PendingRequest>,
    freshness: Freshness,
) -> Result<Answer, HandshakeError> {
    let (msg, signer) = open_payload(envelope_bytes, me, peer, freshness)?;
    let request_id = match &msg {
        HandshakeMessage::Accept(a) => a.request_id,
        HandshakeMessage::Reject(r) => r.request_id,
        HandshakeMessage::Request(_) => {
            return Err(HandshakeError::UnexpectedKind {
                expected: "accept or reject",
            });
        }
    };
    let pending = find_pending(&request_id).ok_or(HandshakeError::UnknownRequest)?;
    if !pending.to_fingerprint.ct_eq(&signer) {
        return Err(HandshakeError::UnknownRequest);
    }
    match msg {
        HandshakeMessage::Accept(accept) => {
            let binding = Binding {
                request_id,
                requester: me.fingerprint(),
                acceptor: signer,
            };
            let peer_share = PeerShare {
                half: accept.session_half,
                ephemeral_public: accept.ephemeral_public,
            };
            let session = Session::derive(Role::Requester, pending.share, &peer_share, &binding)?;
            Ok(Answer::Accepted {
                accept,
                session: Box::new(session),
            })
        }
        HandshakeMessage::Reject(r) => Ok(Answer::Rejected(r)),
        HandshakeMessage::Request(_) => Err(HandshakeError::UnexpectedKind { expected: "accept" }),
    }
}

/// Seconds since a handshake message was created, for display.
pub fn age_secs(created_at: u64) -> u64 {
    unix_secs(std::time::SystemTime::now()).saturating_sub(created_at)
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::handshaker_api::binding::{Binding, BindingSigner};
    use crate::limits::ENVELOPE_MAX_AGE_SECS;
    use proptest::prelude::*;

    fn ident(name: &str) -> Identity {
        Identity::generate(&Username::parse(name).unwrap()).unwrap()
    }

    const ADDR_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.onion";
    const HS: &str = "http://handshaker.test:8080";

    /// The one Handshaker of these tests: its signer, and the anchor a
    /// recipient pinned for it.
    struct Dir {
        signer: BindingSigner,
        anchor: TrustAnchor,
    }

    fn dir() -> Dir {
        let signer = BindingSigner::generate();
        let anchor = TrustAnchor {
            address: HS.into(),
            key: signer.public(),
        };
        Dir { signer, anchor }
    }

    impl Dir {
        fn bind(&self, id: &Identity) -> SignedBinding {
            self.signer
                .issue(id.username(), &id.fingerprint(), HS, now_secs())
                .unwrap()
        }

        fn open(
            &self,
            env: &str,
            me: &Identity,
            seen: &mut dyn SeenRequests,
        ) -> Result<(ConnectionRequest, PublicCert), HandshakeError> {
            open_request(env.as_bytes(), me, &self.anchor, seen, Freshness::default())
        }

        fn request(
            &self,
            from: &Identity,
            to: &PublicCert,
            to_name: &Username,
            note: &str,
        ) -> (String, PendingRequest) {
            make_request(from, to, to_name, ADDR_A, note, &self.bind(from)).unwrap()
        }
    }

    /// A request body from `from`, with every field filled in as
    /// `make_request` would (tests then falsify one).
    fn body(from: &Identity, binding: &SignedBinding) -> ConnectionRequest {
        let share = KeyShare::generate();
        ConnectionRequest {
            request_id: [7; 16],
            from_username: from.username().as_str().into(),
            from_fingerprint: *from.fingerprint().as_bytes(),
            from_cert: from
                .public_cert()
                .unwrap()
                .stripped()
                .unwrap()
                .to_bytes()
                .unwrap(),
            binding: binding.encode().unwrap(),
            to_username: "bob".into(),
            onion_address: ADDR_A.into(),
            session_half: share.half(),
            ephemeral_public: share.ephemeral_public(),
            note: String::new(),
            created_at: now_secs(),
        }
    }

    fn seal_body(body: &ConnectionRequest, signer: &Identity, to: &PublicCert) -> String {
        envelope::seal(
            &HandshakeMessage::Request(body.clone()).encode().unwrap(),
            signer,
            to,
        )
        .unwrap()
    }
    const ADDR_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.onion";

    #[test]
    fn full_handshake_derives_matching_sessions() {
        let (alice, bob, d) = (ident("alice"), ident("bob"), dir());
        let (pa, pb) = (alice.public_cert().unwrap(), bob.public_cert().unwrap());
        let (req_env, pending) = d.request(&alice, &pb, bob.username(), "hi, it's alice");
        let mut seen = MemorySeen::default();
        let (req, cert) = d.open(&req_env, &bob, &mut seen).unwrap();
        assert_eq!(cert.fingerprint(), alice.fingerprint());
        assert_eq!(cert.username().unwrap(), *alice.username());
        assert_eq!(req.note, "hi, it's alice");
        assert_eq!(req.onion_address, ADDR_A);
        let (acc_env, mut bob_session) = make_accept(&bob, &pa, &req, ADDR_B).unwrap();
        let mut pending = Some(pending);
        let answer = open_answer(
            acc_env.as_bytes(),
            &alice,
            &pb,
            &mut |id| pending.take().filter(|p| &p.request_id == id),
            Freshness::default(),
        )
        .unwrap();
        let Answer::Accepted {
            accept,
            session: mut alice_session,
        } = answer
        else {
            panic!("expected an accept")
        };
        assert_eq!(accept.onion_address, ADDR_B);
        let frame = alice_session.seal(b"hello").unwrap();
        assert_eq!(&bob_session.open(&frame).unwrap()[..], b"hello");
        let frame = bob_session.seal(b"hi").unwrap();
        assert_eq!(&alice_session.open(&frame).unwrap()[..], b"hi");
    }

    #[test]
    fn replayed_request_is_refused_and_state_untouched() {
        let (alice, bob, d) = (ident("alice"), ident("bob"), dir());
        let pb = bob.public_cert().unwrap();
        let (env, _) = d.request(&alice, &pb, bob.username(), "");
        let mut seen = MemorySeen::default();
        d.open(&env, &bob, &mut seen).unwrap();
        let before = seen.0.clone();
        assert!(matches!(
            d.open(&env, &bob, &mut seen),
            Err(HandshakeError::Replay)
        ));
        assert_eq!(before, seen.0);
        // Remembered for as long as a copy could still pass the freshness check.
        let expires = *seen.0.values().next().unwrap();
        let window = ENVELOPE_MAX_AGE_SECS + MAX_FUTURE_SKEW_SECS;
        assert!(expires >= now_secs() + window - 60 && expires <= now_secs() + window);
    }

    /// A replay cache that cannot be written.
    struct BrokenSeen;
    impl SeenRequests for BrokenSeen {
        fn record_if_new(&mut self, _: [u8; 16], _: u64) -> Result<bool, SeenError> {
            Err(SeenError::new(std::io::Error::other("disk full")))
        }
    }

    #[test]
    fn unrecordable_request_is_refused() {
        let (alice, bob, d) = (ident("alice"), ident("bob"), dir());
        let pb = bob.public_cert().unwrap();
        let (env, _) = d.request(&alice, &pb, bob.username(), "");
        let Err(e) = d.open(&env, &bob, &mut BrokenSeen) else {
            panic!("an unrecordable request was accepted")
        };
        assert!(matches!(e, HandshakeError::Seen(_)), "{e}");
        assert_eq!(e.kind(), ErrorKind::Io);
    }

    #[test]
    fn swapped_sender_is_refused() {
        let (alice, bob, mallory, d) = (ident("alice"), ident("bob"), ident("mallory"), dir());
        let pb = bob.public_cert().unwrap();
        let mut seen = MemorySeen::default();
        // Mallory signs a request that carries Alice's certificate, name,
        // fingerprint and (public) binding: her signature is not Alice's.
        let forged = body(&alice, &d.bind(&alice));
        let env = seal_body(&forged, &mallory, &pb);
        assert!(matches!(
            d.open(&env, &bob, &mut seen),
            Err(HandshakeError::Envelope(EnvelopeError::UnknownSigner))
        ));
        // With her own certificate but Alice's fingerprint in the body.
        let mut forged = body(&mallory, &d.bind(&mallory));
        forged.from_fingerprint = *alice.fingerprint().as_bytes();
        let env = seal_body(&forged, &mallory, &pb);
        assert!(matches!(
            d.open(&env, &bob, &mut seen),
            Err(HandshakeError::SwappedSender)
        ));
        assert!(seen.0.is_empty());
    }

    #[test]
    fn claimed_username_must_be_on_the_signers_cert() {
        let (bob, mallory, d) = (ident("bob"), ident("mallory"), dir());
        let pb = bob.public_cert().unwrap();
        let mut req = body(&mallory, &d.bind(&mallory));
        req.from_username = "alice".into();
        let mut seen = MemorySeen::default();
        let env = seal_body(&req, &mallory, &pb);
        assert!(matches!(
            d.open(&env, &bob, &mut seen),
            Err(HandshakeError::UsernameMismatch)
        ));
        // A body time far from the signature time is refused too.
        req.from_username = "mallory".into();
        req.created_at = now_secs() - 3600;
        let env = seal_body(&req, &mallory, &pb);
        assert!(matches!(
            d.open(&env, &bob, &mut seen),
            Err(HandshakeError::TimeMismatch)
        ));
        assert!(seen.0.is_empty());
    }

    /// SECURITY-2026-11 H2: a key that names itself `@alice` is not Alice.
    /// The name is proven only by a binding from the pinned Handshaker key.
    #[test]
    fn a_name_is_proven_only_by_the_pinned_handshakers_binding() {
        let (alice, bob, d) = (ident("alice"), ident("bob"), dir());
        // Mallory's second key carries the user ID @alice.
        let fake_alice = ident("alice");
        let pb = bob.public_cert().unwrap();
        let refused = |env: String| {
            let mut seen = MemorySeen::default();
            let r = d.open(&env, &bob, &mut seen);
            assert!(seen.0.is_empty(), "a refused request was recorded");
            match r {
                Err(HandshakeError::Binding(e)) => e,
                Err(e) => panic!("refused for another reason: {e}"),
                Ok(_) => panic!("a forged name was accepted"),
            }
        };
        // With Alice's real binding (bindings are public): another key.
        let env = seal_body(&body(&fake_alice, &d.bind(&alice)), &fake_alice, &pb);
        assert_eq!(refused(env), BindingError::Mismatch("key"));
        // With a binding of Mallory's registered name: another name.
        let mallory = d.signer.issue(
            &Username::parse("mallory").unwrap(),
            &fake_alice.fingerprint(),
            HS,
            now_secs(),
        );
        let env = seal_body(&body(&fake_alice, &mallory.unwrap()), &fake_alice, &pb);
        assert_eq!(refused(env), BindingError::Mismatch("username"));
        // A binding for @alice signed by another Handshaker's key.
        let other = dir();
        let env = seal_body(
            &body(&fake_alice, &other.bind(&fake_alice)),
            &fake_alice,
            &pb,
        );
        assert_eq!(refused(env), BindingError::BadSignature);
        // Signed by our Handshaker's key, but naming another Handshaker.
        let elsewhere = d
            .signer
            .issue(
                fake_alice.username(),
                &fake_alice.fingerprint(),
                "http://other:1",
                now_secs(),
            )
            .unwrap();
        let env = seal_body(&body(&fake_alice, &elsewhere), &fake_alice, &pb);
        assert_eq!(refused(env), BindingError::Mismatch("Handshaker"));
        // A binding that had expired when the request was signed.
        let old = d
            .signer
            .sign(Binding {
                username: "alice".into(),
                fingerprint: *fake_alice.fingerprint().as_bytes(),
                handshaker: HS.into(),
                issued_at: now_secs() - 10_000,
                expires_at: now_secs() - 1_000,
            })
            .unwrap();
        let env = seal_body(&body(&fake_alice, &old), &fake_alice, &pb);
        assert_eq!(refused(env), BindingError::Expired);
        // A binding that does not decode.
        let mut garbled = body(&fake_alice, &d.bind(&fake_alice));
        garbled.binding[0] ^= 1;
        let env = seal_body(&garbled, &fake_alice, &pb);
        assert!(matches!(refused(env), BindingError::Malformed(_)));
        // The real Alice, with her own binding, passes.
        let (env, _) = d.request(&alice, &pb, bob.username(), "");
        let mut seen = MemorySeen::default();
        d.open(&env, &bob, &mut seen).unwrap();
    }

    #[test]
    fn the_requester_refuses_to_send_someone_elses_binding() {
        let (alice, bob, d) = (ident("alice"), ident("bob"), dir());
        let pb = bob.public_cert().unwrap();
        let Err(e) = make_request(&alice, &pb, bob.username(), ADDR_A, "", &d.bind(&bob)) else {
            panic!("sent with another user's binding")
        };
        assert!(
            matches!(e, HandshakeError::Binding(BindingError::Mismatch(_))),
            "{e}"
        );
    }

    #[test]
    fn the_certificate_inside_must_be_usable() {
        let (alice, bob, d) = (ident("alice"), ident("bob"), dir());
        let pb = bob.public_cert().unwrap();
        let mut req = body(&alice, &d.bind(&alice));
        req.from_cert = b"not a certificate".to_vec();
        let env = seal_body(&req, &alice, &pb);
        let mut seen = MemorySeen::default();
        assert!(matches!(
            d.open(&env, &bob, &mut seen),
            Err(HandshakeError::Identity(_))
        ));
        assert!(seen.0.is_empty());
    }

    #[test]
    fn request_for_someone_else_and_unknown_answers() {
        let (alice, bob, carol, d) = (ident("alice"), ident("bob"), ident("carol"), dir());
        let (pa, pb) = (alice.public_cert().unwrap(), bob.public_cert().unwrap());
        // Encrypted to Bob, but addressed (inside) to carol.
        let (env, _) = d.request(&alice, &pb, carol.username(), "");
        let mut seen = MemorySeen::default();
        assert!(matches!(
            d.open(&env, &bob, &mut seen),
            Err(HandshakeError::NotForMe)
        ));
        // An accept for a request Alice never sent.
        let (env, _) = d.request(&alice, &pb, bob.username(), "");
        let (req, _) = d.open(&env, &bob, &mut seen).unwrap();
        let (acc, _) = make_accept(&bob, &pa, &req, ADDR_B).unwrap();
        assert!(matches!(
            open_answer(
                acc.as_bytes(),
                &alice,
                &pb,
                &mut |_| None,
                Freshness::default()
            ),
            Err(HandshakeError::UnknownRequest)
        ));
        // A request presented where an answer is expected.
        assert!(matches!(
            open_answer(
                env.as_bytes(),
                &bob,
                &pa,
                &mut |_| None,
                Freshness::default()
            ),
            Err(HandshakeError::UnexpectedKind { .. })
        ));
    }

    #[test]
    fn reject_round_trip() {
        let (alice, bob, d) = (ident("alice"), ident("bob"), dir());
        let (pa, pb) = (alice.public_cert().unwrap(), bob.public_cert().unwrap());
        let (env, pending) = d.request(&alice, &pb, bob.username(), "");
        let (req, _) = d.open(&env, &bob, &mut MemorySeen::default()).unwrap();
        let rej = make_reject(&bob, &pa, &req).unwrap();
        let mut pending = Some(pending);
        let answer = open_answer(
            rej.as_bytes(),
            &alice,
            &pb,
            &mut |_| pending.take(),
            Freshness::default(),
        )
        .unwrap();
        assert!(matches!(answer, Answer::Rejected(r) if r.request_id == req.request_id));
    }

    #[test]
    fn strict_payload_decoding() {
        assert!(matches!(
            HandshakeMessage::decode(&[]),
            Err(HandshakeError::Malformed(_))
        ));
        assert!(matches!(
            HandshakeMessage::decode(&[3, 1]),
            Err(HandshakeError::UnsupportedVersion(3))
        ));
        // Version 1 requests carried neither certificate nor binding.
        assert!(matches!(
            HandshakeMessage::decode(&[1, 1]),
            Err(HandshakeError::UnsupportedVersion(1))
        ));
        assert!(matches!(
            HandshakeMessage::decode(&[HANDSHAKE_VERSION, 9]),
            Err(HandshakeError::Malformed(_))
        ));
        let r = HandshakeMessage::Reject(Reject {
            request_id: [0; 16],
            from_fingerprint: [0; 20],
            created_at: 5,
        });
        let mut bytes = r.encode().unwrap();
        assert!(HandshakeMessage::decode(&bytes).is_ok());
        bytes.push(0);
        assert!(matches!(
            HandshakeMessage::decode(&bytes),
            Err(HandshakeError::Malformed("trailing bytes"))
        ));
        // Over-long note and bad usernames are refused on both ends.
        let alice = ident("alice");
        let mut req = body(&alice, &dir().bind(&alice));
        req.note = "n".repeat(MAX_NOTE + 1);
        assert!(HandshakeMessage::Request(req.clone()).encode().is_err());
        let mut raw = vec![HANDSHAKE_VERSION, 1];
        raw.extend_from_slice(&postcard::to_stdvec(&req).unwrap());
        assert!(matches!(
            HandshakeMessage::decode(&raw),
            Err(HandshakeError::InvalidField { field: "note" })
        ));
        req.note.clear();
        req.from_username = "Alice".into();
        assert!(HandshakeMessage::Request(req.clone()).encode().is_err());
        req.from_username = "alice".into();
        req.onion_address = "bad address".into();
        assert!(HandshakeMessage::Request(req.clone()).encode().is_err());
        req.onion_address = ADDR_A.into();
        assert!(HandshakeMessage::Request(req.clone()).encode().is_ok());
        // Certificate and binding: present and bounded.
        for (cert, binding) in [
            (vec![], vec![1]),
            (vec![0; MAX_CERT + 1], vec![1]),
            (vec![1], vec![]),
            (vec![1], vec![0; MAX_BINDING + 1]),
        ] {
            let mut r = req.clone();
            (r.from_cert, r.binding) = (cert, binding);
            assert!(matches!(
                HandshakeMessage::Request(r).encode(),
                Err(HandshakeError::InvalidField { .. })
            ));
        }
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_payloads_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = HandshakeMessage::decode(&bytes);
        }
    }
}
