//! Outbound peer connections: one dial loop per contact with a session,
//! paced by [`Backoff`] (PROTOCOL.md §10: 5 s doubling to 300 s, ±20 %
//! jitter).
//!
//! Who can make us dial, and how often: only our own API (a queued message,
//! an accept, `end`) and the end of a contact's inbound connection wake a
//! dial loop early. A failed attempt — no stream, a refused Hello, a
//! connection that never became Ready or ended within `backoff_initial` —
//! always waits its backoff, so a peer that accepts and drops, an address
//! that cannot be dialled, or a session the peer no longer holds costs one
//! attempt per backoff step, not a busy loop.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::SinkExt;
use tokio::time::Instant;
use tokio_util::codec::Framed;

use crate::session::fill_random;
use crate::store::ContactId;
use crate::transport::PeerAddress;
use crate::wire::{self, Frame};

use super::conn::Outcome;
use super::inner::Inner;
use super::peer::Side;

/// After this many failed attempts in a row the contact counts as
/// unreachable: a warning is logged (once, without identifiers).
pub(super) const UNREACHABLE_AFTER: u32 = 5;

/// After this many connections in a row that the peer closed before its
/// Hello (it does not hold our session), the contact is shown as a
/// session mismatch (PROTOCOL.md §12.2).
pub(super) const MISMATCH_AFTER: u32 = 3;

/// Reconnect pacing of one dial loop (sans-IO: the caller sleeps).
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    failures: u32,
}

impl Backoff {
    pub(super) fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            next: initial,
            failures: 0,
        }
    }

    /// An attempt failed: how long to wait before the next one (before
    /// jitter). Doubles up to the maximum.
    pub(super) fn failed(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        self.failures = self.failures.saturating_add(1);
        d
    }

    /// A Ready connection ended after `lasted`. A connection that lasted at
    /// least the initial backoff was a real one: reconnect at once (`None`)
    /// with the backoff reset. A shorter one counts as a failure, so a peer
    /// that completes the Hello and hangs up cannot make us redial in a loop.
    pub(super) fn ended(&mut self, lasted: Duration) -> Option<Duration> {
        if lasted >= self.initial {
            self.next = self.initial;
            self.failures = 0;
            None
        } else {
            Some(self.failed())
        }
    }

    /// Failed attempts since the last real connection.
    pub(super) fn failures(&self) -> u32 {
        self.failures
    }
}

/// `d` ±20 %.
pub(super) fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    fill_random(&mut b);
    // Factor in [0.8, 1.2].
    let f = 0.8 + 0.4 * (f64::from(b[0]) / 255.0);
    d.mul_f64(f)
}

/// What one attempt of the dial loop came to.
enum Attempt {
    /// The session ended on this connection: stop dialing.
    Ended,
    /// Wait this long (or for a wake) before the next attempt.
    Wait(Duration),
    /// Dial again at once.
    Now,
}

/// Keeps a connection to `contact` while its session exists.
pub(super) async fn dial_loop(inner: Arc<Inner>, contact: ContactId) {
    let cfg = inner.config.clone();
    let mut backoff = Backoff::new(cfg.backoff_initial, cfg.backoff_max);
    let wake = inner.wake_for(contact);
    let mut warned = false;
    let mut refused = 0u32;
    loop {
        if inner.shutdown.is_cancelled() {
            break;
        }
        let info = inner
            .store
            .run(move |s| -> Result<_, crate::store::Error> {
                let has = s.session_for_contact(contact)?.is_some();
                let addr = s.contact(contact)?.and_then(|c| c.onion_address);
                Ok((has, addr))
            })
            .await;
        let addr = match info {
            Ok(Ok((true, Some(a)))) => PeerAddress::new(a),
            _ => break,
        };
        let Some(claim) = inner.try_dial(contact) else {
            // Another connection holds the session: wait until it ends.
            tokio::select! {
                _ = wake.notified() => continue,
                _ = inner.shutdown.cancelled() => break,
            }
        };
        let (outcome, reached) = attempt(&inner, contact, &addr, claim, &mut backoff).await;
        refused = match reached {
            Reached::Refused => refused.saturating_add(1),
            Reached::Ready => 0,
            Reached::Nothing => refused,
        };
        let trouble = if refused >= MISMATCH_AFTER {
            Some(Trouble::SessionMismatch)
        } else if reached == Reached::Ready {
            None
        } else if backoff.failures() >= UNREACHABLE_AFTER && reached == Reached::Nothing {
            Some(Trouble::Unreachable)
        } else {
            inner.trouble(contact)
        };
        inner.set_trouble(contact, trouble);
        let wait = match outcome {
            Attempt::Ended => break,
            Attempt::Now => continue,
            Attempt::Wait(d) => d,
        };
        if backoff.failures() >= UNREACHABLE_AFTER && !warned {
            warned = true;
            tracing::warn!(
                attempts = backoff.failures(),
                retry_in_secs = wait.as_secs(),
                "a contact keeps failing to connect (unreachable, or refusing our session); \
                 still retrying"
            );
        } else if backoff.failures() == 0 && warned {
            warned = false;
            tracing::info!("a contact that was failing to connect is reachable again");
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter(wait)) => {}
            _ = wake.notified() => {}
            _ = inner.shutdown.cancelled() => break,
        }
    }
    inner.table(|t| t.dialers.remove(&contact));
}

