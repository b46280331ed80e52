//! Umbra client library.

pub mod config;
pub mod transport;
