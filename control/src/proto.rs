//! Control API message types (docs/CONTROL.md; version [`VERSION`]).
//!
//! One JSON object per line (`\n`-terminated, at most [`MAX_LINE`] bytes) in
//! each direction over the owner-only Unix socket `<data_dir>/control.sock`.
//! Clients send [`ClientMessage`]s; the daemon answers each with exactly one
//! [`ServerMessage::Reply`] carrying the same `id`, and, after a
//! [`Request::Subscribe`], interleaves [`ServerMessage::Event`]s. Decoding is
//! strict: unknown fields and unknown commands are refused.
//!
//! These types carry usernames, fingerprints and message text to the local
//! owner; they must never be logged.

use serde::{Deserialize, Serialize};

pub mod group;

pub use group::{
    GroupEventView, GroupInviteView, GroupJoinedView, GroupLinkCreated, GroupLinkView,
    GroupMemberView, GroupMessageView, GroupRequest, GroupView, GroupsView,
};

/// Version of the control API (the `v` field of every client message).
pub const VERSION: u32 = 5;

/// Largest line either side accepts, in bytes (a 16 KiB text escaped as
/// JSON fits many times over; history replies are paged by `limit`).
pub const MAX_LINE: usize = 4 * 1024 * 1024;

/// Most history entries one reply returns.
pub const MAX_HISTORY: u32 = 1000;

/// One client line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientMessage {
    /// Must be [`VERSION`].
    pub v: u32,
    /// Chosen by the client; echoed in the reply.
    pub id: u64,
    /// What to do.
    pub cmd: Request,
}

/// A command. Usernames may carry a leading `@`.
///
/// Not `#[non_exhaustive]`: the daemon's handler matches every command, so a
/// new one cannot be forgotten there (all users are in this workspace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Node, Tor and onion-service state.
    Status,
    /// Register the own identity at a Handshaker (default: the configured one).
    Register {
        /// Onion address or `http://host:port`; `None` = configuration.
        handshaker: Option<String>,
        /// Accept a Handshaker signing key that differs from the pinned
        /// one (PROTOCOL.md §17.11).
        #[serde(default)]
        trust_new_key: bool,
    },
    /// Search the Handshaker directory by username prefix.
    Search {
        /// At least one character.
        prefix: String,
        /// Most results (default 20).
        limit: Option<u32>,
    },
    /// Look a username up at the Handshaker.
    Lookup {
        /// The user.
        username: String,
    },
    /// Send a connection request through the Handshaker mailbox.
    Request {
        /// The user.
        username: String,
        /// A short note shown to them (may be empty).
        note: String,
        /// Accept that their key differs from the one pinned for them.
        #[serde(default)]
        allow_key_change: bool,
        /// Replace an established session with this contact (a re-key);
        /// without it such a request is refused (`already_connected`).
        #[serde(default)]
        rekey: bool,
    },
    /// Received connection requests awaiting a decision.
    Requests,
    /// Accept the pending request from `username`.
    Accept {
        /// The requester.
        username: String,
        /// Accept although their key differs from the one pinned for them.
        #[serde(default)]
        allow_key_change: bool,
    },
    /// Cancel our unanswered request(s) to `username` (their secrets are
    /// erased; a late Accept fails).
    CancelRequest {
        /// The user we asked.
        username: String,
    },
    /// Reject the pending request from `username`.
    Reject {
        /// The requester.
        username: String,
        /// Send them a signed Reject through the Handshaker (default: stay
        /// silent, which reveals less).
        #[serde(default)]
        notify: bool,
    },
    /// Every contact with presence and unread count.
    Contacts,
    /// Queue a text message.
    Send {
        /// The contact.
        username: String,
        /// The text (at most 16 KiB of UTF-8).
        text: String,
    },
    /// Conversation history, oldest first.
    History {
        /// The contact.
        username: String,
        /// Most messages (default 100, at most [`MAX_HISTORY`]).
        limit: Option<u32>,
        /// Only messages containing this text.
        search: Option<String>,
    },
    /// Mark everything received from `username` as read (sends a receipt).
    MarkRead {
        /// The contact.
        username: String,
    },
    /// Mark a contact's fingerprint as verified out of band.
    Verify {
        /// The contact.
        username: String,
        /// If given, must equal the pinned fingerprint (spaces ignored).
        fingerprint: Option<String>,
    },
    /// End the session with `username`: keys erased on both sides.
    End {
        /// The contact.
        username: String,
    },
    /// Offer a file to a contact (it waits while they are offline).
    SendFile {
        /// The contact.
        username: String,
        /// Absolute path of the file, read by the daemon.
        path: String,
        /// `file` (default), `image`, `voice` or `video`.
        #[serde(default)]
        media: Option<String>,
    },
    /// File transfers, oldest first.
    Files {
        /// Only those with this contact.
        #[serde(default)]
        username: Option<String>,
    },
    /// Accept an incoming file offer.
    AcceptFile {
        /// Transfer id (hex, or a unique prefix of at least 4 digits).
        id: String,
    },
    /// Decline an incoming offer, or cancel any unfinished transfer.
    CancelFile {
        /// Transfer id (hex, or a unique prefix of at least 4 digits).
        id: String,
    },
    /// Decrypt a completed incoming file to `path` (a new file, or into an
    /// existing directory under its sanitised name).
    SaveFile {
        /// Transfer id (hex, or a unique prefix of at least 4 digits).
        id: String,
        /// Absolute destination path.
        path: String,
    },
    /// Start receiving events on this connection.
    Subscribe,
    /// A group command (PROTOCOL.md §20).
    Group(GroupRequest),
    /// Stop the daemon gracefully.
    Shutdown,
}