/// How far an attempt got with the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reached {
    /// No stream, or preempted: says nothing about the peer.
    Nothing,
    /// The stream opened, but the peer closed it before Ready: it does not
    /// hold the session we offered.
    Refused,
    /// The connection became Ready.
    Ready,
}

/// What is wrong with a contact's connection, for front ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Trouble {
    /// Several attempts in a row found nobody (offline, or the address is
    /// unusable).
    Unreachable,
    /// The peer keeps closing our connections before its Hello: it does
    /// not hold our session (it ended it, or the two sides disagree). The
    /// remedy is `end`, then a new request.
    SessionMismatch,
}

/// One dial: open the stream (cancelled if an inbound connection preempts
/// it), deliver a pending Accept, run the connection.
async fn attempt(
    inner: &Arc<Inner>,
    contact: ContactId,
    addr: &PeerAddress,
    claim: super::inner::Claim,
    backoff: &mut Backoff,
) -> (Attempt, Reached) {
    tracing::debug!(failures = backoff.failures(), "dialing a contact");
    let dialed = tokio::select! {
        r = inner.dial.dial(addr) => Some(r),
        _ = claim.cancel.cancelled() => None,
    };
    let stream = match dialed {
        None => {
            // Preempted by an inbound connection: it holds the session now.
            tracing::debug!("a dial was preempted by an inbound connection");
            inner.release(claim);
            return (Attempt::Now, Reached::Nothing);
        }
        Some(Err(e)) => {
            tracing::debug!(kind = ?e.kind(), "dialing a contact failed");
            inner.release(claim);
            return (Attempt::Wait(backoff.failed()), Reached::Nothing);
        }
        Some(Ok(stream)) => stream,
    };
    if !inner.stream_opened(&claim) {
        inner.release(claim);
        return (Attempt::Now, Reached::Nothing);
    }
    let mut framed = Framed::new(stream, wire::codec_with(inner.config.max_frame));
    if let Some((_, env)) = inner.table(|t| t.accepts.get(&contact).cloned()) {
        let sent = match Frame::envelope(env.as_bytes()) {
            Ok(f) => framed.send(Bytes::from(f)).await.is_ok(),
            Err(_) => false,
        };
        if !sent {
            inner.release(claim);
            return (Attempt::Wait(backoff.failed()), Reached::Refused);
        }
    }
    let started = Instant::now();
    match inner
        .run_conn(&mut framed, claim, Side::Connector, None)
        .await
    {
        Outcome::Ended => (Attempt::Ended, Reached::Ready),
        Outcome::Closed { was_ready: true }
        | Outcome::Failed {
            was_ready: true, ..
        } => {
            let next = match backoff.ended(started.elapsed()) {
                None => Attempt::Now,
                Some(d) => Attempt::Wait(d),
            };
            (next, Reached::Ready)
        }
        Outcome::Closed { was_ready: false } | Outcome::Failed { .. } => {
            (Attempt::Wait(backoff.failed()), Reached::Refused)
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn failures_double_up_to_the_maximum() {
        let mut b = Backoff::new(5 * S, 300 * S);
        let waits: Vec<u64> = (0..9).map(|_| b.failed().as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.failures(), 9);
    }

    #[test]
    fn a_real_connection_resets_and_reconnects_at_once() {
        let mut b = Backoff::new(5 * S, 300 * S);
        b.failed();
        b.failed();
        assert_eq!(b.ended(60 * S), None);
        assert_eq!(b.failures(), 0);
        assert_eq!(b.failed(), 5 * S, "back to the initial delay");
    }

    #[test]
    fn a_connection_that_ends_at_once_is_a_failure() {
        let mut b = Backoff::new(5 * S, 300 * S);
        assert_eq!(b.ended(Duration::from_millis(10)), Some(5 * S));
        assert_eq!(b.ended(Duration::from_millis(10)), Some(10 * S));
        assert_eq!(b.failures(), 2);
    }

    #[test]
    fn zero_or_inverted_settings_still_wait() {
        let mut b = Backoff::new(Duration::ZERO, Duration::ZERO);
        assert!(b.failed() > Duration::ZERO);
        let mut b = Backoff::new(10 * S, S);
        assert_eq!(b.failed(), 10 * S, "max below initial is raised to it");
        assert_eq!(b.failed(), 10 * S);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for _ in 0..1000 {
            let j = jitter(100 * S);
            assert!(j >= 80 * S && j <= 120 * S, "{j:?}");
        }
    }
}
