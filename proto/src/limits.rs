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

// ---------- groups (PROTOCOL.md §20) ----------

/// Most members a group may have, owner included.
pub const MAX_GROUP_MEMBERS: usize = 100;
/// Longest group name, in bytes of UTF-8.
pub const MAX_GROUP_NAME: usize = 64;
/// Longest group topic, in bytes of UTF-8.
pub const MAX_GROUP_TOPIC: usize = 512;
/// Largest binary detached signature inside a group object, in bytes.
pub const MAX_GROUP_SIG: usize = 512;
/// Largest encoded membership op (an Add carries a certificate), in bytes.
pub const MAX_GROUP_OP: usize = MAX_CERT + 4 * 1024;
/// Most entries in a group's membership log, genesis included.
pub const MAX_GROUP_LOG: usize = 10_000;
/// Most invite links a group may ever open (revoked and expired included).
pub const MAX_GROUP_LINKS: usize = 64;
/// Most uses one invite link may allow.
pub const MAX_LINK_USES: u16 = 100;
/// Most causal parents a group message names.
pub const MAX_GROUP_PARENTS: usize = 4;
/// Largest encoded group message, in bytes.
pub const MAX_GROUP_MESSAGE: usize = MAX_TEXT + 2 * 1024;
/// Most messages a delivery tracker buffers while waiting for gaps, all
/// senders together.
pub const MAX_GROUP_BUFFER: usize = 1024;
/// How far ahead of a sender's next sequence a message may be buffered.
pub const MAX_GROUP_AHEAD: u64 = 256;
/// Most ops plus messages in one pull response.
pub const MAX_PULL_ITEMS: usize = 256;
/// Most bytes of ops and messages a member puts into one pull response
/// (it must fit a sealed frame).
pub const MAX_PULL_BYTES: usize = 96 * 1024;
/// Longest `umbra:group#…` invite link, in characters.
pub const MAX_INVITE_LINK: usize = 2048;
