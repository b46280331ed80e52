//! Plain record types read from and written to the store.
//!
//! Secret fields (the identity's secret cert, chain keys, ephemeral secrets) are
//! [`Zeroizing`] buffers, and the types holding them implement `Debug` by hand with a
//! placeholder instead of the secret.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use zeroize::Zeroizing;

/// A secret byte string, zeroized when dropped.
pub type SecretBytes = Zeroizing<Vec<u8>>;

/// Declare a fieldless enum stored as TEXT, with `as_str`, `parse` and SQL conversions.
macro_rules! text_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $var:ident = $s:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $var,)+ }

        impl $name {
            /// The name stored in the database (stable; part of the schema).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $s,)+ }
            }

            /// Parse a stored name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$var),)+ _ => None }
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.as_str()))
            }
        }

        impl FromSql for $name {
            fn column_result(v: ValueRef<'_>) -> FromSqlResult<Self> {
                let s = v.as_str()?;
                Self::parse(s).ok_or_else(|| {
                    FromSqlError::Other(format!("unknown {} {s:?}", stringify!($name)).into())
                })
            }
        }
    };
}

text_enum! {
    /// Where a contact relationship stands.
    pub enum ContactState {
        /// We sent a connection request and wait for an answer.
        Requested = "requested",
        /// They sent us a request that we have not answered yet.
        Incoming = "incoming",
        /// Both sides accepted: a session can be established.
        Accepted = "accepted",
        /// The request was rejected.
        Rejected = "rejected",
        /// We blocked this contact.
        Blocked = "blocked",
    }
}

text_enum! {
    /// Direction of a message or file transfer, from our point of view.
    pub enum Direction {
        /// Received from the contact.
        Incoming = "in",
        /// Sent by us.
        Outgoing = "out",
    }
}

text_enum! {
    /// Delivery state of a message.
    pub enum DeliveryState {
        /// Outgoing, in the outbox, not yet written to a connection.
        Queued = "queued",
        /// Outgoing, written to a connection, not yet acknowledged.
        Sent = "sent",
        /// Outgoing, acknowledged as durably stored by the receiver.
        Delivered = "delivered",
        /// Outgoing, the receiver reported it read; or incoming, shown to the user.
        Read = "read",
        /// Incoming, stored (and acknowledged) but not yet shown.
        Received = "received",
        /// Outgoing, given up on.
        Failed = "failed",
    }
}

text_enum! {
    /// State of a file transfer.
    pub enum TransferState {
        /// Offered, not yet accepted.
        Offered = "offered",
        /// Chunks are flowing.
        Active = "active",
        /// Interrupted; can be resumed from the recorded chunks.
        Paused = "paused",
        /// All chunks received and the SHA-256 verified.
        Completed = "completed",
        /// Cancelled by either side.
        Cancelled = "cancelled",
        /// Failed (e.g. hash mismatch).
        Failed = "failed",
    }
}

text_enum! {
    /// What a transferred file is, for display.
    pub enum FileKind {
        /// Any file.
        File = "file",
        /// An image.
        Image = "image",
        /// A voice message.
        Voice = "voice",
        /// A video.
        Video = "video",
    }
}

/// Row id of a contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ContactId(pub(crate) i64);

impl ContactId {
    /// The numeric id (stable for the life of the store).
    pub fn as_i64(self) -> i64 {
        self.0
    }
}

/// Row id of a message (insertion order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub(crate) i64);

impl MessageId {
    /// The numeric id (stable for the life of the store).
    pub fn as_i64(self) -> i64 {
        self.0
    }
}

/// Our own identity: the serialized secret OpenPGP cert and what identifies it.
pub struct OwnIdentity {
    /// The `@name` registered for this identity.
    pub username: String,
    /// The cert's fingerprint, 40 uppercase hex digits.
    pub fingerprint: String,
    /// The serialized secret cert (opaque to the store).
    pub secret_cert: SecretBytes,
    /// Unix seconds when the identity was stored.
    pub created_at: u64,
}

impl fmt::Debug for OwnIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnIdentity")
            .field("username", &self.username)
            .field("fingerprint", &self.fingerprint)
            .field("secret_cert", &"--- secret cert ---")
            .field("created_at", &self.created_at)
            .finish()
    }
}

text_enum! {
    /// How the onion service identity key came into the store.
    pub enum OnionKeyOrigin {
        /// Generated by this store on first start.
        Generated = "generated",
        /// Moved in from Arti's on-disk keystore (a data directory of an
        /// earlier version), so the address stayed the same.
        Migrated = "migrated",
    }
}

/// Our onion service's identity key (the secret behind our `.onion`
/// address): 64 bytes, an expanded Ed25519 secret key.
pub struct OnionKeyRecord {
    /// The secret key bytes.
    pub secret: SecretBytes,
    /// Where it came from.
    pub origin: OnionKeyOrigin,
    /// Unix seconds when it was stored.
    pub created_at: u64,
}

impl fmt::Debug for OnionKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnionKeyRecord")
            .field("secret", &"--- secret key ---")
            .field("origin", &self.origin)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A contact to add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContact {
    /// Their `@name`.
    pub username: String,
    /// Their cert fingerprint, 40 hex digits (stored uppercase).
    pub fingerprint: String,
    /// Their pinned public cert (serialized, opaque to the store).
    pub public_cert: Vec<u8>,
    /// Their onion service address (or a direct address in tests), if known.
    pub onion_address: Option<String>,
    /// Relationship state.
    pub state: ContactState,
    /// Whether the fingerprint was verified out of band.
    pub verified: bool,
}

