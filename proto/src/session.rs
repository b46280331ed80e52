//! Session keys: the key schedule, the per-direction symmetric ratchet and
//! AES-256-GCM sealed frames (docs/PROTOCOL.md, "Session key schedule" and
//! "Sealed frames").
//!
//! A session is derived from two random 32-byte halves (one carried by the
//! connection request, one by the accept) **and** an ephemeral X25519
//! exchange whose public halves travel signed inside the same envelopes.
//! Someone who records the envelopes and later steals both OpenPGP keys
//! learns the halves and the public keys, but not the X25519 shared secret,
//! so the session stays closed to them.
//!
//! Inside a session each direction has a chain key `ck_n`; frame `n` is
//! sealed under `mk_n = HMAC(ck_n, 0x01)` and the chain moves on to
//! `ck_{n+1} = HMAC(ck_n, 0x02)`, overwriting `ck_n`. Each frame key seals
//! exactly one frame, so a nonce can never repeat under a key, and stealing
//! today's state does not open yesterday's frames.
//!
//! **Persistence rule:** [`Session::seal`] advances the send chain. The
//! caller MUST persist [`Session::state`] before the sealed frame leaves the
//! process, so that a crash can never make a chain key seal twice.

use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

use crate::error::{ErrorKind, HasKind};
use crate::identity::Fingerprint;
use crate::limits::{MAX_FRAME, MAX_SKIP};

/// Frame version byte (docs/PROTOCOL.md, "Wire").
pub const FRAME_VERSION: u8 = 1;
/// Frame type byte of a sealed session frame.
pub const FRAME_TYPE_SEALED: u8 = 2;
/// Bytes before the ciphertext in a sealed frame body:
/// version, type, session id (16), sequence (8).
pub const SEALED_HEADER_LEN: usize = 2 + 16 + 8;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Largest plaintext that fits in one sealed frame.
pub const MAX_PLAINTEXT: usize = MAX_FRAME - SEALED_HEADER_LEN - TAG_LEN;

const SALT_LABEL: &[u8] = b"umbra/v1/session-salt";
const LABEL_REQ_TO_ACC: &[u8] = b"umbra/v1/chain/requester->acceptor";
const LABEL_ACC_TO_REQ: &[u8] = b"umbra/v1/chain/acceptor->requester";
const LABEL_SESSION_ID: &[u8] = b"umbra/v1/session-id";

/// Errors from deriving sessions and sealing or opening frames.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The peer's ephemeral key gives an all-zero shared secret.
    #[error("peer sent a weak ephemeral key; the handshake is refused")]
    WeakEphemeral,
    /// The frame is shorter than a header and a tag, or has the wrong
    /// version or type.
    #[error("malformed sealed frame")]
    Malformed,
    /// The frame is over [`MAX_FRAME`] or the plaintext over [`MAX_PLAINTEXT`].
    #[error("frame too large: {len} bytes (limit {limit})")]
    TooLarge {
        /// Observed size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The frame belongs to another session.
    #[error("frame for another session")]
    WrongSession,
    /// The frame's sequence number was already used (or is behind).
    #[error("replayed or out-of-date frame (sequence {seq}, expected at least {expected})")]
    Replay {
        /// The frame's sequence.
        seq: u64,
        /// The next expected sequence.
        expected: u64,
    },
    /// The frame's sequence is too far ahead of the receive chain.
    #[error("frame sequence {seq} too far ahead (expected {expected}, at most {MAX_SKIP} skipped)")]
    TooFarAhead {
        /// The frame's sequence.
        seq: u64,
        /// The next expected sequence.
        expected: u64,
    },
    /// Authentication failed: the frame was forged or altered.
    #[error("frame failed authentication (bad tag)")]
    BadTag,
    /// The send counter is exhausted: end the session and start a new one.
    #[error("session exhausted; end it and send a new request")]
    Exhausted,
    /// A stored session state could not be parsed.
    #[error("corrupt stored session state")]
    CorruptState,
}

