//! Errors of the node.

use crate::error::{ErrorKind, HasKind};
use crate::handshake::HandshakeError;
use crate::session::SessionError;

use super::mailbox::MailboxError;
use super::peer::PeerError;

/// Errors of the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The store refused an operation.
    #[error("store: {0}")]
    Store(#[from] crate::store::Error),
    /// A peer broke the protocol; the connection was closed.
    #[error("peer connection: {0}")]
    Peer(PeerError),
    /// A handshake message was refused.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A session could not be restored or used.
    #[error("session: {0}")]
    Session(#[from] SessionError),
    /// The stream failed (I/O, or a length prefix over MAX_FRAME).
    #[error("peer stream: {source}")]
    Stream {
        /// The codec or I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] crate::transport::Error),
    /// The Handshaker's binding key or our binding cannot be used.
    #[error(transparent)]
    Trust(#[from] super::trust::TrustError),
    /// The mailbox failed; the node retries on its next poll.
    #[error("mailbox: {0}")]
    Mailbox(#[from] MailboxError),
    /// A group rule refused the input (PROTOCOL.md §20).
    #[error("group: {0}")]
    Group(#[from] crate::group::GroupError),
    /// A file operation failed.
    #[error("file: {0}")]
    File(crate::files::FileError),
    /// A peer was silent for too long.
    #[error("timed out waiting for the peer's {what}")]
    Timeout {
        /// What did not arrive.
        what: &'static str,
    },
    /// There is no session with this contact: send a new request.
    #[error("no session with this contact; send a connection request first")]
    NoSession,
    /// Not found (contact, request).
    #[error("{what} not found")]
    NotFound {
        /// What.
        what: &'static str,
    },
    /// User input is invalid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What.
        what: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A session with this contact is established: a new request would
    /// replace it, which the caller must ask for explicitly (re-key).
    #[error("already connected to this contact; a new request would re-key the conversation")]
    AlreadyConnected,
    /// The contact's key differs from the one pinned for that name; the
    /// caller must pass an explicit override (after checking out of band).
    #[error("the key of this user differs from the one pinned for them")]
    KeyChanged,
    /// The owner of a group refused our invite link (PROTOCOL.md §20.7.3
    /// gives no finer reason: no oracle for link guessing).
    #[error(
        "the group's owner refused this invite link: it was revoked, used up or expired, \
         or you are already a member"
    )]
    JoinRefused,
    /// A peer could not be reached (dial failed or the exchange timed out).
    #[error("could not reach {what}: {reason}")]
    Unreachable {
        /// Whom.
        what: &'static str,
        /// Why, in words.
        reason: String,
    },
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// The peer keeps sending but does not read our answers; the connection
    /// was closed before our queue of unsent frames could grow further.
    #[error("the peer does not read what we send")]
    PeerNotReading,
    /// A bug.
    #[error("internal error: {what}; please report it")]
    Internal {
        /// What went wrong.
        what: &'static str,
    },
}

impl HasKind for NodeError {
    fn kind(&self) -> ErrorKind {
        match self {
            NodeError::Store(e) => e.kind(),
            NodeError::Peer(e) => e.kind(),
            NodeError::Handshake(e) => e.kind(),
            NodeError::Session(e) => e.kind(),
            NodeError::Transport(e) => e.kind(),
            NodeError::Mailbox(e) => e.kind(),
            NodeError::Trust(e) => e.kind(),
            NodeError::Stream { .. } => ErrorKind::Io,
            NodeError::Timeout { .. } | NodeError::Unreachable { .. } => ErrorKind::Unreachable,
            NodeError::JoinRefused => ErrorKind::InvalidInput,
            NodeError::File(e) => e.kind(),
            NodeError::Group(e) => e.kind(),
            NodeError::NotFound { .. } => ErrorKind::NotFound,
            NodeError::NoSession
            | NodeError::Invalid { .. }
            | NodeError::KeyChanged
            | NodeError::AlreadyConnected => ErrorKind::InvalidInput,
            NodeError::ShuttingDown => ErrorKind::Closed,
            NodeError::PeerNotReading => ErrorKind::Protocol,
            NodeError::Internal { .. } => ErrorKind::Internal,
        }
    }
}

impl From<PeerError> for NodeError {
    fn from(e: PeerError) -> Self {
        NodeError::Peer(e)
    }
}
