//! Integration tests that need no Tor network: the node over the in-memory
//! and direct-TCP transports (delivery, crashes, requests, files, hostile
//! peers, the connection registry), the encrypted store, the wire format
//! against PROTOCOL.md's vectors, and OpenPGP interoperability with GnuPG.
//!
//! One test binary for all of them: each binary links Arti, Sequoia and
//! SQLCipher, so fewer binaries build much faster (issue #13).

#[path = "../support/node.rs"]
mod support;

mod crash;
mod delivery;
mod dial;
mod files;
mod files_hostile;
mod gpg_interop;
mod group_links;
mod groups;
mod hostile;
mod presence;
mod registry;
mod rekey;
mod requests;
mod spec_conformance;
mod store;
