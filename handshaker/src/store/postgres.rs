//! The PostgreSQL [`Store`] (tokio-postgres with a deadpool connection
//! pool; versioned migrations), for a directory served by several front
//! ends (handshaker/README.md).
//!
//! The [`Store`] trait is synchronous (the API calls it on blocking
//! threads), so the store owns a small Tokio runtime that drives the
//! connections, and every method blocks on it: call them from a blocking
//! thread (`spawn_blocking`) or outside any runtime, never from async code
//! (Tokio panics: "Cannot start a runtime from within a runtime"). Everything the front ends
//! must agree on is here: users, mailboxes, spent stamps and proofs, and
//! the token key; nothing is kept per process except rate-limit buckets.

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use umbra_proto::identity::{Fingerprint, Username};

use super::{
    Deposited, Store, StoreCounts, StoreError, StoreSnapshot, StoredItem, UserRecord, check_delete,
    check_replace, prefix_upper, to_i64, to_u64,
};

/// Schema migrations; the row of `schema_version` = number applied.
const MIGRATIONS: &[&str] = &[
    // 1: directory, mailbox, spent stamps/proofs/challenges, server secrets.
    // Usernames sort bytewise (COLLATE "C") whatever the database locale, so
    // that prefix search is a range scan of the primary key.
    "CREATE TABLE users (
        username TEXT COLLATE \"C\" PRIMARY KEY,
        fingerprint TEXT NOT NULL UNIQUE,
        cert TEXT NOT NULL,
        registered_at BIGINT NOT NULL,
        dropped BIGINT NOT NULL DEFAULT 0
     );
     CREATE TABLE mailbox (
        seq BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        recipient TEXT COLLATE \"C\" NOT NULL REFERENCES users(username) ON DELETE CASCADE,
        message TEXT NOT NULL,
        deposited_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
     );
     CREATE INDEX mailbox_by_recipient ON mailbox(recipient, seq);
     CREATE INDEX mailbox_by_expiry ON mailbox(expires_at);
     CREATE TABLE spent (
        digest BYTEA PRIMARY KEY,
        expires_at BIGINT NOT NULL
     );
     CREATE INDEX spent_by_expiry ON spent(expires_at);
     CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value BYTEA NOT NULL
     );",
];

/// Connections kept open per front end.
const POOL_SIZE: usize = 16;

/// A PostgreSQL database shared by one or more front ends.
pub struct PgStore {
    /// Pooled connections.
    pool: Pool,
    /// Drives the connections; `None` only while dropping.
    rt: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PgStore")
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn backend(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Backend {
        action,
        source: Box::new(e),
    }
}

fn pool_err(action: &'static str) -> impl FnOnce(deadpool_postgres::PoolError) -> StoreError {
    move |e| StoreError::Backend {
        action,
        source: Box::new(e),
    }
}

fn unique_violation(e: &tokio_postgres::Error) -> Option<&str> {
    let db = e.as_db_error()?;
    (db.code() == &SqlState::UNIQUE_VIOLATION).then(|| db.constraint().unwrap_or(""))
}

fn decode_user(row: &tokio_postgres::Row) -> Result<UserRecord, StoreError> {
    let corrupt = |what: &'static str| StoreError::Backend {
        action: "decoding a stored user",
        source: what.into(),
    };
    let get = |e: tokio_postgres::Error| StoreError::Backend {
        action: "decoding a stored user",
        source: Box::new(e),
    };
    let name: &str = row.try_get(0).map_err(get)?;
    let fpr: &str = row.try_get(1).map_err(get)?;
    Ok(UserRecord {
        username: Username::parse(name).map_err(|_| corrupt("bad username"))?,
        fingerprint: Fingerprint::from_hex(fpr).map_err(|_| corrupt("bad fingerprint"))?,
        cert: row.try_get(2).map_err(get)?,
        registered_at: to_u64(row.try_get(3).map_err(get)?),
    })
}

