//! File transfer building blocks (PROTOCOL.md §14): untrusted names made safe
//! ([`sanitize`]), the receiver's encrypted part file ([`PartFile`]), the sender's
//! [`Source`], and the receiver's policy ([`FilePolicy`]). The protocol engine that
//! moves chunks over a session lives in `node/files.rs`.

mod lane;
mod name;
mod part;

use std::path::PathBuf;

use crate::error::{ErrorKind, HasKind};

// ---------- public exports ----------
pub use lane::{LANE_HEADER_LEN, Lane, LaneError, lane_id};
pub use name::{sanitize, unused_in};
pub use part::{Layout, PartFile, SLOT_OVERHEAD, Source, new_part};

/// Chunk size this implementation sends (PROTOCOL.md §14.1).
pub const CHUNK_SIZE: u32 = crate::limits::MAX_CHUNK as u32;

/// Chunks a sender starts with in flight beyond the last acknowledgement, and
/// never goes below (PROTOCOL.md §14.1).
pub const FILE_WINDOW: u64 = 32;

/// The most chunks a sender may have in flight beyond the last acknowledgement
/// (PROTOCOL.md §14.1): with the Text window of 256 and a few control frames,
/// what a crash can lose stays under MAX_SKIP (1024).
pub const FILE_WINDOW_MAX: u64 = 512;

const _: () = assert!(FILE_WINDOW_MAX + 256 + 64 <= crate::limits::MAX_SKIP);

/// FileCancel reasons (PROTOCOL.md §14.1).
pub mod reason {
    /// Unspecified / cancelled by the user.
    pub const UNSPECIFIED: u8 = 0;
    /// The receiver declined.
    pub const DECLINED: u8 = 1;
    /// Too large for the receiver, or no space.
    pub const TOO_LARGE: u8 = 2;
    /// Protocol error (bad chunk, conflicting offer).
    pub const PROTOCOL: u8 = 3;
    /// The assembled file does not match the offered SHA-256.
    pub const HASH_MISMATCH: u8 = 4;
    /// The session is ending.
    pub const SESSION_ENDING: u8 = 5;
    /// Unknown transfer.
    pub const UNKNOWN: u8 = 6;
    /// The sender's file changed or became unreadable.
    pub const SOURCE_CHANGED: u8 = 7;

    /// A short English description of `r`.
    pub fn describe(r: u8) -> &'static str {
        match r {
            DECLINED => "declined by the receiver",
            TOO_LARGE => "too large for the receiver",
            PROTOCOL => "protocol error",
            HASH_MISMATCH => "the received file did not match its SHA-256",
            SESSION_ENDING => "the session ended",
            UNKNOWN => "the other side does not know this transfer",
            SOURCE_CHANGED => "the sender's file changed or became unreadable",
            _ => "cancelled",
        }
    }
}

/// What the receiver accepts (config `[files]`).
#[derive(Debug, Clone)]
pub struct FilePolicy {
    /// Offers above this size are refused at once (FileCancel 2). Default 4 GiB.
    pub max_size: u64,
    /// Offers from *verified* contacts up to this size are accepted without asking.
    /// 0 turns auto-accept off. Default 16 MiB.
    pub auto_accept_max: u64,
    /// Where completed files are saved automatically (decrypted); `None` keeps them
    /// encrypted in the data directory until `umbra save-file`. Default `None`.
    pub downloads_dir: Option<PathBuf>,
    /// Most incoming offers waiting for a decision per contact; more are declined.
    pub max_pending_offers: u64,
    /// Onion streams a sender uses per transfer: 1 = the session's own stream;
    /// N > 1 = N extra lane streams on separate circuits (PROTOCOL.md §14.3).
    /// Default [`DEFAULT_STREAMS`] (2).
    pub streams: usize,
    /// Transfers with less than this left to send (bytes) use the session's
    /// stream even when `streams > 1`: lanes cost circuits and pay off only on
    /// long transfers. Default [`DEFAULT_LANES_FROM`] (8 MiB).
    pub lanes_from: u64,
}

/// Default of [`FilePolicy::streams`]: two lanes, the number of legs Tor's own
/// conflux uses (docs/THREAT_MODEL.md §4.2 says why lanes are on by default).
pub const DEFAULT_STREAMS: usize = 2;

/// Default of [`FilePolicy::lanes_from`]: 8 MiB.
pub const DEFAULT_LANES_FROM: u64 = 8 << 20;

impl Default for FilePolicy {
    fn default() -> Self {
        FilePolicy {
            max_size: 4 << 30,
            auto_accept_max: 16 << 20,
            downloads_dir: None,
            max_pending_offers: 64,
            streams: DEFAULT_STREAMS,
            lanes_from: DEFAULT_LANES_FROM,
        }
    }
}

/// Errors of file handling.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// File-system failure.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A chunk index or length that does not fit the transfer.
    #[error("chunk does not fit the transfer (index or length)")]
    BadChunk,
    /// Stored data or key does not authenticate.
    #[error("{what} is corrupt")]
    Corrupt {
        /// What.
        what: &'static str,
    },
    /// The assembled file does not match the offered SHA-256.
    #[error("the file does not match its SHA-256")]
    HashMismatch,
    /// The destination exists already.
    #[error("the destination exists already (choose another name)")]
    Exists,
    /// The path is not a regular file.
    #[error("not a regular file")]
    NotAFile,
    /// The file being sent changed size or became unreadable.
    #[error("the file changed or became unreadable since it was offered")]
    SourceChanged,
}

impl FileError {
    pub(crate) fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> FileError {
        move |source| FileError::Io { what, source }
    }
}

impl HasKind for FileError {
    fn kind(&self) -> ErrorKind {
        match self {
            FileError::Io { .. } => ErrorKind::Io,
            FileError::BadChunk | FileError::HashMismatch => ErrorKind::Protocol,
            FileError::Corrupt { .. } => ErrorKind::Decryption,
            FileError::Exists | FileError::NotAFile | FileError::SourceChanged => {
                ErrorKind::InvalidInput
            }
        }
    }
}
