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
//!  cli                           argument parsing and commands (`umbra init`, ...)
//!  node / control                (planned: daemon, control socket)
//!        |
//!  handshake   wire              handshake payloads; peer framing + message set
//!        |       |
//!  envelope   session            OpenPGP sign+encrypt; key schedule, ratchet, AES-256-GCM
//!        |
//!  identity                      OpenPGP v4 certs, fingerprints, usernames
//! ```
//!
//! `redact` provides the [`redact::Sensitive`] wrapper used whenever an
//! identifier could reach a log line; `error` provides the crate-wide
//! [`ErrorKind`] every module error maps to.

// ---------- modules ----------
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod envelope;
pub mod error;
pub mod files;
pub mod handshake;
pub mod handshaker_client;
pub mod identity;
pub mod limits;
pub mod node;
pub mod redact;
pub mod session;
pub mod store;
pub mod time;
pub mod transport;
pub mod tui;
pub mod wire;

// ---------- public exports ----------
pub use error::{ErrorKind, HasKind};