fn decode_item(row: &tokio_postgres::Row, at: usize) -> Result<StoredItem, tokio_postgres::Error> {
    Ok(StoredItem {
        id: row.try_get(at)?,
        message: row.try_get(at + 1)?,
        deposited_at: to_u64(row.try_get(at + 2)?),
        expires_at: to_u64(row.try_get(at + 3)?),
    })
}

const USER_COLS: &str = "username, fingerprint, cert, registered_at";

impl PgStore {
    /// Connects to `url` (`postgres://user@host/db`, or a Unix socket
    /// directory percent-encoded as the host) and applies pending
    /// migrations (under an advisory lock: front ends may start together).
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let cfg =
            tokio_postgres::Config::from_str(url).map_err(backend("parsing the database URL"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("umbra-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Backend {
                action: "starting the database runtime",
                source: Box::new(e),
            })?;
        let mgr = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = {
            let _guard = rt.enter();
            Pool::builder(mgr)
                .max_size(POOL_SIZE)
                .runtime(deadpool_postgres::Runtime::Tokio1)
                .build()
                .map_err(|e| StoreError::Backend {
                    action: "creating the connection pool",
                    source: Box::new(e),
                })?
        };
        let store = PgStore { pool, rt: Some(rt) };
        store.run(migrate(&store.pool))?;
        Ok(store)
    }

    /// The schema version (number of applied migrations).
    pub fn schema_version(&self) -> Result<u32, StoreError> {
        self.run(async {
            let c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let row = c
                .query_one("SELECT version FROM schema_version", &[])
                .await
                .map_err(backend("reading the schema version"))?;
            let v: i32 = row.get(0);
            Ok(u32::try_from(v).unwrap_or(0))
        })
    }

    fn run<T>(&self, f: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        match &self.rt {
            Some(rt) => rt.block_on(f),
            None => Err(StoreError::Backend {
                action: "using the database",
                source: "the store is closed".into(),
            }),
        }
    }
}

