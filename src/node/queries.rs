//! What front ends read through the node (contacts, history, settings), and
//! the few records they change that are not messages: the control server
//! reaches the store only through these methods and the rest of the node's API.

use super::{NodeError, NodeHandle};
use crate::store::{Contact, ContactId, FileTransfer, Message, MessageId, Store};

/// A contact's conversation at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactSummary {
    /// Whether a session is established.
    pub session: bool,
    /// Received messages not marked read.
    pub unread: u64,
    /// Our messages not acknowledged yet.
    pub queued: u64,
}

impl NodeHandle {
    /// Runs a read (or a small write) on the store.
    async fn read<R, F>(&self, f: F) -> Result<R, NodeError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Store) -> Result<R, crate::store::Error> + Send + 'static,
    {
        Ok(self.inner.store.run(f).await??)
    }

    /// Every contact, by username.
    pub async fn contacts(&self) -> Result<Vec<Contact>, NodeError> {
        self.read(|s| s.contacts()).await
    }

    /// A contact by id.
    pub async fn contact(&self, id: ContactId) -> Result<Option<Contact>, NodeError> {
        self.read(move |s| s.contact(id)).await
    }

    /// A contact by (folded, `@`-less) username.
    pub async fn contact_by_username(&self, name: &str) -> Result<Option<Contact>, NodeError> {
        let name = name.to_owned();
        self.read(move |s| s.contact_by_username(&name)).await
    }

    /// A contact by fingerprint (hex).
    pub async fn contact_by_fingerprint(
        &self,
        fingerprint: &str,
    ) -> Result<Option<Contact>, NodeError> {
        let f = fingerprint.to_owned();
        self.read(move |s| s.contact_by_fingerprint(&f)).await
    }

    /// Session, unread and queued counts of a contact.
    pub async fn contact_summary(&self, id: ContactId) -> Result<ContactSummary, NodeError> {
        self.read(move |s| {
            Ok(ContactSummary {
                session: s.session_for_contact(id)?.is_some(),
                unread: s.unread_count(id)?,
                queued: s.outbox(id)?.len() as u64,
            })
        })
        .await
    }

    /// Marks a contact's key as verified by the user (out of band).
    pub async fn verify_contact(&self, id: ContactId) -> Result<(), NodeError> {
        self.read(move |s| s.set_contact_verified(id, true)).await
    }

    /// The newest `limit` messages with a contact, oldest first; with
    /// `search`, only those containing it.
    pub async fn history(
        &self,
        id: ContactId,
        limit: u32,
        search: Option<String>,
    ) -> Result<Vec<Message>, NodeError> {
        self.read(move |s| match search {
            Some(q) => s.search_messages(Some(id), &q, limit),
            None => s.history(id, limit),
        })
        .await
    }

    /// A stored message by its row id.
    pub async fn message(&self, id: MessageId) -> Result<Option<Message>, NodeError> {
        self.read(move |s| s.message(id)).await
    }

    /// A transfer by id.
    pub async fn transfer(&self, id: [u8; 16]) -> Result<Option<FileTransfer>, NodeError> {
        self.read(move |s| s.transfer(&id)).await
    }

    /// A stored setting.
    pub async fn setting(&self, key: &'static str) -> Result<Option<String>, NodeError> {
        self.read(move |s| s.setting(key)).await
    }

    /// Stores a setting.
    pub async fn set_setting(&self, key: &'static str, value: &str) -> Result<(), NodeError> {
        let v = value.to_owned();
        self.read(move |s| s.set_setting(key, &v)).await
    }
}