/// A stored contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Row id.
    pub id: ContactId,
    /// Their `@name`.
    pub username: String,
    /// Their cert fingerprint, 40 uppercase hex digits.
    pub fingerprint: String,
    /// Their pinned public cert.
    pub public_cert: Vec<u8>,
    /// Their onion service address, if known.
    pub onion_address: Option<String>,
    /// Relationship state.
    pub state: ContactState,
    /// Whether the fingerprint was verified out of band.
    pub verified: bool,
    /// Unix seconds when they were last seen online.
    pub last_seen: Option<u64>,
    /// Unix seconds when the contact was added.
    pub created_at: u64,
}

/// One direction of a session: the current chain key and the next frame sequence number.
pub struct ChainState {
    /// The chain key (opaque to the store; 32 bytes in protocol v1).
    pub chain_key: SecretBytes,
    /// The sequence number the chain key belongs to (next to send / next expected).
    pub seq: u64,
}

impl fmt::Debug for ChainState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainState")
            .field("chain_key", &"--- secret ---")
            .field("seq", &self.seq)
            .finish()
    }
}

/// A session with a contact: both ratchet directions.
#[derive(Debug)]
pub struct SessionRecord {
    /// The contact.
    pub contact: ContactId,
    /// Session identifier from the key schedule (not secret toward the peer).
    pub session_id: [u8; 16],
    /// Our sending chain.
    pub send: ChainState,
    /// Our receiving chain.
    pub recv: ChainState,
    /// Unix seconds when the session was established.
    pub created_at: u64,
}

/// A connection request we sent and that is still waiting for an accept.
pub struct PendingRequest {
    /// Random request id.
    pub request_id: [u8; 16],
    /// The `@name` we asked.
    pub to_username: String,
    /// Our ephemeral X25519 secret for this request.
    pub ephemeral_secret: SecretBytes,
    /// Our random session half `r_a`.
    pub session_half: SecretBytes,
    /// Unix seconds when the request was made.
    pub created_at: u64,
}

impl fmt::Debug for PendingRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingRequest")
            .field("request_id", &hex::encode(self.request_id))
            .field("to_username", &self.to_username)
            .field("ephemeral_secret", &"--- secret ---")
            .field("session_half", &"--- secret ---")
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// A message to insert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    /// The contact the message was exchanged with.
    pub contact: ContactId,
    /// Who sent it.
    pub direction: Direction,
    /// The sender's per-direction sequence number (starts at 1).
    pub seq: u64,
    /// Random message id.
    pub msg_id: [u8; 16],
    /// Sender's timestamp, Unix seconds.
    pub sent_at: u64,
    /// When we received it (incoming only).
    pub received_at: Option<u64>,
    /// Text.
    pub body: String,
    /// Delivery state.
    pub state: DeliveryState,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Row id (insertion order).
    pub id: MessageId,
    /// The contact.
    pub contact: ContactId,
    /// Who sent it.
    pub direction: Direction,
    /// Per-direction sequence number.
    pub seq: u64,
    /// Random message id.
    pub msg_id: [u8; 16],
    /// Sender's timestamp.
    pub sent_at: u64,
    /// When we received it (incoming only).
    pub received_at: Option<u64>,
    /// Text.
    pub body: String,
    /// Delivery state.
    pub state: DeliveryState,
}

/// Result of inserting a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Stored with this row id.
    New(MessageId),
    /// A message with the same contact, direction and seq was already stored; nothing changed.
    Duplicate,
}

/// A file transfer to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTransfer {
    /// Random transfer id.
    pub transfer_id: [u8; 16],
    /// The contact.
    pub contact: ContactId,
    /// Sending or receiving.
    pub direction: Direction,
    /// File name as offered (≤ 255 bytes).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// What the file is.
    pub media: FileKind,
    /// Outgoing: the file being sent. Incoming: where it was saved.
    pub local_path: Option<String>,
}

/// A stored file transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileTransfer {
    /// Random transfer id.
    pub transfer_id: [u8; 16],
    /// The contact.
    pub contact: ContactId,
    /// Sending or receiving.
    pub direction: Direction,
    /// File name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// Chunk size in bytes.
    pub chunk_size: u32,
    /// Incoming: chunks stored so far (which ones: [`crate::store::Store::chunks_have`]).
    pub have_count: u64,
    /// Outgoing: the file being sent. Incoming: where it was saved, once saved.
    pub local_path: Option<String>,
    /// State.
    pub state: TransferState,
    /// What the file is.
    pub media: FileKind,
    /// FileCancel reason (PROTOCOL.md §14.1) once cancelled or failed.
    pub reason: Option<u8>,
    /// Incoming: name of the encrypted part file in the data dir's `files/`.
    pub part_file: Option<String>,
    /// Outgoing: chunk frames written so far, over all connections.
    pub chunks_sent: u64,
    /// Unix seconds when recorded.
    pub created_at: u64,
    /// Unix seconds of the last change.
    pub updated_at: u64,
}

impl FileTransfer {
    /// Number of chunks in the file.
    pub fn chunk_count(&self) -> u64 {
        self.size.div_ceil(u64::from(self.chunk_size.max(1)))
    }

    /// Whether every chunk has been transferred.
    pub fn is_complete(&self) -> bool {
        self.have_count == self.chunk_count()
    }
}
