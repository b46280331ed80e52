//! The encrypted local store: one SQLCipher database per data directory.
//!
//! Everything Umbra keeps on disk — the secret identity, contacts, session state,
//! messages, outbox, file-transfer state and settings — lives in `umbra.db`, encrypted
//! as a whole by SQLCipher with a raw 256-bit key. The key is derived from the user's
//! passphrase with Argon2id ([`kdf`]); the salt and cost parameters are in the
//! non-secret `store.header` next to the database.
//!
//! # Layout
//! - [`datadir`]: locating and permission-checking the data directory.
//! - [`kdf`]: Argon2id and the header file.
//! - [`migrations`]: numbered schema steps tracked with `PRAGMA user_version`.
//! - [`passphrase`]: reading the passphrase from a file, the environment or a prompt.
//! - [`backup`]: the passphrase-protected identity + contacts backup file.
//! - `contacts`, `sessions`, `messages`, `transfers`: the typed [`Store`] API, split by topic.
//! - [`lifecycle`]: `init`, `status`, `passwd`, export/import, as the CLI calls them.
//!
//! No SQL exists outside this module tree.
//!
//! # Durability
//! The database runs in WAL mode with `synchronous = FULL`; see [`Synchronous`].
//!
//! # Unlocking without side effects
//! The database is opened without `SQLITE_OPEN_CREATE`, keyed, and probed with one
//! read before anything is written. A wrong key fails that read (`NotADatabase`) and
//! the connection is closed: no file under the data directory is created or changed
//! (tested by hashing every file before and after).

#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]
#![deny(clippy::mod_module_files)]

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use secrecy::SecretString;
use zeroize::Zeroizing;

pub mod backup;
mod chunks;
mod contacts;
pub mod datadir;
mod err;
pub mod kdf;
pub mod lifecycle;
mod messages;
pub mod migrations;
pub mod passphrase;
mod records;
mod sessions;
mod transfers;

// ---------- public exports ----------
pub use chunks::ChunkSet;
pub use datadir::DataDir;
pub use err::{Error, ErrorKind};
pub use kdf::{KdfParams, StoreHeader};
pub use records::{
    ChainState, Contact, ContactId, ContactState, DeliveryState, Direction, FileTransfer, Inserted,
    Message, MessageId, NewContact, NewMessage, NewTransfer, OwnIdentity, PendingRequest,
    SecretBytes, SessionRecord, TransferState,
};

use err::db;
use kdf::DerivedKey;

/// Result type of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// SQLite's `synchronous` setting for the WAL.
///
/// **Umbra uses [`Synchronous::Full`].** In WAL mode, `NORMAL` fsyncs only at
/// checkpoints: a transaction survives a process crash (`kill -9`) but the most recent
/// commits can be lost on power failure or an OS crash. Two rules depend on a commit
/// being durable when it returns:
/// - the receiver stores a message before it acknowledges it, and the sender deletes it
///   from its outbox on that acknowledgement — a lost commit would lose the message for
///   good;
/// - a session's advanced send state is persisted before the frame leaves the process —
///   a lost commit would roll the chain back and reuse a message key (nonce reuse).
///
/// `FULL` fsyncs the WAL on every commit. Measured on the reference machine
/// (`shared/CRYPTO.md`), 10,000 inserts batched in one transaction cost 30 ms (FULL) vs
/// 23 ms (NORMAL), and one transaction per row 16.8 s vs 0.7 s: the price is per
/// commit, so callers batch (e.g. all messages of one incoming burst, then one ack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync on every commit (the default).
    Full,
    /// fsync at checkpoints only (benchmarks and comparisons).
    Normal,
}

