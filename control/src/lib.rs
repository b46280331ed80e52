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
pub mod display;
pub mod proto;
pub mod text;

use std::path::{Path, PathBuf};

pub use client::{Client, ClientError};

/// File name of the control socket inside the data directory.
pub const SOCKET_NAME: &str = "control.sock";

/// The control socket of `data_dir`.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_NAME)
}

/// Environment variable naming the data directory (like `--data-dir`).
pub const ENV_HOME: &str = "UMBRA_HOME";

/// The default data directory when none is given on the command line:
/// `UMBRA_HOME`, then `$XDG_DATA_HOME/umbra` (if absolute), then
/// `$HOME/.local/share/umbra`; `None` if none of them is set. `env` looks
/// a variable up (tests pass their own).
pub fn default_data_dir(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(p) = non_empty(ENV_HOME) {
        return Some(p);
    }
    if let Some(p) = non_empty("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        return Some(p.join("umbra"));
    }
    non_empty("HOME").map(|home| home.join(".local").join("share").join("umbra"))
}

/// Name of the encrypted store inside the data directory: a data directory
/// without it has no identity yet (`umbra init`).
pub const STORE_FILE: &str = "umbra.db";
