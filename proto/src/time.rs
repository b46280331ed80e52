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

/// `YYYY-MM-DD` of the UTC day for Unix seconds `secs`.
pub fn utc_date(secs: u64) -> String {
    let mut s = humantime::format_rfc3339_seconds(from_unix_secs(secs)).to_string();
    s.truncate(10);
    s
}

/// The `SystemTime` for `secs` seconds after the Unix epoch.
pub fn from_unix_secs(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn dates_and_clock_times_are_utc() {
        // 2025-12-06 18:13:37 UTC
        let t = 1_765_044_817;
        assert_eq!(utc_date(t), "2025-12-06");
        assert_eq!(utc_hhmm(t), "18:13");
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(951_782_400), "2000-02-29");
    }
}
