//! Errors of the test network harness.

use std::path::PathBuf;
use std::time::Duration;

/// Coarse classification of an [`Error`], for callers that branch on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The options make no sense.
    BadOptions,
    /// `tor` or `tor-gencert` is missing or failed.
    Tool,
    /// A filesystem or socket operation failed.
    Io,
    /// The network did not become usable in time, or a tor died.
    NotReady,
}

/// An error starting or running a [`crate::TestNet`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The options make no sense.
    #[error("invalid test network options: {0}")]
    BadOptions(&'static str),
    /// A tool could not be run.
    #[error("cannot {action} (is Debian's `tor` package installed?)")]
    Spawn {
        /// What we tried to do.
        action: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("failed to {action}: {detail}")]
    ToolFailed {
        /// What we tried to do.
        action: &'static str,
        /// Exit status and the end of the tool's output.
        detail: String,
    },
    /// A filesystem operation failed.
    #[error("cannot {action} at {}", path.display())]
    Io {
        /// What we tried to do.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// No free port could be reserved.
    #[error("cannot reserve free ports on 127.0.0.1")]
    Ports(#[source] std::io::Error),
    /// A tor process exited while the network was starting.
    #[error("tor node {nickname} exited early ({status}); end of its log:\n{log_tail}")]
    NodeDied {
        /// The node's nickname.
        nickname: String,
        /// Its exit status.
        status: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// The consensus was not usable in time.
    #[error(
        "no usable consensus after {waited:?} ({last}); try a longer ready_timeout on a loaded \
         machine. End of the tor logs:\n{log_tail}"
    )]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// The last reason the consensus was not usable.
        last: String,
        /// The last lines of every node's log.
        log_tail: String,
    },
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadOptions(_) => ErrorKind::BadOptions,
            Error::Spawn { .. } | Error::ToolFailed { .. } => ErrorKind::Tool,
            Error::Io { .. } | Error::Ports(_) => ErrorKind::Io,
            Error::NodeDied { .. } | Error::NotReady { .. } => ErrorKind::NotReady,
        }
    }
}