impl HasKind for SessionError {
    fn kind(&self) -> ErrorKind {
        match self {
            SessionError::WeakEphemeral | SessionError::WrongSession => ErrorKind::Protocol,
            SessionError::Malformed | SessionError::CorruptState => ErrorKind::InvalidInput,
            SessionError::TooLarge { .. } => ErrorKind::TooLarge,
            SessionError::Replay { .. } | SessionError::TooFarAhead { .. } => ErrorKind::Replay,
            SessionError::BadTag => ErrorKind::Decryption,
            SessionError::Exhausted => ErrorKind::Protocol,
        }
    }
}

/// Which side of the connection request this party was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sent the connection request (through the Handshaker mailbox).
    Requester,
    /// Accepted it (directly to the requester's onion service).
    Acceptor,
}

/// One party's secret contribution to a session: a random half and an
/// ephemeral X25519 secret. The requester keeps it (in the encrypted store)
/// only while its request is pending.
pub struct KeyShare {
    half: Zeroizing<[u8; 32]>,
    ephemeral: StaticSecret,
}

impl KeyShare {
    /// A fresh random share.
    pub fn generate() -> Self {
        let mut half = Zeroizing::new([0u8; 32]);
        let mut eph = Zeroizing::new([0u8; 32]);
        fill_random(&mut half[..]);
        fill_random(&mut eph[..]);
        KeyShare {
            half,
            ephemeral: StaticSecret::from(*eph),
        }
    }

    /// The random half, sent to the peer inside the signed envelope.
    pub fn half(&self) -> [u8; 32] {
        *self.half
    }

    /// The ephemeral public key, sent to the peer inside the signed envelope.
    pub fn ephemeral_public(&self) -> [u8; 32] {
        PublicKey::from(&self.ephemeral).to_bytes()
    }

    /// Serialization for the encrypted store (64 bytes: half, ephemeral).
    pub fn to_secret_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(64));
        out.extend_from_slice(&self.half[..]);
        out.extend_from_slice(&self.ephemeral.to_bytes());
        out
    }

    /// Parses [`KeyShare::to_secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, SessionError> {
        if bytes.len() != 64 {
            return Err(SessionError::CorruptState);
        }
        let mut half = Zeroizing::new([0u8; 32]);
        let mut eph = Zeroizing::new([0u8; 32]);
        half.copy_from_slice(&bytes[..32]);
        eph.copy_from_slice(&bytes[32..]);
        Ok(KeyShare {
            half,
            ephemeral: StaticSecret::from(*eph),
        })
    }
}

impl fmt::Debug for KeyShare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyShare([secret])")
    }
}

/// What a party learned from its peer's envelope.
#[derive(Clone, Copy)]
pub struct PeerShare {
    /// The peer's random half.
    pub half: [u8; 32],
    /// The peer's ephemeral X25519 public key.
    pub ephemeral_public: [u8; 32],
}

/// Everything that binds a session to its handshake.
#[derive(Clone, Copy)]
pub struct Binding {
    /// The request id chosen by the requester.
    pub request_id: [u8; 16],
    /// The requester's OpenPGP fingerprint.
    pub requester: Fingerprint,
    /// The acceptor's OpenPGP fingerprint.
    pub acceptor: Fingerprint,
}

/// Fills `buf` with OS randomness.
///
/// # Panics
/// If the operating system has no randomness to give, which leaves no safe
/// way to continue.
#[allow(clippy::expect_used)]
pub fn fill_random(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system random number generator failed");
}

struct Chain {
    ck: Zeroizing<[u8; 32]>,
    next: u64,
}

type HmacSha256 = Hmac<Sha256>;

impl Chain {
    /// The key for frame `self.next`, advancing (and erasing) the chain key.
    fn step(&mut self) -> Zeroizing<[u8; 32]> {
        let mk = hmac32(&self.ck, 0x01);
        let next = hmac32(&self.ck, 0x02);
        self.ck.copy_from_slice(&next[..]);
        self.next += 1;
        mk
    }
}

fn hmac32(key: &[u8; 32], byte: u8) -> Zeroizing<[u8; 32]> {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(&[byte]);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// An established session: two chains and the session id.
///
/// Keys are erased on drop; [`Session::end`] makes that explicit.
pub struct Session {
    id: [u8; 16],
    send: Chain,
    recv: Chain,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Session([secret])")
    }
}

