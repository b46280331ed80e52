//! Registration bindings (PROTOCOL.md §17.11): the Handshaker's signed
//! statement "`@username` is the key `fingerprint` at the Handshaker
//! `address`, from `issued_at` until `expires_at`".
//!
//! A requester carries its binding inside the encrypted request, so the
//! recipient checks the requester's name offline against the Handshaker key
//! it pinned, and asks the Handshaker nothing about who wrote to it
//! (SECURITY-2026-11 H2). The format is the first entry type of the
//! auditable directory log planned later: it is versioned and its bytes are
//! canonical (one encoding per binding; the decoder refuses every other).
//!
//! Binary form, all integers big-endian:
//!
//! ```text
//! "UMBRA-BINDING" ‖ version u8 (1) ‖ name_len u8 ‖ name ‖ fingerprint [20]
//!   ‖ addr_len u16 ‖ address ‖ issued_at u64 ‖ expires_at u64 ‖ signature [64]
//! ```
//!
//! The Ed25519 signature covers every byte before it.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use zeroize::Zeroizing;

use crate::error::{ErrorKind, HasKind};
use crate::identity::{Fingerprint, Username};
use crate::limits::MAX_FUTURE_SKEW_SECS;

/// Domain separation: the first bytes of every binding.
pub const BINDING_MAGIC: &[u8] = b"UMBRA-BINDING";
/// The binding format version this code writes and reads.
pub const BINDING_VERSION: u8 = 1;
/// How long a binding the Handshaker issues stays valid (7 days).
pub const BINDING_VALIDITY_SECS: u64 = 7 * 24 * 3600;
/// Longest canonical Handshaker address in a binding.
pub const MAX_BINDING_ADDRESS: usize = 255;
/// Largest encoded binding.
pub const MAX_BINDING: usize =
    BINDING_MAGIC.len() + 1 + 1 + 64 + 20 + 2 + MAX_BINDING_ADDRESS + 8 + 8 + 64;

/// A binding that does not decode or does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindingError {
    /// The bytes are not a binding of a version we read.
    #[error("malformed binding: {0}")]
    Malformed(&'static str),
    /// The signature is not the pinned Handshaker key's.
    #[error("the binding is not signed by the Handshaker's pinned key")]
    BadSignature,
    /// It binds another name, key or Handshaker than the one claimed.
    #[error("the binding is for another {0}")]
    Mismatch(&'static str),
    /// Outside its validity period (by our clock, with the allowed skew).
    #[error("the binding has expired or is not valid yet")]
    Expired,
}

impl HasKind for BindingError {
    fn kind(&self) -> ErrorKind {
        match self {
            BindingError::Malformed(_) | BindingError::Mismatch(_) => ErrorKind::Protocol,
            BindingError::BadSignature => ErrorKind::BadSignature,
            BindingError::Expired => ErrorKind::Stale,
        }
    }
}

/// The statement a binding signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The registered name (folded, without `@`).
    pub username: String,
    /// The registered key.
    pub fingerprint: [u8; 20],
    /// The Handshaker's canonical address (see `HandshakerAddress`).
    pub handshaker: String,
    /// Unix seconds.
    pub issued_at: u64,
    /// Unix seconds; after it the binding proves nothing.
    pub expires_at: u64,
}

impl Binding {
    /// The signed part: every byte before the signature.
    fn statement(&self) -> Result<Vec<u8>, BindingError> {
        let name = self.username.as_bytes();
        let addr = self.handshaker.as_bytes();
        if Username::parse(&self.username)
            .map(|u| u.as_str() != self.username)
            .unwrap_or(true)
        {
            return Err(BindingError::Malformed("username"));
        }
        let name_len = u8::try_from(name.len()).map_err(|_| BindingError::Malformed("username"))?;
        if addr.is_empty() || addr.len() > MAX_BINDING_ADDRESS {
            return Err(BindingError::Malformed("address length"));
        }
        let addr_len = u16::try_from(addr.len()).map_err(|_| BindingError::Malformed("address"))?;
        if self.expires_at <= self.issued_at {
            return Err(BindingError::Malformed("validity"));
        }
        let mut out = Vec::with_capacity(MAX_BINDING);
        out.extend_from_slice(BINDING_MAGIC);
        out.push(BINDING_VERSION);
        out.push(name_len);
        out.extend_from_slice(name);
        out.extend_from_slice(&self.fingerprint);
        out.extend_from_slice(&addr_len.to_be_bytes());
        out.extend_from_slice(addr);
        out.extend_from_slice(&self.issued_at.to_be_bytes());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        Ok(out)
    }
}

