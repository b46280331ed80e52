//! Umbra's local control API, client side (docs/CONTROL.md).
//!
//! * [`proto`]: the JSON-lines message types ([`proto::VERSION`]).
//! * [`client`]: a client, used by the CLI, the terminal UI, the desktop
//!   window and tests.
//!
//! The daemon side lives in the `umbra` crate (`umbra::control::server`),
//! which re-exports this crate as `umbra::control`. This crate links no Tor,
//! no OpenPGP and no store: a front end that depends only on it holds no keys.
//!
//! The socket lives at `<data_dir>/control.sock`, is created mode 0600 inside
//! the 0700 data directory, and the daemon additionally refuses peers whose
//! uid differs from its own.

pub mod client;
pub mod proto;

use std::path::{Path, PathBuf};

pub use client::{Client, ClientError};

/// File name of the control socket inside the data directory.
pub const SOCKET_NAME: &str = "control.sock";

/// The control socket of `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

