//! The local control API: the daemon's Unix socket (docs/CONTROL.md).
//!
//! * [`proto`]: the JSON-lines message types ([`proto::VERSION`]).
//! * [`client`]: a client, used by the CLI, the terminal UI and tests.
//! * [`server`]: the daemon side (command handlers, event stream).
//!
//! [`proto`] and [`client`] live in the `umbra-control` crate (so that a
//! front end such as `umbra-desktop` can use them without linking Tor,
//! OpenPGP or the store) and are re-exported here unchanged.
//!
//! The socket lives at `<data_dir>/control.sock`, is created mode 0600 inside
//! the 0700 data directory, and the daemon additionally refuses peers whose
//! uid differs from its own.

pub mod server;

pub use umbra_control::{Client, ClientError, SOCKET_NAME, client, proto, socket_path};
