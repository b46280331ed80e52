//! Wall-clock helpers: Unix seconds, never panicking on odd clocks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch for `t` (0 for times before the epoch).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The current time in seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    unix_secs(SystemTime::now())
}

/// `HH:MM` of the UTC day for Unix seconds `secs` (message timestamps).
pub fn utc_hhmm(secs: u64) -> String {
    let s = secs % 86_400;
    format!("{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

/// The `SystemTime` for `secs` seconds after the Unix epoch.
pub fn from_unix_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}
