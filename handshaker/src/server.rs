//! The connection-level server, after mini-redis's `server.rs`: a listener
//! with a connection cap, a broadcast shutdown, a drain that waits for
//! every connection handler, and one handler per connection serving HTTP
//! with hyper over any byte stream (TCP or an Arti onion-service stream).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, broadcast, mpsc};
use umbra_transport::{self as transport, BoxedStream, Listener};

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
        }
    }
}

/// The accept loop's state.
struct Server<L> {
    /// Where connections come from (TCP or the onion service).
    listener: L,
    /// The HTTP application.
    router: Router,
    /// Bounds concurrent connections: a permit is taken before accepting,
    /// so excess connections wait in the listener's backlog rather than
    /// consuming memory here.
    limit_connections: Arc<Semaphore>,
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
    /// Limits.
    limits: ConnLimits,
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
        limit_connections: Arc::new(Semaphore::new(limits.max_connections)),
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
            let permit = self
                .limit_connections
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| transport::Error::Closed)?;
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
            let handler = Handler {
                shutdown: self.notify_shutdown.subscribe(),
                _shutdown_complete: self.shutdown_complete_tx.clone(),
                limits: self.limits,
            };
            let router = self.router.clone();
            tokio::spawn(async move {
                handler.run(stream, router).await;
                drop(permit);
            });
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
            .max_concurrent_streams(32);
        let conn = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(router));
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
            }
        }
    }
}
