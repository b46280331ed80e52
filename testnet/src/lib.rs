//! Testnet.