impl Synchronous {
    /// The pragma value.
    pub fn as_str(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// An unlocked store.
pub struct Store {
    conn: Connection,
    dir: DataDir,
    header: StoreHeader,
    synchronous: Synchronous,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("synchronous", &self.synchronous)
            .finish_non_exhaustive()
    }
}

/// Current time in Unix seconds.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why opening a connection failed.
enum OpenFailure {
    /// The key does not decrypt the database.
    WrongKey,
    /// Anything else.
    Other(Error),
}

impl From<Error> for OpenFailure {
    fn from(e: Error) -> Self {
        OpenFailure::Other(e)
    }
}

/// Open `path` (which must exist unless `create`), apply the key and verify it with one read.
///
/// Nothing is written before the read succeeds.
fn open_keyed(path: &Path, key: &DerivedKey, create: bool) -> Result<Connection, OpenFailure> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    if create {
        flags |= OpenFlags::SQLITE_OPEN_CREATE;
    }
    let conn = Connection::open_with_flags(path, flags).map_err(db("opening the database"))?;
    // Wipe SQLCipher's freed memory (page cache, key material) and keep its
    // HMAC-failure messages off stderr. Both must precede the key.
    conn.execute_batch("PRAGMA cipher_log_level = NONE; PRAGMA cipher_memory_security = ON;")
        .map_err(db("configuring SQLCipher"))?;
    conn.execute_batch(&key.sqlcipher_pragma("key"))
        .map_err(db("setting the database key"))?;
    match conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    }) {
        Ok(_) => Ok(conn),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::NotADatabase =>
        {
            Err(OpenFailure::WrongKey)
        }
        Err(e) => Err(OpenFailure::Other(db("reading the database")(e))),
    }
}

/// Apply the per-connection settings after the key has been verified.
fn configure(conn: &Connection, sync: Synchronous) -> Result<()> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(db("enabling WAL"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::CorruptValue {
            what: format!("journal mode {mode} (WAL expected)"),
        });
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {};
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA temp_store = MEMORY;",
        sync.as_str()
    ))
    .map_err(db("configuring the database"))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(db("configuring the database"))?;
    Ok(())
}

fn read_header(path: &Path) -> Result<StoreHeader> {
    let text = std::fs::read_to_string(path).map_err(err::io("read", path))?;
    StoreHeader::from_json(&text, path)
}

fn db_is_present(dir: &DataDir) -> Result<bool> {
    match std::fs::metadata(dir.db_path()) {
        Ok(m) => Ok(m.len() > 0),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(err::io("inspect", &dir.db_path())(e)),
    }
}

impl Store {
    /// Create a new, empty store in `dir` (created 0700 if missing).
    ///
    /// Fails with [`Error::AlreadyInitialized`] if a database exists there. Order: the
    /// header is written (atomically) first, then the database is created and migrated;
    /// an interrupted `create` leaves no database (or an empty file), which a new
    /// `create` replaces.
    pub fn create(dir: &Path, passphrase: &SecretString, params: KdfParams) -> Result<Store> {
        Self::create_at_version(dir, passphrase, params, migrations::LATEST_VERSION)
    }

    /// [`Store::create`] stopping at schema version `version` (tests of migrations).
    pub(crate) fn create_at_version(
        dir: &Path,
        passphrase: &SecretString,
        params: KdfParams,
        version: u32,
    ) -> Result<Store> {
        let dir = DataDir::create(dir)?;
        if db_is_present(&dir)? {
            return Err(Error::AlreadyInitialized {
                dir: dir.path().to_path_buf(),
            });
        }
        let header = StoreHeader::generate(params)?;
        let key = header.derive(passphrase)?;
        dir.write_atomic(datadir::HEADER_FILE, header.to_json().as_bytes())?;
        remove_if_exists(&dir.new_header_path())?;
        let db_path = dir.db_path();
        remove_if_exists(&db_path)?;
        // Create the file ourselves so that it (and the -wal/-shm files SQLite derives
        // from its mode) is 0600 regardless of the umask.
        drop(dir.create_private_file(datadir::DB_FILE)?);
        let mut conn = match open_keyed(&db_path, &key, false) {
            Ok(c) => c,
            Err(OpenFailure::WrongKey) => {
                return Err(Error::CorruptValue {
                    what: "a freshly created database rejected its key".into(),
                });
            }
            Err(OpenFailure::Other(e)) => return Err(e),
        };
        let sync = Synchronous::Full;
        configure(&conn, sync)?;
        migrations::migrate_to(&mut conn, version)?;
        dir.sync()?;
        Ok(Store {
            conn,
            dir,
            header,
            synchronous: sync,
        })
    }

