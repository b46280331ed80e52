//! Umbra client library.
