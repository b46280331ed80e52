//! Integration tests of the binaries as users run them: the `umbra` CLI
//! (exit codes, messages, trycmd snapshots in `tests/cmd/`), daemons talking
//! over onion services and direct TCP, files between daemons, and the
//! terminal UI in tmux and the desktop window under Xvfb.

#[path = "../support/daemon.rs"]
mod support;

mod cli;
mod desktop;
mod files;
mod flow;
mod group_onion;
mod groups;
mod hints;
mod requests;
mod tui;
