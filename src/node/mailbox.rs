//! Where connection requests travel: the Handshaker mailbox, behind a trait
//! so the node can run against the real HTTP client (issue: Handshaker
//! client) or an in-memory one in tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::error::{ErrorKind, HasKind};
use crate::identity::{Fingerprint, PublicCert};

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

/// The Handshaker mailbox and directory operations the node needs
/// (PROTOCOL.md §17.8, §17.9).
pub trait Mailbox: Send + Sync {
    /// Deposits `envelope` into `to_username`'s mailbox.
    fn deposit<'a>(
        &'a self,
        to_username: &'a str,
        envelope: String,
    ) -> BoxFuture<'a, Result<(), MailboxError>>;
    /// Fetches the items waiting in `my_username`'s mailbox.
    fn fetch<'a>(
        &'a self,
        my_username: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MailItem>, MailboxError>>;
    /// Deletes an item from `my_username`'s mailbox.
    fn ack<'a>(&'a self, my_username: &'a str, id: u64) -> BoxFuture<'a, Result<(), MailboxError>>;
    /// The directory's certificate for `fingerprint` (to verify a request's signer).
    fn certificate<'a>(
        &'a self,
        fingerprint: &'a Fingerprint,
    ) -> BoxFuture<'a, Result<Option<PublicCert>, MailboxError>>;
}

#[derive(Default)]
struct MemoryState {
    next_id: u64,
    boxes: HashMap<String, Vec<MailItem>>,
    certs: HashMap<[u8; 20], PublicCert>,
}

/// An in-memory [`Mailbox`] and directory shared by the nodes of a test.
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

    /// Registers a certificate in the directory.
    pub fn register(&self, cert: PublicCert) {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        st.certs.insert(*cert.fingerprint().as_bytes(), cert);
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

    fn fetch<'a>(
        &'a self,
        my_username: &'a str,
    ) -> BoxFuture<'a, Result<Vec<MailItem>, MailboxError>> {
        let st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let items = st.boxes.get(my_username).cloned().unwrap_or_default();
        Box::pin(async move { Ok(items) })
    }

    fn ack<'a>(&'a self, my_username: &'a str, id: u64) -> BoxFuture<'a, Result<(), MailboxError>> {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = st.boxes.get_mut(my_username) {
            b.retain(|i| i.id != id);
        }
        Box::pin(async { Ok(()) })
    }

    fn certificate<'a>(
        &'a self,
        fingerprint: &'a Fingerprint,
    ) -> BoxFuture<'a, Result<Option<PublicCert>, MailboxError>> {
        let st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let c = st.certs.get(fingerprint.as_bytes()).cloned();
        Box::pin(async move { Ok(c) })
    }
}