/// A binding with the Handshaker's signature, as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedBinding {
    /// What is signed.
    pub binding: Binding,
    signature: [u8; 64],
}

impl SignedBinding {
    /// The canonical bytes.
    pub fn encode(&self) -> Result<Vec<u8>, BindingError> {
        let mut out = self.binding.statement()?;
        out.extend_from_slice(&self.signature);
        Ok(out)
    }

    /// Decodes `bytes` strictly (any other encoding of the same binding is
    /// refused). The signature is not checked here: see [`Self::verify`].
    pub fn decode(bytes: &[u8]) -> Result<SignedBinding, BindingError> {
        if bytes.len() > MAX_BINDING {
            return Err(BindingError::Malformed("too long"));
        }
        let mut r = Reader(bytes);
        if r.take(BINDING_MAGIC.len())? != BINDING_MAGIC {
            return Err(BindingError::Malformed("not a binding"));
        }
        if r.take(1)?[0] != BINDING_VERSION {
            return Err(BindingError::Malformed("unsupported version"));
        }
        let name_len = usize::from(r.take(1)?[0]);
        let username = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| BindingError::Malformed("username"))?
            .to_owned();
        let fingerprint: [u8; 20] = r.array()?;
        let addr_len = usize::from(u16::from_be_bytes(r.array()?));
        let handshaker = std::str::from_utf8(r.take(addr_len)?)
            .map_err(|_| BindingError::Malformed("address"))?
            .to_owned();
        let issued_at = u64::from_be_bytes(r.array()?);
        let expires_at = u64::from_be_bytes(r.array()?);
        let signature: [u8; 64] = r.array()?;
        if !r.0.is_empty() {
            return Err(BindingError::Malformed("trailing bytes"));
        }
        let signed = SignedBinding {
            binding: Binding {
                username,
                fingerprint,
                handshaker,
                issued_at,
                expires_at,
            },
            signature,
        };
        // Field rules and canonical form in one: re-encode and compare.
        if signed.encode()? != bytes {
            return Err(BindingError::Malformed("non-canonical"));
        }
        Ok(signed)
    }

    /// Whether `key` signed this binding.
    pub fn verify(&self, key: &BindingKey) -> Result<(), BindingError> {
        let statement = self.binding.statement()?;
        key.0
            .verify(&statement, &Signature::from_bytes(&self.signature))
            .map_err(|_| BindingError::BadSignature)
    }

    /// Everything a recipient checks (PROTOCOL.md §17.11): signed by the
    /// pinned `key`, for exactly this `username`, `fingerprint` and
    /// Handshaker `address`, and valid at `now` (±
    /// [`MAX_FUTURE_SKEW_SECS`]).
    pub fn check(
        &self,
        key: &BindingKey,
        username: &Username,
        fingerprint: &Fingerprint,
        handshaker: &str,
        now: u64,
    ) -> Result<(), BindingError> {
        self.verify(key)?;
        let b = &self.binding;
        if b.username != username.as_str() {
            return Err(BindingError::Mismatch("username"));
        }
        if &b.fingerprint != fingerprint.as_bytes() {
            return Err(BindingError::Mismatch("key"));
        }
        if b.handshaker != handshaker {
            return Err(BindingError::Mismatch("Handshaker"));
        }
        if !self.is_valid_at(now) {
            return Err(BindingError::Expired);
        }
        Ok(())
    }

    /// Whether `now` lies within the validity period, with the allowed
    /// clock skew on both ends.
    pub fn is_valid_at(&self, now: u64) -> bool {
        let b = &self.binding;
        now.saturating_add(MAX_FUTURE_SKEW_SECS) >= b.issued_at
            && now <= b.expires_at.saturating_add(MAX_FUTURE_SKEW_SECS)
    }
}