async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut c = pool.get().await.map_err(pool_err("connecting"))?;
    let tx = c
        .transaction()
        .await
        .map_err(backend("starting a migration"))?;
    // One migrating front end at a time (the key is arbitrary but fixed).
    tx.execute("SELECT pg_advisory_xact_lock(7400160)", &[])
        .await
        .map_err(backend("locking for migrations"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
         INSERT INTO schema_version SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM schema_version);",
    )
    .await
    .map_err(backend("creating the version table"))?;
    let v: i32 = tx
        .query_one("SELECT version FROM schema_version", &[])
        .await
        .map_err(backend("reading the schema version"))?
        .get(0);
    let version = usize::try_from(v).unwrap_or(usize::MAX);
    if version > MIGRATIONS.len() {
        return Err(StoreError::Backend {
            action: "checking the schema version",
            source: "the database was written by a newer umbra-handshaker".into(),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        tx.batch_execute(sql)
            .await
            .map_err(backend("migrating the schema"))?;
        let n = i32::try_from(i + 1).unwrap_or(i32::MAX);
        tx.execute("UPDATE schema_version SET version = $1", &[&n])
            .await
            .map_err(backend("recording the schema version"))?;
    }
    tx.commit().await.map_err(backend("committing a migration"))
}

impl Store for PgStore {
    fn user_by_name(&self, name: &Username) -> Result<Option<UserRecord>, StoreError> {
        self.run(async {
            let c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let st = c
                .prepare_cached(&format!(
                    "SELECT {USER_COLS} FROM users WHERE username = $1"
                ))
                .await
                .map_err(backend("looking up a user"))?;
            c.query_opt(&st, &[&name.as_str()])
                .await
                .map_err(backend("looking up a user"))?
                .as_ref()
                .map(decode_user)
                .transpose()
        })
    }

    fn user_by_fingerprint(&self, fpr: &Fingerprint) -> Result<Option<UserRecord>, StoreError> {
        self.run(async {
            let c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let st = c
                .prepare_cached(&format!(
                    "SELECT {USER_COLS} FROM users WHERE fingerprint = $1"
                ))
                .await
                .map_err(backend("looking up a fingerprint"))?;
            c.query_opt(&st, &[&fpr.to_hex()])
                .await
                .map_err(backend("looking up a fingerprint"))?
                .as_ref()
                .map(decode_user)
                .transpose()
        })
    }

    fn search(&self, prefix: &str, limit: usize) -> Result<Vec<UserRecord>, StoreError> {
        self.run(async {
            let c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let st = c
                .prepare_cached(&format!(
                    "SELECT {USER_COLS} FROM users WHERE username >= $1 AND username < $2
                     ORDER BY username LIMIT $3"
                ))
                .await
                .map_err(backend("searching"))?;
            let upper = prefix_upper(prefix);
            c.query(&st, &[&prefix, &upper, &to_i64(limit as u64)])
                .await
                .map_err(backend("searching"))?
                .iter()
                .map(decode_user)
                .collect()
        })
    }

    fn put_user(
        &self,
        rec: &UserRecord,
        expected_current: Option<&Fingerprint>,
    ) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let tx = c.transaction().await.map_err(backend("registering"))?;
            let current: Option<String> = tx
                .query_opt(
                    "SELECT fingerprint FROM users WHERE username = $1 FOR UPDATE",
                    &[&rec.username.as_str()],
                )
                .await
                .map_err(backend("registering"))?
                .map(|r| r.get(0));
            check_replace(current.as_deref(), expected_current)?;
            let res = tx
                .execute(
                    "INSERT INTO users (username, fingerprint, cert, registered_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (username) DO UPDATE SET fingerprint = EXCLUDED.fingerprint,
                        cert = EXCLUDED.cert, registered_at = EXCLUDED.registered_at",
                    &[
                        &rec.username.as_str(),
                        &rec.fingerprint.to_hex(),
                        &rec.cert,
                        &to_i64(rec.registered_at),
                    ],
                )
                .await;
            match res {
                Ok(_) => {}
                Err(e) => {
                    return Err(match unique_violation(&e) {
                        Some("users_fingerprint_key") => StoreError::FingerprintTaken,
                        Some("users_pkey") => StoreError::UsernameTaken,
                        _ => backend("registering")(e),
                    });
                }
            }
            tx.commit().await.map_err(|e| match unique_violation(&e) {
                Some("users_pkey") => StoreError::UsernameTaken,
                Some("users_fingerprint_key") => StoreError::FingerprintTaken,
                _ => backend("registering")(e),
            })
        })
    }

    fn insert_users(&self, recs: &[UserRecord]) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let tx = c.transaction().await.map_err(backend("bulk inserting"))?;
            for chunk in recs.chunks(10_000) {
                let names: Vec<&str> = chunk.iter().map(|r| r.username.as_str()).collect();
                let fprs: Vec<String> = chunk.iter().map(|r| r.fingerprint.to_hex()).collect();
                let certs: Vec<&str> = chunk.iter().map(|r| r.cert.as_str()).collect();
                let ats: Vec<i64> = chunk.iter().map(|r| to_i64(r.registered_at)).collect();
                tx.execute(
                    "INSERT INTO users (username, fingerprint, cert, registered_at)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[])",
                    &[&names, &fprs, &certs, &ats],
                )
                .await
                .map_err(|e| match unique_violation(&e) {
                    Some("users_fingerprint_key") => StoreError::FingerprintTaken,
                    Some("users_pkey") => StoreError::UsernameTaken,
                    _ => backend("bulk inserting")(e),
                })?;
            }
            tx.commit().await.map_err(backend("bulk inserting"))
        })
    }

    fn delete_user(&self, name: &Username, expected: &Fingerprint) -> Result<(), StoreError> {
        self.run(async {
            let mut c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let tx = c.transaction().await.map_err(backend("deleting a user"))?;
            let current: Option<String> = tx
                .query_opt(
                    "SELECT fingerprint FROM users WHERE username = $1 FOR UPDATE",
                    &[&name.as_str()],
                )
                .await
                .map_err(backend("deleting a user"))?
                .map(|r| r.get(0));
            check_delete(current.as_deref(), expected)?;
            tx.execute(
                "DELETE FROM mailbox WHERE recipient = $1",
                &[&name.as_str()],
            )
            .await
            .map_err(backend("deleting a mailbox"))?;
            tx.execute("DELETE FROM users WHERE username = $1", &[&name.as_str()])
                .await
                .map_err(backend("deleting a user"))?;
            tx.commit().await.map_err(backend("deleting a user"))
        })
    }

    fn deposit(
        &self,
        recipient: &Username,
        item: &StoredItem,
        capacity: usize,
    ) -> Result<Deposited, StoreError> {
        self.run(async {
            let mut c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let tx = c.transaction().await.map_err(backend("depositing"))?;
            // Locks the recipient: deposits to one mailbox are serialised,
            // so the capacity holds under concurrent front ends.
            let exists = tx
                .query_opt(
                    "SELECT 1 FROM users WHERE username = $1 FOR UPDATE",
                    &[&recipient.as_str()],
                )
                .await
                .map_err(backend("depositing"))?
                .is_some();
            if !exists {
                return Err(StoreError::NoSuchUser);
            }
            let count: i64 = tx
                .query_one(
                    "SELECT COUNT(*) FROM mailbox WHERE recipient = $1",
                    &[&recipient.as_str()],
                )
                .await
                .map_err(backend("depositing"))?
                .get(0);
            let outcome = if to_u64(count) >= capacity as u64 {
                tx.execute(
                    "UPDATE users SET dropped = dropped + 1 WHERE username = $1",
                    &[&recipient.as_str()],
                )
                .await
                .map_err(backend("depositing"))?;
                Deposited::Dropped
            } else {
                tx.execute(
                    "INSERT INTO mailbox (id, recipient, message, deposited_at, expires_at)
                     VALUES ($1, $2, $3, $4, $5)",
                    &[
                        &item.id,
                        &recipient.as_str(),
                        &item.message,
                        &to_i64(item.deposited_at),
                        &to_i64(item.expires_at),
                    ],
                )
                .await
                .map_err(backend("depositing"))?;
                Deposited::Stored
            };
            tx.commit().await.map_err(backend("depositing"))?;
            Ok(outcome)
        })
    }

    fn pending(
        &self,
        recipient: &Username,
        now: u64,
        max: usize,
    ) -> Result<(Vec<StoredItem>, u64), StoreError> {
        self.run(async {
            let c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let rows = c
                .query(
                    "SELECT id, message, deposited_at, expires_at,
                            COUNT(*) OVER () AS total
                     FROM mailbox WHERE recipient = $1 AND expires_at >= $2
                     ORDER BY seq LIMIT $3",
                    &[&recipient.as_str(), &to_i64(now), &to_i64(max as u64)],
                )
                .await
                .map_err(backend("reading a mailbox"))?;
            let total: i64 = rows.first().map(|r| r.get(4)).unwrap_or(0);
            let items = rows
                .iter()
                .map(|r| decode_item(r, 0))
                .collect::<Result<Vec<_>, _>>()
                .map_err(backend("reading a mailbox"))?;
            let more = to_u64(total).saturating_sub(items.len() as u64);
            Ok((items, more))
        })
    }

    fn take_dropped(&self, recipient: &Username) -> Result<u64, StoreError> {
        self.run(async {
            let c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let row = c
                .query_opt(
                    "UPDATE users u SET dropped = 0 FROM
                        (SELECT username, dropped FROM users WHERE username = $1 FOR UPDATE) old
                     WHERE u.username = old.username RETURNING old.dropped",
                    &[&recipient.as_str()],
                )
                .await
                .map_err(backend("reading a mailbox"))?;
            Ok(row.map(|r| to_u64(r.get(0))).unwrap_or(0))
        })
    }

    fn ack(&self, recipient: &Username, ids: &[String]) -> Result<u64, StoreError> {
        self.run(async {
            let c = self.pool.get().await.map_err(pool_err("connecting"))?;
            c.execute(
                "DELETE FROM mailbox WHERE recipient = $1 AND id = ANY($2)",
                &[&recipient.as_str(), &ids],
            )
            .await
            .map_err(backend("acknowledging"))
        })
    }

    fn spend(&self, digest: &[u8; 32], expires_at: u64, now: u64) -> Result<bool, StoreError> {
        self.run(async {
            let c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let st = c
                .prepare_cached(
                    "INSERT INTO spent (digest, expires_at) VALUES ($1, $2)
                     ON CONFLICT (digest) DO UPDATE SET expires_at = EXCLUDED.expires_at
                     WHERE spent.expires_at < $3",
                )
                .await
                .map_err(backend("spending"))?;
            let n = c
                .execute(&st, &[&&digest[..], &to_i64(expires_at), &to_i64(now)])
                .await
                .map_err(backend("spending"))?;
            Ok(n == 1)
        })
    }

    fn secret(&self, name: &str, fresh: &[u8; 32]) -> Result<[u8; 32], StoreError> {
        self.run(async {
            let c = self.pool.get().await.map_err(pool_err("connecting"))?;
            c.execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &&fresh[..]],
            )
            .await
            .map_err(backend("storing a secret"))?;
            let v: Vec<u8> = c
                .query_one("SELECT value FROM secrets WHERE name = $1", &[&name])
                .await
                .map_err(backend("reading a secret"))?
                .get(0);
            v.try_into().map_err(|_| StoreError::Backend {
                action: "reading a secret",
                source: "a stored secret is not 32 bytes".into(),
            })
        })
    }

    fn purge_expired(&self, now: u64) -> Result<u64, StoreError> {
        self.run(async {
            let c = self.pool.get().await.map_err(pool_err("connecting"))?;
            c.execute("DELETE FROM spent WHERE expires_at < $1", &[&to_i64(now)])
                .await
                .map_err(backend("purging"))?;
            c.execute("DELETE FROM mailbox WHERE expires_at < $1", &[&to_i64(now)])
                .await
                .map_err(backend("purging"))
        })
    }

    fn counts(&self) -> Result<StoreCounts, StoreError> {
        self.run(async {
            let c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let row = c
                .query_one(
                    "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM mailbox)",
                    &[],
                )
                .await
                .map_err(backend("counting"))?;
            Ok(StoreCounts {
                users: to_u64(row.get(0)),
                items: to_u64(row.get(1)),
            })
        })
    }

    fn snapshot(&self) -> Result<StoreSnapshot, StoreError> {
        self.run(async {
            let c = self.pool.get().await.map_err(pool_err("connecting"))?;
            let users = c
                .query(
                    &format!("SELECT {USER_COLS} FROM users ORDER BY username"),
                    &[],
                )
                .await
                .map_err(backend("snapshotting"))?
                .iter()
                .map(decode_user)
                .collect::<Result<Vec<_>, _>>()?;
            let rows = c
                .query(
                    "SELECT recipient, id, message, deposited_at, expires_at FROM mailbox
                     ORDER BY recipient, seq",
                    &[],
                )
                .await
                .map_err(backend("snapshotting"))?;
            let mut items = Vec::with_capacity(rows.len());
            for r in &rows {
                let name: &str = r.get(0);
                let user = Username::parse(name).map_err(|_| StoreError::Backend {
                    action: "snapshotting",
                    source: "bad username".into(),
                })?;
                items.push((user, decode_item(r, 1).map_err(backend("snapshotting"))?));
            }
            Ok(StoreSnapshot { users, items })
        })
    }
}
