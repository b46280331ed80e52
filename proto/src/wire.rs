//! Peer-to-peer wire format (docs/PROTOCOL.md, "Wire").
//!
//! Two layers:
//! * **Frames** on the stream: a `u32` big-endian length prefix and a body
//!   of at most [`MAX_FRAME`] bytes ([`codec`] builds the tokio-util codec
//!   with that maximum, so an oversized length is refused before anything
//!   is allocated). The body starts with a version byte and a frame type:
//!   [`Frame::Envelope`] (an OpenPGP accept/reject) or [`Frame::Sealed`]
//!   (an AES-256-GCM frame of a session, opened by [`crate::session`]).
//! * **Peer messages**, the plaintext of sealed frames: a kind byte followed
//!   by the postcard encoding of the body. Unknown kinds decode to
//!   [`PeerMessage::Unknown`] for forward compatibility; a known kind with a
//!   bad or over-long body is [`WireError::Malformed`].
//!
//! Decoders never panic and never allocate more than their input's size
//! (the input itself being bounded by [`MAX_FRAME`]).

use serde::de::{SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

use crate::error::{ErrorKind, HasKind};
use crate::group::MAX_JOIN_MESSAGE;
use crate::limits::{
    MAX_CHUNK, MAX_ENVELOPE, MAX_FILE_NAME, MAX_FRAME, MAX_RESUME_RANGES, MAX_TEXT,
};
use crate::session::{FRAME_TYPE_SEALED, FRAME_VERSION};

/// Frame type byte of an OpenPGP envelope frame.
pub const FRAME_TYPE_ENVELOPE: u8 = 1;
/// Frame type of a lane frame (PROTOCOL.md §14.3).
pub const FRAME_TYPE_LANE: u8 = 3;
/// Frame type of the group join exchange (PROTOCOL.md §20.7.3).
pub const FRAME_TYPE_GROUP_JOIN: u8 = 4;
/// The peer protocol version announced in [`Hello`].
pub const PROTOCOL_VERSION: u16 = 1;
/// Onion-service virtual port of peer connections (PEER_PORT, PROTOCOL.md
/// §3.3): onion addresses carry no port. `umbra-transport`'s Arti backend
/// listens on it by default, and a Handshaker `.onion` address without a
/// port is dialled on it.
pub const PEER_PORT: u16 = 7400;

/// Errors from decoding or encoding frames and peer messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The frame is empty or too short for its header.
    #[error("truncated frame")]
    Truncated,
    /// The frame announces a version this client does not speak.
    #[error("unsupported frame version {0}; the peer may need to upgrade (or we do)")]
    UnsupportedVersion(u8),
    /// The frame type is unknown.
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    /// The frame or a field is over its limit.
    #[error("{what} too large: {len} bytes (limit {limit})")]
    TooLarge {
        /// Which field.
        what: &'static str,
        /// Observed size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// A known message kind has a body that does not decode or violates a rule.
    #[error("malformed {kind_name} message: {reason}")]
    Malformed {
        /// The message kind.
        kind_name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

impl HasKind for WireError {
    fn kind(&self) -> ErrorKind {
        match self {
            WireError::TooLarge { .. } => ErrorKind::TooLarge,
            WireError::UnsupportedVersion(_) | WireError::UnknownFrameType(_) => {
                ErrorKind::Protocol
            }
            WireError::Truncated | WireError::Malformed { .. } => ErrorKind::InvalidInput,
        }
    }
}

/// The length-delimited codec for peer streams: `u32` big-endian length
/// prefix, bodies of at most [`MAX_FRAME`] bytes.
pub fn codec() -> LengthDelimitedCodec {
    codec_with(MAX_FRAME)
}

/// The smallest frame limit a node may configure: the largest frame a
/// well-behaved peer sends (a sealed FileChunk of MAX_CHUNK bytes) with
/// room to spare.
pub const MIN_FRAME_LIMIT: usize = crate::limits::MAX_CHUNK + 1024;

/// [`codec`] with a lower limit (`limits.max_frame_bytes`), clamped to
/// `MIN_FRAME_LIMIT..=MAX_FRAME`: a longer length prefix closes the stream
/// before any of the frame is buffered.
pub fn codec_with(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_type::<u32>()
        .max_frame_length(max_frame.clamp(MIN_FRAME_LIMIT, MAX_FRAME))
        .new_codec()
}

/// A decoded frame body.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// An OpenPGP envelope (accept or reject), to be opened by
    /// [`crate::envelope::open`].
    Envelope(&'a [u8]),
    /// A sealed session frame: the whole body, to be opened by
    /// [`crate::session::Session::open`] (the header is authenticated).
    Sealed(&'a [u8]),
    /// A lane frame (file chunks on an extra stream): the whole body, to be
    /// opened by the client's file lanes (`umbra::files::Lane::open`).
    Lane(&'a [u8]),
    /// A group join message (PROTOCOL.md §20.7.3): the postcard bytes after
    /// the header, 1..=[`crate::group::MAX_JOIN_MESSAGE`] of them, to be
    /// decoded by [`crate::group::JoinMessage::decode`].
    GroupJoin(&'a [u8]),
}

impl<'a> Frame<'a> {
    /// Classifies a frame body. Strict: unknown versions and types are errors.
    pub fn decode(body: &'a [u8]) -> Result<Frame<'a>, WireError> {
        if body.len() > MAX_FRAME {
            return Err(WireError::TooLarge {
                what: "frame",
                len: body.len(),
                limit: MAX_FRAME,
            });
        }
        let [version, typ, rest @ ..] = body else {
            return Err(WireError::Truncated);
        };
        if *version != FRAME_VERSION {
            return Err(WireError::UnsupportedVersion(*version));
        }
        match *typ {
            FRAME_TYPE_ENVELOPE => {
                if rest.is_empty() {
                    return Err(WireError::Truncated);
                }
                if rest.len() > MAX_ENVELOPE {
                    return Err(WireError::TooLarge {
                        what: "envelope",
                        len: rest.len(),
                        limit: MAX_ENVELOPE,
                    });
                }
                Ok(Frame::Envelope(rest))
            }
            FRAME_TYPE_SEALED => Ok(Frame::Sealed(body)),
            FRAME_TYPE_LANE => Ok(Frame::Lane(body)),
            FRAME_TYPE_GROUP_JOIN => {
                if rest.is_empty() {
                    return Err(WireError::Truncated);
                }
                if rest.len() > MAX_JOIN_MESSAGE {
                    return Err(WireError::TooLarge {
                        what: "group join message",
                        len: rest.len(),
                        limit: MAX_JOIN_MESSAGE,
                    });
                }
                Ok(Frame::GroupJoin(rest))
            }
            other => Err(WireError::UnknownFrameType(other)),
        }
    }

    /// Builds a group join frame body around an encoded join message.
    pub fn group_join(message: &[u8]) -> Result<Vec<u8>, WireError> {
        if message.is_empty() {
            return Err(WireError::Truncated);
        }
        if message.len() > MAX_JOIN_MESSAGE {
            return Err(WireError::TooLarge {
                what: "group join message",
                len: message.len(),
                limit: MAX_JOIN_MESSAGE,
            });
        }
        let mut out = Vec::with_capacity(message.len() + 2);
        out.extend_from_slice(&[FRAME_VERSION, FRAME_TYPE_GROUP_JOIN]);
        out.extend_from_slice(message);
        Ok(out)
    }

    /// Builds an envelope frame body.
    pub fn envelope(envelope: &[u8]) -> Result<Vec<u8>, WireError> {
        if envelope.len() > MAX_ENVELOPE {
            return Err(WireError::TooLarge {
                what: "envelope",
                len: envelope.len(),
                limit: MAX_ENVELOPE,
            });
        }
        let mut out = Vec::with_capacity(envelope.len() + 2);
        out.extend_from_slice(&[FRAME_VERSION, FRAME_TYPE_ENVELOPE]);
        out.extend_from_slice(envelope);
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// Peer messages

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    /// Random message id.
    pub id: [u8; 16],
    /// Per-direction message sequence, starting at 1.
    pub seq: u64,
    /// Sender's clock, Unix seconds.
    pub sent_at: u64,
    /// UTF-8 text, at most [`MAX_TEXT`] bytes.
    pub body: String,
}

/// Presence states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresenceState {
    /// Connected and active.
    Online,
    /// Connected, idle.
    Away,
    /// About to disconnect.
    GoingOffline,
}

/// What a file is, for display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// Any file.
    File,
    /// An image.
    Image,
    /// A voice message.
    Voice,
    /// A video.
    Video,
}

/// A lane key inside a [`PeerMessage::FileLane`]: zeroized on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct LaneKey(zeroize::Zeroizing<[u8; 32]>);

impl LaneKey {
    /// Wraps key bytes.
    pub fn new(key: [u8; 32]) -> Self {
        LaneKey(zeroize::Zeroizing::new(key))
    }

    /// The key bytes.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for LaneKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LaneKey([redacted])")
    }
}

/// A file offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOffer {
    /// Random transfer id.
    pub transfer_id: [u8; 16],
    /// Untrusted display name (never used as a path), ≤ [`MAX_FILE_NAME`] bytes.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Kind of media.
    pub media: Media,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// Chunk size in bytes, 1..=[`MAX_CHUNK`].
    pub chunk_size: u32,
}

/// Acceptance of a file, with the chunk ranges already held (resume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileAccept {
    /// The transfer.
    pub transfer_id: [u8; 16],
    /// Half-open ranges `[start, end)` of chunk indexes already verified,
    /// at most [`MAX_RESUME_RANGES`].
    #[serde(deserialize_with = "bounded_ranges")]
    pub have: Vec<(u64, u64)>,
}

/// One chunk of a file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChunk {
    /// The transfer.
    pub transfer_id: [u8; 16],
    /// Chunk index.
    pub index: u64,
    /// Chunk bytes, at most the offered chunk size.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// The opening message on a (re)connected session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Highest peer protocol version spoken.
    pub protocol: u16,
    /// Highest message sequence durably stored from this peer.
    pub last_received: u64,
}

/// Every message exchanged inside sealed frames.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerMessage {
    /// Kind 1.
    Text(Text),
    /// Kind 2: every message with `seq ≤ upto` is durably stored.
    Ack {
        /// Cumulative sequence.
        upto: u64,
    },
    /// Kind 3: read up to.
    Receipt {
        /// Cumulative sequence.
        upto: u64,
    },
    /// Kind 4: presence, also the heartbeat.
    Presence(PresenceState),
    /// Kind 5.
    FileOffer(FileOffer),
    /// Kind 6.
    FileAccept(FileAccept),
    /// Kind 7.
    FileChunk(FileChunk),
    /// Kind 8.
    FileDone {
        /// The transfer.
        transfer_id: [u8; 16],
    },
    /// Kind 9.
    FileCancel {
        /// The transfer.
        transfer_id: [u8; 16],
        /// Reason code (0 = by user; others reserved).
        reason: u8,
    },
    /// Kind 10: the sender ends the session and erases its keys.
    EndSession,
    /// Kind 11.
    Hello(Hello),
    /// Kind 12: the receiver durably stored every chunk of the transfer it
    /// got on this connection with `index < next` (PROTOCOL.md §14.1).
    FileAck {
        /// The transfer.
        transfer_id: [u8; 16],
        /// One past the highest chunk index stored.
        next: u64,
    },
    /// Kind 13: a lane stream with this id and key may follow (PROTOCOL.md §14.3).
    FileLane {
        /// Random lane id.
        lane_id: [u8; 16],
        /// Random AES-256 key of the lane (secret).
        key: LaneKey,
    },
    /// Kind 14: `count` frames of the lane are durably stored (cumulative).
    FileLaneAck {
        /// The lane.
        lane_id: [u8; 16],
        /// Frames stored so far.
        count: u64,
    },
    /// A kind this version does not know: ignored, never fatal.
    Unknown {
        /// The kind byte.
        kind: u8,
    },
}

#[derive(Serialize, Deserialize)]
struct Upto {
    upto: u64,
}
#[derive(Serialize, Deserialize)]
struct PresenceBody {
    state: u8,
}
#[derive(Serialize, Deserialize, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
struct FileLaneBody {
    lane_id: [u8; 16],
    key: [u8; 32],
}
#[derive(Serialize, Deserialize)]
struct FileLaneAckBody {
    lane_id: [u8; 16],
    count: u64,
}
#[derive(Serialize, Deserialize)]
struct FileAckBody {
    transfer_id: [u8; 16],
    next: u64,
}
#[derive(Serialize, Deserialize)]
struct FileOfferBody {
    transfer_id: [u8; 16],
    name: String,
    size: u64,
    media: u8,
    sha256: [u8; 32],
    chunk_size: u32,
}
#[derive(Serialize, Deserialize)]
struct TransferId {
    transfer_id: [u8; 16],
}
#[derive(Serialize, Deserialize)]
struct CancelBody {
    transfer_id: [u8; 16],
    reason: u8,
}
#[derive(Serialize, Deserialize)]
struct Empty {}

fn bounded_ranges<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<(u64, u64)>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<(u64, u64)>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "at most {MAX_RESUME_RANGES} ranges")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let hint = seq.size_hint().unwrap_or(0);
            if hint > MAX_RESUME_RANGES {
                return Err(serde::de::Error::custom("too many ranges"));
            }
            let mut out = Vec::with_capacity(hint);
            while let Some(r) = seq.next_element::<(u64, u64)>()? {
                if out.len() == MAX_RESUME_RANGES {
                    return Err(serde::de::Error::custom("too many ranges"));
                }
                out.push(r);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V)
}