/// The Handshaker's public binding key (Ed25519), as published in
/// `/v1/info` and pinned by clients.
#[derive(Clone, PartialEq, Eq)]
pub struct BindingKey(VerifyingKey);

impl BindingKey {
    /// Parses the 32-byte public key (refuses weak or invalid points).
    pub fn from_bytes(bytes: &[u8]) -> Result<BindingKey, BindingError> {
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| BindingError::Malformed("key length"))?;
        let key = VerifyingKey::from_bytes(&arr).map_err(|_| BindingError::Malformed("key"))?;
        if key.is_weak() {
            return Err(BindingError::Malformed("weak key"));
        }
        Ok(BindingKey(key))
    }

    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Lower-case hex, the form in `/v1/info` and in the pin store.
    pub fn to_hex(&self) -> String {
        hex::encode(self.to_bytes())
    }

    /// Parses the hex form.
    pub fn from_hex(s: &str) -> Result<BindingKey, BindingError> {
        let bytes = hex::decode(s).map_err(|_| BindingError::Malformed("key hex"))?;
        BindingKey::from_bytes(&bytes)
    }
}

impl std::fmt::Debug for BindingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BindingKey({})", self.to_hex())
    }
}

/// The Handshaker's signing key. No `Debug`; the secret is zeroized on drop.
pub struct BindingSigner(SigningKey);

impl BindingSigner {
    /// A new random key.
    pub fn generate() -> BindingSigner {
        let mut seed = Zeroizing::new([0u8; 32]);
        crate::session::fill_random(seed.as_mut());
        BindingSigner(SigningKey::from_bytes(&seed))
    }

    /// The key from its 32-byte secret seed (as stored).
    pub fn from_seed(seed: &[u8]) -> Result<BindingSigner, BindingError> {
        let arr: Zeroizing<[u8; 32]> = Zeroizing::new(
            seed.try_into()
                .map_err(|_| BindingError::Malformed("seed length"))?,
        );
        Ok(BindingSigner(SigningKey::from_bytes(&arr)))
    }