/// One daemon line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum ServerMessage {
    /// The answer to the client message with the same `id`.
    Reply {
        /// The client's id (0 if the line could not be parsed).
        id: u64,
        /// Exactly one of `ok` and `error` is present.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ok: Option<Reply>,
        /// The failure.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<ApiError>,
    },
    /// Something happened (only after [`Request::Subscribe`]).
    Event(Event),
}

/// Successful results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Reply {
    /// For commands without a result.
    Done,
    /// [`Request::Status`].
    Status(StatusView),
    /// [`Request::Register`].
    Registered(DirectoryView),
    /// [`Request::Search`].
    Directory(Vec<DirectoryView>),
    /// [`Request::Lookup`].
    Found(DirectoryView),
    /// [`Request::Request`], [`Request::Accept`], [`Request::Verify`].
    Contact(ContactView),
    /// [`Request::Requests`].
    Requests(Vec<RequestView>),
    /// [`Request::Contacts`].
    Contacts(Vec<ContactView>),
    /// [`Request::Send`]: the queued message.
    Message(MessageView),
    /// [`Request::History`].
    History(Vec<MessageView>),
    /// [`Request::SendFile`], [`Request::AcceptFile`], [`Request::CancelFile`],
    /// [`Request::SaveFile`].
    Transfer(TransferView),
    /// [`Request::Files`].
    Transfers(Vec<TransferView>),
    /// One group.
    Group(GroupView),
    /// Groups and invites.
    Groups(GroupsView),
    /// A group's members.
    GroupMembers(Vec<GroupMemberView>),
    /// A group message.
    GroupMessage(GroupMessageView),
    /// Group messages, oldest first.
    GroupHistory(Vec<GroupMessageView>),
    /// A new invite link (it holds the secret: show it to the user only).
    GroupLink(GroupLinkCreated),
    /// A group's invite links.
    GroupLinks(Vec<GroupLinkView>),
    /// A join by invite link was accepted by the owner.
    GroupJoined(GroupJoinedView),
}

/// A file transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferView {
    /// Transfer id, 32 hex digits.
    pub id: String,
    /// The contact's `@name`.
    pub username: String,
    /// `in` or `out`.
    pub direction: String,
    /// File name (sanitised; display only, never a path).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// `file`, `image`, `voice`, `video`.
    pub media: String,
    /// `offered`, `active`, `completed`, `cancelled`, `failed`.
    pub state: String,
    /// Bytes the receiver holds (verified chunks).
    pub done: u64,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    /// Why it was cancelled or failed.
    pub reason: Option<String>,
    /// Outgoing: the file sent. Incoming: where it was saved.
    pub path: Option<String>,
    /// Incoming and completed, still kept encrypted in the data dir.
    pub stored: bool,
    /// Outgoing: chunk frames sent so far (over all connections).
    pub chunks_sent: u64,
    /// Unix seconds.
    pub created_at: u64,
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiError {
    /// Machine-readable class.
    pub code: ErrorCode,
    /// One sentence for a person.
    pub message: String,
    /// What to do next, if there is something.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl ApiError {
    /// An error without a hint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// Classes of [`ApiError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The line is not a valid client message, or an argument is invalid.
    BadRequest,
    /// The client speaks another control API version.
    Version,
    /// No such user, contact or request.
    NotFound,
    /// There is no session with this contact.
    NoSession,
    /// The contact's key differs from the pinned one.
    KeyChanged,
    /// A session with this contact exists; a new request needs `rekey`.
    AlreadyConnected,
    /// No Handshaker is configured, or it refused the command.
    Handshaker,
    /// A network operation failed (it may work later).
    Network,
    /// The store failed.
    Store,
    /// The daemon is shutting down.
    ShuttingDown,
    /// A bug.
    Internal,
}

