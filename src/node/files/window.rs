//! The sender's transfer window, sized from what the stream carries
//! (PROTOCOL.md §14.1): bandwidth × round trip, measured from the receiver's
//! acknowledgements, with headroom, between [`FILE_WINDOW`] and
//! [`FILE_WINDOW_MAX`]. Sans-IO: times are passed in.
//!
//! Each acknowledgement gives one sample: the round trip of the newest chunk it
//! covers (written at `sent_at`, acknowledged `now`), and the delivery rate over
//! that round trip (chunks confirmed since `sent_at`, divided by it). The
//! window is [`GAIN`] × the highest recent rate × the lowest round trip seen
//! on the connection. While the window is what limits the sender, the rate
//! it measures is the window per round trip, so the window doubles every
//! round trip; once the path is what limits it, the window settles at twice
//! the path's bandwidth-delay product, which keeps the pipe full through the
//! receiver's batching without queueing more than the path can carry.
//!
//! The ceiling is set by what a crash may lose: every chunk on the session's
//! stream advances the chain, and the frames a receiver may never have
//! recorded (this window, plus the Text window of 256, plus a few control
//! frames) must stay under MAX_SKIP (1024).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::files::{FILE_WINDOW, FILE_WINDOW_MAX};

/// Headroom over the measured bandwidth-delay product.
pub(super) const GAIN: f64 = 2.0;
/// How long a delivery-rate sample counts towards the maximum (at least;
/// longer on slow paths, see [`Window::hold`]).
const RATE_HOLD: Duration = Duration::from_secs(2);
/// Acknowledgement history kept to look up "confirmed at `sent_at`".
const HISTORY: usize = 512;

/// A sender's adaptive window (chunks in flight beyond the last acknowledgement).
#[derive(Debug)]
pub(crate) struct Window {
    size: u64,
    min_rtt: Option<Duration>,
    /// (when, chunks confirmed by then), oldest first; starts with (start, 0).
    history: VecDeque<(Instant, u64)>,
    /// Recent delivery rates (chunks per second), for the windowed maximum.
    rates: VecDeque<(Instant, f64)>,
}

impl Window {
    /// A window of [`FILE_WINDOW`] chunks for a transfer starting at `now`
    /// with `confirmed` chunks already confirmed (held by the receiver).
    pub(crate) fn new(now: Instant, confirmed: u64) -> Self {
        Window {
            size: FILE_WINDOW,
            min_rtt: None,
            history: VecDeque::from([(now, confirmed)]),
            rates: VecDeque::new(),
        }
    }

