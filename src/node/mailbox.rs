//! Where connection requests travel: the Handshaker mailbox, behind a trait
//! so the node can run against the real HTTP client (issue: Handshaker
//! client) or an in-memory one in tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::error::{ErrorKind, HasKind};
use crate::handshaker_api::binding::{BindingKey, BindingSigner, SignedBinding};
use crate::identity::{PublicCert, Username};

/// Errors of a [`Mailbox`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The Handshaker could not be reached or refused the call; retry later.
    #[error("the Handshaker mailbox is unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
}

impl HasKind for MailboxError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Io
    }
}

/// One item fetched from our mailbox.
#[derive(Debug, Clone)]
pub struct MailItem {
    /// The mailbox's id for the item (for [`Mailbox::ack`]).
    pub id: u64,
    /// The armored envelope (a ConnectionRequest).
    pub envelope: String,
}

/// What one fetch of our mailbox returned.
#[derive(Debug, Clone, Default)]
pub struct MailBatch {
    /// The items waiting.
    pub items: Vec<MailItem>,
    /// The Handshaker's fresh binding of our name and key, hex (PROTOCOL.md
    /// §17.11), unchecked: the node verifies it against the pinned key.
    pub binding: Option<String>,
}

/// The Handshaker operations the node needs (PROTOCOL.md §17.8, §17.9):
/// our own mailbox, deposits, and the binding key. There is deliberately no
/// lookup: a received request carries everything needed to check it
/// (§5.6), so nothing the node asks the Handshaker depends on who wrote to
/// us (SECURITY-2026-11 H2).
pub trait Mailbox: Send + Sync {
    /// Deposits `envelope` into `to_username`'s mailbox.
    fn deposit<'a>(
        &'a self,
        to_username: &'a str,
        envelope: String,
    ) -> BoxFuture<'a, Result<(), MailboxError>>;
    /// Fetches the items waiting in `my_username`'s mailbox.
    fn fetch<'a>(&'a self, my_username: &'a str) -> BoxFuture<'a, Result<MailBatch, MailboxError>>;
    /// Deletes an item from `my_username`'s mailbox.
    fn ack<'a>(&'a self, my_username: &'a str, id: u64) -> BoxFuture<'a, Result<(), MailboxError>>;
    /// The canonical address of the Handshaker in use (what bindings name),
    /// if one is configured.
    fn address(&self) -> Option<String>;
    /// The key the Handshaker says it signs bindings with (`/v1/info`); the
    /// node pins it on first use and never takes it from here again.
    fn binding_key(&self) -> BoxFuture<'_, Result<Option<BindingKey>, MailboxError>>;
}

/// The address the in-memory Handshaker puts into its bindings.
pub const MEMORY_HANDSHAKER: &str = "http://memory.handshaker.test:1";

struct MemoryState {
    next_id: u64,
    boxes: HashMap<String, Vec<MailItem>>,
    /// Registered names and their keys.
    names: HashMap<String, PublicCert>,
    signer: BindingSigner,
}

impl Default for MemoryState {
    fn default() -> Self {
        MemoryState {
            next_id: 0,
            boxes: HashMap::new(),
            names: HashMap::new(),
            signer: BindingSigner::generate(),
        }
    }
}

/// An in-memory [`Mailbox`] and directory shared by the nodes of a test,
/// with its own binding key (address [`MEMORY_HANDSHAKER`]).
#[derive(Clone, Default)]
pub struct MemoryMailbox(Arc<Mutex<MemoryState>>);

impl std::fmt::Debug for MemoryMailbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryMailbox")
    }
}

impl MemoryMailbox {
    /// An empty mailbox service.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a certificate under its one `@name` (like the real
    /// Handshaker, a certificate without exactly one is refused: ignored).
    pub fn register(&self, cert: PublicCert) {
        if let Ok(name) = cert.username() {
            self.state().names.insert(name.as_str().to_owned(), cert);
        }
    }

    /// The key this Handshaker signs bindings with.
    pub fn binding_key(&self) -> BindingKey {
        self.state().signer.public()
    }

    /// A fresh binding of `username` to its registered key, as a fetch by
    /// that user returns it.
    pub fn binding_of(&self, username: &str) -> Option<SignedBinding> {
        let st = self.state();
        let cert = st.names.get(username)?;
        let name = Username::parse(username).ok()?;
        st.signer
            .issue(
                &name,
                &cert.fingerprint(),
                MEMORY_HANDSHAKER,
                crate::time::now_secs(),
            )
            .ok()
    }

    /// Number of items waiting for `username`.
    pub fn pending(&self, username: &str) -> usize {
        let st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        st.boxes.get(username).map_or(0, Vec::len)
    }

    /// The items waiting for `username` (tests: capture an envelope).
    pub fn items(&self, username: &str) -> Vec<MailItem> {
        let st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        st.boxes.get(username).cloned().unwrap_or_default()
    }

    /// Puts a raw envelope into `username`'s mailbox (tests: replays).
    pub fn inject(&self, username: &str, envelope: String) {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        st.next_id += 1;
        let id = st.next_id;
        st.boxes
            .entry(username.to_owned())
            .or_default()
            .push(MailItem { id, envelope });
    }
}

impl Mailbox for MemoryMailbox {
    fn deposit<'a>(
        &'a self,
        to_username: &'a str,
        envelope: String,
    ) -> BoxFuture<'a, Result<(), MailboxError>> {
        self.inject(to_username, envelope);
        Box::pin(async { Ok(()) })
    }

    fn fetch<'a>(&'a self, my_username: &'a str) -> BoxFuture<'a, Result<MailBatch, MailboxError>> {
        let binding = self
            .binding_of(my_username)
            .and_then(|b| b.encode().ok())
            .map(hex::encode);
        let items = self
            .state()
            .boxes
            .get(my_username)
            .cloned()
            .unwrap_or_default();
        Box::pin(async move { Ok(MailBatch { items, binding }) })
    }

    fn ack<'a>(&'a self, my_username: &'a str, id: u64) -> BoxFuture<'a, Result<(), MailboxError>> {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = st.boxes.get_mut(my_username) {
            b.retain(|i| i.id != id);
        }
        Box::pin(async { Ok(()) })
    }

    fn address(&self) -> Option<String> {
        Some(MEMORY_HANDSHAKER.to_owned())
    }

    fn binding_key(&self) -> BoxFuture<'_, Result<Option<BindingKey>, MailboxError>> {
        let key = self.binding_key();
        Box::pin(async move { Ok(Some(key)) })
    }
}
