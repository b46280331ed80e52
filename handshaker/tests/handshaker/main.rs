//! Integration tests of the Handshaker: its HTTP API over TCP, and the
//! Handshaker as an onion service on a private Tor network.

mod api;
mod onion;
