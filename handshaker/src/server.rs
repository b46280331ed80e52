//! The connection-level server, after mini-redis's `server.rs`: a listener
//! with a connection cap, a broadcast shutdown, a drain that waits for
//! every connection handler, and one handler per connection serving HTTP
//! with hyper over any byte stream (TCP or an Arti onion-service stream).
//!
//! The cap does not make newcomers wait: when every slot is taken, the
//! connection idle the longest (no request in progress: a slow client that
//! never finished its headers, or a keep-alive connection between
//! requests) is closed to make room, else one whose request has been in
//! progress for longer than the header timeout (a body trickling in); only
//! if every connection has a fresh request in progress is the newcomer
//! closed instead. A slow client therefore holds a slot only until
//! `max_connections` newer connections arrived, never for the whole header
//! or request timeout (issue #16).
//!
//! Each connection has its own request budget ([`ConnectionBudget`]): a
//! flood over some connections takes nothing from the others. HTTP/1.1
//! serves one request at a time per connection and HTTP/2 at most
//! [`H2_STREAMS`], so the work in progress is bounded by the connections.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::time::Instant;
use umbra_transport::{self as transport, BoxedStream, Listener};

use crate::api::ConnectionBudget;
use crate::ratelimit::TokenBucket;

/// Concurrent HTTP/2 streams per connection.
pub const H2_STREAMS: u32 = 4;

/// Connection-level limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// Time for a request's headers to arrive (and keep-alive idle limit).
    pub header_timeout: Duration,
    /// Time after which a connection is closed gracefully.
    pub lifetime: Duration,
    /// After a graceful close began, time before the connection is dropped.
    pub close_grace: Duration,
    /// On shutdown, time given to all connections to finish.
    pub drain_timeout: Duration,
    /// Requests per second on one connection.
    pub requests_per_sec: u32,
    /// Burst of requests on one connection.
    pub requests_burst: u32,
}

impl ConnLimits {
    /// Limits from the configuration.
    pub fn from_config(cfg: &crate::config::Config) -> Self {
        ConnLimits {
            max_connections: cfg.limits.max_connections,
            header_timeout: cfg.header_timeout(),
            lifetime: Duration::from_secs(cfg.limits.connection_lifetime_secs),
            close_grace: cfg.request_timeout(),
            drain_timeout: Duration::from_secs(cfg.limits.drain_timeout_secs),
            requests_per_sec: cfg.rate_limit.requests_per_connection_per_sec,
            requests_burst: cfg.rate_limit.requests_per_connection_burst,
        }
    }
}

/// The accept loop's state.
struct Server<L> {
    /// Where connections come from (TCP or the onion service).
    listener: L,
    /// The HTTP application.
    router: Router,
    /// The connections being served; bounds them by shedding (module doc).
    slots: Arc<Slots>,
    /// Dropped to tell every handler to close gracefully.
    notify_shutdown: broadcast::Sender<()>,
    /// Cloned into every handler; `recv()` on the other end returns once
    /// all clones are dropped, i.e. all connections are finished.
    shutdown_complete_tx: mpsc::Sender<()>,
    /// Limits.
    limits: ConnLimits,
}

/// One connection.
struct Handler {
    /// Shutdown signal (closed channel = shut down).
    shutdown: broadcast::Receiver<()>,
    /// Held until the connection is finished (drain accounting).
    _shutdown_complete: mpsc::Sender<()>,
    /// This connection's slot (freed on drop; tells us to close when shed).
    slot: SlotGuard,
    /// Limits.
    limits: ConnLimits,
}

/// The connections being served, for shedding.
struct Slots {
    /// Connections at most (not counting shed ones still closing).
    max: usize,
    /// A request in progress for longer than this (a body sent slowly) may
    /// be shed when all slots are taken: the header timeout.
    stale_after: Duration,
    /// Live connections by id.
    inner: Mutex<SlotsInner>,
}

#[derive(Default)]
struct SlotsInner {
    /// The next connection id.
    next: u64,
    /// Connections not shed.
    live: HashMap<u64, Arc<Slot>>,
}

/// One connection's state, as the shedder sees it.
struct Slot {
    /// Requests in progress, and since when there are none (idle) or
    /// some (busy).
    activity: Mutex<(usize, Instant)>,
    /// Notified when the connection is shed.
    shed: Notify,
}

/// Removes its connection from [`Slots`] on drop.
struct SlotGuard {
    /// The id in [`SlotsInner::live`].
    id: u64,
    /// The connection's state.
    slot: Arc<Slot>,
    /// Where it is registered.
    slots: Arc<Slots>,
}

impl Drop for SlotGuard {
    fn drop(&mut self) {
        let mut inner = self.slots.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.live.remove(&self.id);
    }
}

/// Marks a request in progress on its connection while alive.
struct Busy(Arc<Slot>);

