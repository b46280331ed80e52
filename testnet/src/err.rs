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
    /// A download over the network failed.
    Transfer,
}

/// An error starting or running a [`crate::TestNet`], a [`crate::CTorClient`]
/// or an [`crate::OnionShare`].
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
    /// A program the harness needs is not installed.
    #[error("`{program}` is not installed (install it: apt-get install {package})")]
    NotInstalled {
        /// The program that was not found.
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A C tor client did not finish bootstrapping in time, or exited.
    #[error("C tor client {name} is not bootstrapped ({last}); end of its log:\n{log_tail}")]
    ClientNotReady {
        /// The client's name.
        name: String,
        /// Why it is not ready: the last bootstrap line, a timeout or an exit.
        last: String,
        /// The last lines of its log.
        log_tail: String,
    },
    /// A download over a C tor client failed.
    #[error("cannot fetch {url} ({attempts} attempt(s) in {waited:?}): {detail}")]
    Fetch {
        /// The URL.
        url: String,
        /// How many times curl was run.
        attempts: u32,
        /// How long we tried.
        waited: Duration,
        /// curl's exit status and error message of the last attempt.
        detail: String,
    },
    /// OnionShare did not publish a share.
    #[error("OnionShare did not start: {detail}; end of its output:\n{output_tail}")]
    OnionShare {
        /// What went wrong.
        detail: String,
        /// The last lines of its output.
        output_tail: String,
    },
}

impl Error {
    /// Whether a tor exited because one of its ports was taken between
    /// choosing it and binding it (a race worth one more attempt).
    pub fn is_port_conflict(&self) -> bool {
        match self {
            Error::NodeDied { log_tail, .. } | Error::ClientNotReady { log_tail, .. } => {
                crate::node::port_conflict(log_tail)
            }
            _ => false,
        }
    }

    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadOptions(_) => ErrorKind::BadOptions,
            Error::Spawn { .. }
            | Error::ToolFailed { .. }
            | Error::NotInstalled { .. }
            | Error::OnionShare { .. } => ErrorKind::Tool,
            Error::Io { .. } | Error::Ports(_) => ErrorKind::Io,
            Error::NodeDied { .. } | Error::NotReady { .. } | Error::ClientNotReady { .. } => {
                ErrorKind::NotReady
            }
            Error::Fetch { .. } => ErrorKind::Transfer,
        }
    }
}
