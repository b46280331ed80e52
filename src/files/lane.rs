//! Lanes: extra onion streams that carry file chunks next to a session connection
//! (PROTOCOL.md §14.3).
//!
//! The sender announces a lane inside the session (`FileLane{lane_id, key}`, sealed by
//! the ratchet), then opens a new stream whose every frame is
//!
//! ```text
//! 0x01 || 0x03 || lane_id (16) || BE64(seq) || AES-256-GCM(key, 0^4 || BE64(seq), aad = bytes 0..26)
//! ```
//!
//! with `seq` counting from 0 on that stream. The 32-byte key is random per lane, lives
//! only in memory and is never reused (a new lane gets a new key), so the counter nonce
//! is unique without persisting anything; the lane's frames do not touch the session
//! ratchet. A receiver accepts frames strictly in sequence.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use zeroize::Zeroizing;

use crate::limits::MAX_FRAME;
use crate::session::{FRAME_VERSION, fill_random};
use crate::wire::FRAME_TYPE_LANE;

/// Bytes before the ciphertext: version, type, lane id, seq.
pub const LANE_HEADER_LEN: usize = 2 + 16 + 8;
const TAG_LEN: usize = 16;

/// Errors on a lane.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LaneError {
    /// Not a lane frame of this lane, too short or too long.
    #[error("not a frame of this lane")]
    NotThisLane,
    /// A sequence number other than the next one (replay, reordering, gap).
    #[error("lane frame out of sequence")]
    OutOfSequence,
    /// The tag does not verify.
    #[error("lane frame does not authenticate")]
    BadTag,
    /// The plaintext would exceed the frame limit.
    #[error("lane plaintext too large")]
    TooLarge,
}

/// One direction of a lane: its id, key and next sequence number.
pub struct Lane {
    id: [u8; 16],
    cipher: Aes256Gcm,
    next: u64,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lane")
    }
}

/// The lane id of a lane frame body, if it is one.
pub fn lane_id(body: &[u8]) -> Option<[u8; 16]> {
    if body.len() < LANE_HEADER_LEN || body[0] != FRAME_VERSION || body[1] != FRAME_TYPE_LANE {
        return None;
    }
    body[2..18].try_into().ok()
}

fn nonce(seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n
}

impl Lane {
    /// A fresh lane: random id and key (send the key to the peer inside the session).
    pub fn generate() -> (Lane, Zeroizing<[u8; 32]>) {
        let mut id = [0u8; 16];
        fill_random(&mut id);
        let mut key = Zeroizing::new([0u8; 32]);
        fill_random(&mut key[..]);
        (Lane::new(id, &key), key)
    }

    /// A lane from its id and key (the receiving side).
    pub fn new(id: [u8; 16], key: &[u8; 32]) -> Lane {
        Lane {
            id,
            cipher: Aes256Gcm::new(key.into()),
            next: 0,
        }
    }

    /// The lane id.
    pub fn id(&self) -> [u8; 16] {
        self.id
    }

    fn header(&self, seq: u64) -> [u8; LANE_HEADER_LEN] {
        let mut h = [0u8; LANE_HEADER_LEN];
        h[0] = FRAME_VERSION;
        h[1] = FRAME_TYPE_LANE;
        h[2..18].copy_from_slice(&self.id);
        h[18..].copy_from_slice(&seq.to_be_bytes());
        h
    }

    /// Seals the next frame.
    pub fn seal(&mut self, plaintext: &[u8]) -> Result<Vec<u8>, LaneError> {
        if LANE_HEADER_LEN + plaintext.len() + TAG_LEN > MAX_FRAME {
            return Err(LaneError::TooLarge);
        }
        let seq = self.next;
        let header = self.header(seq);
        let ct = self
            .cipher
            .encrypt(
                &nonce(seq).into(),
                Payload {
                    msg: plaintext,
                    aad: &header,
                },
            )
            .map_err(|_| LaneError::TooLarge)?;
        self.next += 1;
        let mut out = Vec::with_capacity(LANE_HEADER_LEN + ct.len());
        out.extend_from_slice(&header);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Opens the next frame: right lane, exactly the next sequence, authentic.
    pub fn open(&mut self, body: &[u8]) -> Result<Zeroizing<Vec<u8>>, LaneError> {
        if lane_id(body) != Some(self.id)
            || body.len() < LANE_HEADER_LEN + TAG_LEN
            || body.len() > MAX_FRAME
        {
            return Err(LaneError::NotThisLane);
        }
        let (header, ct) = body.split_at(LANE_HEADER_LEN);
        let seq = u64::from_be_bytes(
            header[18..]
                .try_into()
                .map_err(|_| LaneError::NotThisLane)?,
        );
        if seq != self.next {
            return Err(LaneError::OutOfSequence);
        }
        let pt = self
            .cipher
            .decrypt(
                &nonce(seq).into(),
                Payload {
                    msg: ct,
                    aad: header,
                },
            )
            .map_err(|_| LaneError::BadTag)?;
        self.next += 1;
        Ok(Zeroizing::new(pt))
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_refusals() {
        let (mut tx, key) = Lane::generate();
        let mut rx = Lane::new(tx.id(), &key);
        let f0 = tx.seal(b"zero").unwrap();
        let f1 = tx.seal(b"one").unwrap();
        assert_eq!(lane_id(&f0), Some(tx.id()));
        // Out of order: refused, state unchanged.
        assert!(matches!(rx.open(&f1), Err(LaneError::OutOfSequence)));
        assert_eq!(&rx.open(&f0).unwrap()[..], b"zero");
        // Replay.
        assert!(matches!(rx.open(&f0), Err(LaneError::OutOfSequence)));
        // Tampered.
        let mut bad = f1.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(matches!(rx.open(&bad), Err(LaneError::BadTag)));
        assert_eq!(&rx.open(&f1).unwrap()[..], b"one");
        // Another lane's key or id.
        let (mut other, _) = Lane::generate();
        let f = other.seal(b"x").unwrap();
        assert!(matches!(rx.open(&f), Err(LaneError::NotThisLane)));
        let mut wrong_key = Lane::new(tx.id(), &[0; 32]);
        let f2 = tx.seal(b"two").unwrap();
        wrong_key.next = 2;
        assert!(matches!(wrong_key.open(&f2), Err(LaneError::BadTag)));
        assert!(lane_id(b"\x01\x02short").is_none());
    }

    proptest! {
        #[test]
        fn open_never_panics(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut rx = Lane::new([7; 16], &[1; 32]);
            let _ = rx.open(&body);
            let _ = lane_id(&body);
        }
    }
}
