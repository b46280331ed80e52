#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![deny(clippy::mod_module_files)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]

//! # Layout
//!
//! Lower layers know nothing of the upper ones:
//!
//! ```text
//!  handshaker_api                Handshaker HTTP API v1: bodies, statements, PoW, address
//!  group                         groups v1: signed membership log, messages, invites
//!        |
//!  handshake   wire              handshake payloads; peer framing + message set
//!        |       |
//!  envelope   session            OpenPGP sign+encrypt; key schedule, ratchet, AES-256-GCM
//!        |
//!  identity                      OpenPGP v4 certs, fingerprints, usernames
//! ```
//!
//! `limits` holds every protocol limit, `time` the Unix-seconds helpers, and
//! `error` the crate-wide [`ErrorKind`] every module error maps to (the
//! client's errors map to it too).

// ---------- modules ----------
pub mod envelope;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod group;
pub mod handshake;
pub mod handshaker_api;
pub mod identity;
pub mod limits;
pub mod session;
pub mod time;
pub mod wire;

// ---------- public exports ----------
pub use error::{ErrorKind, HasKind};