    /// The secret seed, for storage.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.0.to_bytes())
    }

    /// The public key.
    pub fn public(&self) -> BindingKey {
        BindingKey(self.0.verifying_key())
    }

    /// Signs `binding`.
    pub fn sign(&self, binding: Binding) -> Result<SignedBinding, BindingError> {
        let signature = self.0.sign(&binding.statement()?).to_bytes();
        Ok(SignedBinding { binding, signature })
    }

    /// A binding of `username` to `fingerprint` at `handshaker`, valid for
    /// [`BINDING_VALIDITY_SECS`] from `now`.
    pub fn issue(
        &self,
        username: &Username,
        fingerprint: &Fingerprint,
        handshaker: &str,
        now: u64,
    ) -> Result<SignedBinding, BindingError> {
        self.sign(Binding {
            username: username.as_str().to_owned(),
            fingerprint: *fingerprint.as_bytes(),
            handshaker: handshaker.to_owned(),
            issued_at: now,
            expires_at: now.saturating_add(BINDING_VALIDITY_SECS),
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BindingError> {
        if self.0.len() < n {
            return Err(BindingError::Malformed("truncated"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], BindingError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    const ADDR: &str = "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcd.onion";
    const NOW: u64 = 1_800_000_000;

    fn alice() -> (Username, Fingerprint) {
        (
            Username::parse("alice").unwrap(),
            Fingerprint::from_bytes([0xA1; 20]),
        )
    }

    #[test]
    fn issued_binding_checks_and_round_trips() {
        let s = BindingSigner::generate();
        let (u, f) = alice();
        let b = s.issue(&u, &f, ADDR, NOW).unwrap();
        let bytes = b.encode().unwrap();
        assert!(bytes.len() <= MAX_BINDING);
        let back = SignedBinding::decode(&bytes).unwrap();
        assert_eq!(back, b);
        back.check(&s.public(), &u, &f, ADDR, NOW + 3600).unwrap();
        let key = BindingKey::from_hex(&s.public().to_hex()).unwrap();
        assert_eq!(key, s.public());
        let again = BindingSigner::from_seed(s.seed().as_ref()).unwrap();
        assert_eq!(again.public(), s.public());
    }

    #[test]
    fn every_mismatch_is_refused() {
        let s = BindingSigner::generate();
        let (u, f) = alice();
        let b = s.issue(&u, &f, ADDR, NOW).unwrap();
        let other = BindingSigner::generate().public();
        let mallory = Username::parse("mallory").unwrap();
        let k = s.public();
        assert_eq!(
            b.check(&other, &u, &f, ADDR, NOW),
            Err(BindingError::BadSignature)
        );
        assert_eq!(
            b.check(&k, &mallory, &f, ADDR, NOW),
            Err(BindingError::Mismatch("username"))
        );
        assert_eq!(
            b.check(&k, &u, &Fingerprint::from_bytes([1; 20]), ADDR, NOW),
            Err(BindingError::Mismatch("key"))
        );
        assert_eq!(
            b.check(&k, &u, &f, "http://127.0.0.1:9", NOW),
            Err(BindingError::Mismatch("Handshaker"))
        );
        let late = NOW + BINDING_VALIDITY_SECS + MAX_FUTURE_SKEW_SECS + 1;
        assert_eq!(b.check(&k, &u, &f, ADDR, late), Err(BindingError::Expired));
        let early = NOW - MAX_FUTURE_SKEW_SECS - 1;
        assert_eq!(b.check(&k, &u, &f, ADDR, early), Err(BindingError::Expired));
        // Within the skew on both ends.
        b.check(&k, &u, &f, ADDR, NOW - MAX_FUTURE_SKEW_SECS)
            .unwrap();
        b.check(&k, &u, &f, ADDR, late - 1).unwrap();
    }

    #[test]
    fn a_changed_byte_breaks_the_signature_or_the_decoding() {
        let s = BindingSigner::generate();
        let (u, f) = alice();
        let bytes = s.issue(&u, &f, ADDR, NOW).unwrap().encode().unwrap();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            if let Ok(b) = SignedBinding::decode(&bad) {
                assert_eq!(
                    b.verify(&s.public()),
                    Err(BindingError::BadSignature),
                    "byte {i}"
                );
            }
        }
    }

    #[test]
    fn hostile_encodings_are_refused() {
        let s = BindingSigner::generate();
        let (u, f) = alice();
        let good = s.issue(&u, &f, ADDR, NOW).unwrap().encode().unwrap();
        let mut trailing = good.clone();
        trailing.push(0);
        let mut version = good.clone();
        version[BINDING_MAGIC.len()] = 2;
        for bad in [
            &[][..],
            &good[..good.len() - 1],
            &trailing[..],
            &version[..],
            b"UMBRA-BINDIN",
        ] {
            assert!(SignedBinding::decode(bad).is_err());
        }
        // A name that is not canonical (upper case) cannot be signed or read.
        let upper = Binding {
            username: "Alice".into(),
            fingerprint: [0; 20],
            handshaker: ADDR.into(),
            issued_at: NOW,
            expires_at: NOW + 1,
        };
        assert!(s.sign(upper).is_err());
        assert!(BindingKey::from_bytes(&[0u8; 31]).is_err());
        assert!(BindingKey::from_bytes(&[0u8; 32]).is_err(), "weak point");
    }

    proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = SignedBinding::decode(&bytes);
        }

        #[test]
        fn decode_accepts_only_what_encode_wrote(
            name in "[a-z][a-z0-9_]{2,20}",
            fpr in any::<[u8; 20]>(),
            issued in 0u64..u64::MAX / 2,
            life in 1u64..1_000_000,
        ) {
            let s = BindingSigner::generate();
            let b = s.sign(Binding {
                username: name,
                fingerprint: fpr,
                handshaker: ADDR.into(),
                issued_at: issued,
                expires_at: issued + life,
            }).unwrap();
            let bytes = b.encode().unwrap();
            prop_assert_eq!(SignedBinding::decode(&bytes).unwrap(), b);
        }
    }
}
