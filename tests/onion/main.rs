//! Integration tests over real onion services: a private Tor network on
//! 127.0.0.1 (`umbra-testnet`), started once and shared by every test of
//! this binary. Covers the Arti transport, nodes talking over onion
//! services, Arti's state at rest, and a long soak (ignored by default).

#[path = "../support/node.rs"]
mod support;

mod at_rest;
mod node;
mod soak;
mod transport;
mod vanguards;
