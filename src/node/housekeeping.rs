//! Lifetimes of PROTOCOL.md §11, enforced when the node starts and then
//! every [`NodeConfig::housekeeping`](super::NodeConfig::housekeeping):
//!
//! - our pending requests whose window elapsed are erased with their
//!   ephemeral secrets (§11.1 Expired), so a late Accept fails;
//! - received requests past their window are deleted (§11.2 Expired);
//! - an Accept never confirmed by the requester's Hello within the
//!   request's window is dropped and its Accepting session ended (§11.3);
//! - replay records past their envelope's freshness window are pruned, on
//!   disk and in memory.

use std::sync::Arc;

use crate::error::HasKind;
use crate::limits::{ENVELOPE_MAX_AGE_SECS, MAX_FUTURE_SKEW_SECS};

use super::NodeError;
use super::inner::Inner;

/// What one sweep removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Swept {
    /// Our requests that expired unanswered (secrets erased).
    pub requests_sent: usize,
    /// Received requests nobody decided on in time.
    pub requests_received: usize,
    /// Accepts never confirmed (their sessions ended).
    pub accepts: usize,
    /// Replay records past their window (durable and in memory).
    pub replay_records: usize,
}

/// One sweep, at `now` (Unix seconds).
pub(super) async fn sweep(inner: &Arc<Inner>, now: u64) -> Result<Swept, NodeError> {
    let window = ENVELOPE_MAX_AGE_SECS + MAX_FUTURE_SKEW_SECS;
    let (mut swept, ended) = inner
        .store
        .run(move |s| -> Result<_, NodeError> {
            let mut swept = Swept {
                requests_sent: s.expire_pending_requests(now.saturating_sub(window))?,
                requests_received: s.expire_received_requests(now)?,
                replay_records: s.prune_seen_request_ids(now)?,
                ..Swept::default()
            };
            let mut ended = Vec::new();
            for contact in s.expired_pending_accepts(now)? {
                s.delete_pending_accept(contact)?;
                swept.accepts += 1;
                let e = s.end_session_with(contact)?;
                if e.existed {
                    ended.push((contact, e));
                }
            }
            Ok((swept, ended))
        })
        .await??;
    let pruned = inner.table(|t| {
        for (c, _) in &ended {
            t.accepts.remove(c);
        }
        let before = t.seen_requests.len();
        t.seen_requests.retain(|_, expires| *expires >= now);
        before - t.seen_requests.len()
    });
    swept.replay_records += pruned;
    for (contact, e) in ended {
        inner.report_ended(contact, e, false);
    }
    if swept != Swept::default() {
        tracing::info!(
            requests_sent = swept.requests_sent,
            requests_received = swept.requests_received,
            accepts = swept.accepts,
            "expired requests and unconfirmed accepts removed"
        );
    }
    Ok(swept)
}

/// Sweeps on the configured interval until shutdown (the first sweep runs
/// in `Node::start`, before anything is dialed).
pub(super) async fn housekeeping_loop(inner: Arc<Inner>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(inner.config.housekeeping) => {}
            _ = inner.shutdown.cancelled() => return,
        }
        if let Err(e) = sweep(&inner, crate::time::now_secs()).await {
            tracing::warn!(kind = ?e.kind(), "housekeeping failed; retrying later");
        }
    }
}