    /// Chunks that may be in flight now.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The lowest round trip measured so far.
    #[cfg(test)]
    pub(crate) fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// An acknowledgement at `now` brought the chunks confirmed to
    /// `confirmed`; the newest chunk it covers was written at `sent_at`.
    pub(crate) fn on_ack(&mut self, now: Instant, sent_at: Instant, confirmed: u64) {
        let rtt = now.saturating_duration_since(sent_at);
        let then = self.confirmed_at(sent_at);
        self.history.push_back((now, confirmed));
        while self.history.len() > HISTORY {
            self.history.pop_front();
        }
        if rtt.is_zero() {
            return;
        }
        let min_rtt = *self
            .min_rtt
            .insert(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
        let rate = confirmed.saturating_sub(then) as f64 / rtt.as_secs_f64();
        let hold = Self::hold(min_rtt);
        while self
            .rates
            .front()
            .is_some_and(|(t, _)| now.saturating_duration_since(*t) > hold)
        {
            self.rates.pop_front();
        }
        // Only the maximum matters: drop samples a newer, larger one outlives.
        while self.rates.back().is_some_and(|(_, r)| *r <= rate) {
            self.rates.pop_back();
        }
        self.rates.push_back((now, rate));
        let max_rate = self.rates.front().map_or(0.0, |(_, r)| *r);
        let target = (GAIN * max_rate * min_rtt.as_secs_f64()).ceil();
        // `as` saturates; the clamp keeps it in the protocol's bounds.
        self.size = (target as u64).clamp(FILE_WINDOW, FILE_WINDOW_MAX);
    }

    /// How long a rate sample counts: [`RATE_HOLD`], or ten round trips on a
    /// slower path.
    fn hold(min_rtt: Duration) -> Duration {
        RATE_HOLD.max(min_rtt.saturating_mul(10))
    }

    /// Chunks confirmed at `t` (the last acknowledgement at or before it).
    fn confirmed_at(&self, t: Instant) -> u64 {
        self.history
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .or(self.history.front())
            .map_or(0, |(_, c)| *c)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    /// A path of `rate` chunks per second with a round trip of `rtt` (no
    /// loss, one acknowledgement per chunk), driven by a sender that keeps
    /// the window full for `secs`. Returns the window at the end and the
    /// largest it ever was.
    fn simulate(rate: f64, rtt: Duration, secs: u64) -> (Window, u64) {
        let t0 = Instant::now();
        let mut w = Window::new(t0, 0);
        let per_chunk = Duration::from_secs_f64(1.0 / rate);
        // Chunks in flight: (sent at, acknowledged at).
        let mut inflight: VecDeque<(Instant, Instant)> = VecDeque::new();
        let mut link_free = t0;
        let mut now = t0;
        let mut confirmed = 0u64;
        let mut largest = w.size();
        let end = t0 + Duration::from_secs(secs);
        while now < end {
            while (inflight.len() as u64) < w.size() {
                // Serialised on the bottleneck, then half a round trip each way.
                let start = link_free.max(now);
                link_free = start + per_chunk;
                inflight.push_back((now, link_free + rtt));
            }
            let (sent, acked) = inflight.pop_front().unwrap_or((now, now));
            now = now.max(acked);
            confirmed += 1;
            w.on_ack(now, sent, confirmed);
            largest = largest.max(w.size());
        }
        (w, largest)
    }

    #[test]
    fn starts_at_the_protocol_window() {
        let w = Window::new(Instant::now(), 0);
        assert_eq!(w.size(), FILE_WINDOW);
        assert_eq!(w.min_rtt(), None);
    }

    #[test]
    fn a_window_limited_sender_grows_to_the_ceiling_on_a_fast_path() {
        // 10,000 chunks/s (625 MiB/s) over 200 ms: the BDP is far above the
        // ceiling, so the window ends there.
        let (w, largest) = simulate(10_000.0, Duration::from_millis(200), 5);
        assert_eq!(w.size(), FILE_WINDOW_MAX);
        assert_eq!(largest, FILE_WINDOW_MAX, "never above the ceiling");
    }

    #[test]
    fn a_path_limited_sender_settles_at_twice_the_bandwidth_delay_product() {
        // 100 chunks/s (6.25 MiB/s) over 400 ms: BDP 40 chunks → ~80.
        let (w, _) = simulate(100.0, Duration::from_millis(400), 20);
        let bdp = 100.0 * 0.4;
        let size = w.size() as f64;
        assert!(
            (GAIN * bdp * 0.9..=GAIN * bdp * 1.2).contains(&size),
            "window {size} for a BDP of {bdp}"
        );
    }

    #[test]
    fn a_slow_short_path_keeps_the_floor() {
        // 20 chunks/s over 50 ms: BDP 1 chunk; the window stays at 32.
        let (w, largest) = simulate(20.0, Duration::from_millis(50), 10);
        assert_eq!(w.size(), FILE_WINDOW);
        assert_eq!(largest, FILE_WINDOW);
    }

    #[test]
    fn chunks_held_before_the_start_are_not_a_rate() {
        // Resuming with 500 chunks held: the first acknowledgement confirms
        // 8 more in 100 ms, not 508.
        let t0 = Instant::now();
        let mut w = Window::new(t0, 500);
        w.on_ack(t0 + Duration::from_millis(100), t0, 508);
        assert_eq!(w.size(), FILE_WINDOW);
    }

    #[test]
    fn the_round_trip_is_the_lowest_seen() {
        let t0 = Instant::now();
        let mut w = Window::new(t0, 0);
        w.on_ack(t0 + Duration::from_millis(300), t0, 1);
        w.on_ack(
            t0 + Duration::from_millis(450),
            t0 + Duration::from_millis(250),
            2,
        );
        w.on_ack(
            t0 + Duration::from_millis(900),
            t0 + Duration::from_millis(100),
            3,
        );
        assert_eq!(w.min_rtt(), Some(Duration::from_millis(200)));
    }

    #[test]
    fn an_acknowledgement_sent_at_the_same_instant_changes_nothing() {
        let t0 = Instant::now();
        let mut w = Window::new(t0, 0);
        w.on_ack(t0, t0, 1_000_000);
        assert_eq!(w.size(), FILE_WINDOW);
        assert_eq!(w.min_rtt(), None);
    }

    #[test]
    fn a_burst_of_confirmations_cannot_lift_the_window_past_the_ceiling() {
        // A peer's FileAck confirms what we sent, never more (the engine checks
        // `next` against the file); even an absurd jump stays clamped.
        let t0 = Instant::now();
        let mut w = Window::new(t0, 0);
        w.on_ack(t0 + Duration::from_millis(100), t0, u64::MAX);
        assert_eq!(w.size(), FILE_WINDOW_MAX);
    }

    #[test]
    fn the_window_shrinks_when_the_path_slows_down() {
        let t0 = Instant::now();
        let mut w = Window::new(t0, 0);
        let rtt = Duration::from_millis(400);
        // 200 chunks/s for 3 s (acks every 10 ms), then 20 chunks/s.
        let mut confirmed = 0;
        let mut now = t0 + rtt;
        while now < t0 + Duration::from_secs(3) {
            confirmed += 2;
            now += Duration::from_millis(10);
            w.on_ack(now, now - rtt, confirmed);
        }
        let fast = w.size();
        assert!(fast >= 150, "fast path: window {fast}");
        while now < t0 + Duration::from_secs(12) {
            confirmed += 1;
            now += Duration::from_millis(50);
            w.on_ack(now, now - rtt, confirmed);
        }
        assert!(
            w.size() < fast / 4,
            "after the slow-down the window is {} (was {fast})",
            w.size()
        );
    }

    #[test]
    fn a_sample_older_than_the_history_uses_its_oldest_entry() {
        let t0 = Instant::now();
        let mut w = Window::new(t0, 0);
        for i in 1..=(HISTORY as u64 + 10) {
            w.on_ack(t0 + Duration::from_millis(i), t0, i);
        }
        assert_eq!(w.history.len(), HISTORY);
        // Sent before the oldest entry kept: the rate is not overestimated.
        assert!(w.confirmed_at(t0) >= 10);
    }
}