impl Session {
    /// Derives the session from my share (consumed: its ephemeral secret is
    /// erased on return) and the peer's.
    pub fn derive(
        role: Role,
        mine: KeyShare,
        peer: &PeerShare,
        binding: &Binding,
    ) -> Result<Session, SessionError> {
        let dh = Zeroizing::new(
            mine.ephemeral
                .diffie_hellman(&PublicKey::from(peer.ephemeral_public))
                .to_bytes(),
        );
        if bool::from(dh.ct_eq(&[0u8; 32])) {
            return Err(SessionError::WeakEphemeral);
        }
        let (r_a, r_b) = match role {
            Role::Requester => (&mine.half[..], &peer.half[..]),
            Role::Acceptor => (&peer.half[..], &mine.half[..]),
        };
        let mut ikm = Zeroizing::new(Vec::with_capacity(96));
        ikm.extend_from_slice(r_a);
        ikm.extend_from_slice(r_b);
        ikm.extend_from_slice(&dh[..]);
        let mut salt = Vec::with_capacity(SALT_LABEL.len() + 16);
        salt.extend_from_slice(SALT_LABEL);
        salt.extend_from_slice(&binding.request_id);
        let hk = Hkdf::<Sha256>::new(Some(&salt), &ikm);

        let mut ctx = Vec::with_capacity(56);
        ctx.extend_from_slice(binding.requester.as_bytes());
        ctx.extend_from_slice(binding.acceptor.as_bytes());
        ctx.extend_from_slice(&binding.request_id);
        let expand = |label: &[u8], out: &mut [u8]| {
            // Output lengths are far below HKDF's 255*32 limit.
            hk.expand_multi_info(&[label, &ctx], out)
                .unwrap_or_else(|_| unreachable!());
        };
        let mut req_to_acc = Zeroizing::new([0u8; 32]);
        let mut acc_to_req = Zeroizing::new([0u8; 32]);
        let mut id = [0u8; 16];
        expand(LABEL_REQ_TO_ACC, &mut req_to_acc[..]);
        expand(LABEL_ACC_TO_REQ, &mut acc_to_req[..]);
        expand(LABEL_SESSION_ID, &mut id);
        drop(mine); // erases the ephemeral secret and the half
        let (send, recv) = match role {
            Role::Requester => (req_to_acc, acc_to_req),
            Role::Acceptor => (acc_to_req, req_to_acc),
        };
        Ok(Session {
            id,
            send: Chain { ck: send, next: 0 },
            recv: Chain { ck: recv, next: 0 },
        })
    }

    /// The session id carried in every sealed frame header.
    pub fn id(&self) -> [u8; 16] {
        self.id
    }

    /// Sequence number the next sealed frame will carry.
    pub fn next_send_seq(&self) -> u64 {
        self.send.next
    }

    /// Lowest sequence number the next accepted frame may carry.
    pub fn next_recv_seq(&self) -> u64 {
        self.recv.next
    }

