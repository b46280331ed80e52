//! What the node reports to its front ends.

use crate::identity::Fingerprint;
use crate::redact::Sensitive;
use crate::store::{ContactId, DeliveryState, MessageId};
use crate::wire::PresenceState;

/// Something the node reports to its front ends (control API, CLI, UI).
/// Carries local row ids only; user-facing code reads details from the store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A new incoming message is stored (and acknowledged).
    MessageReceived {
        /// The contact.
        contact: ContactId,
        /// The stored message.
        message: MessageId,
        /// The sender's seq.
        seq: u64,
    },
    /// Our outgoing messages up to `upto` reached `state`.
    DeliveryChanged {
        /// The contact.
        contact: ContactId,
        /// Cumulative seq.
        upto: u64,
        /// Delivered or Read.
        state: DeliveryState,
    },
    /// An outgoing message will never be delivered (the session ended).
    MessageFailed {
        /// The contact.
        contact: ContactId,
        /// The message.
        message: MessageId,
    },
    /// A contact went online or offline.
    PresenceChanged {
        /// The contact.
        contact: ContactId,
        /// Whether a Ready connection exists.
        online: bool,
        /// The announced state, if any.
        state: Option<PresenceState>,
    },
    /// A connection request arrived through the mailbox.
    RequestReceived {
        /// Its id (pass it to [`NodeHandle::accept`]).
        request_id: Sensitive<[u8; 16]>,
        /// The requester's username.
        from: Sensitive<String>,
        /// The requester's verified fingerprint.
        fingerprint: Sensitive<Fingerprint>,
        /// Their key differs from the one pinned for this name (or the key
        /// is pinned under another name): accepting needs an override.
        key_changed: bool,
    },
    /// One of our requests was answered.
    RequestAnswered {
        /// The contact.
        contact: ContactId,
        /// Accepted (a session exists now) or rejected.
        accepted: bool,
    },
    /// A session ended; its keys are erased.
    SessionEnded {
        /// The contact.
        contact: ContactId,
        /// Whether the peer ended it.
        by_peer: bool,
    },
    /// A contact offered a file (details in the store).
    FileOffered {
        /// The contact.
        contact: ContactId,
        /// The transfer id.
        transfer: [u8; 16],
        /// The receiver's policy accepted it without asking.
        auto_accepted: bool,
    },
    /// Bytes of a transfer confirmed so far (rate-limited).
    FileProgress {
        /// The contact.
        contact: ContactId,
        /// The transfer id.
        transfer: [u8; 16],
        /// Bytes stored by the receiver.
        done: u64,
        /// File size.
        size: u64,
    },
    /// A transfer completed: verified by the receiver.
    FileCompleted {
        /// The contact.
        contact: ContactId,
        /// The transfer id.
        transfer: [u8; 16],
        /// Where it was saved automatically (receiver with a downloads folder).
        saved: Option<std::path::PathBuf>,
    },
    /// Something happened in a group (PROTOCOL.md §20).
    Group {
        /// The group id.
        group: [u8; 32],
        /// What happened.
        event: super::GroupEvent,
    },
    /// A transfer was cancelled or failed.
    FileCancelled {
        /// The contact.
        contact: ContactId,
        /// The transfer id.
        transfer: [u8; 16],
        /// FileCancel reason (PROTOCOL.md §14.1).
        reason: u8,
        /// The peer cancelled it.
        by_peer: bool,
    },
}

/// A received connection request awaiting the user's decision (for front ends).
#[derive(Clone)]
pub struct ReceivedRequest {
    /// Its id (pass it to [`NodeHandle::accept`]).
    pub request_id: [u8; 16],
    /// The requester's username (folded, without `@`).
    pub from: String,
    /// The requester's verified fingerprint.
    pub fingerprint: Fingerprint,
    /// Their note.
    pub note: String,
    /// Unix seconds.
    pub received_at: u64,
    /// Their key differs from the one pinned for this name.
    pub key_changed: bool,
    /// They are a contact with an established session: accepting replaces
    /// it (a re-key, PROTOCOL.md §12.2).
    pub rekey: bool,
}

impl std::fmt::Debug for ReceivedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceivedRequest([scrubbed])")
    }
}
