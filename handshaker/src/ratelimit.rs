//! Token-bucket rate limits: global, and per target username.
//!
//! The Handshaker cannot tell clients apart (it never learns an address),
//! so limits are global or per target: they bound the work an attacker can
//! cause, proof of work makes each write expensive, and the per-target
//! buckets (taken before the global one) keep a flood aimed at one mailbox
//! from using up the writes of everyone else (PROTOCOL.md §17.1). Buckets
//! live in each front end's memory: with N front ends the limits are N
//! times higher, which is the point of having N.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::time::Instant;

/// A token bucket refilled at `rate` tokens per second up to `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    /// Tokens per second.
    rate: f64,
    /// Bucket size.
    burst: f64,
    /// Current tokens and the time they were computed.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32) -> Self {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            state: Mutex::new((f64::from(burst), Instant::now())),
        }
    }

    /// Takes one token; `false` if the bucket is empty.
    pub fn try_acquire(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * self.rate).min(self.burst);
        s.1 = now;
        if s.0 >= 1.0 {
            s.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets per key (a target username), bounded in number.
///
/// A key's bucket is created full on first use. When `max_keys` buckets
/// exist, full ones are dropped (they carry no information); if all are in
/// use the new key is let through unlimited (the global limits and proof of
/// work still apply), so filling this map can never refuse honest traffic.
#[derive(Debug)]
pub struct KeyedBuckets {
    /// Tokens per second.
    rate: f64,
    /// Bucket size.
    burst: f64,
    /// Largest number of buckets kept.
    max_keys: usize,
    /// Tokens and the time they were computed, per key.
    state: Mutex<HashMap<String, (f64, Instant)>>,
}

impl KeyedBuckets {
    /// Buckets refilled at `per_minute` tokens a minute up to `burst`.
    pub fn new(per_minute: u32, burst: u32, max_keys: usize) -> Self {
        KeyedBuckets {
            rate: f64::from(per_minute) / 60.0,
            burst: f64::from(burst),
            max_keys,
            state: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token from `key`'s bucket; `false` if it is empty.
    pub fn try_acquire(&self, key: &str) -> bool {
        let mut m = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let refill = |(tokens, at): &(f64, Instant)| {
            (tokens + now.saturating_duration_since(*at).as_secs_f64() * self.rate).min(self.burst)
        };
        if !m.contains_key(key) && m.len() >= self.max_keys {
            m.retain(|_, b| refill(b) < self.burst);
            if m.len() >= self.max_keys {
                return true;
            }
        }
        let b = m.entry(key.to_owned()).or_insert((self.burst, now));
        let tokens = refill(b);
        if tokens >= 1.0 {
            *b = (tokens - 1.0, now);
            true
        } else {
            *b = (tokens, now);
            false
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refills_over_time() {
        let b = TokenBucket::new(2, 3);
        assert!(b.try_acquire() && b.try_acquire() && b.try_acquire());
        assert!(!b.try_acquire());
        tokio::time::advance(std::time::Duration::from_millis(500)).await;
        assert!(b.try_acquire());
        assert!(!b.try_acquire());
    }

    #[tokio::test(start_paused = true)]
    async fn keyed_buckets_are_independent_and_bounded() {
        let b = KeyedBuckets::new(60, 2, 2);
        assert!(b.try_acquire("a") && b.try_acquire("a"));
        assert!(!b.try_acquire("a"), "a's bucket is empty");
        assert!(b.try_acquire("b"), "b has its own bucket");
        // Two keys in use: a third is let through (never refused for space).
        assert!(b.try_acquire("c") && b.try_acquire("c") && b.try_acquire("c"));
        tokio::time::advance(std::time::Duration::from_secs(1)).await;
        assert!(b.try_acquire("a"));
        assert!(!b.try_acquire("a"));
    }
}
