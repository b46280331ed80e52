//! Persistent state behind a small trait, so that a PostgreSQL backend can
//! be added without touching the API layer.
//!
//! The store holds directory entries (username → stripped public cert) and
//! mailbox items. Short-lived state (fetch challenges, ack tokens, spent
//! proof-of-work stamps) lives in memory ([`crate::ephemeral`]).
//!
//! Every method is synchronous and may block; the API calls them from
//! blocking threads. Each method is atomic: it either applies completely
//! or leaves the store unchanged.

pub mod sqlite;

use umbra_proto::identity::{Fingerprint, Username};
use umbra_proto::{ErrorKind, HasKind};

/// Errors from a store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The username is registered to another key.
    #[error("username already registered")]
    UsernameTaken,
    /// The key is registered under another username.
    #[error("this key is already registered under another username")]
    FingerprintTaken,
    /// The registration changed concurrently (the expected current key is
    /// no longer the registered one).
    #[error("the registration changed concurrently; retry")]
    Conflict,
    /// No such user.
    #[error("no such user")]
    NoSuchUser,
    /// The recipient's mailbox holds its maximum number of items.
    #[error("mailbox full")]
    MailboxFull,
    /// The database failed while doing `action`.
    #[error("database error while {action}")]
    Backend {
        /// What we were doing.
        action: &'static str,
        /// Underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl HasKind for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::UsernameTaken
            | StoreError::FingerprintTaken
            | StoreError::Conflict
            | StoreError::NoSuchUser => ErrorKind::InvalidInput,
            StoreError::MailboxFull => ErrorKind::TooLarge,
            StoreError::Backend { .. } => ErrorKind::Io,
        }
    }
}

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// The folded username.
    pub username: Username,
    /// Fingerprint of `cert`.
    pub fingerprint: Fingerprint,
    /// The stripped, armored public certificate.
    pub cert: String,
    /// Unix time of the (last) registration.
    pub registered_at: u64,
}

/// A pending mailbox item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredItem {
    /// Random opaque id (32 hex digits).
    pub id: String,
    /// The armored OpenPGP message.
    pub message: String,
    /// Unix time of the deposit.
    pub deposited_at: u64,
    /// Unix time after which it is purged.
    pub expires_at: u64,
}

/// Sizes of the store, for health and aggregate metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreCounts {
    /// Registered users.
    pub users: u64,
    /// Pending mailbox items.
    pub items: u64,
}

/// The complete content of a store, in a canonical order (for tests,
/// backups and migrations between backends).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreSnapshot {
    /// Users by username.
    pub users: Vec<UserRecord>,
    /// `(recipient, item)` by recipient then deposit order.
    pub items: Vec<(Username, StoredItem)>,
}

/// The storage operations the API needs.
pub trait Store: Send + Sync + 'static {
    /// The entry for `name`.
    fn user_by_name(&self, name: &Username) -> Result<Option<UserRecord>, StoreError>;
    /// The entry whose key is `fingerprint`.
    fn user_by_fingerprint(&self, fpr: &Fingerprint) -> Result<Option<UserRecord>, StoreError>;
    /// Up to `limit` entries whose username starts with `prefix` (which
    /// contains only `a–z0–9_`), in username order.
    fn search(&self, prefix: &str, limit: usize) -> Result<Vec<UserRecord>, StoreError>;
    /// Inserts `rec` if `expected_current` is `None` and the name is free,
    /// or replaces the entry if its current fingerprint is
    /// `expected_current`.
    fn put_user(
        &self,
        rec: &UserRecord,
        expected_current: Option<&Fingerprint>,
    ) -> Result<(), StoreError>;
    /// Inserts many new entries in one transaction (bulk loading, benches).
    fn insert_users(&self, recs: &[UserRecord]) -> Result<(), StoreError>;
    /// Deletes `name` and its mailbox if its key is `expected`.
    fn delete_user(&self, name: &Username, expected: &Fingerprint) -> Result<(), StoreError>;
    /// Adds `item` to `recipient`'s mailbox unless it holds `capacity` items.
    fn deposit(
        &self,
        recipient: &Username,
        item: &StoredItem,
        capacity: usize,
    ) -> Result<(), StoreError>;
    /// The oldest `max` unexpired items of `recipient` and how many more are pending.
    fn pending(
        &self,
        recipient: &Username,
        now: u64,
        max: usize,
    ) -> Result<(Vec<StoredItem>, u64), StoreError>;
    /// Deletes those of `ids` that belong to `recipient`; returns how many.
    fn ack(&self, recipient: &Username, ids: &[String]) -> Result<u64, StoreError>;
    /// Deletes items whose expiry is before `now`; returns how many.
    fn purge_expired(&self, now: u64) -> Result<u64, StoreError>;
    /// Sizes.
    fn counts(&self) -> Result<StoreCounts, StoreError>;
    /// Everything, canonically ordered.
    fn snapshot(&self) -> Result<StoreSnapshot, StoreError>;
}

