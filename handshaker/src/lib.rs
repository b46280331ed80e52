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
//!  store, store/sqlite, store/postgres
//!                     Store trait (directory, mailboxes, spent stamps,
//!                     proofs and challenges, token key) + SQLite and
//!                     PostgreSQL backends
//!  tokens             stateless fetch challenges and ack tokens (HMAC)
//! ```
//!
//! Wire types, statements, proof of work and the canonical address come from
//! `umbra_proto::handshaker_api`, identities from `umbra_proto::identity` and
//! the listeners from `umbra-transport`: the crates the client uses too. The
//! client crate `umbra` itself is only a dev-dependency (tests and benchmarks
//! drive the server with the real `HandshakerClient`).

// ---------- modules ----------
pub mod api;
pub mod binding_key;
pub mod config;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod listen;
pub mod ratelimit;
pub mod server;
pub mod store;
pub mod tokens;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use umbra_transport::Listener;

// ---------- public exports ----------
pub use api::{ApiError, AppState};
pub use config::{Config, ConfigError};
pub use server::ConnLimits;
pub use store::postgres::PgStore;
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

/// Purges expired items and spent digests periodically.
async fn maintenance(state: Arc<AppState>) {
    let period = Duration::from_secs(state.cfg.mailbox.purge_interval_secs);
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        let now = umbra_proto::time::now_secs();
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