const KIND_NAMES: [&str; 15] = [
    "unknown",
    "text",
    "ack",
    "receipt",
    "presence",
    "file-offer",
    "file-accept",
    "file-chunk",
    "file-done",
    "file-cancel",
    "end-session",
    "hello",
    "file-ack",
    "file-lane",
    "file-lane-ack",
];

fn malformed(kind: u8, reason: &'static str) -> WireError {
    WireError::Malformed {
        kind_name: KIND_NAMES.get(kind as usize).copied().unwrap_or("?"),
        reason,
    }
}

fn body<'a, T: Deserialize<'a>>(kind: u8, bytes: &'a [u8]) -> Result<T, WireError> {
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|_| malformed(kind, "does not decode"))?;
    if !rest.is_empty() {
        return Err(malformed(kind, "trailing bytes"));
    }
    Ok(value)
}

impl PeerMessage {
    /// The kind byte of this message.
    pub fn kind(&self) -> u8 {
        match self {
            PeerMessage::Text(_) => 1,
            PeerMessage::Ack { .. } => 2,
            PeerMessage::Receipt { .. } => 3,
            PeerMessage::Presence(_) => 4,
            PeerMessage::FileOffer(_) => 5,
            PeerMessage::FileAccept(_) => 6,
            PeerMessage::FileChunk(_) => 7,
            PeerMessage::FileDone { .. } => 8,
            PeerMessage::FileCancel { .. } => 9,
            PeerMessage::EndSession => 10,
            PeerMessage::Hello(_) => 11,
            PeerMessage::FileAck { .. } => 12,
            PeerMessage::FileLane { .. } => 13,
            PeerMessage::FileLaneAck { .. } => 14,
            PeerMessage::Unknown { kind } => *kind,
        }
    }

