//! Umbra client library.

pub mod store;
