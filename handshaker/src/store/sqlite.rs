//! The SQLite [`Store`] (rusqlite; WAL journal; versioned migrations).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use umbra_proto::identity::{Fingerprint, Username};

use super::{
    Deposited, Store, StoreCounts, StoreError, StoreSnapshot, StoredItem, UserRecord, check_delete,
    check_replace, prefix_upper, to_i64, to_u64,
};

/// Schema migrations; `PRAGMA user_version` = number applied.
const MIGRATIONS: &[&str] = &[
    // 1: directory and mailbox.
    "CREATE TABLE users (
        username TEXT PRIMARY KEY NOT NULL,
        fingerprint TEXT NOT NULL UNIQUE,
        cert TEXT NOT NULL,
        registered_at INTEGER NOT NULL
     );
     CREATE TABLE mailbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        recipient TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
        message TEXT NOT NULL,
        deposited_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
     );
     CREATE INDEX mailbox_by_recipient ON mailbox(recipient, seq);
     CREATE INDEX mailbox_by_expiry ON mailbox(expires_at);",
    // 2 (issue #16): what was kept in memory, persisted: spent stamps, proofs
    // and challenges; the token key; deposits dropped at a full mailbox.
    "ALTER TABLE users ADD COLUMN dropped INTEGER NOT NULL DEFAULT 0;
     CREATE TABLE spent (
        digest BLOB PRIMARY KEY NOT NULL,
        expires_at INTEGER NOT NULL
     ) WITHOUT ROWID;
     CREATE INDEX spent_by_expiry ON spent(expires_at);
     CREATE TABLE secrets (
        name TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
     );",
];

/// A SQLite database file (or an in-memory database for tests).
pub struct SqliteStore {
    /// One connection: SQLite serialises writers anyway, and reads are
    /// sub-millisecond.
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn backend(action: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |e| StoreError::Backend {
        action,
        source: Box::new(e),
    }
}

fn row_to_user(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn decode_user(
    (name, fpr, cert, at): (String, String, String, i64),
) -> Result<UserRecord, StoreError> {
    let corrupt = |what: &'static str| StoreError::Backend {
        action: "decoding a stored user",
        source: what.into(),
    };
    Ok(UserRecord {
        username: Username::parse(&name).map_err(|_| corrupt("bad username"))?,
        fingerprint: Fingerprint::from_hex(&fpr).map_err(|_| corrupt("bad fingerprint"))?,
        cert,
        registered_at: to_u64(at),
    })
}

fn row_to_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredItem> {
    Ok(StoredItem {
        id: row.get(0)?,
        message: row.get(1)?,
        deposited_at: to_u64(row.get(2)?),
        expires_at: to_u64(row.get(3)?),
    })
}

const USER_COLS: &str = "username, fingerprint, cert, registered_at";

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, in WAL mode, and
    /// applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path).map_err(backend("opening the database"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(backend("enabling WAL"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(backend("setting synchronous"))?;
        Self::init(conn)
    }

    /// An in-memory database (tests).
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().map_err(backend("opening the database"))?;
        Self::init(conn)
    }

    fn init(mut conn: Connection) -> Result<Self, StoreError> {
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(backend("enabling foreign keys"))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(backend("setting the busy timeout"))?;
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    /// The schema version (number of applied migrations).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.lock()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(backend("reading the schema version"))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (transactions roll back on drop), so poisoning is ignored.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: u32 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(backend("reading the schema version"))?;
    let known = u32::try_from(MIGRATIONS.len()).unwrap_or(u32::MAX);
    if version > known {
        return Err(StoreError::Backend {
            action: "checking the schema version",
            source: "the database was written by a newer umbra-handshaker".into(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("starting a migration"))?;
        tx.execute_batch(sql)
            .map_err(backend("migrating the schema"))?;
        tx.pragma_update(None, "user_version", to_i64(i as u64 + 1))
            .map_err(backend("recording the schema version"))?;
        tx.commit().map_err(backend("committing a migration"))?;
    }
    Ok(())
}

fn is_unique_violation(e: &rusqlite::Error, column: &str) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, Some(msg))
        if f.code == rusqlite::ErrorCode::ConstraintViolation && msg.contains(column))
}

