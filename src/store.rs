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
//! - `contacts`, `sessions`, `messages`, `transfers`, `groups`: the typed [`Store`] API, split by topic.
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
mod delivery;
mod err;
#[cfg(test)]
mod fixture;
mod group_links;
mod groups;
mod inbox;
pub mod kdf;
pub mod lifecycle;
mod messages;
pub mod migrations;
mod onion_key;
pub mod passphrase;
mod records;
mod sessions;
#[cfg(test)]
mod test_support;
mod transfers;

// ---------- public exports ----------
pub use chunks::ChunkSet;
pub use datadir::DataDir;
pub use delivery::{Ended, IncomingEffect};
pub use err::{Error, ErrorKind};
pub use groups::{
    GroupInviteRecord, GroupMemberRecord, GroupMessageRecord, GroupMessageState, GroupOutboxItem,
    GroupRecord, GroupStatus, GroupWrite, NewGroupMessage, OutboxKind, QueuedGroupItem,
};
pub use inbox::ReceivedRequestRecord;
pub use kdf::{KdfParams, StoreHeader};
pub use onion_key::ONION_KEY_LEN;
pub use records::{
    ChainState, Contact, ContactId, ContactState, DeliveryState, Direction, FileKind, FileTransfer,
    Inserted, Message, MessageId, NewContact, NewMessage, NewTransfer, OnionKeyOrigin,
    OnionKeyRecord, OwnIdentity, PendingRequest, SecretBytes, SessionRecord, TransferState,
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

/// Open the existing file `path` (never creating it), apply the key and verify it with one read.
///
/// Nothing is written before the read succeeds.
fn open_keyed(path: &Path, key: &DerivedKey) -> Result<Connection, OpenFailure> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
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
        let (header, key) = StoreHeader::generate(params, passphrase)?;
        dir.write_atomic(datadir::HEADER_FILE, header.to_json()?.as_bytes())?;
        remove_if_exists(&dir.new_header_path())?;
        let db_path = dir.db_path();
        remove_if_exists(&db_path)?;
        // Create the file ourselves so that it (and the -wal/-shm files SQLite derives
        // from its mode) is 0600 regardless of the umask.
        drop(dir.create_private_file(datadir::DB_FILE)?);
        let mut conn = match open_keyed(&db_path, &key) {
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
        let new_header = if new_header_path.exists() {
            Some(read_header(&new_header_path)?)
        } else {
            None
        };
        let wrong = || Error::WrongPassphrase {
            dir: dir.path().to_path_buf(),
        };
        // Check the passphrase against the header(s) before touching the database.
        let mut candidates = Vec::with_capacity(2);
        if let Some(key) = header.unlock(passphrase)? {
            candidates.push((key, header));
        }
        if let Some(nh) = &new_header
            && let Some(key) = nh.unlock(passphrase)?
        {
            candidates.push((key, nh.clone()));
        }
        let mut opened = None;
        for (key, h) in candidates {
            match open_keyed(&db_path, &key) {
                Ok(conn) => {
                    opened = Some((conn, h));
                    break;
                }
                // Only after an interrupted passphrase change: the header matches the
                // passphrase but the database is keyed with the other one.
                Err(OpenFailure::WrongKey) => continue,
                Err(OpenFailure::Other(e)) => return Err(e),
            }
        }
        let (mut conn, header) = opened.ok_or_else(wrong)?;
        if let Some(nh) = &new_header {
            if *nh == header {
                // The re-key had reached the database: commit the new header.
                dir.rename(datadir::NEW_HEADER_FILE, datadir::HEADER_FILE)?;
            } else {
                // A leftover from a passphrase change that never reached the database.
                remove_if_exists(&new_header_path)?;
                dir.sync()?;
            }
        }
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
        let (header, key) =
            StoreHeader::generate(params.unwrap_or(self.header.params), new_passphrase)?;
        self.dir
            .write_atomic(datadir::NEW_HEADER_FILE, header.to_json()?.as_bytes())?;
        self.conn
            .execute_batch(&key.sqlcipher_pragma("rekey"))
            .map_err(db("re-keying the database"))?;
        self.checkpoint()?;
        // sqlite3_rekey reports success even when it rolled back: check for real.
        match open_keyed(&self.dir.db_path(), &key) {
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

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    pub(crate) fn pw(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn fresh() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().unwrap();
        let s = Store::create(
            &tmp.path().join("d"),
            &pw("pass"),
            KdfParams::insecure_for_tests(),
        )
        .unwrap();
        (tmp, s)
    }

    fn contact(name: &str, fpr_digit: char) -> NewContact {
        NewContact {
            username: name.into(),
            fingerprint: std::iter::repeat_n(fpr_digit, 40).collect(),
            public_cert: format!("cert of {name}").into_bytes(),
            onion_address: Some(format!("{name}.onion")),
            state: ContactState::Accepted,
            verified: false,
        }
    }

    fn identity() -> OwnIdentity {
        OwnIdentity {
            username: "@me".into(),
            fingerprint: "abcdef0123456789abcdef0123456789abcdef01".into(),
            secret_cert: Zeroizing::new(b"secret cert bytes".to_vec()),
            created_at: 1,
        }
    }

    fn msg(contact: ContactId, direction: Direction, seq: u64, body: &str) -> NewMessage {
        NewMessage {
            contact,
            direction,
            seq,
            msg_id: [seq as u8; 16],
            sent_at: 1000 + seq,
            received_at: Some(2000 + seq),
            body: body.into(),
            state: DeliveryState::Received,
        }
    }

    #[test]
    fn create_open_identity() {
        let (tmp, s) = fresh();
        assert!(s.identity().unwrap().is_none());
        assert_eq!(s.synchronous(), Synchronous::Full);
        s.set_identity(&identity()).unwrap();
        let e = s.set_identity(&identity()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        s.close().unwrap();

        let dir = tmp.path().join("d");
        let e = Store::create(&dir, &pw("pass"), KdfParams::insecure_for_tests()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        let s = Store::open(&dir, &pw("pass")).unwrap();
        let id = s.identity().unwrap().unwrap();
        assert_eq!(id.fingerprint, "ABCDEF0123456789ABCDEF0123456789ABCDEF01");
        assert_eq!(&id.secret_cert[..], b"secret cert bytes");
        assert!(!format!("{id:?}").contains("secret cert bytes"));
        assert_eq!(s.schema_version().unwrap(), migrations::LATEST_VERSION);
        drop(s);

        let e = Store::open(&dir, &pw("Pass")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongPassphrase);
        assert!(
            e.recommendation()
                .unwrap()
                .contains("nothing on disk was changed")
        );
        let e = Store::open(&tmp.path().join("nothing"), &pw("pass")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotInitialized);
    }

    #[test]
    fn interrupted_create_is_redone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        // An init that stopped after creating the (empty) database file.
        DataDir::create(&dir).unwrap();
        std::fs::write(dir.join(datadir::DB_FILE), b"").unwrap();
        let e = Store::open(&dir, &pw("pass")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotInitialized);
        Store::create(&dir, &pw("pass"), KdfParams::insecure_for_tests()).unwrap();
    }

    #[test]
    fn contacts_crud() {
        let (_tmp, mut s) = fresh();
        let a = s.add_contact(&contact("@alice", 'a')).unwrap();
        let b = s.add_contact(&contact("@bob", 'b')).unwrap();
        assert_eq!(
            s.add_contact(&contact("@alice", 'c')).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            s.add_contact(&contact("@carol", 'a')).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        let mut bad = contact("@dave", 'd');
        bad.fingerprint.push('0');
        assert_eq!(
            s.add_contact(&bad).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );

        let got = s.contact_by_fingerprint(&"A".repeat(40)).unwrap().unwrap();
        assert_eq!(got.id, a);
        assert_eq!(got.fingerprint, "A".repeat(40));
        assert_eq!(s.contact_by_username("@bob").unwrap().unwrap().id, b);
        s.set_contact_verified(a, true).unwrap();
        s.set_contact_last_seen(a, 99).unwrap();
        s.set_contact_state(a, ContactState::Blocked).unwrap();
        let mut got = s.contact(a).unwrap().unwrap();
        assert!(got.verified);
        assert_eq!(got.last_seen, Some(99));
        assert_eq!(got.state, ContactState::Blocked);
        got.onion_address = None;
        s.update_contact(&got).unwrap();
        assert_eq!(s.contact(a).unwrap().unwrap(), got);
        assert_eq!(s.contacts().unwrap().len(), 2);

        s.insert_message(&msg(a, Direction::Incoming, 1, "hi"))
            .unwrap();
        s.delete_contact(a).unwrap();
        assert!(s.contact(a).unwrap().is_none());
        assert!(s.history(a, 10).unwrap().is_empty(), "messages cascade");
        assert_eq!(s.delete_contact(a).unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(
            s.set_contact_verified(a, true).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    fn session(contact: ContactId, id: u8) -> SessionRecord {
        SessionRecord {
            contact,
            session_id: [id; 16],
            send: ChainState {
                chain_key: Zeroizing::new(vec![1; 32]),
                seq: 0,
            },
            recv: ChainState {
                chain_key: Zeroizing::new(vec![2; 32]),
                seq: 0,
            },
            created_at: 5,
        }
    }

    #[test]
    fn sessions_counters_only_move_forward() {
        let (_tmp, mut s) = fresh();
        let a = s.add_contact(&contact("@alice", 'a')).unwrap();
        s.create_session(&session(a, 1)).unwrap();
        let sid = [1u8; 16];
        let next = |seq, k| ChainState {
            chain_key: Zeroizing::new(vec![k; 32]),
            seq,
        };
        s.save_send_state(&sid, &next(1, 3)).unwrap();
        s.save_send_state(&sid, &next(2, 4)).unwrap();
        for bad in [2, 1, 0] {
            let e = s.save_send_state(&sid, &next(bad, 9)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvariantViolation, "{e}");
        }
        s.save_recv_state(&sid, &next(7, 5)).unwrap();
        assert!(s.save_recv_state(&sid, &next(7, 5)).is_err());
        let got = s.session(&sid).unwrap().unwrap();
        assert_eq!((got.send.seq, got.recv.seq), (2, 7));
        assert_eq!(&got.send.chain_key[..], &[4; 32]);
        assert_eq!(&got.recv.chain_key[..], &[5; 32]);
        assert!(!format!("{got:?}").contains("4, 4"));

        // A new session replaces the old one.
        s.create_session(&session(a, 2)).unwrap();
        assert!(s.session(&sid).unwrap().is_none());
        assert_eq!(
            s.session_for_contact(a).unwrap().unwrap().session_id,
            [2; 16]
        );
        assert_eq!(
            s.save_send_state(&sid, &next(9, 9)).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert!(s.delete_session(&[2; 16]).unwrap());
        assert!(!s.delete_session(&[2; 16]).unwrap());
        assert!(s.session_for_contact(a).unwrap().is_none());
        // Unknown contact.
        assert!(s.create_session(&session(ContactId(999), 3)).is_err());
    }

    #[test]
    fn pending_requests_and_replay_cache() {
        let (_tmp, mut s) = fresh();
        let p = |id: u8, at| PendingRequest {
            request_id: [id; 16],
            to_username: "@bob".into(),
            ephemeral_secret: Zeroizing::new(vec![id; 32]),
            session_half: Zeroizing::new(vec![id + 1; 32]),
            created_at: at,
        };
        s.add_pending_request(&p(1, 10)).unwrap();
        s.add_pending_request(&p(2, 20)).unwrap();
        assert_eq!(
            s.add_pending_request(&p(1, 30)).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(s.pending_requests().unwrap().len(), 2);
        let got = s.take_pending_request(&[1; 16]).unwrap().unwrap();
        assert_eq!(&got.ephemeral_secret[..], &[1; 32]);
        assert_eq!(&got.session_half[..], &[2; 32]);
        assert!(!format!("{got:?}").contains("[1, 1"));
        assert!(s.take_pending_request(&[1; 16]).unwrap().is_none());
        assert_eq!(s.expire_pending_requests(15).unwrap(), 0);
        assert_eq!(s.expire_pending_requests(25).unwrap(), 1);
        assert!(s.pending_request(&[2; 16]).unwrap().is_none());

        assert!(!s.seen_request_id(&[7; 16], 100).unwrap());
        assert!(s.seen_request_id(&[7; 16], 100).unwrap());
        assert!(!s.seen_request_id(&[8; 16], 200).unwrap());
        assert_eq!(s.prune_seen_request_ids(150).unwrap(), 1);
        assert!(s.seen_request_id(&[8; 16], 200).unwrap());

        // Through the handshake trait: new once, then a replay.
        use crate::handshake::SeenRequests;
        assert!(s.record_if_new([9; 16], 300).unwrap());
        assert!(!s.record_if_new([9; 16], 300).unwrap());
        assert!(!s.record_if_new([8; 16], 300).unwrap());
    }

    #[test]
    fn messages_history_search_outbox() {
        let (_tmp, mut s) = fresh();
        let a = s.add_contact(&contact("@alice", 'a')).unwrap();
        let b = s.add_contact(&contact("@bob", 'b')).unwrap();
        let batch: Vec<_> = (1..=5)
            .map(|i| msg(a, Direction::Incoming, i, &format!("hello {i}")))
            .collect();
        let r = s.insert_messages(&batch).unwrap();
        assert!(r.iter().all(|x| matches!(x, Inserted::New(_))));
        // Re-delivery is a duplicate and changes nothing.
        let mut dup = msg(a, Direction::Incoming, 3, "changed");
        dup.msg_id = [0; 16];
        assert_eq!(s.insert_message(&dup).unwrap(), Inserted::Duplicate);
        assert_eq!(s.highest_seq(a, Direction::Incoming).unwrap(), 5);
        assert_eq!(s.highest_seq(a, Direction::Outgoing).unwrap(), 0);
        assert!(
            s.insert_message(&msg(a, Direction::Incoming, 0, "x"))
                .is_err()
        );
        // A failing batch stores nothing.
        let bad = vec![
            msg(a, Direction::Incoming, 6, "ok"),
            msg(ContactId(999), Direction::Incoming, 1, "x"),
        ];
        assert!(s.insert_messages(&bad).is_err());
        assert_eq!(s.highest_seq(a, Direction::Incoming).unwrap(), 5);

        let h = s.history(a, 3).unwrap();
        assert_eq!(h.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(h[0].body, "hello 3");
        let older = s.history_before(a, h[0].id, 10).unwrap();
        assert_eq!(older.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![1, 2]);

        let m1 = s
            .enqueue_message(b, [9; 16], 50, "100% sure_thing")
            .unwrap();
        let m2 = s.enqueue_message(b, [10; 16], 51, "second").unwrap();
        let m3 = s.enqueue_message(b, [11; 16], 52, "third").unwrap();
        assert_eq!((m1.seq, m2.seq, m3.seq), (1, 2, 3));
        assert_eq!(s.outbox_contacts().unwrap(), vec![b]);
        s.mark_sent(m1.id).unwrap();
        assert_eq!(
            s.message(m1.id).unwrap().unwrap().state,
            DeliveryState::Sent
        );
        assert_eq!(s.ack_outbox(b, 2).unwrap(), 2);
        assert_eq!(s.ack_outbox(b, 2).unwrap(), 0);
        let ob = s.outbox(b).unwrap();
        assert_eq!(ob.len(), 1);
        assert_eq!(ob[0].id, m3.id);
        assert_eq!(
            s.message(m2.id).unwrap().unwrap().state,
            DeliveryState::Delivered
        );
        assert_eq!(s.mark_read(b, Direction::Outgoing, 1).unwrap(), 1);
        assert!(s.enqueue_message(ContactId(999), [1; 16], 1, "x").is_err());

        // Search: case-insensitive, wildcards are literal, optionally per contact.
        assert_eq!(s.search_messages(None, "HELLO", 10).unwrap().len(), 5);
        assert_eq!(s.search_messages(Some(b), "hello", 10).unwrap().len(), 0);
        let hits = s.search_messages(None, "0% s", 10).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id, m1.id);
        assert!(s.search_messages(None, "_", 10).unwrap().len() == 1);
        assert_eq!(s.search_messages(None, "%", 10).unwrap().len(), 1);
    }

    /// SECURITY-2026-11 M5: a contact sending every other chunk made each
    /// batch rewrite the whole ranges blob (quadratic). Recording a batch now
    /// writes what the batch adds: measured as the WAL bytes one commit writes
    /// (deterministic: pages, not time), early and after 12,800 scattered chunks.
    #[test]
    fn recording_a_batch_costs_the_batch_not_the_transfer() {
        let (_tmp, mut s) = fresh();
        let a = s.add_contact(&contact("@alice", 'a')).unwrap();
        let id = [8; 16];
        s.add_transfer(&NewTransfer {
            transfer_id: id,
            contact: a,
            direction: Direction::Incoming,
            name: "big".into(),
            size: 40_000 * 65536,
            sha256: [0; 32],
            chunk_size: 65536,
            media: FileKind::File,
            local_path: None,
        })
        .unwrap();
        s.set_transfer_state(&id, TransferState::Active).unwrap();
        let wal = {
            let mut p = s.dir.db_path().into_os_string();
            p.push("-wal");
            std::path::PathBuf::from(p)
        };
        let mut next = 0u64;
        let mut batch = |s: &mut Store| -> u64 {
            let idx: Vec<u64> = (0..32).map(|i| next + 2 * i).collect();
            next += 64;
            s.checkpoint().unwrap();
            s.record_chunks(&id, &idx).unwrap().unwrap();
            std::fs::metadata(&wal).unwrap().len()
        };
        let first = batch(&mut s);
        for _ in 0..400 {
            batch(&mut s);
        }
        let later = batch(&mut s);
        assert_eq!(s.transfer(&id).unwrap().unwrap().have_count, 402 * 32);
        assert!(
            later <= 2 * first + 16 * 1024,
            "one batch wrote {later} WAL bytes after 12,800 scattered chunks, {first} at the start"
        );
    }

    #[test]
    fn transfers_and_settings() {
        let (_tmp, mut s) = fresh();
        let a = s.add_contact(&contact("@alice", 'a')).unwrap();
        let t = NewTransfer {
            transfer_id: [3; 16],
            contact: a,
            direction: Direction::Incoming,
            name: "photo.jpg".into(),
            size: 10 * 65536 + 1,
            sha256: [4; 32],
            chunk_size: 65536,
            media: FileKind::Image,
            local_path: None,
        };
        s.add_transfer(&t).unwrap();
        assert_eq!(
            s.add_transfer(&t).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        // Chunks are recorded only while the transfer is active.
        assert_eq!(s.record_chunks(&[3; 16], &[0]).unwrap(), None);
        s.set_transfer_state(&[3; 16], TransferState::Active)
            .unwrap();
        assert_eq!(s.record_chunks(&[3; 16], &[0, 1, 2, 5]).unwrap(), Some(4));
        // Repeats are not counted twice.
        assert_eq!(s.record_chunks(&[3; 16], &[2, 5, 6]).unwrap(), Some(5));
        // Past the end: refused, and nothing of the batch is kept.
        assert!(s.record_chunks(&[3; 16], &[4, 11]).is_err());
        assert_eq!(s.chunks_have(&[3; 16]).unwrap().ranges(), &[(0, 3), (5, 7)]);
        assert_eq!(
            s.missing_chunks(&[3; 16], &[0, 3, 6, 7]).unwrap(),
            vec![3, 7]
        );
        s.set_transfer_state(&[3; 16], TransferState::Paused)
            .unwrap();
        let got = s.transfer(&[3; 16]).unwrap().unwrap();
        assert_eq!(got.chunk_count(), 11);
        assert_eq!(got.have_count, 5);
        assert_eq!(got.state, TransferState::Paused);
        assert!(!got.is_complete());
        assert_eq!(got.media, FileKind::Image);
        assert_eq!(s.transfers(a).unwrap().len(), 1);
        assert_eq!(s.unfinished_transfers(a).unwrap().len(), 1);
        // Accepting needs an offered incoming transfer.
        assert!(s.accept_transfer(&[3; 16], "p", &[9; 32]).is_err());
        s.set_transfer_state(&[3; 16], TransferState::Offered)
            .unwrap();
        assert_eq!(s.pending_offers(a).unwrap(), 1);
        s.accept_transfer(&[3; 16], "part-1", &[9; 32]).unwrap();
        let (file, key) = s.part_key(&[3; 16]).unwrap().unwrap();
        assert_eq!((file.as_str(), *key), ("part-1", [9; 32]));
        s.clear_part(&[3; 16]).unwrap();
        assert!(s.part_key(&[3; 16]).unwrap().is_none());
        s.finish_transfer(&[3; 16], TransferState::Cancelled, Some(4))
            .unwrap();
        let got = s.transfer(&[3; 16]).unwrap().unwrap();
        assert_eq!((got.state, got.reason), (TransferState::Cancelled, Some(4)));
        assert!(s.unfinished_transfers(a).unwrap().is_empty());
        assert_eq!(s.all_transfers().unwrap().len(), 1);
        assert!(s.delete_transfer(&[3; 16]).unwrap());
        assert!(s.transfer(&[3; 16]).unwrap().is_none());

        assert_eq!(s.setting("theme").unwrap(), None);
        s.set_setting("theme", "dark").unwrap();
        s.set_setting("theme", "light").unwrap();
        s.set_setting("a", "1").unwrap();
        assert_eq!(s.setting("theme").unwrap().as_deref(), Some("light"));
        assert_eq!(s.settings().unwrap().len(), 2);
        assert!(s.remove_setting("theme").unwrap());
        assert!(!s.remove_setting("theme").unwrap());
    }

    #[test]
    fn v1_store_upgrades_with_data() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let mut s = Store::create_at_version(&dir, &pw("pass"), KdfParams::insecure_for_tests(), 1)
            .unwrap();
        assert_eq!(s.schema_version().unwrap(), 1);
        s.set_identity(&identity()).unwrap();
        let a = s.add_contact(&contact("@alice", 'a')).unwrap();
        s.insert_message(&msg(a, Direction::Incoming, 1, "from v1"))
            .unwrap();
        s.create_session(&session(a, 1)).unwrap();
        // v2 tables do not exist yet.
        assert!(s.set_setting("k", "v").is_err());
        s.close().unwrap();

        let s = Store::open(&dir, &pw("pass")).unwrap();
        assert_eq!(s.schema_version().unwrap(), migrations::LATEST_VERSION);
        assert_eq!(s.identity().unwrap().unwrap().username, "@me");
        assert_eq!(s.history(a, 10).unwrap()[0].body, "from v1");
        assert_eq!(
            s.session_for_contact(a).unwrap().unwrap().session_id,
            [1; 16]
        );
        s.set_setting("k", "v").unwrap();
        assert_eq!(s.setting("k").unwrap().as_deref(), Some("v"));
    }

    #[test]
    fn rekey_and_interrupted_rekey() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let mut s = Store::create(&dir, &pw("old"), KdfParams::insecure_for_tests()).unwrap();
        s.set_identity(&identity()).unwrap();
        let old_header = std::fs::read(dir.join(datadir::HEADER_FILE)).unwrap();
        let mut raised = KdfParams::insecure_for_tests();
        raised.t_cost = 2;
        s.rekey(&pw("new"), Some(raised)).unwrap();
        assert_eq!(s.kdf_params(), raised);
        assert!(
            s.identity().unwrap().is_some(),
            "the live connection keeps working"
        );
        s.close().unwrap();
        let new_header = std::fs::read(dir.join(datadir::HEADER_FILE)).unwrap();
        assert_ne!(old_header, new_header);
        assert!(!dir.join(datadir::NEW_HEADER_FILE).exists());
        assert_eq!(
            Store::open(&dir, &pw("old")).unwrap_err().kind(),
            ErrorKind::WrongPassphrase
        );
        let s = Store::open(&dir, &pw("new")).unwrap();
        assert_eq!(s.kdf_params(), raised);
        drop(s);

        // Crash after the database was re-keyed but before the header was renamed:
        // store.header is the old one, store.header.new the current one.
        std::fs::write(dir.join(datadir::HEADER_FILE), &old_header).unwrap();
        std::fs::write(dir.join(datadir::NEW_HEADER_FILE), &new_header).unwrap();
        assert_eq!(
            Store::open(&dir, &pw("old")).unwrap_err().kind(),
            ErrorKind::WrongPassphrase
        );
        assert!(
            dir.join(datadir::NEW_HEADER_FILE).exists(),
            "a failed open changes nothing"
        );
        let s = Store::open(&dir, &pw("new")).unwrap();
        assert!(s.identity().unwrap().is_some());
        drop(s);
        assert!(!dir.join(datadir::NEW_HEADER_FILE).exists());
        assert_eq!(
            std::fs::read(dir.join(datadir::HEADER_FILE)).unwrap(),
            new_header
        );

        // Crash before the database was re-keyed: a stale .new header is discarded.
        std::fs::write(dir.join(datadir::NEW_HEADER_FILE), &old_header).unwrap();
        Store::open(&dir, &pw("new")).unwrap();
        assert!(!dir.join(datadir::NEW_HEADER_FILE).exists());
    }
}
