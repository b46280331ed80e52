//! Integration tests of the test network itself: a full network, its
//! safety nets, C tor clients, and OnionShare over it.

mod harness;
mod onionshare;

/// Held by every test that runs a Tor network, so they run one at a time.
/// Five networks (some 40 tor processes) forming consensuses at once on a
/// 2-core machine missed the 180 s readiness bound in one full-suite run
/// ("consensus lacks usable relays"); one at a time, each forms in seconds.
pub fn one_network_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A test that panicked while holding it leaves nothing to protect.
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