    /// Checks the limits of docs/PROTOCOL.md ("Peer messages").
    pub fn validate(&self) -> Result<(), WireError> {
        let k = self.kind();
        match self {
            PeerMessage::Text(t) if t.body.len() > MAX_TEXT => Err(WireError::TooLarge {
                what: "text",
                len: t.body.len(),
                limit: MAX_TEXT,
            }),
            PeerMessage::Text(t) if t.seq == 0 => Err(malformed(k, "sequence starts at 1")),
            PeerMessage::FileOffer(o) if o.name.len() > MAX_FILE_NAME => Err(WireError::TooLarge {
                what: "file name",
                len: o.name.len(),
                limit: MAX_FILE_NAME,
            }),
            PeerMessage::FileOffer(o) if o.chunk_size == 0 || o.chunk_size as usize > MAX_CHUNK => {
                Err(malformed(k, "chunk size out of range"))
            }
            PeerMessage::FileAccept(a) if a.have.len() > MAX_RESUME_RANGES => {
                Err(malformed(k, "too many ranges"))
            }
            PeerMessage::FileAccept(a) if a.have.iter().any(|(s, e)| s >= e) => {
                Err(malformed(k, "empty or inverted range"))
            }
            PeerMessage::FileAccept(a) if a.have.windows(2).any(|w| w[0].1 > w[1].0) => {
                Err(malformed(k, "ranges not sorted or overlapping"))
            }
            PeerMessage::FileChunk(c) if c.data.len() > MAX_CHUNK => Err(WireError::TooLarge {
                what: "chunk",
                len: c.data.len(),
                limit: MAX_CHUNK,
            }),
            PeerMessage::FileChunk(c) if c.data.is_empty() => Err(malformed(k, "empty chunk")),
            PeerMessage::Unknown { kind } if (1..=14).contains(kind) => {
                Err(malformed(k, "known kind sent as unknown"))
            }
            _ => Ok(()),
        }
    }

