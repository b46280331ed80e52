//! The crate-wide error classification.
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
}

/// Implemented by every error type of the crate.
pub trait HasKind {
    /// The coarse classification of this error.
    fn kind(&self) -> ErrorKind;
}