/// `status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusView {
    /// The daemon's version.
    pub version: String,
    /// Own `@name`.
    pub username: String,
    /// Own fingerprint (40 hex digits).
    pub fingerprint: String,
    /// The configured Handshaker, if any.
    pub handshaker: Option<String>,
    /// Tor and onion service.
    pub tor: TorView,
    /// Number of contacts.
    pub contacts: u64,
    /// Received requests awaiting a decision.
    pub pending_requests: u64,
    /// Unix seconds when the daemon started.
    pub started_at: u64,
}

/// Tor and onion-service state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TorView {
    /// `tor` (the Tor network), `test` (a custom Tor network), `direct` (TCP, tests).
    pub network: String,
    /// Bootstrap progress, 0–100.
    pub bootstrap_percent: u8,
    /// Whether Arti can build circuits.
    pub ready: bool,
    /// `starting`, `bootstrapping`, `running`, `degraded`, `broken` or `not_applicable`.
    pub onion_service: String,
    /// One line for a person.
    pub summary: String,
    /// Vanguards of onion-service circuits: `lite`, `full`, `disabled`, or
    /// empty when not on Tor (`direct`). Absent in older daemons' replies.
    #[serde(default)]
    pub vanguards: String,
}

/// A directory entry at the Handshaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryView {
    /// `@name`.
    pub username: String,
    /// 40 hex digits.
    pub fingerprint: String,
    /// Whether this fingerprint is already a contact of ours.
    pub is_contact: bool,
    /// Whether a contact with this name exists with a *different* fingerprint.
    pub key_differs: bool,
}

/// A contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactView {
    /// `@name`.
    pub username: String,
    /// Pinned fingerprint, 40 hex digits.
    pub fingerprint: String,
    /// Checked out of band (`verify`).
    pub verified: bool,
    /// `requested`, `incoming`, `accepted`, `rejected`, `blocked`.
    pub state: String,
    /// Whether a session (keys) exists.
    pub session: bool,
    /// A peer connection is up.
    pub online: bool,
    /// Unix seconds when last seen online.
    pub last_seen: Option<u64>,
    /// Received messages not yet marked read.
    pub unread: u64,
    /// Outgoing messages not yet delivered.
    pub queued: u64,
    /// What keeps failing with this contact's connection:
    /// `session_mismatch` (they do not hold our session: `end`, then
    /// request again) or `unreachable`; `None` when all is well.
    pub problem: Option<String>,
}

/// A received connection request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestView {
    /// The requester's `@name`.
    pub username: String,
    /// Their verified fingerprint.
    pub fingerprint: String,
    /// Their note.
    pub note: String,
    /// Unix seconds.
    pub received_at: u64,
    /// Their key differs from the one pinned for this name (accept needs
    /// `allow_key_change`).
    pub key_changed: bool,
    /// They are already a contact with a session: accepting replaces it
    /// (a re-key, PROTOCOL.md §12.2).
    pub rekey: bool,
}

/// A stored message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageView {
    /// Random message id, hex.
    pub id: String,
    /// `in` or `out`.
    pub direction: String,
    /// Per-direction sequence number (display order within a direction).
    pub seq: u64,
    /// Sender's clock, unix seconds.
    pub sent_at: u64,
    /// Receive time (incoming only).
    pub received_at: Option<u64>,
    /// The text.
    pub body: String,
    /// `queued`, `sent`, `delivered`, `read`, `received`, `failed`.
    pub state: String,
}