    /// Encodes `kind || postcard(body)`. Refuses messages over the limits.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        self.validate()?;
        let kind = self.kind();
        let encoded = match self {
            PeerMessage::Text(t) => postcard::to_stdvec(t),
            PeerMessage::Ack { upto } | PeerMessage::Receipt { upto } => {
                postcard::to_stdvec(&Upto { upto: *upto })
            }
            PeerMessage::Presence(s) => postcard::to_stdvec(&PresenceBody {
                state: match s {
                    PresenceState::Online => 0,
                    PresenceState::Away => 1,
                    PresenceState::GoingOffline => 2,
                },
            }),
            PeerMessage::FileOffer(o) => postcard::to_stdvec(&FileOfferBody {
                transfer_id: o.transfer_id,
                name: o.name.clone(),
                size: o.size,
                media: match o.media {
                    Media::File => 0,
                    Media::Image => 1,
                    Media::Voice => 2,
                    Media::Video => 3,
                },
                sha256: o.sha256,
                chunk_size: o.chunk_size,
            }),
            PeerMessage::FileAccept(a) => postcard::to_stdvec(a),
            PeerMessage::FileChunk(c) => postcard::to_stdvec(c),
            PeerMessage::FileDone { transfer_id } => postcard::to_stdvec(&TransferId {
                transfer_id: *transfer_id,
            }),
            PeerMessage::FileCancel {
                transfer_id,
                reason,
            } => postcard::to_stdvec(&CancelBody {
                transfer_id: *transfer_id,
                reason: *reason,
            }),
            PeerMessage::EndSession => postcard::to_stdvec(&Empty {}),
            PeerMessage::Hello(h) => postcard::to_stdvec(h),
            PeerMessage::FileAck { transfer_id, next } => postcard::to_stdvec(&FileAckBody {
                transfer_id: *transfer_id,
                next: *next,
            }),
            PeerMessage::FileLane { lane_id, key } => postcard::to_stdvec(&FileLaneBody {
                lane_id: *lane_id,
                key: *key.expose(),
            }),
            PeerMessage::FileLaneAck { lane_id, count } => postcard::to_stdvec(&FileLaneAckBody {
                lane_id: *lane_id,
                count: *count,
            }),
            PeerMessage::Unknown { .. } => {
                return Err(malformed(kind, "cannot send unknown kinds"));
            }
        }
        .map_err(|_| malformed(kind, "does not encode"))?;
        let mut out = Vec::with_capacity(encoded.len() + 1);
        out.push(kind);
        out.extend_from_slice(&encoded);
        Ok(out)
    }

    /// Decodes a sealed frame's plaintext. Strict for known kinds,
    /// [`PeerMessage::Unknown`] for others.
    pub fn decode(bytes: &[u8]) -> Result<PeerMessage, WireError> {
        let [kind, rest @ ..] = bytes else {
            return Err(WireError::Truncated);
        };
        let k = *kind;
        let msg = match k {
            1 => PeerMessage::Text(body(k, rest)?),
            2 => PeerMessage::Ack {
                upto: body::<Upto>(k, rest)?.upto,
            },
            3 => PeerMessage::Receipt {
                upto: body::<Upto>(k, rest)?.upto,
            },
            4 => PeerMessage::Presence(match body::<PresenceBody>(k, rest)?.state {
                0 => PresenceState::Online,
                1 => PresenceState::Away,
                2 => PresenceState::GoingOffline,
                _ => return Err(malformed(k, "unknown presence state")),
            }),
            5 => {
                let b: FileOfferBody = body(k, rest)?;
                PeerMessage::FileOffer(FileOffer {
                    transfer_id: b.transfer_id,
                    name: b.name,
                    size: b.size,
                    media: match b.media {
                        0 => Media::File,
                        1 => Media::Image,
                        2 => Media::Voice,
                        3 => Media::Video,
                        _ => return Err(malformed(k, "unknown media type")),
                    },
                    sha256: b.sha256,
                    chunk_size: b.chunk_size,
                })
            }
            6 => PeerMessage::FileAccept(body(k, rest)?),
            7 => PeerMessage::FileChunk(body(k, rest)?),
            8 => PeerMessage::FileDone {
                transfer_id: body::<TransferId>(k, rest)?.transfer_id,
            },
            9 => {
                let b: CancelBody = body(k, rest)?;
                PeerMessage::FileCancel {
                    transfer_id: b.transfer_id,
                    reason: b.reason,
                }
            }
            10 => {
                body::<Empty>(k, rest)?;
                PeerMessage::EndSession
            }
            11 => PeerMessage::Hello(body(k, rest)?),
            12 => {
                let b: FileAckBody = body(k, rest)?;
                PeerMessage::FileAck {
                    transfer_id: b.transfer_id,
                    next: b.next,
                }
            }
            13 => {
                let b: FileLaneBody = body(k, rest)?;
                PeerMessage::FileLane {
                    lane_id: b.lane_id,
                    key: LaneKey::new(b.key),
                }
            }
            14 => {
                let b: FileLaneAckBody = body(k, rest)?;
                PeerMessage::FileLaneAck {
                    lane_id: b.lane_id,
                    count: b.count,
                }
            }
            _ => PeerMessage::Unknown { kind: k },
        };
        msg.validate()?;
        // postcard accepts over-long varints; only the canonical encoding is
        // valid (docs/PROTOCOL.md, "Canonical encoding").
        if !matches!(msg, PeerMessage::Unknown { .. }) && msg.encode()? != bytes {
            return Err(malformed(k, "non-canonical encoding"));
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    fn arb_message() -> impl Strategy<Value = PeerMessage> {
        let id = any::<[u8; 16]>();
        prop_oneof![
            (id, 1..u64::MAX, any::<u64>(), ".{0,200}").prop_map(|(id, seq, sent_at, body)| {
                PeerMessage::Text(Text {
                    id,
                    seq,
                    sent_at,
                    body,
                })
            }),
            any::<u64>().prop_map(|upto| PeerMessage::Ack { upto }),
            any::<u64>().prop_map(|upto| PeerMessage::Receipt { upto }),
            prop_oneof![
                Just(PresenceState::Online),
                Just(PresenceState::Away),
                Just(PresenceState::GoingOffline)
            ]
            .prop_map(PeerMessage::Presence),
            (
                id,
                "[^/]{0,60}",
                any::<u64>(),
                0u8..4,
                any::<[u8; 32]>(),
                1u32..=65536
            )
                .prop_map(|(transfer_id, name, size, m, sha256, chunk_size)| {
                    let media = [Media::File, Media::Image, Media::Voice, Media::Video][m as usize];
                    PeerMessage::FileOffer(FileOffer {
                        transfer_id,
                        name,
                        size,
                        media,
                        sha256,
                        chunk_size,
                    })
                }),
            (
                id,
                proptest::collection::vec((0u64..1000, 1u64..1000), 0..20)
            )
                .prop_map(|(transfer_id, v)| {
                    // Sorted, non-overlapping ranges: gap then length.
                    let mut at = 0;
                    let have = v
                        .into_iter()
                        .map(|(gap, len)| {
                            let r = (at + gap, at + gap + len);
                            at = r.1;
                            r
                        })
                        .collect();
                    PeerMessage::FileAccept(FileAccept { transfer_id, have })
                }),
            (id, any::<u64>())
                .prop_map(|(transfer_id, next)| PeerMessage::FileAck { transfer_id, next }),
            (id, any::<[u8; 32]>()).prop_map(|(lane_id, key)| PeerMessage::FileLane {
                lane_id,
                key: LaneKey::new(key)
            }),
            (id, any::<u64>())
                .prop_map(|(lane_id, count)| PeerMessage::FileLaneAck { lane_id, count }),
            (
                id,
                any::<u64>(),
                proptest::collection::vec(any::<u8>(), 1..300)
            )
                .prop_map(|(transfer_id, index, data)| PeerMessage::FileChunk(
                    FileChunk {
                        transfer_id,
                        index,
                        data
                    }
                )),
            id.prop_map(|transfer_id| PeerMessage::FileDone { transfer_id }),
            (id, any::<u8>()).prop_map(|(transfer_id, reason)| PeerMessage::FileCancel {
                transfer_id,
                reason
            }),
            Just(PeerMessage::EndSession),
            (any::<u16>(), any::<u64>()).prop_map(|(protocol, last_received)| PeerMessage::Hello(
                Hello {
                    protocol,
                    last_received
                }
            )),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_is_identity(msg in arb_message()) {
            let bytes = msg.encode().unwrap();
            prop_assert_eq!(PeerMessage::decode(&bytes).unwrap(), msg);
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = PeerMessage::decode(&bytes);
            let _ = Frame::decode(&bytes);
        }

        #[test]
        fn trailing_bytes_are_refused(msg in arb_message(), extra in proptest::collection::vec(any::<u8>(), 1..8)) {
            let mut bytes = msg.encode().unwrap();
            bytes.extend_from_slice(&extra);
            prop_assert!(PeerMessage::decode(&bytes).is_err());
        }

        #[test]
        fn truncation_is_refused(msg in arb_message(), cut in 1usize..64) {
            let bytes = msg.encode().unwrap();
            let keep = bytes.len().saturating_sub(cut);
            if keep < bytes.len() && !matches!(msg, PeerMessage::EndSession) {
                prop_assert!(PeerMessage::decode(&bytes[..keep]).is_err());
            }
        }
    }

    #[test]
    fn non_canonical_varints_are_refused() {
        // Ack { upto: 0 } is [2, 0]; [2, 0x80, 0x00] also decodes to 0 in postcard.
        assert_eq!(
            PeerMessage::decode(&[2, 0]).unwrap(),
            PeerMessage::Ack { upto: 0 }
        );
        assert!(matches!(
            PeerMessage::decode(&[2, 0x80, 0x00]),
            Err(WireError::Malformed { .. })
        ));
    }

    #[test]
    fn unknown_kinds_are_forward_compatible() {
        assert_eq!(
            PeerMessage::decode(&[200, 1, 2, 3]).unwrap(),
            PeerMessage::Unknown { kind: 200 }
        );
        assert!(PeerMessage::Unknown { kind: 200 }.encode().is_err());
        assert!(matches!(
            PeerMessage::decode(&[]),
            Err(WireError::Truncated)
        ));
    }

    #[test]
    fn limits_are_enforced_both_ways() {
        let long = PeerMessage::Text(Text {
            id: [0; 16],
            seq: 1,
            sent_at: 0,
            body: "x".repeat(MAX_TEXT + 1),
        });
        assert!(matches!(
            long.encode(),
            Err(WireError::TooLarge { what: "text", .. })
        ));
        // Hand-craft the over-long text that a hostile peer would send.
        let raw = postcard::to_stdvec(&Text {
            id: [0; 16],
            seq: 1,
            sent_at: 0,
            body: "x".repeat(MAX_TEXT + 1),
        })
        .unwrap();
        let mut bytes = vec![1];
        bytes.extend_from_slice(&raw);
        assert!(matches!(
            PeerMessage::decode(&bytes),
            Err(WireError::TooLarge { .. })
        ));
        // A length prefix claiming more than is there.
        let mut lying = vec![7];
        lying.extend_from_slice(&[0; 16]);
        lying.push(0);
        lying.extend_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
        assert!(PeerMessage::decode(&lying).is_err());
        // Too many ranges.
        let many = FileAccept {
            transfer_id: [0; 16],
            have: (0..300).map(|i| (i, i + 1)).collect(),
        };
        let mut bytes = vec![6];
        bytes.extend_from_slice(&postcard::to_stdvec(&many).unwrap());
        assert!(PeerMessage::decode(&bytes).is_err());
        // Bad enum values and an invalid UTF-8 text body.
        assert!(PeerMessage::decode(&[4, 9]).is_err());
        let mut bad_utf8 = vec![1];
        bad_utf8.extend_from_slice(&[0; 16]);
        bad_utf8.extend_from_slice(&[1, 0, 2, 0xff, 0xfe]);
        assert!(PeerMessage::decode(&bad_utf8).is_err());
    }

    #[test]
    fn frames_are_strict() {
        assert!(matches!(Frame::decode(&[]), Err(WireError::Truncated)));
        assert!(matches!(
            Frame::decode(&[2, 1, 0]),
            Err(WireError::UnsupportedVersion(2))
        ));
        assert!(matches!(
            Frame::decode(&[1, 9, 0]),
            Err(WireError::UnknownFrameType(9))
        ));
        assert!(matches!(Frame::decode(&[1, 1]), Err(WireError::Truncated)));
        let env = Frame::envelope(b"pgp").unwrap();
        assert_eq!(Frame::decode(&env).unwrap(), Frame::Envelope(b"pgp"));
        assert!(Frame::decode(&vec![1; MAX_FRAME + 1]).is_err());
        // Group join frames: non-empty, at most MAX_JOIN_MESSAGE.
        let join = Frame::group_join(b"join").unwrap();
        assert_eq!(Frame::decode(&join).unwrap(), Frame::GroupJoin(b"join"));
        assert!(matches!(Frame::decode(&[1, 4]), Err(WireError::Truncated)));
        let mut big = vec![1, 4];
        big.resize(MAX_JOIN_MESSAGE + 3, 0);
        assert!(matches!(
            Frame::decode(&big),
            Err(WireError::TooLarge { .. })
        ));
        assert!(Frame::group_join(&big).is_err());
        assert!(Frame::group_join(&[]).is_err());
    }

    #[tokio::test]
    async fn codec_refuses_oversized_length_before_reading() {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        use tokio_util::codec::FramedRead;
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut framed = FramedRead::new(rx, codec());
        tx.write_all(&((MAX_FRAME as u32) + 1).to_be_bytes())
            .await
            .unwrap();
        let got = framed.next().await.unwrap();
        assert!(got.is_err());
    }
}
