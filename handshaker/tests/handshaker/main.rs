//! Integration tests of the Handshaker: its HTTP API over TCP (on SQLite and
//! on PostgreSQL), its behaviour under attack, several front ends on one
//! directory, and the Handshaker as an onion service on a private Tor
//! network.

mod abuse;
mod api;
mod frontends;
mod man;
mod onion;
mod stores;
mod support;
