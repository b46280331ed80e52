//! Protocol limits (docs/PROTOCOL.md, "Limits"). Every network input is
//! bounded by one of these before it is parsed.

/// Largest transport frame body, in bytes (length prefix excluded).
pub const MAX_FRAME: usize = 128 * 1024;
/// Largest text message body, in bytes of UTF-8.
pub const MAX_TEXT: usize = 16 * 1024;
/// Largest note attached to a connection request, in bytes of UTF-8.
pub const MAX_NOTE: usize = 512;
/// Largest OpenPGP envelope accepted, in bytes (armored or binary).
pub const MAX_ENVELOPE: usize = 64 * 1024;
/// Largest decrypted envelope payload, in bytes.
pub const MAX_ENVELOPE_PAYLOAD: usize = 16 * 1024;
/// Largest file chunk, in bytes.
pub const MAX_CHUNK: usize = 64 * 1024;
/// Largest file name offered by a peer, in bytes of UTF-8.
pub const MAX_FILE_NAME: usize = 255;
/// Largest number of resume ranges in a file accept.
pub const MAX_RESUME_RANGES: usize = 256;
/// Largest onion or direct address carried in a handshake, in bytes.
pub const MAX_ADDRESS: usize = 255;
/// How far ahead of a receive chain a frame may be (frames lost with a
/// dropped connection).
pub const MAX_SKIP: u64 = 1024;
/// Largest public certificate accepted, in bytes (armored).
pub const MAX_CERT: usize = 16 * 1024;
/// Default freshness window for handshake envelopes, in seconds (7 days,
/// the Handshaker's mailbox retention).
pub const ENVELOPE_MAX_AGE_SECS: u64 = 7 * 24 * 3600;
/// Largest accepted clock skew into the future, in seconds.
pub const MAX_FUTURE_SKEW_SECS: u64 = 300;