impl Busy {
    fn new(slot: &Arc<Slot>) -> Busy {
        let mut a = slot.activity.lock().unwrap_or_else(|p| p.into_inner());
        if a.0 == 0 {
            a.1 = Instant::now();
        }
        a.0 += 1;
        Busy(slot.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut a = self.0.activity.lock().unwrap_or_else(|p| p.into_inner());
        a.0 = a.0.saturating_sub(1);
        if a.0 == 0 {
            a.1 = Instant::now();
        }
    }
}

impl Slots {
    /// Registers a new connection; when that makes one too many, sheds the
    /// connection idle the longest, else the one whose request has been in
    /// progress the longest if that is over [`Slots::stale_after`] (a body
    /// trickling in). `None` (close the newcomer) if every connection has a
    /// request in progress that started less than that ago.
    fn admit(self: &Arc<Self>) -> Option<SlotGuard> {
        let now = Instant::now();
        let slot = Arc::new(Slot {
            activity: Mutex::new((0, now)),
            shed: Notify::new(),
        });
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.live.len() >= self.max {
            let victim = inner
                .live
                .iter()
                .filter_map(|(id, s)| {
                    let (busy, since) = *s.activity.lock().unwrap_or_else(|p| p.into_inner());
                    // Idle ones first, longest idle first; then stale busy ones.
                    match busy {
                        0 => Some((0, since, *id)),
                        _ if now.saturating_duration_since(since) > self.stale_after => {
                            Some((1, since, *id))
                        }
                        _ => None,
                    }
                })
                .min()
                .map(|(_, _, id)| id);
            match victim.and_then(|id| inner.live.remove(&id)) {
                Some(s) => {
                    s.shed.notify_one();
                    tracing::debug!("all connection slots taken: closed an idle or stale one");
                }
                None => {
                    tracing::debug!("all connections busy: closing a new one");
                    return None;
                }
            }
        }
        let id = inner.next;
        inner.next += 1;
        inner.live.insert(id, slot.clone());
        Some(SlotGuard {
            id,
            slot,
            slots: self.clone(),
        })
    }
}

/// Serves `router` on connections from `listener` until `shutdown`
/// completes, then stops accepting, lets in-flight requests finish
/// (closing keep-alive connections) and returns when every connection is
/// done or the drain timeout passed.
pub async fn run<L: Listener>(
    listener: L,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future,
) {
    let (notify_shutdown, _) = broadcast::channel(1);
    let (shutdown_complete_tx, mut shutdown_complete_rx) = mpsc::channel::<()>(1);
    let mut server = Server {
        listener,
        router,
        slots: Arc::new(Slots {
            max: limits.max_connections,
            stale_after: limits.header_timeout,
            inner: Mutex::new(SlotsInner::default()),
        }),
        notify_shutdown,
        shutdown_complete_tx,
        limits,
    };
    tokio::select! {
        res = server.accept_loop() => {
            if let Err(e) = res {
                tracing::error!(error = %e, "stopped accepting connections");
            }
        }
        _ = shutdown => {
            tracing::info!("shutting down: finishing in-flight requests");
        }
    }
    let Server {
        listener,
        notify_shutdown,
        shutdown_complete_tx,
        ..
    } = server;
    drop(listener);
    drop(notify_shutdown);
    drop(shutdown_complete_tx);
    if tokio::time::timeout(limits.drain_timeout, shutdown_complete_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout: closing remaining connections");
    }
}

impl<L: Listener> Server<L> {
    async fn accept_loop(&mut self) -> Result<(), transport::Error> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let stream = match self.listener.accept().await {
                Ok(s) => {
                    backoff = Duration::from_millis(100);
                    s
                }
                Err(e) if e.kind() == transport::ErrorKind::Closed => return Err(e),
                Err(e) => {
                    // E.g. out of file descriptors: wait and retry.
                    tracing::warn!(error = %e, "accept failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            let Some(slot) = self.slots.admit() else {
                drop(stream);
                continue;
            };
            let handler = Handler {
                shutdown: self.notify_shutdown.subscribe(),
                _shutdown_complete: self.shutdown_complete_tx.clone(),
                slot,
                limits: self.limits,
            };
            let router = self.router.clone();
            tokio::spawn(handler.run(stream, router));
        }
    }
}

impl Handler {
    async fn run(mut self, stream: BoxedStream, router: Router) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_STREAMS);
        let slot = self.slot.slot.clone();
        let budget = ConnectionBudget(Arc::new(TokenBucket::new(
            self.limits.requests_per_sec,
            self.limits.requests_burst,
        )));
        let svc = tower::service_fn(
            move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                let busy = Busy::new(&slot);
                req.extensions_mut().insert(budget.clone());
                let router = router.clone();
                async move {
                    let resp = tower::ServiceExt::oneshot(router, req).await;
                    drop(busy);
                    resp
                }
            },
        );
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc));
        tokio::pin!(conn);
        let lifetime = tokio::time::sleep(self.limits.lifetime);
        tokio::pin!(lifetime);
        let mut hard_stop: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        loop {
            tokio::select! {
                res = conn.as_mut() => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                _ = self.shutdown.recv(), if hard_stop.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    hard_stop = Some(Box::pin(tokio::time::sleep(self.limits.close_grace)));
                }
                _ = &mut lifetime, if hard_stop.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    hard_stop = Some(Box::pin(tokio::time::sleep(self.limits.close_grace)));
                }
                _ = async { if let Some(s) = hard_stop.as_mut() { s.await } }, if hard_stop.is_some() => {
                    break;
                }
                // Shed to make room for a newer connection: close at once.
                _ = self.slot.slot.shed.notified() => {
                    break;
                }
            }
        }
    }
}