    /// Seals `plaintext` into a complete sealed-frame body
    /// (`version || type || session_id || seq || ciphertext || tag`).
    ///
    /// Advances the send chain: persist [`Session::state`] before sending.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, SessionError> {
        if plaintext.len() > MAX_PLAINTEXT {
            return Err(SessionError::TooLarge {
                len: plaintext.len(),
                limit: MAX_PLAINTEXT,
            });
        }
        if self.send.next == u64::MAX {
            return Err(SessionError::Exhausted);
        }
        let seq = self.send.next;
        let mk = self.send.step();
        let header = header(&self.id, seq);
        let cipher = Aes256Gcm::new_from_slice(&mk[..]).map_err(|_| SessionError::CorruptState)?;
        let ct = cipher
            .encrypt(
                &nonce(seq),
                Payload {
                    msg: plaintext,
                    aad: &header,
                },
            )
            .map_err(|_| SessionError::TooLarge {
                len: plaintext.len(),
                limit: MAX_PLAINTEXT,
            })?;
        let mut out = Vec::with_capacity(header.len() + ct.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens a sealed-frame body. On any error the receive state is left
    /// exactly as it was.
    pub fn open(&mut self, frame: &[u8]) -> Result<Zeroizing<Vec<u8>>, SessionError> {
        if frame.len() > MAX_FRAME {
            return Err(SessionError::TooLarge {
                len: frame.len(),
                limit: MAX_FRAME,
            });
        }
        if frame.len() < SEALED_HEADER_LEN + TAG_LEN
            || frame[0] != FRAME_VERSION
            || frame[1] != FRAME_TYPE_SEALED
        {
            return Err(SessionError::Malformed);
        }
        let (header, ct) = frame.split_at(SEALED_HEADER_LEN);
        if !bool::from(header[2..18].ct_eq(&self.id)) {
            return Err(SessionError::WrongSession);
        }
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&header[18..26]);
        let seq = u64::from_be_bytes(seq_bytes);
        let expected = self.recv.next;
        if seq < expected {
            return Err(SessionError::Replay { seq, expected });
        }
        // u64::MAX is never sealed (a sender stops at Exhausted, §7.3), and the
        // chain after it would not fit the counter: refuse it before deriving.
        if seq - expected > MAX_SKIP || seq == u64::MAX {
            return Err(SessionError::TooFarAhead { seq, expected });
        }
        // Work on a copy of the chain; commit only after authentication.
        let mut chain = Chain {
            ck: Zeroizing::new(*self.recv.ck),
            next: expected,
        };
        let mut mk = chain.step();
        while chain.next <= seq {
            mk = chain.step();
        }
        let cipher = Aes256Gcm::new_from_slice(&mk[..]).map_err(|_| SessionError::CorruptState)?;
        let pt = cipher
            .decrypt(
                &nonce(seq),
                Payload {
                    msg: ct,
                    aad: header,
                },
            )
            .map_err(|_| SessionError::BadTag)?;
        self.recv = chain;
        Ok(Zeroizing::new(pt))
    }

    /// The send chain (key, next sequence), for persisting one direction
    /// after [`Session::seal`]. Secret: store it only in the encrypted store.
    pub fn send_chain(&self) -> (Zeroizing<[u8; 32]>, u64) {
        (Zeroizing::new(*self.send.ck), self.send.next)
    }

    /// The receive chain (key, next expected sequence), for persisting one
    /// direction after [`Session::open`]. Secret.
    pub fn recv_chain(&self) -> (Zeroizing<[u8; 32]>, u64) {
        (Zeroizing::new(*self.recv.ck), self.recv.next)
    }

    /// Rebuilds a session from its id and both chains as stored per
    /// direction (the inverse of [`Session::send_chain`] and
    /// [`Session::recv_chain`]). A chain key that is not 32 bytes is
    /// [`SessionError::CorruptState`].
    pub fn from_chains(
        id: [u8; 16],
        send: (&[u8], u64),
        recv: (&[u8], u64),
    ) -> Result<Session, SessionError> {
        let chain = |(ck, next): (&[u8], u64)| -> Result<Chain, SessionError> {
            if ck.len() != 32 {
                return Err(SessionError::CorruptState);
            }
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(ck);
            Ok(Chain { ck: key, next })
        };
        Ok(Session {
            id,
            send: chain(send)?,
            recv: chain(recv)?,
        })
    }

    /// The state to persist (secret: store it only in the encrypted store).
    pub fn state(&self) -> SessionState {
        let mut b = Zeroizing::new(Vec::with_capacity(STATE_LEN));
        b.push(STATE_VERSION);
        b.extend_from_slice(&self.id);
        b.extend_from_slice(&self.send.ck[..]);
        b.extend_from_slice(&self.send.next.to_be_bytes());
        b.extend_from_slice(&self.recv.ck[..]);
        b.extend_from_slice(&self.recv.next.to_be_bytes());
        SessionState(b)
    }

    /// Restores a session from [`Session::state`].
    pub fn from_state(state: &SessionState) -> Result<Session, SessionError> {
        let b = &state.0;
        if b.len() != STATE_LEN || b[0] != STATE_VERSION {
            return Err(SessionError::CorruptState);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[1..17]);
        let read_chain = |at: usize| {
            let mut ck = Zeroizing::new([0u8; 32]);
            ck.copy_from_slice(&b[at..at + 32]);
            let mut n = [0u8; 8];
            n.copy_from_slice(&b[at + 32..at + 40]);
            Chain {
                ck,
                next: u64::from_be_bytes(n),
            }
        };
        Ok(Session {
            id,
            send: read_chain(17),
            recv: read_chain(57),
        })
    }