/// A conformance suite every [`Store`] implementation must pass (used by
/// the backends' tests).
#[cfg(test)]
pub(crate) mod conformance {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn user(name: &str, fpr_byte: u8) -> UserRecord {
        UserRecord {
            username: Username::parse(name).unwrap(),
            fingerprint: Fingerprint::from_bytes([fpr_byte; 20]),
            cert: format!("cert-of-{name}"),
            registered_at: 1000,
        }
    }

    fn item(id: &str, at: u64) -> StoredItem {
        StoredItem {
            id: id.into(),
            message: format!("msg-{id}"),
            deposited_at: at,
            expires_at: at + 100,
        }
    }

    /// Registration rules: first come first served, rotation only from
    /// the expected key, unique fingerprints, failed writes change nothing.
    pub(crate) fn users<S: Store>(s: &S) {
        let alice = user("alice", 1);
        s.put_user(&alice, None).unwrap();
        let before = s.snapshot().unwrap();
        assert!(matches!(
            s.put_user(&user("alice", 2), None),
            Err(StoreError::UsernameTaken)
        ));
        assert!(matches!(
            s.put_user(&user("bob", 1), None),
            Err(StoreError::FingerprintTaken)
        ));
        let wrong = Fingerprint::from_bytes([9; 20]);
        assert!(matches!(
            s.put_user(&user("alice", 2), Some(&wrong)),
            Err(StoreError::Conflict)
        ));
        assert!(matches!(
            s.delete_user(&alice.username, &wrong),
            Err(StoreError::Conflict)
        ));
        assert_eq!(s.snapshot().unwrap(), before);

        assert_eq!(
            s.user_by_name(&alice.username).unwrap(),
            Some(alice.clone())
        );
        assert_eq!(
            s.user_by_fingerprint(&alice.fingerprint).unwrap(),
            Some(alice.clone())
        );
        let rotated = user("alice", 3);
        s.put_user(&rotated, Some(&alice.fingerprint)).unwrap();
        assert_eq!(
            s.user_by_name(&alice.username).unwrap(),
            Some(rotated.clone())
        );
        assert_eq!(s.user_by_fingerprint(&alice.fingerprint).unwrap(), None);

        s.insert_users(&[user("alina", 4), user("albert", 5), user("bob", 6)])
            .unwrap();
        let names: Vec<String> = s
            .search("al", 10)
            .unwrap()
            .into_iter()
            .map(|u| u.username.as_str().to_string())
            .collect();
        assert_eq!(names, ["albert", "alice", "alina"]);
        assert_eq!(s.search("al", 2).unwrap().len(), 2);
        assert_eq!(s.search("", 10).unwrap().len(), 4);
        assert_eq!(s.counts().unwrap().users, 4);

        s.delete_user(&alice.username, &rotated.fingerprint)
            .unwrap();
        assert_eq!(s.user_by_name(&alice.username).unwrap(), None);
        assert!(matches!(
            s.delete_user(&alice.username, &rotated.fingerprint),
            Err(StoreError::NoSuchUser)
        ));
    }

    /// Mailbox: capacity, order, ack deletes exactly what is named and
    /// only for the owner, expiry.
    pub(crate) fn mailbox<S: Store>(s: &S) {
        let bob = user("bob", 1);
        let carol = user("carol", 2);
        s.insert_users(&[bob.clone(), carol.clone()]).unwrap();
        let ghost = Username::parse("ghost").unwrap();
        assert!(matches!(
            s.deposit(&ghost, &item("x", 1), 2),
            Err(StoreError::NoSuchUser)
        ));
        s.deposit(&bob.username, &item("a", 10), 2).unwrap();
        s.deposit(&bob.username, &item("b", 20), 2).unwrap();
        let before = s.snapshot().unwrap();
        assert!(matches!(
            s.deposit(&bob.username, &item("c", 30), 2),
            Err(StoreError::MailboxFull)
        ));
        assert_eq!(s.snapshot().unwrap(), before);

        let (items, more) = s.pending(&bob.username, 50, 1).unwrap();
        assert_eq!((items.len(), more), (1, 1));
        assert_eq!(items[0].id, "a");
        let (items, more) = s.pending(&bob.username, 50, 10).unwrap();
        assert_eq!((items.len(), more), (2, 0));

        // Carol cannot ack Bob's items; unknown ids are ignored.
        assert_eq!(s.ack(&carol.username, &["a".into()]).unwrap(), 0);
        assert_eq!(s.ack(&bob.username, &["a".into(), "zz".into()]).unwrap(), 1);
        assert_eq!(s.pending(&bob.username, 50, 10).unwrap().0.len(), 1);

        // Expired items are neither served nor kept.
        assert_eq!(s.pending(&bob.username, 200, 10).unwrap().0.len(), 0);
        assert_eq!(s.purge_expired(200).unwrap(), 1);
        assert_eq!(s.counts().unwrap().items, 0);

        // Deleting a user deletes the mailbox.
        s.deposit(&bob.username, &item("d", 10), 2).unwrap();
        s.delete_user(&bob.username, &bob.fingerprint).unwrap();
        assert_eq!(s.counts().unwrap().items, 0);
    }
}
