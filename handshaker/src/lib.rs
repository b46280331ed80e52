#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![deny(clippy::mod_module_files)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]

//! # Layout
//!
//! ```text
//!  main.rs            CLI: config, tracing, listeners (TCP / onion service)
//!  server             connection cap, timeouts, graceful drain (hyper)
//!  api, api/hkp       HTTP API v1 + HKP/VKS (axum), counters, rate limits
//!  store, store/sqlite  Store trait + SQLite backend
//!  ephemeral          challenges, ack tokens, spent PoW stamps (memory)
//! ```
//!
//! Wire types, statements and proof of work come from
//! `umbra::handshaker_client`, shared with the client.

// ---------- modules ----------
pub mod api;
pub mod config;
pub mod ephemeral;
pub mod listen;
pub mod ratelimit;
pub mod server;
pub mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use umbra::transport::Listener;

// ---------- public exports ----------
pub use api::{ApiError, AppState};
pub use config::{Config, ConfigError};
pub use server::ConnLimits;
pub use store::sqlite::SqliteStore;
pub use store::{Store, StoreError};

/// Serves the Handshaker on `listener` until `shutdown` completes: the API,
/// plus a background task purging expired mailbox items and logging
/// aggregate counters.
pub async fn serve<L: Listener>(listener: L, state: Arc<AppState>, shutdown: impl Future) {
    let limits = ConnLimits::from_config(&state.cfg);
    let router = api::router(state.clone());
    let maintenance = tokio::spawn(maintenance(state.clone()));
    server::run(listener, router, limits, shutdown).await;
    maintenance.abort();
    tracing::info!(counters = %state.counters.summary(), "stopped");
}

/// Purges expired items and prunes in-memory state periodically.
async fn maintenance(state: Arc<AppState>) {
    let period = Duration::from_secs(state.cfg.mailbox.purge_interval_secs);
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let now = umbra::time::now_secs();
        state.prune(now);
        let store = state.store.clone();
        match tokio::task::spawn_blocking(move || store.purge_expired(now)).await {
            Ok(Ok(n)) if n > 0 => tracing::info!(purged = n, "expired mailbox items purged"),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "purging expired items failed"),
            Err(_) => tracing::warn!("purge task failed"),
        }
        tracing::info!(counters = %state.counters.summary(), "traffic");
    }
}
