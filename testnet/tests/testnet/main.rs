//! Integration tests of the test network itself: a full network, its
//! safety nets, C tor clients, and OnionShare over it.

mod harness;
mod onionshare;
