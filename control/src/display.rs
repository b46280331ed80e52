//! Small presentation rules every front end shares (CLI, terminal UI,
//! desktop window), so they say the same thing the same way.

/// `1.5 MiB` style sizes (binary units).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Order of outgoing delivery states (`queued` < `sent` < `delivered` <
/// `read`), so that a late event never moves a message back.
pub fn delivery_rank(state: &str) -> u8 {
    match state {
        "sent" => 1,
        "delivered" => 2,
        "read" => 3,
        _ => 0,
    }
}

/// A person's words for the Tor state (never `not_applicable`).
pub fn tor_words(tor: &crate::proto::TorView) -> String {
    if tor.network == "direct" {
        return "direct connection (test network, not anonymous)".into();
    }
    if !tor.ready {
        return format!("joining the Tor network ({}%)", tor.bootstrap_percent);
    }
    match tor.onion_service.as_str() {
        "running" => "connected through Tor; reachable".into(),
        "starting" | "bootstrapping" => "connected through Tor; publishing your address".into(),
        "degraded" => "connected through Tor; reachable with trouble".into(),
        "broken" => "connected through Tor, but not reachable".into(),
        _ => "connected through Tor".into(),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn sizes_and_ranks() {
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(3 << 20), "3.0 MiB");
        assert!(delivery_rank("read") > delivery_rank("delivered"));
        assert!(delivery_rank("delivered") > delivery_rank("sent"));
        assert_eq!(delivery_rank("queued"), delivery_rank("unknown"));
    }
}
