//! Global token-bucket rate limits.
//!
//! The Handshaker cannot tell clients apart (it never learns an address),
//! so limits are global: they bound the work an attacker can cause, and
//! proof-of-work makes each write expensive for everyone.

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
}
