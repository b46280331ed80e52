//! Handshaker.
