//! Persistent state behind a small trait with two backends: SQLite (one
//! front end) and PostgreSQL (one or several front ends on one directory).
//!
//! The store holds directory entries (username → stripped public cert),
//! mailbox items, the digests of spent proof-of-work stamps, proofs and
//! fetch challenges (each until it could no longer be accepted anyway), and
//! the key of the stateless challenges and ack tokens ([`crate::tokens`]).
//! Nothing a front end must agree on with another lives in its memory.
//!
//! Every method is synchronous and may block; the API calls them from
//! blocking threads. Each method is atomic: it either applies completely
//! or leaves the store unchanged.

pub mod postgres;
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

/// What became of a deposit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deposited {
    /// Stored in the mailbox.
    Stored,
    /// The mailbox was full: not stored, and the mailbox's dropped counter
    /// was incremented (the owner learns it at the next fetch; the depositor
    /// never does: PROTOCOL.md §17.9).
    Dropped,
}

/// A `u64` for a signed 64-bit database column (saturating).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A `u64` from a signed 64-bit database column (negative → 0).
pub(crate) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The rule of [`Store::put_user`] for a name whose current key is
/// `current` (`None`: not registered), given the caller's `expected` one.
pub(crate) fn check_replace(
    current: Option<&str>,
    expected: Option<&Fingerprint>,
) -> Result<(), StoreError> {
    match (current, expected) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(StoreError::UsernameTaken),
        (None, Some(_)) => Err(StoreError::Conflict),
        (Some(cur), Some(exp)) if cur != exp.to_hex() => Err(StoreError::Conflict),
        (Some(_), Some(_)) => Ok(()),
    }
}

/// The rule of [`Store::delete_user`] for a name whose current key is
/// `current` (`None`: not registered).
pub(crate) fn check_delete(
    current: Option<&str>,
    expected: &Fingerprint,
) -> Result<(), StoreError> {
    match current {
        None => Err(StoreError::NoSuchUser),
        Some(cur) if cur != expected.to_hex() => Err(StoreError::Conflict),
        Some(_) => Ok(()),
    }
}

/// The exclusive upper bound of the usernames starting with `prefix`
/// (`a–z0–9_` only), for a range scan: `prefix <= name < upper`.
pub(crate) fn prefix_upper(prefix: &str) -> String {
    format!("{prefix}\u{7f}")
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
    /// Adds `item` to `recipient`'s mailbox, or, if it already holds
    /// `capacity` items, counts a dropped deposit instead.
    fn deposit(
        &self,
        recipient: &Username,
        item: &StoredItem,
        capacity: usize,
    ) -> Result<Deposited, StoreError>;
    /// The number of deposits dropped for `recipient` since the last call,
    /// and resets it (0 for an unknown user).
    fn take_dropped(&self, recipient: &Username) -> Result<u64, StoreError>;
    /// The oldest `max` unexpired items of `recipient` and how many more are pending.
    fn pending(
        &self,
        recipient: &Username,
        now: u64,
        max: usize,
    ) -> Result<(Vec<StoredItem>, u64), StoreError>;
    /// Deletes those of `ids` that belong to `recipient`; returns how many.
    fn ack(&self, recipient: &Username, ids: &[String]) -> Result<u64, StoreError>;
    /// Records `digest` (of a stamp, proof or challenge) as spent until
    /// `expires_at`, atomically: `false` if it is already spent and not
    /// expired at `now` (a concurrent twin, on any front end, loses).
    fn spend(&self, digest: &[u8; 32], expires_at: u64, now: u64) -> Result<bool, StoreError>;
    /// The 32-byte secret `name`: the stored one, or `fresh`, stored now,
    /// if there is none yet (the first front end to ask decides).
    fn secret(&self, name: &str, fresh: &[u8; 32]) -> Result<[u8; 32], StoreError>;
    /// Deletes items and spent digests whose expiry is before `now`;
    /// returns how many items.
    fn purge_expired(&self, now: u64) -> Result<u64, StoreError>;
    /// Sizes.
    fn counts(&self) -> Result<StoreCounts, StoreError>;
    /// Everything, canonically ordered.
    fn snapshot(&self) -> Result<StoreSnapshot, StoreError>;
}

/// A conformance suite every [`Store`] implementation must pass: used by
/// the SQLite unit tests and, on a real PostgreSQL server, by
/// `tests/handshaker/stores.rs`. Each function panics on a violation and
/// expects an empty store.
#[doc(hidden)]
pub mod conformance {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
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
    pub fn users<S: Store>(s: &S) {
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
    pub fn mailbox<S: Store>(s: &S) {
        let bob = user("bob", 1);
        let carol = user("carol", 2);
        s.insert_users(&[bob.clone(), carol.clone()]).unwrap();
        let ghost = Username::parse("ghost").unwrap();
        assert!(matches!(
            s.deposit(&ghost, &item("x", 1), 2),
            Err(StoreError::NoSuchUser)
        ));
        assert_eq!(
            s.deposit(&bob.username, &item("a", 10), 2).unwrap(),
            Deposited::Stored
        );
        s.deposit(&bob.username, &item("b", 20), 2).unwrap();
        let before = s.snapshot().unwrap();
        assert_eq!(
            s.deposit(&bob.username, &item("c", 30), 2).unwrap(),
            Deposited::Dropped
        );
        assert_eq!(s.snapshot().unwrap(), before);
        assert_eq!(s.take_dropped(&bob.username).unwrap(), 1);
        assert_eq!(s.take_dropped(&bob.username).unwrap(), 0);
        assert_eq!(s.take_dropped(&ghost).unwrap(), 0);

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

    /// Spent digests: single use until they expire, then purged; secrets:
    /// the first one stored stays.
    pub fn spent_and_secrets<S: Store>(s: &S) {
        let d = [1u8; 32];
        assert!(s.spend(&d, 100, 10).unwrap());
        assert!(!s.spend(&d, 200, 50).unwrap());
        assert!(s.spend(&[2; 32], 100, 10).unwrap());
        // Expired: usable again (its stamp or proof is refused as stale anyway).
        assert!(s.spend(&d, 300, 101).unwrap());
        assert!(!s.spend(&d, 300, 150).unwrap());
        s.purge_expired(250).unwrap();
        assert!(s.spend(&[2; 32], 400, 250).unwrap());
        assert!(!s.spend(&d, 300, 250).unwrap());

        let first = s.secret("k", &[7; 32]).unwrap();
        assert_eq!(first, [7; 32]);
        assert_eq!(s.secret("k", &[8; 32]).unwrap(), [7; 32]);
        assert_eq!(s.secret("other", &[9; 32]).unwrap(), [9; 32]);
    }
}
