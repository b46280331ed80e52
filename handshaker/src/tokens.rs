//! Stateless fetch challenges and ack tokens (PROTOCOL.md §17.9).
//!
//! A token is 32 bytes, sent as 64 hex digits:
//! `expires_at (u64, big-endian) ‖ nonce (8 random bytes) ‖ tag (16 bytes)`,
//! where `tag` is HMAC-SHA-256, truncated to 16 bytes, keyed with a secret
//! kept in the database (so every front end of one directory issues and
//! accepts the same tokens) over
//! `"umbra-<kind>-v1" ‖ 0x00 ‖ folded username ‖ 0x00 ‖ expires_at ‖ nonce`.
//!
//! Nothing is stored when a token is issued, so anonymous challenge
//! requests cannot fill any table or map (SECURITY-2026-11 M3). A challenge
//! is made single use by the fetch that succeeds with it: that fetch records
//! its digest in the store's spent set until the challenge expires.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use umbra_proto::identity::Username;

/// Length of a token in bytes (64 hex digits on the wire).
pub const TOKEN_LEN: usize = 32;

/// Length of the truncated tag.
const TAG_LEN: usize = 16;

/// What a token is for (domain separation of the tag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A fetch challenge.
    Challenge,
    /// An ack token.
    Ack,
}

impl TokenKind {
    fn label(self) -> &'static [u8] {
        match self {
            TokenKind::Challenge => b"umbra-challenge-v1",
            TokenKind::Ack => b"umbra-ack-v1",
        }
    }
}

/// Why a token is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not 64 lower-case hex digits.
    #[error("not a token: 64 lower-case hex digits expected")]
    Malformed,
    /// The tag does not check (forged, another mailbox, another kind, another directory).
    #[error("the token was not issued by this directory for this mailbox")]
    Forged,
    /// Past its expiry.
    #[error("the token has expired")]
    Expired,
    /// The operating system's random generator failed.
    #[error("no randomness available")]
    Random,
}

/// Issues and checks tokens with one key.
pub struct TokenKey {
    /// The HMAC key (from the store: shared by every front end).
    key: zeroize::Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(--- secret ---)")
    }
}

impl TokenKey {
    /// A key from 32 secret bytes.
    pub fn new(key: [u8; 32]) -> Self {
        TokenKey {
            key: zeroize::Zeroizing::new(key),
        }
    }

    fn mac(&self, kind: TokenKind, user: &Username, head: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length: this cannot fail.
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.key[..])
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        m.update(kind.label());
        m.update(&[0]);
        m.update(user.as_str().as_bytes());
        m.update(&[0]);
        m.update(head);
        m
    }

    /// A fresh token of `kind` for `user`, valid until `expires_at`, hex.
    pub fn issue(
        &self,
        kind: TokenKind,
        user: &Username,
        expires_at: u64,
    ) -> Result<String, TokenError> {
        let mut t = [0u8; TOKEN_LEN];
        t[..8].copy_from_slice(&expires_at.to_be_bytes());
        getrandom::fill(&mut t[8..16]).map_err(|_| TokenError::Random)?;
        let tag = self.mac(kind, user, &t[..16]).finalize().into_bytes();
        t[16..].copy_from_slice(&tag[..TAG_LEN]);
        Ok(hex::encode(t))
    }

    /// Checks a hex token of `kind` for `user` at `now`; returns its expiry.
    pub fn check(
        &self,
        kind: TokenKind,
        user: &Username,
        token: &str,
        now: u64,
    ) -> Result<u64, TokenError> {
        if token.len() != 2 * TOKEN_LEN
            || !token
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(TokenError::Malformed);
        }
        let mut t = [0u8; TOKEN_LEN];
        hex::decode_to_slice(token, &mut t).map_err(|_| TokenError::Malformed)?;
        // Constant time (hmac's verify).
        self.mac(kind, user, &t[..16])
            .verify_truncated_left(&t[16..])
            .map_err(|_| TokenError::Forged)?;
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&t[..8]);
        let expires_at = u64::from_be_bytes(exp);
        if expires_at < now {
            return Err(TokenError::Expired);
        }
        Ok(expires_at)
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn issue_check_and_every_refusal() {
        let k = TokenKey::new([7; 32]);
        let bob = Username::parse("bob").unwrap();
        let eve = Username::parse("eve").unwrap();
        let t = k.issue(TokenKind::Challenge, &bob, 100).unwrap();
        assert_eq!(t.len(), 64);
        assert_eq!(k.check(TokenKind::Challenge, &bob, &t, 100), Ok(100));
        assert_ne!(t, k.issue(TokenKind::Challenge, &bob, 100).unwrap());
        assert_eq!(
            k.check(TokenKind::Challenge, &bob, &t, 101),
            Err(TokenError::Expired)
        );
        assert_eq!(
            k.check(TokenKind::Challenge, &eve, &t, 0),
            Err(TokenError::Forged)
        );
        assert_eq!(
            k.check(TokenKind::Ack, &bob, &t, 0),
            Err(TokenError::Forged)
        );
        assert_eq!(
            TokenKey::new([8; 32]).check(TokenKind::Challenge, &bob, &t, 0),
            Err(TokenError::Forged)
        );
        // A later expiry cannot be written in: the tag covers it.
        let mut raw = hex::decode(&t).unwrap();
        raw[7] ^= 1;
        assert_eq!(
            k.check(TokenKind::Challenge, &bob, &hex::encode(raw), 0),
            Err(TokenError::Forged)
        );
        for bad in ["", "zz", &t.to_uppercase(), &t[..62]] {
            assert_eq!(
                k.check(TokenKind::Challenge, &bob, bad, 0),
                Err(TokenError::Malformed)
            );
        }
    }
}
