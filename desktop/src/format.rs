//! Words and numbers for people: dates (UTC, like the terminal UI), sizes,
//! fingerprints grouped for reading aloud, delivery states, and peer text
//! made safe to show.

use std::borrow::Cow;

pub use umbra_control::text::{neutralize, neutralize_multiline};

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The UTC day of `secs` (for day separators).
pub fn day(secs: u64) -> i64 {
    i64::try_from(secs / 86_400).unwrap_or(i64::MAX)
}

/// `2026-12-07` for a day number.
pub fn date(day: i64) -> String {
    let (y, m, d) = civil(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM` (UTC) of `secs`.
pub fn hhmm(secs: u64) -> String {
    let s = secs % 86_400;
    format!("{:02}:{:02}", s / 3600, (s % 3600) / 60)
}

/// The separator above the first item of a day: `Today`, `Yesterday` or the date.
pub fn day_label(day: i64, today: i64) -> String {
    match today - day {
        0 => "Today".into(),
        1 => "Yesterday".into(),
        _ => date(day),
    }
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub use umbra_control::display::human_size as size;

/// A 40-hex-digit fingerprint in groups of four (`ABCD 1234 …`), upper
/// case, for reading aloud; anything else is shown neutralised as given.
pub fn grouped(fingerprint: &str) -> String {
    let hex: String = fingerprint.chars().filter(|c| !c.is_whitespace()).collect();
    if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return neutralize(fingerprint).into_owned();
    }
    let up = hex.to_ascii_uppercase();
    let groups: Vec<&str> = (0..10).map(|i| &up[i * 4..i * 4 + 4]).collect();
    // Two lines of five groups, like the CLI.
    format!("{}  {}", groups[..5].join(" "), groups[5..].join(" "))
}

/// A person's word for a message state.
pub fn delivery(state: &str) -> &'static str {
    match state {
        "queued" => "queued",
        "sent" => "sent",
        "delivered" => "delivered",
        "read" => "read",
        "received" => "received",
        "failed" => "not delivered",
        _ => "unknown",
    }
}

/// A person's words for a transfer state.
pub fn transfer_state(direction: &str, state: &str, stored: bool, saved: bool) -> &'static str {
    match (direction, state) {
        ("in", "offered") => "offered to you",
        ("out", "offered") => "offered, waiting for them",
        (_, "active") => "transferring",
        ("in", "completed") if saved => "saved",
        ("in", "completed") if stored => "received, not saved yet",
        ("in", "completed") => "received",
        ("out", "completed") => "delivered",
        (_, "cancelled") => "cancelled",
        (_, "failed") => "failed",
        _ => "unknown",
    }
}

/// Peer text for one line (names, notes, file names).
pub fn line(s: &str) -> Cow<'_, str> {
    neutralize(s)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(day(1_796_601_600)), "2026-12-07");
        assert_eq!(date(day(951_782_400)), "2000-02-29");
        assert_eq!(hhmm(3600 * 13 + 60 * 5 + 7), "13:05");
        assert_eq!(day_label(10, 10), "Today");
        assert_eq!(day_label(9, 10), "Yesterday");
    }

    #[test]
    fn fingerprints_and_sizes() {
        let fp = "0123456789abcdef0123456789abcdef01234567";
        assert_eq!(
            grouped(fp),
            "0123 4567 89AB CDEF 0123  4567 89AB CDEF 0123 4567"
        );
        assert_eq!(grouped("evil\u{202e}"), "evil\u{FFFD}");
    }
}
