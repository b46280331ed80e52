//! The store's error type.
//!
//! One enum for the whole `store` module tree. Each variant carries enough context to
//! tell the user what went wrong, and [`Error::recommendation`] says what to do about it.
//! Callers branch on [`Error::kind`], never on message text.

use std::path::PathBuf;

/// The crate's one error classification (store errors use its
/// `WrongPassphrase` … `Passphrase` kinds).
pub use crate::error::ErrorKind;

/// Everything that can go wrong in the encrypted store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The passphrase derived a key that does not decrypt the database.
    #[error("wrong passphrase for the store in {dir}")]
    WrongPassphrase {
        /// The data directory.
        dir: PathBuf,
    },
    /// The passphrase does not decrypt a backup file (or the file was altered).
    #[error("cannot decrypt backup {path}: wrong passphrase or modified file")]
    BackupWrongPassphrase {
        /// The backup file.
        path: PathBuf,
    },
    /// There is no (complete) store in this data directory.
    #[error("no Umbra store in {dir}")]
    NotInitialized {
        /// The data directory.
        dir: PathBuf,
    },
    /// A store already exists in this data directory.
    #[error("an Umbra store already exists in {dir}")]
    AlreadyInitialized {
        /// The data directory.
        dir: PathBuf,
    },
    /// A directory or file could be tampered with by other users.
    #[error("refusing to use {path}: {problem}")]
    UnsafePermissions {
        /// The offending path.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// An I/O operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The header file next to the database is malformed.
    #[error("invalid store header {path}: {reason}")]
    BadHeader {
        /// The header file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A backup file is malformed or of an unknown version.
    #[error("invalid backup file {path}: {reason}")]
    BadBackup {
        /// The backup file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Key derivation (Argon2id) failed, e.g. because of invalid parameters.
    #[error("key derivation failed: {reason}")]
    Kdf {
        /// What the KDF reported.
        reason: String,
    },
    /// Authenticated encryption failed while writing a backup.
    #[error("encryption failed while {action}")]
    Encryption {
        /// What we were doing.
        action: &'static str,
    },
    /// The database engine reported an error.
    #[error("database error while {action}")]
    Database {
        /// What we were doing.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer Umbra.
    #[error("the store has schema version {found}, newer than this Umbra supports ({supported})")]
    SchemaTooNew {
        /// Version found in the database.
        found: u32,
        /// Latest version this build knows.
        supported: u32,
    },
    /// A stored value could not be decoded.
    #[error("corrupt value in the store: {what}")]
    CorruptValue {
        /// Which value.
        what: String,
    },
    /// A record was not found.
    #[error("{what} not found")]
    NotFound {
        /// What was looked up.
        what: &'static str,
    },
    /// A record already exists.
    #[error("{what} already exists")]
    Conflict {
        /// What collided.
        what: &'static str,
    },
    /// An argument was invalid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// Which argument.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A session counter would go backwards (which could reuse a chain key).
    #[error("refusing to move the {direction} counter of a session backwards ({stored} -> {new})")]
    CounterRegression {
        /// `"send"` or `"receive"`.
        direction: &'static str,
        /// Counter currently stored.
        stored: u64,
        /// Counter that was offered.
        new: u64,
    },
    /// No passphrase could be obtained from any source.
    #[error("no passphrase available: {reason}")]
    NoPassphrase {
        /// Why.
        reason: String,
    },
    /// The passphrase was empty.
    #[error("the passphrase is empty")]
    EmptyPassphrase,
    /// The two entries of a new passphrase differ.
    #[error("the passphrases do not match")]
    PassphraseMismatch,
}

impl Error {
    /// The coarse kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::WrongPassphrase { .. } | Error::BackupWrongPassphrase { .. } => {
                ErrorKind::WrongPassphrase
            }
            Error::NotInitialized { .. } => ErrorKind::NotInitialized,
            Error::AlreadyInitialized { .. } | Error::Conflict { .. } => ErrorKind::AlreadyExists,
            Error::UnsafePermissions { .. } => ErrorKind::UnsafePermissions,
            Error::Io { .. } => ErrorKind::Io,
            Error::BadHeader { .. }
            | Error::BadBackup { .. }
            | Error::SchemaTooNew { .. }
            | Error::CorruptValue { .. } => ErrorKind::Corrupt,
            Error::Kdf { .. } | Error::Invalid { .. } => ErrorKind::InvalidInput,
            Error::Encryption { .. } => ErrorKind::InvariantViolation,
            Error::Database { .. } => ErrorKind::Database,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::CounterRegression { .. } => ErrorKind::InvariantViolation,
            Error::NoPassphrase { .. } | Error::EmptyPassphrase | Error::PassphraseMismatch => {
                ErrorKind::Passphrase
            }
        }
    }

    /// A line telling the user what to do about this error, when there is one.
    pub fn recommendation(&self) -> Option<&'static str> {
        Some(match self {
            Error::WrongPassphrase { .. } => {
                "check the passphrase (UMBRA_PASSPHRASE or --passphrase-file may hold an old one); nothing on disk was changed"
            }
            Error::BackupWrongPassphrase { .. } => {
                "use the passphrase chosen when the backup was exported"
            }
            Error::NotInitialized { .. } => {
                "run `umbra init --name NAME` (or pass the right --data-dir / UMBRA_HOME)"
            }
            Error::AlreadyInitialized { .. } => {
                "use the existing store, or choose another --data-dir"
            }
            Error::UnsafePermissions { .. } => {
                "make the directory owned by you and writable only by you (chmod 700)"
            }
            Error::SchemaTooNew { .. } => "upgrade Umbra to open this store",
            Error::NoPassphrase { .. } => {
                "set UMBRA_PASSPHRASE, pass --passphrase-file FILE, or run in a terminal"
            }
            Error::EmptyPassphrase => "choose a non-empty passphrase",
            Error::PassphraseMismatch => "type the same passphrase twice",
            _ => return None,
        })
    }
}

/// Shorthand for mapping a rusqlite error with context.
pub(crate) fn db(action: &'static str) -> impl FnOnce(rusqlite::Error) -> Error {
    move |source| Error::Database { action, source }
}

/// Shorthand for mapping an I/O error with context.
pub(crate) fn io(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io {
        action,
        path,
        source,
    }
}

impl crate::error::HasKind for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }
}
