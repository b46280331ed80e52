//! Hashcash-style proof-of-work stamps (design-v1 "Handshaker HTTP API v1").
//!
//! A stamp `{ts, nonce}` is valid for `(purpose, resource)` at difficulty
//! `d` when
//! `SHA-256("umbra-pow-v1" 0x00 purpose 0x00 resource 0x00 ts-decimal 0x00 nonce)`
//! starts with at least `d` zero bits, `ts` is within ±[`POW_WINDOW_SECS`] of
//! the verifier's clock, and `nonce` is 32 lower-case hex digits (16 bytes),
//! hashed as those ASCII digits. The Handshaker accepts each stamp once.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ErrorKind, HasKind};

/// How far a stamp's timestamp may be from the verifier's clock, in seconds.
pub const POW_WINDOW_SECS: u64 = 600;

/// Domain-separation prefix of every stamp hash.
const DOMAIN: &[u8] = b"umbra-pow-v1";

/// What a stamp pays for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Purpose {
    /// `POST /v1/register` (resource = folded username).
    Register,
    /// `POST /v1/mailbox/<name>` (resource = folded recipient username).
    Deposit,
}

impl Purpose {
    /// The string hashed into the stamp.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Register => "register",
            Purpose::Deposit => "deposit",
        }
    }
}

/// A proof-of-work stamp as carried in request bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowStamp {
    /// Unix seconds when the stamp was made.
    pub ts: u64,
    /// 32 lower-case hex digits.
    pub nonce: String,
}

/// Why a stamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PowError {
    /// The nonce is not 32 lower-case hex digits.
    #[error("malformed proof-of-work stamp: the nonce must be 32 lower-case hex digits")]
    Malformed,
    /// The timestamp is outside the accepted window.
    #[error("proof-of-work stamp is too old or too far in the future: check the clock and retry")]
    Stale,
    /// Not enough leading zero bits.
    #[error("insufficient proof of work: {got} leading zero bits, {needed} required")]
    Insufficient {
        /// Bits found.
        got: u32,
        /// Bits required.
        needed: u32,
    },
}

impl HasKind for PowError {
    fn kind(&self) -> ErrorKind {
        match self {
            PowError::Malformed | PowError::Insufficient { .. } => ErrorKind::InvalidInput,
            PowError::Stale => ErrorKind::Stale,
        }
    }
}

/// Progress of a running [`solve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PowProgress {
    /// Hashes tried so far.
    pub attempts: u64,
    /// Expected number of hashes (2^difficulty).
    pub expected: u64,
}

fn prefix_hasher(purpose: Purpose, resource: &str, ts: u64) -> Sha256 {
    let mut h = Sha256::new();
    h.update(DOMAIN);
    h.update([0]);
    h.update(purpose.as_str().as_bytes());
    h.update([0]);
    h.update(resource.as_bytes());
    h.update([0]);
    h.update(ts.to_string().as_bytes());
    h.update([0]);
    h
}

/// The stamp hash.
pub fn stamp_hash(purpose: Purpose, resource: &str, stamp: &PowStamp) -> [u8; 32] {
    let mut h = prefix_hasher(purpose, resource, stamp.ts);
    h.update(stamp.nonce.as_bytes());
    h.finalize().into()
}

/// Number of leading zero bits of `hash`.
pub fn leading_zero_bits(hash: &[u8]) -> u32 {
    let mut bits = 0;
    for b in hash {
        if *b == 0 {
            bits += 8;
        } else {
            bits += b.leading_zeros();
            break;
        }
    }
    bits
}

/// Checks `stamp` for `(purpose, resource)` at `difficulty` and clock `now`;
/// returns the stamp hash (the key for single-use bookkeeping).
pub fn check(
    stamp: &PowStamp,
    purpose: Purpose,
    resource: &str,
    difficulty: u32,
    now: u64,
) -> Result<[u8; 32], PowError> {
    if stamp.nonce.len() != 32
        || !stamp
            .nonce
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(PowError::Malformed);
    }
    if stamp.ts.abs_diff(now) > POW_WINDOW_SECS {
        return Err(PowError::Stale);
    }
    let hash = stamp_hash(purpose, resource, stamp);
    let got = leading_zero_bits(&hash);
    if got < difficulty {
        return Err(PowError::Insufficient {
            got,
            needed: difficulty,
        });
    }
    Ok(hash)
}

/// How often [`solve`] reports progress, in attempts.
const PROGRESS_EVERY: u64 = 1 << 16;

/// Finds a stamp for `(purpose, resource)` at `difficulty`, timestamped
/// `ts`. CPU-bound: run it on a blocking thread. `progress` is called every
/// 65,536 attempts.
pub fn solve(
    purpose: Purpose,
    resource: &str,
    difficulty: u32,
    ts: u64,
    progress: &mut dyn FnMut(PowProgress),
) -> PowStamp {
    let prefix = prefix_hasher(purpose, resource, ts);
    let mut seed = [0u8; 8];
    // A failing OS RNG only makes the nonce prefix predictable, which costs
    // nothing here: uniqueness comes from the timestamp and the counter.
    let _ = getrandom::fill(&mut seed);
    let seed_hex = hex::encode(seed);
    let expected = 1u64.checked_shl(difficulty).unwrap_or(u64::MAX);
    let mut counter: u64 = 0;
    loop {
        let nonce = format!("{seed_hex}{counter:016x}");
        let mut h = prefix.clone();
        h.update(nonce.as_bytes());
        let hash: [u8; 32] = h.finalize().into();
        if leading_zero_bits(&hash) >= difficulty {
            return PowStamp { ts, nonce };
        }
        counter = counter.wrapping_add(1);
        if counter.is_multiple_of(PROGRESS_EVERY) {
            progress(PowProgress {
                attempts: counter,
                expected,
            });
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn solve_then_check() {
        let s = solve(Purpose::Register, "alice", 10, 1000, &mut |_| {});
        let h = check(&s, Purpose::Register, "alice", 10, 1000).unwrap();
        assert!(leading_zero_bits(&h) >= 10);
        // Bound to purpose and resource.
        assert_ne!(stamp_hash(Purpose::Deposit, "alice", &s), h);
        assert_ne!(stamp_hash(Purpose::Register, "alicf", &s), h);
        assert_eq!(
            check(
                &s,
                Purpose::Register,
                "alice",
                10,
                1000 + POW_WINDOW_SECS + 1
            ),
            Err(PowError::Stale)
        );
        let bad = PowStamp {
            ts: 1000,
            nonce: "XYZ".into(),
        };
        assert_eq!(
            check(&bad, Purpose::Register, "alice", 0, 1000),
            Err(PowError::Malformed)
        );
    }

    #[test]
    fn zero_bits() {
        assert_eq!(leading_zero_bits(&[0, 0, 0x10]), 19);
        assert_eq!(leading_zero_bits(&[0x80]), 0);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
    }
}
