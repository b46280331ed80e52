//! Umbra Desktop: a chat window on the Umbra daemon's control socket.
//!
//! The window is only a client of the control API (`umbra-control`), like
//! the CLI and the terminal UI: it holds no keys, runs no Tor and opens no
//! store. It starts the daemon (`umbra up`) when none runs, handing it the
//! passphrase over a pipe.
//!
//! * [`app`]: state, start-up flow, shortcuts, the eframe app.
//! * [`start`]: start-up screens (unlock, Tor progress, first run).
//! * [`chat`]: the main window and its dialogs.
//! * [`model`]: contacts, conversations, requests, transfers (pure data).
//! * [`backend`]: socket I/O on a thread of its own.
//! * [`daemon`]: running `umbra up` / `umbra init`.
//! * [`format`]: dates, sizes, fingerprints, safe peer text.
//! * [`images`]: inline image previews with decoding limits.
//! * [`notify`]: desktop notifications naming the sender only.

pub mod app;
pub mod backend;
pub mod chat;
pub mod daemon;
pub mod format;
pub mod images;
pub mod model;
pub mod notify;
pub mod start;

pub use app::{App, Options, Screen};