    /// Unlock the existing store in `dir` with `passphrase`.
    ///
    /// A wrong passphrase gives [`Error::WrongPassphrase`] and leaves every file as it
    /// was. If a passphrase change was interrupted (see [`Store::rekey`]), whichever
    /// passphrase the database is actually keyed with works, and the header is repaired.
    pub fn open(dir: &Path, passphrase: &SecretString) -> Result<Store> {
        let dir = DataDir::open(dir)?;
        if !db_is_present(&dir)? {
            return Err(Error::NotInitialized {
                dir: dir.path().to_path_buf(),
            });
        }
        let db_path = dir.db_path();
        let header = read_header(&dir.header_path())?;
        let new_header_path = dir.new_header_path();
        let key = header.derive(passphrase)?;
        let (mut conn, header) = match open_keyed(&db_path, &key, false) {
            Ok(conn) => {
                // A leftover from a passphrase change that never reached the database.
                if new_header_path.exists() {
                    remove_if_exists(&new_header_path)?;
                    dir.sync()?;
                }
                (conn, header)
            }
            Err(OpenFailure::Other(e)) => return Err(e),
            Err(OpenFailure::WrongKey) => {
                let wrong = || Error::WrongPassphrase {
                    dir: dir.path().to_path_buf(),
                };
                if !new_header_path.exists() {
                    return Err(wrong());
                }
                // The database may have been re-keyed before the crash: try the new header.
                let new_header = read_header(&new_header_path)?;
                let new_key = new_header.derive(passphrase)?;
                match open_keyed(&db_path, &new_key, false) {
                    Ok(conn) => {
                        dir.rename(datadir::NEW_HEADER_FILE, datadir::HEADER_FILE)?;
                        (conn, new_header)
                    }
                    Err(OpenFailure::WrongKey) => return Err(wrong()),
                    Err(OpenFailure::Other(e)) => return Err(e),
                }
            }
        };
        let sync = Synchronous::Full;
        configure(&conn, sync)?;
        migrations::migrate(&mut conn)?;
        Ok(Store {
            conn,
            dir,
            header,
            synchronous: sync,
        })
    }

    /// Change the passphrase: derive a new key with a fresh salt (and `params`, or the
    /// current ones) and re-encrypt the whole database with it.
    ///
    /// Crash-safe ordering:
    /// 1. the new header is written durably to `store.header.new`;
    /// 2. `PRAGMA rekey` rewrites every page under the new key in one WAL transaction
    ///    (all or nothing), then the WAL is checkpointed;
    /// 3. a second connection verifies the new key;
    /// 4. `store.header.new` is renamed over `store.header` (atomic) and the directory fsynced.
    ///
    /// A crash before step 2 commits leaves the old passphrase working (the stale
    /// `.new` header is removed on the next open); a crash after it leaves the new
    /// passphrase working ([`Store::open`] falls back to `.new` and promotes it).
    pub fn rekey(
        &mut self,
        new_passphrase: &SecretString,
        params: Option<KdfParams>,
    ) -> Result<()> {
        let header = StoreHeader::generate(params.unwrap_or(self.header.params))?;
        let key = header.derive(new_passphrase)?;
        self.dir
            .write_atomic(datadir::NEW_HEADER_FILE, header.to_json().as_bytes())?;
        self.conn
            .execute_batch(&key.sqlcipher_pragma("rekey"))
            .map_err(db("re-keying the database"))?;
        self.checkpoint()?;
        // sqlite3_rekey reports success even when it rolled back: check for real.
        match open_keyed(&self.dir.db_path(), &key, false) {
            Ok(check) => drop(check),
            Err(failure) => {
                remove_if_exists(&self.dir.new_header_path())?;
                return Err(match failure {
                    OpenFailure::Other(e) => e,
                    OpenFailure::WrongKey => Error::CorruptValue {
                        what: "the database did not accept the new key; the old passphrase still works".into(),
                    },
                });
            }
        }
        self.dir
            .rename(datadir::NEW_HEADER_FILE, datadir::HEADER_FILE)?;
        self.header = header;
        Ok(())
    }