impl Store for SqliteStore {
    fn user_by_name(&self, name: &Username) -> Result<Option<UserRecord>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached(&format!(
                "SELECT {USER_COLS} FROM users WHERE username = ?1"
            ))
            .map_err(backend("looking up a user"))?;
        st.query_row(params![name.as_str()], row_to_user)
            .optional()
            .map_err(backend("looking up a user"))?
            .map(decode_user)
            .transpose()
    }

    fn user_by_fingerprint(&self, fpr: &Fingerprint) -> Result<Option<UserRecord>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached(&format!(
                "SELECT {USER_COLS} FROM users WHERE fingerprint = ?1"
            ))
            .map_err(backend("looking up a fingerprint"))?;
        st.query_row(params![fpr.to_hex()], row_to_user)
            .optional()
            .map_err(backend("looking up a fingerprint"))?
            .map(decode_user)
            .transpose()
    }

    fn search(&self, prefix: &str, limit: usize) -> Result<Vec<UserRecord>, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached(&format!(
                "SELECT {USER_COLS} FROM users WHERE username >= ?1 AND username < ?2
                 ORDER BY username LIMIT ?3"
            ))
            .map_err(backend("searching"))?;
        let upper = prefix_upper(prefix);
        let rows = st
            .query_map(params![prefix, upper, to_i64(limit as u64)], row_to_user)
            .map_err(backend("searching"))?;
        rows.map(|r| r.map_err(backend("searching")).and_then(decode_user))
            .collect()
    }

    fn put_user(
        &self,
        rec: &UserRecord,
        expected_current: Option<&Fingerprint>,
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("registering"))?;
        let current: Option<String> = tx
            .query_row(
                "SELECT fingerprint FROM users WHERE username = ?1",
                params![rec.username.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend("registering"))?;
        check_replace(current.as_deref(), expected_current)?;
        let res = tx.execute(
            "INSERT INTO users (username, fingerprint, cert, registered_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(username) DO UPDATE SET fingerprint = excluded.fingerprint,
                cert = excluded.cert, registered_at = excluded.registered_at",
            params![
                rec.username.as_str(),
                rec.fingerprint.to_hex(),
                rec.cert,
                to_i64(rec.registered_at)
            ],
        );
        match res {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e, "users.fingerprint") => {
                return Err(StoreError::FingerprintTaken);
            }
            Err(e) => return Err(backend("registering")(e)),
        }
        tx.commit().map_err(backend("registering"))
    }

    fn insert_users(&self, recs: &[UserRecord]) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("bulk inserting"))?;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO users (username, fingerprint, cert, registered_at)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(backend("bulk inserting"))?;
            for rec in recs {
                st.execute(params![
                    rec.username.as_str(),
                    rec.fingerprint.to_hex(),
                    rec.cert,
                    to_i64(rec.registered_at)
                ])
                .map_err(|e| {
                    if is_unique_violation(&e, "users.fingerprint") {
                        StoreError::FingerprintTaken
                    } else if is_unique_violation(&e, "users.username") {
                        StoreError::UsernameTaken
                    } else {
                        backend("bulk inserting")(e)
                    }
                })?;
            }
        }
        tx.commit().map_err(backend("bulk inserting"))
    }

    fn delete_user(&self, name: &Username, expected: &Fingerprint) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("deleting a user"))?;
        let current: Option<String> = tx
            .query_row(
                "SELECT fingerprint FROM users WHERE username = ?1",
                params![name.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend("deleting a user"))?;
        check_delete(current.as_deref(), expected)?;
        tx.execute(
            "DELETE FROM mailbox WHERE recipient = ?1",
            params![name.as_str()],
        )
        .map_err(backend("deleting a mailbox"))?;
        tx.execute(
            "DELETE FROM users WHERE username = ?1",
            params![name.as_str()],
        )
        .map_err(backend("deleting a user"))?;
        tx.commit().map_err(backend("deleting a user"))
    }

    fn deposit(
        &self,
        recipient: &Username,
        item: &StoredItem,
        capacity: usize,
    ) -> Result<Deposited, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("depositing"))?;
        let exists: bool = tx
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM users WHERE username = ?1)",
                params![recipient.as_str()],
                |r| r.get(0),
            )
            .map_err(backend("depositing"))?;
        if !exists {
            return Err(StoreError::NoSuchUser);
        }
        let count: i64 = tx
            .query_row(
                "SELECT COUNT(*) FROM mailbox WHERE recipient = ?1",
                params![recipient.as_str()],
                |r| r.get(0),
            )
            .map_err(backend("depositing"))?;
        if to_u64(count) >= capacity as u64 {
            tx.execute(
                "UPDATE users SET dropped = dropped + 1 WHERE username = ?1",
                params![recipient.as_str()],
            )
            .map_err(backend("depositing"))?;
            tx.commit().map_err(backend("depositing"))?;
            return Ok(Deposited::Dropped);
        }
        tx.execute(
            "INSERT INTO mailbox (id, recipient, message, deposited_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                item.id,
                recipient.as_str(),
                item.message,
                to_i64(item.deposited_at),
                to_i64(item.expires_at)
            ],
        )
        .map_err(backend("depositing"))?;
        tx.commit().map_err(backend("depositing"))?;
        Ok(Deposited::Stored)
    }

    fn take_dropped(&self, recipient: &Username) -> Result<u64, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("reading a mailbox"))?;
        let n: Option<i64> = tx
            .query_row(
                "SELECT dropped FROM users WHERE username = ?1",
                params![recipient.as_str()],
                |r| r.get(0),
            )
            .optional()
            .map_err(backend("reading a mailbox"))?;
        if n.unwrap_or(0) > 0 {
            tx.execute(
                "UPDATE users SET dropped = 0 WHERE username = ?1",
                params![recipient.as_str()],
            )
            .map_err(backend("reading a mailbox"))?;
        }
        tx.commit().map_err(backend("reading a mailbox"))?;
        Ok(to_u64(n.unwrap_or(0)))
    }

    fn spend(&self, digest: &[u8; 32], expires_at: u64, now: u64) -> Result<bool, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached(
                "INSERT INTO spent (digest, expires_at) VALUES (?1, ?2)
                 ON CONFLICT (digest) DO UPDATE SET expires_at = excluded.expires_at
                 WHERE spent.expires_at < ?3",
            )
            .map_err(backend("spending"))?;
        let n = st
            .execute(params![&digest[..], to_i64(expires_at), to_i64(now)])
            .map_err(backend("spending"))?;
        Ok(n == 1)
    }

    fn secret(&self, name: &str, fresh: &[u8; 32]) -> Result<[u8; 32], StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![name, &fresh[..]],
        )
        .map_err(backend("storing a secret"))?;
        let v: Vec<u8> = conn
            .query_row(
                "SELECT value FROM secrets WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .map_err(backend("reading a secret"))?;
        v.try_into().map_err(|_| StoreError::Backend {
            action: "reading a secret",
            source: "a stored secret is not 32 bytes".into(),
        })
    }

    fn pending(
        &self,
        recipient: &Username,
        now: u64,
        max: usize,
    ) -> Result<(Vec<StoredItem>, u64), StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare_cached(
                "SELECT id, message, deposited_at, expires_at FROM mailbox
                 WHERE recipient = ?1 AND expires_at >= ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(backend("reading a mailbox"))?;
        let items = st
            .query_map(
                params![recipient.as_str(), to_i64(now), to_i64(max as u64)],
                row_to_item,
            )
            .map_err(backend("reading a mailbox"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend("reading a mailbox"))?;
        let total: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM mailbox WHERE recipient = ?1 AND expires_at >= ?2",
                params![recipient.as_str(), to_i64(now)],
                |r| r.get(0),
            )
            .map_err(backend("reading a mailbox"))?;
        let more = to_u64(total).saturating_sub(items.len() as u64);
        Ok((items, more))
    }

    fn ack(&self, recipient: &Username, ids: &[String]) -> Result<u64, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(backend("acknowledging"))?;
        let mut deleted = 0u64;
        {
            let mut st = tx
                .prepare_cached("DELETE FROM mailbox WHERE recipient = ?1 AND id = ?2")
                .map_err(backend("acknowledging"))?;
            for id in ids {
                deleted += st
                    .execute(params![recipient.as_str(), id])
                    .map_err(backend("acknowledging"))? as u64;
            }
        }
        tx.commit().map_err(backend("acknowledging"))?;
        Ok(deleted)
    }

    fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        let conn = self.lock();
        conn.execute(
            "DELETE FROM spent WHERE expires_at < ?1",
            params![to_i64(now)],
        )
        .map_err(backend("purging"))?;
        let n = conn
            .execute(
                "DELETE FROM mailbox WHERE expires_at < ?1",
                params![to_i64(now)],
            )
            .map_err(backend("purging"))?;
        Ok(n as u64)
    }

    fn counts(&self) -> Result<StoreCounts, StoreError> {
        let conn = self.lock();
        let users: i64 = conn
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
            .map_err(backend("counting"))?;
        let items: i64 = conn
            .query_row("SELECT COUNT(*) FROM mailbox", [], |r| r.get(0))
            .map_err(backend("counting"))?;
        Ok(StoreCounts {
            users: to_u64(users),
            items: to_u64(items),
        })
    }

    fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        let conn = self.lock();
        let mut st = conn
            .prepare(&format!("SELECT {USER_COLS} FROM users ORDER BY username"))
            .map_err(backend("snapshotting"))?;
        let users = st
            .query_map([], row_to_user)
            .map_err(backend("snapshotting"))?
            .map(|r| r.map_err(backend("snapshotting")).and_then(decode_user))
            .collect::<Result<Vec<_>, _>>()?;
        let mut st = conn
            .prepare(
                "SELECT recipient, id, message, deposited_at, expires_at FROM mailbox
                 ORDER BY recipient, seq",
            )
            .map_err(backend("snapshotting"))?;
        let rows = st
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    StoredItem {
                        id: row.get(1)?,
                        message: row.get(2)?,
                        deposited_at: to_u64(row.get(3)?),
                        expires_at: to_u64(row.get(4)?),
                    },
                ))
            })
            .map_err(backend("snapshotting"))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(backend("snapshotting"))?;
        let items = rows
            .into_iter()
            .map(|(name, item)| {
                Username::parse(&name)
                    .map(|u| (u, item))
                    .map_err(|_| StoreError::Backend {
                        action: "snapshotting",
                        source: "bad username".into(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(StoreSnapshot { users, items })
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::store::conformance;

    fn file_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("h.sqlite")).unwrap();
        (dir, s)
    }

    #[test]
    fn users_in_memory() {
        conformance::users(&SqliteStore::open_in_memory().unwrap());
    }

    #[test]
    fn users_on_disk() {
        let (_d, s) = file_store();
        conformance::users(&s);
    }

    #[test]
    fn mailbox_in_memory() {
        conformance::mailbox(&SqliteStore::open_in_memory().unwrap());
    }

    #[test]
    fn mailbox_on_disk() {
        let (_d, s) = file_store();
        conformance::mailbox(&s);
    }

    #[test]
    fn spent_and_secrets_on_disk() {
        let (_d, s) = file_store();
        conformance::spent_and_secrets(&s);
    }

    #[test]
    fn migrations_are_versioned_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite");
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
        let mode: String = s
            .lock()
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap() as usize, MIGRATIONS.len());
        s.lock().pragma_update(None, "user_version", 99).unwrap();
        drop(s);
        assert!(SqliteStore::open(&path).is_err());
    }
}
