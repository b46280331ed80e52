//! Node settings.

use std::time::Duration;

/// Node settings. Defaults are PROTOCOL.md §10/§13's values.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Presence heartbeat while Ready. Default 30 s.
    pub heartbeat: Duration,
    /// A connection with no valid frame for this long is dead. Default 90 s.
    pub dead_after: Duration,
    /// First frame / Hello timeout. Default 30 s.
    pub hello_timeout: Duration,
    /// Re-send unacknowledged Texts after this long. Default 60 s.
    pub ack_timeout: Duration,
    /// How long after our dialed connection became Ready a crossing
    /// connection from the peer still loses the tie-break; a later one
    /// replaces it (PROTOCOL.md §10). Default 30 s.
    pub crossing_window: Duration,
    /// First reconnect delay. Default 5 s.
    pub backoff_initial: Duration,
    /// Largest reconnect delay. Default 300 s.
    pub backoff_max: Duration,
    /// Most unacknowledged Texts in flight. Default 256 (well under MAX_SKIP).
    pub window: u64,
    /// Mean mailbox poll interval; each wait is drawn uniformly from half to
    /// twice this (default 60 s: 30 to 120 s), see PROTOCOL.md §12.1.
    pub mailbox_poll: Duration,
    /// Concurrent inbound connections (`limits.max_connections`). Default 64.
    pub max_inbound: usize,
    /// Largest frame accepted from a peer (`limits.max_frame_bytes`),
    /// within `wire::MIN_FRAME_LIMIT..=MAX_FRAME`. Default MAX_FRAME.
    pub max_frame: usize,
    /// Event bus capacity. Default 4096.
    pub event_capacity: usize,
    /// What this node accepts as a file receiver.
    pub files: crate::files::FilePolicy,
    /// Interval of the expiry sweep (PROTOCOL.md §11 lifetimes; it also runs
    /// at start). Default 1 h.
    pub housekeeping: Duration,
    /// Whether reading a contact's messages sends them a Receipt
    /// (`privacy.read_receipts`). Off, they only learn "delivered".
    /// Default true.
    pub read_receipts: bool,
    /// Limits on group join streams from strangers (PROTOCOL.md §20.13).
    pub joins: JoinLimits,
}

/// What inbound group join streams (PROTOCOL.md §20.7.3) may cost us: they
/// come from anyone who knows our address, so each is bounded in time, in
/// number and in rate. A refused stream costs one frame read and one
/// `Result { 1 }` frame; only a stream whose proof verifies gets OpenPGP
/// work (opening its ConnectionRequest).
#[derive(Debug, Clone)]
pub struct JoinLimits {
    /// Join streams served at once; another is refused at once. Default 4.
    pub concurrent: usize,
    /// Deadline of one whole exchange (Hello to Result). Default 60 s.
    pub deadline: Duration,
    /// Hellos accepted in a burst, all links together. Default 8.
    pub burst: u32,
    /// One more Hello per this interval, all links together. Default 4 s.
    pub refill: Duration,
    /// Hellos accepted in a burst for one link. Default 4.
    pub per_link_burst: u32,
    /// One more Hello per this interval for one link. Default 15 s.
    pub per_link_refill: Duration,
}

impl Default for JoinLimits {
    fn default() -> Self {
        JoinLimits {
            concurrent: 4,
            deadline: Duration::from_secs(60),
            burst: 8,
            refill: Duration::from_secs(4),
            per_link_burst: 4,
            per_link_refill: Duration::from_secs(15),
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            heartbeat: Duration::from_secs(30),
            dead_after: Duration::from_secs(90),
            hello_timeout: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(60),
            crossing_window: Duration::from_secs(30),
            backoff_initial: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            window: 256,
            mailbox_poll: Duration::from_secs(60),
            max_inbound: 64,
            max_frame: crate::limits::MAX_FRAME,
            event_capacity: 4096,
            files: crate::files::FilePolicy::default(),
            housekeeping: Duration::from_secs(3600),
            read_receipts: true,
            joins: JoinLimits::default(),
        }
    }
}
