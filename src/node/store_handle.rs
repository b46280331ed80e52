//! A shareable handle to the [`Store`]: its SQLite connection is `!Sync`, so
//! every access runs on tokio's blocking pool under one mutex, in call order.

use std::sync::{Arc, Mutex};

use super::NodeError;
use crate::store::Store;

/// Shared access to the node's store.
#[derive(Clone)]
pub struct StoreHandle(Arc<Mutex<Store>>);

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreHandle")
    }
}

impl StoreHandle {
    /// Wraps `store`.
    pub fn new(store: Store) -> Self {
        StoreHandle(Arc::new(Mutex::new(store)))
    }

    /// Runs `f` with exclusive access to the store on the blocking pool.
    pub async fn run<R, F>(&self, f: F) -> Result<R, NodeError>
    where
        F: FnOnce(&mut Store) -> R + Send + 'static,
        R: Send + 'static,
    {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock poisons it; the store itself is
            // transactional, so its state is still consistent.
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|_| NodeError::Internal {
            what: "a store task panicked or was cancelled",
        })
    }
}