    /// Ends the session: every key is erased now.
    pub fn end(mut self) {
        self.send.ck.zeroize();
        self.recv.ck.zeroize();
        self.id.zeroize();
    }
}

const STATE_VERSION: u8 = 1;
const STATE_LEN: usize = 1 + 16 + 40 + 40;

/// Serialized session state (version, id, both chains with counters).
/// Zeroized on drop; no `Debug`.
pub struct SessionState(Zeroizing<Vec<u8>>);

impl SessionState {
    /// The bytes, for the encrypted store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
    /// Wraps bytes read back from the encrypted store.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        SessionState(Zeroizing::new(bytes.to_vec()))
    }
}

fn header(id: &[u8; 16], seq: u64) -> [u8; SEALED_HEADER_LEN] {
    let mut h = [0u8; SEALED_HEADER_LEN];
    h[0] = FRAME_VERSION;
    h[1] = FRAME_TYPE_SEALED;
    h[2..18].copy_from_slice(id);
    h[18..26].copy_from_slice(&seq.to_be_bytes());
    h
}

fn nonce(seq: u64) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n.into()
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    pub(crate) fn pair() -> (Session, Session) {
        let binding = Binding {
            request_id: [7; 16],
            requester: Fingerprint::from_bytes([1; 20]),
            acceptor: Fingerprint::from_bytes([2; 20]),
        };
        let (a, b) = (KeyShare::generate(), KeyShare::generate());
        let (pa, pb) = (
            PeerShare {
                half: a.half(),
                ephemeral_public: a.ephemeral_public(),
            },
            PeerShare {
                half: b.half(),
                ephemeral_public: b.ephemeral_public(),
            },
        );
        (
            Session::derive(Role::Requester, a, &pb, &binding).unwrap(),
            Session::derive(Role::Acceptor, b, &pa, &binding).unwrap(),
        )
    }

    #[test]
    fn both_directions_and_distinct_keys() {
        let (mut a, mut b) = pair();
        assert_eq!(a.id(), b.id());
        let f = a.seal(b"hi bob").unwrap();
        assert_eq!(&b.open(&f).unwrap()[..], b"hi bob");
        let g = b.seal(b"hi alice").unwrap();
        assert_eq!(&a.open(&g).unwrap()[..], b"hi alice");
        // A frame sealed by A cannot be opened as if it came from B.
        let h = a.seal(b"x").unwrap();
        assert!(matches!(a.open(&h), Err(SessionError::BadTag)));
        // Same plaintext, different ciphertexts (ratchet).
        let (x, y) = (a.seal(b"same").unwrap(), a.seal(b"same").unwrap());
        assert_ne!(x[SEALED_HEADER_LEN..], y[SEALED_HEADER_LEN..]);
    }

    #[test]
    fn binding_changes_everything() {
        let (a, b) = (KeyShare::generate(), KeyShare::generate());
        let pb = PeerShare {
            half: b.half(),
            ephemeral_public: b.ephemeral_public(),
        };
        let a_bytes = a.to_secret_bytes();
        let bind = |id: u8| Binding {
            request_id: [id; 16],
            requester: Fingerprint::from_bytes([1; 20]),
            acceptor: Fingerprint::from_bytes([2; 20]),
        };
        let s1 = Session::derive(Role::Requester, a, &pb, &bind(1)).unwrap();
        let a2 = KeyShare::from_secret_bytes(&a_bytes).unwrap();
        let s2 = Session::derive(Role::Requester, a2, &pb, &bind(2)).unwrap();
        assert_ne!(s1.id(), s2.id());
        assert_ne!(s1.state().as_bytes(), s2.state().as_bytes());
    }

    #[test]
    fn replay_tamper_and_skip() {
        let (mut a, mut b) = pair();
        let f0 = a.seal(b"zero").unwrap();
        let f1 = a.seal(b"one").unwrap();
        let f2 = a.seal(b"two").unwrap();
        // Frame 0 lost with a connection: 1 still opens (skip), 0 is then a replay.
        assert_eq!(&b.open(&f1).unwrap()[..], b"one");
        assert!(matches!(
            b.open(&f0),
            Err(SessionError::Replay {
                seq: 0,
                expected: 2
            })
        ));
        assert!(matches!(b.open(&f1), Err(SessionError::Replay { .. })));
        // Tampering anywhere fails and leaves the state unchanged.
        for pos in [0, 1, 5, 20, SEALED_HEADER_LEN, f2.len() - 1] {
            let mut t = f2.clone();
            t[pos] ^= 0x80;
            let before = b.state().as_bytes().to_vec();
            assert!(b.open(&t).is_err(), "flip at {pos}");
            assert_eq!(before, b.state().as_bytes());
        }
        assert_eq!(&b.open(&f2).unwrap()[..], b"two");
        assert!(matches!(b.open(&f2[..10]), Err(SessionError::Malformed)));
    }

    #[test]
    fn too_far_ahead_is_refused() {
        let (mut a, mut b) = pair();
        let mut last = Vec::new();
        for _ in 0..=MAX_SKIP + 1 {
            last = a.seal(b"x").unwrap();
        }
        assert!(matches!(
            b.open(&last),
            Err(SessionError::TooFarAhead { .. })
        ));
    }

    /// Found by the `sealed_open` fuzz target: a receive chain near the end of
    /// the sequence space (a stored session) and a frame claiming sequence
    /// u64::MAX overflowed the chain counter while deriving (a panic with
    /// overflow checks, an endless loop without).
    #[test]
    fn frame_at_the_end_of_the_sequence_space_is_refused_without_overflow() {
        let (k1, k2) = ([1u8; 32], [2u8; 32]);
        let mut tx = Session::from_chains([9; 16], (&k1[..], u64::MAX - 1), (&k2[..], 0)).unwrap();
        let mut rx = Session::from_chains([9; 16], (&k2[..], 0), (&k1[..], u64::MAX - 1)).unwrap();
        let mut forged = header(&[9; 16], u64::MAX).to_vec();
        forged.extend_from_slice(&[0u8; 17]);
        let err = rx.open(&forged).unwrap_err();
        assert!(
            matches!(err, SessionError::TooFarAhead { seq: u64::MAX, .. }),
            "{err:?}"
        );
        assert_eq!(rx.next_recv_seq(), u64::MAX - 1);
        // The last sequence a sender can seal still opens; then the sender is exhausted.
        let frame = tx.seal(b"last").unwrap();
        assert_eq!(&rx.open(&frame).unwrap()[..], b"last");
        assert_eq!(rx.next_recv_seq(), u64::MAX);
        assert!(matches!(tx.seal(b"more"), Err(SessionError::Exhausted)));
    }

    #[test]
    fn state_round_trip_and_forward_secrecy() {
        let (mut a, mut b) = pair();
        let old = a.seal(b"yesterday").unwrap();
        assert_eq!(&b.open(&old).unwrap()[..], b"yesterday");
        // Today's state, stolen, cannot open yesterday's frame.
        let stolen = Session::from_state(&b.state()).unwrap();
        let mut stolen = stolen;
        assert!(stolen.open(&old).is_err());
        // Restored state continues the conversation.
        let mut a2 = Session::from_state(&a.state()).unwrap();
        let f = a2.seal(b"today").unwrap();
        assert_eq!(&b.open(&f).unwrap()[..], b"today");
        assert!(Session::from_state(&SessionState::from_bytes(b"short")).is_err());
    }

    #[test]
    fn oversize_plaintext_is_refused() {
        let (mut a, _) = pair();
        assert!(matches!(
            a.seal(&vec![0; MAX_PLAINTEXT + 1]),
            Err(SessionError::TooLarge { .. })
        ));
        assert!(a.seal(&vec![0; MAX_PLAINTEXT]).is_ok());
    }

    #[test]
    fn weak_ephemeral_is_refused() {
        let binding = Binding {
            request_id: [0; 16],
            requester: Fingerprint::from_bytes([1; 20]),
            acceptor: Fingerprint::from_bytes([2; 20]),
        };
        let peer = PeerShare {
            half: [0; 32],
            ephemeral_public: [0; 32],
        };
        assert!(matches!(
            Session::derive(Role::Acceptor, KeyShare::generate(), &peer, &binding),
            Err(SessionError::WeakEphemeral)
        ));
    }
}
