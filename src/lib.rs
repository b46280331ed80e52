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
//!  cli   tui                     commands (`umbra init`, `umbra send`, ...); the terminal UI
//!        |                       (both talk to the daemon over the control socket)
//!  daemon / control              `umbra up`; the control socket
//!        |
//!  node   files                  connections, dialing, mailbox, transfers
//!        |
//!  store   handshaker_client     SQLCipher store; HTTP client of a Handshaker
//!        |
//!  umbra-proto                   identity, envelope, handshake, session, wire, ...
//!  umbra-transport               Arti onion services, direct TCP, in-memory
//! ```
//!
//! The protocol pieces the Handshaker shares (`identity`, `envelope`,
//! `handshake`, `session`, `wire`, `limits`, `time`, `error`, and the
//! Handshaker API types under `handshaker_client`) live in the `umbra-proto`
//! crate, the transports in `umbra-transport`; both are re-exported here under
//! their old paths.
//!
//! `redact` provides the [`redact::Sensitive`] wrapper used whenever an
//! identifier could reach a log line; `terminal` neutralises text from
//! peers and Handshakers before it reaches a terminal; `error` provides the crate-wide
//! [`ErrorKind`] every module error maps to.

// ---------- modules ----------
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod demo;
pub mod files;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod handshaker_client;
pub mod node;
pub mod redact;
pub mod store;
pub mod terminal;
pub mod tui;

// ---------- public exports ----------
pub use error::{ErrorKind, HasKind};
pub use umbra_proto::{
    envelope, error, group, handshake, handshaker_api, identity, limits, session, time, wire,
};
pub use umbra_transport as transport;
