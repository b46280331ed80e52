//! Integration tests of the binaries as users run them: the `umbra` CLI
//! (exit codes, messages, trycmd snapshots in `tests/cmd/`), daemons talking
//! over onion services and direct TCP, files between daemons, and the
//! terminal UI in tmux.

#[path = "../support/daemon.rs"]
mod support;

mod cli;
mod files;
mod flow;
mod hints;
mod requests;
mod tui;