    /// Close the store, checkpointing the WAL.
    pub fn close(self) -> Result<()> {
        self.conn
            .close()
            .map_err(|(_, e)| db("closing the database")(e))
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The checked data directory.
    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    /// The Argon2id parameters in effect.
    pub fn kdf_params(&self) -> KdfParams {
        self.header.params
    }

    /// The database's schema version.
    pub fn schema_version(&self) -> Result<u32> {
        migrations::version(&self.conn)
    }

    /// The `synchronous` mode in effect.
    pub fn synchronous(&self) -> Synchronous {
        self.synchronous
    }

    /// Change the `synchronous` mode for this connection. Production code keeps the
    /// default [`Synchronous::Full`]; this exists for benchmarks and comparisons.
    pub fn set_synchronous(&mut self, mode: Synchronous) -> Result<()> {
        self.conn
            .execute_batch(&format!("PRAGMA synchronous = {};", mode.as_str()))
            .map_err(db("setting synchronous"))?;
        self.synchronous = mode;
        Ok(())
    }

    /// Copy the WAL into the database and truncate it, so that overwritten secrets do
    /// not linger in old WAL frames.
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(db("checkpointing the WAL"))
    }

    // ---------------------------------------------------------------- identity

    /// Our identity, if one has been stored.
    pub fn identity(&self) -> Result<Option<OwnIdentity>> {
        self.conn
            .query_row(
                "SELECT username, fingerprint, secret_cert, created_at FROM identity WHERE id = 1",
                [],
                |r| {
                    Ok(OwnIdentity {
                        username: r.get(0)?,
                        fingerprint: r.get(1)?,
                        secret_cert: secret_column(r, 2)?,
                        created_at: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(db("reading the identity"))
    }

    /// Store our identity. Fails with [`Error::Conflict`] if one is already stored
    /// (an identity is never silently replaced).
    pub fn set_identity(&self, id: &OwnIdentity) -> Result<()> {
        let fpr = normalize_fingerprint(&id.fingerprint)?;
        validate_username(&id.username)?;
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO identity (id, username, fingerprint, secret_cert, created_at)
                 VALUES (1, ?1, ?2, ?3, ?4)",
                params![id.username, fpr, &id.secret_cert[..], id.created_at],
            )
            .map_err(db("storing the identity"))?;
        if n == 0 {
            return Err(Error::Conflict { what: "identity" });
        }
        Ok(())
    }

    // ---------------------------------------------------------------- settings

    /// A setting's value.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db("reading a setting"))
    }

    /// Set a setting.
    pub fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map_err(db("writing a setting"))?;
        Ok(())
    }

    /// Remove a setting; returns whether it existed.
    pub fn remove_setting(&self, key: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM settings WHERE key = ?1", [key])
            .map_err(db("removing a setting"))?;
        Ok(n > 0)
    }

    /// All settings, sorted by key.
    pub fn settings(&self) -> Result<Vec<(String, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT key, value FROM settings ORDER BY key")
            .map_err(db("listing settings"))?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db("listing settings"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db("listing settings"))
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(err::io("remove", path)(e)),
    }
}

/// Read a BLOB column straight into a zeroizing buffer.
pub(crate) fn secret_column(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<SecretBytes> {
    let blob = r.get_ref(i)?.as_blob()?;
    Ok(Zeroizing::new(blob.to_vec()))
}

/// Check and uppercase a 40-hex-digit fingerprint.
pub(crate) fn normalize_fingerprint(fpr: &str) -> Result<String> {
    if fpr.len() != 40 || !fpr.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::Invalid {
            what: "fingerprint",
            reason: "expected 40 hexadecimal digits".into(),
        });
    }
    Ok(fpr.to_ascii_uppercase())
}

/// Minimal sanity check of a username (the identity module enforces the full rules).
pub(crate) fn validate_username(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(Error::Invalid {
            what: "username",
            reason: "must be 1-64 bytes without control characters".into(),
        });
    }
    Ok(())
}