/// An event.
///
/// Not `#[non_exhaustive]`: the terminal UI matches every event, so a new one
/// cannot be forgotten there (all users are in this workspace).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A message arrived (stored and acknowledged).
    Message {
        /// The contact.
        username: String,
        /// The message.
        message: MessageView,
    },
    /// Our messages up to `upto` reached `state` (`delivered` or `read`).
    Delivery {
        /// The contact.
        username: String,
        /// Cumulative outgoing seq.
        upto: u64,
        /// The new state.
        state: String,
    },
    /// An outgoing message will never be delivered.
    MessageFailed {
        /// The contact.
        username: String,
        /// Message id, hex.
        id: String,
    },
    /// A contact went online or offline.
    Presence {
        /// The contact.
        username: String,
        /// Connected now.
        online: bool,
        /// Unix seconds (now, when going offline).
        last_seen: Option<u64>,
    },
    /// A connection request arrived.
    Request(RequestView),
    /// One of our requests was accepted or rejected.
    RequestAnswered {
        /// The contact.
        username: String,
        /// Accepted (a session exists) or rejected.
        accepted: bool,
    },
    /// A session ended; its keys are erased.
    SessionEnded {
        /// The contact.
        username: String,
        /// Ended by them.
        by_peer: bool,
    },
    /// A contact offered a file (`state` is `active` if it was accepted
    /// automatically, `offered` if it waits for a decision).
    FileOffered(TransferView),
    /// Progress of a transfer (rate-limited, a few per second).
    FileProgress {
        /// Transfer id, hex.
        id: String,
        /// The contact.
        username: String,
        /// Bytes the receiver holds.
        done: u64,
        /// File size.
        size: u64,
    },
    /// A transfer completed (verified by the receiver).
    FileCompleted(TransferView),
    /// A transfer was cancelled or failed.
    FileCancelled {
        /// Transfer id, hex.
        id: String,
        /// The contact.
        username: String,
        /// Why.
        reason: String,
        /// The other side cancelled it.
        by_peer: bool,
    },
    /// Tor or onion-service state changed.
    Tor(TorView),
    /// The connection fell behind and `missed` events were dropped: re-read
    /// state (contacts, history).
    Lagged {
        /// How many.
        missed: u64,
    },
    /// Something happened in a group.
    Group(GroupEventView),
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn client_message_shape() {
        let m = ClientMessage {
            v: VERSION,
            id: 7,
            cmd: Request::Send {
                username: "@bob".into(),
                text: "hi".into(),
            },
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(
            s,
            r#"{"v":5,"id":7,"cmd":{"send":{"username":"@bob","text":"hi"}}}"#
        );
        assert_eq!(serde_json::from_str::<ClientMessage>(&s).unwrap(), m);
        let unit: ClientMessage = serde_json::from_str(r#"{"v":5,"id":1,"cmd":"status"}"#).unwrap();
        assert_eq!(unit.cmd, Request::Status);
    }

    #[test]
    fn strict_decoding() {
        for bad in [
            r#"{"v":5,"id":1,"cmd":"status","x":1}"#,
            r#"{"v":5,"id":1,"cmd":"launch_missiles"}"#,
            r#"{"v":5,"id":1,"cmd":{"send":{"username":"b","text":"t","extra":1}}}"#,
            r#"{"v":5,"cmd":"status"}"#,
            r#"{"v":5,"id":-1,"cmd":"status"}"#,
            "",
            "[]",
        ] {
            assert!(serde_json::from_str::<ClientMessage>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn reply_and_event_shapes() {
        let r = ServerMessage::Reply {
            id: 3,
            ok: None,
            error: Some(ApiError::new(ErrorCode::NoSession, "no session").hint("send a request")),
        };
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(
            s,
            r#"{"reply":{"id":3,"error":{"code":"no_session","message":"no session","hint":"send a request"}}}"#
        );
        assert_eq!(serde_json::from_str::<ServerMessage>(&s).unwrap(), r);
        let e = ServerMessage::Event(Event::Lagged { missed: 2 });
        let s = serde_json::to_string(&e).unwrap();
        assert_eq!(s, r#"{"event":{"lagged":{"missed":2}}}"#);
        let done = ServerMessage::Reply {
            id: 1,
            ok: Some(Reply::Done),
            error: None,
        };
        assert_eq!(
            serde_json::to_string(&done).unwrap(),
            r#"{"reply":{"id":1,"ok":"done"}}"#
        );
    }
}
