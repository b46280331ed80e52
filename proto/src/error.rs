//! The crate-wide error classification: one [`ErrorKind`] for every error
//! type of the client, the store, the configuration and the transports.
//!
//! Every module has its own `thiserror` enum; each implements [`HasKind`] so
//! that the CLI and the daemon can branch on the *kind* of failure without
//! matching on strings.

/// A coarse classification of an error, stable across modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Input from the user or from a peer does not have the required form.
    InvalidInput,
    /// Input exceeds a documented size or count limit.
    TooLarge,
    /// A signature is missing, made by the wrong key, or does not verify.
    BadSignature,
    /// Decryption failed: wrong key, wrong recipient, or tampered ciphertext.
    Decryption,
    /// Something already seen was presented again.
    Replay,
    /// A timestamp is outside the accepted window.
    Stale,
    /// The peer violated the protocol (wrong state, wrong version, ...).
    Protocol,
    /// A local cryptographic operation failed unexpectedly.
    Crypto,
    /// An I/O error on a local file or stream.
    Io,
    /// A bug in Umbra: please report it.
    Internal,
    /// The passphrase does not unlock the store (or the backup file).
    WrongPassphrase,
    /// No usable passphrase could be obtained.
    Passphrase,
    /// No store exists where one was expected.
    NotInitialized,
    /// Something (a store, an identity, a record) already exists where a new
    /// one was to be created.
    AlreadyExists,
    /// A requested record does not exist, or nobody listens at an address.
    NotFound,
    /// A file or directory has permissions or ownership that let others tamper with it.
    UnsafePermissions,
    /// A file on disk (header, database, backup) is malformed or from an unknown version.
    Corrupt,
    /// The database engine reported an error.
    Database,
    /// A security invariant would have been violated (e.g. a counter going backwards).
    InvariantViolation,
    /// The configuration is invalid (unreadable, not this schema, a value out of range).
    Config,
    /// A peer address is malformed or belongs to another transport.
    BadAddress,
    /// Local files or directories of a transport are unusable (permissions, locks, I/O).
    LocalState,
    /// Could not join the Tor network.
    Bootstrap,
    /// The peer exists but could not be reached in time.
    Unreachable,
    /// A listener or transport was shut down.
    Closed,
}

/// Implemented by every error type of the crate.
pub trait HasKind {
    /// The coarse classification of this error.
    fn kind(&self) -> ErrorKind;
}
