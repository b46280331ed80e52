//! Schema migrations, tracked with `PRAGMA user_version`.
//!
//! Migration `n` (1-based) takes a database at version `n - 1` to version `n`. Each runs
//! in its own transaction together with the `user_version` bump, so an interrupted
//! upgrade leaves the database at the previous version. Never edit a released step:
//! add a new one.
//!
//! - v1: identity, contacts, sessions, pending requests, seen request ids, messages, outbox.
//! - v2: file transfers and settings.
//! - v3: received connection requests awaiting a decision; Accept envelopes awaiting delivery.
//! - v4: file transfer details (media, cancel reason, part files, chunks sent).
//! - v5: per sender key, up to which requests are answered (late leftovers dropped).
//! - v6: a receiver's chunks one row each (`file_chunks`) and their count, so recording
//!   a batch costs O(batch) whatever order a peer sends chunks in (was one ranges blob
//!   rewritten per batch).
//! - v7: the onion service's identity key (`onion_key`), until then a plain file in Arti's
//!   keystore.
//! - v8: groups (PROTOCOL.md §20): groups, their op log and members, group messages,
//!   per-member outboxes, per-sender delivery cursors, direct invites.
//! - v9: invite link secrets of the groups we own (`group_links`, PROTOCOL.md §20.7.2).

use rusqlite::{Connection, Transaction};

use super::err::{Error, db};

/// One migration step: SQL, or code for what SQL cannot express.
#[derive(Clone, Copy)]
enum Step {
    Sql(&'static str),
    Code(fn(&Transaction<'_>) -> rusqlite::Result<()>),
}

impl Step {
    fn run(self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        match self {
            Step::Sql(sql) => tx.execute_batch(sql),
            Step::Code(f) => f(tx),
        }
    }
}

/// v6: the `chunks_have` ranges blob becomes one `file_chunks` row per chunk
/// and a `chunks_count` column.
fn v6_chunk_rows(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute_batch(
        "CREATE TABLE file_chunks (
            transfer_id BLOB NOT NULL REFERENCES file_transfers(transfer_id) ON DELETE CASCADE,
            idx         INTEGER NOT NULL CHECK (idx >= 0),
            PRIMARY KEY (transfer_id, idx)
        ) WITHOUT ROWID;
        ALTER TABLE file_transfers ADD COLUMN chunks_count INTEGER NOT NULL DEFAULT 0;",
    )?;
    let rows: Vec<(Vec<u8>, Vec<u8>)> = {
        let mut st = tx.prepare("SELECT transfer_id, chunks_have FROM file_transfers")?;
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut insert =
        tx.prepare("INSERT OR IGNORE INTO file_chunks (transfer_id, idx) VALUES (?1, ?2)")?;
    for (id, blob) in rows {
        // A malformed blob (never written by Umbra) counts as no chunks: the
        // peer sends them again.
        let set = super::ChunkSet::from_bytes(&blob).unwrap_or_default();
        let mut count = 0u64;
        for &(s, e) in set.ranges() {
            for i in s..e {
                count += insert.execute(rusqlite::params![id, i])? as u64;
            }
        }
        tx.execute(
            "UPDATE file_transfers SET chunks_count = ?2 WHERE transfer_id = ?1",
            rusqlite::params![id, count],
        )?;
    }
    drop(insert);
    tx.execute_batch("ALTER TABLE file_transfers DROP COLUMN chunks_have;")
}

/// The migration steps; index `i` upgrades version `i` to `i + 1`.
const MIGRATIONS: &[Step] = &[
    // ---------------------------------------------------------------- v1
    Step::Sql(
        r#"
    CREATE TABLE identity (
        id            INTEGER PRIMARY KEY CHECK (id = 1),
        username      TEXT NOT NULL,
        fingerprint   TEXT NOT NULL,
        secret_cert   BLOB NOT NULL,
        created_at    INTEGER NOT NULL
    );
    CREATE TABLE contacts (
        id            INTEGER PRIMARY KEY,
        username      TEXT NOT NULL UNIQUE,
        fingerprint   TEXT NOT NULL UNIQUE,
        public_cert   BLOB NOT NULL,
        onion_address TEXT,
        state         TEXT NOT NULL,
        verified      INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1)),
        last_seen     INTEGER,
        created_at    INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        id             INTEGER PRIMARY KEY,
        contact_id     INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
        session_id     BLOB NOT NULL UNIQUE,
        send_chain_key BLOB NOT NULL,
        send_seq       INTEGER NOT NULL CHECK (send_seq >= 0),
        recv_chain_key BLOB NOT NULL,
        recv_seq       INTEGER NOT NULL CHECK (recv_seq >= 0),
        created_at     INTEGER NOT NULL,
        ended_at       INTEGER
    );
    CREATE UNIQUE INDEX sessions_one_active ON sessions(contact_id) WHERE ended_at IS NULL;
    CREATE TABLE pending_requests (
        request_id       BLOB PRIMARY KEY,
        to_username      TEXT NOT NULL,
        ephemeral_secret BLOB NOT NULL,
        session_half     BLOB NOT NULL,
        created_at       INTEGER NOT NULL
    );
    CREATE TABLE seen_requests (
        request_id  BLOB PRIMARY KEY,
        seen_at     INTEGER NOT NULL,
        expires_at  INTEGER NOT NULL
    );
    CREATE INDEX seen_requests_expiry ON seen_requests(expires_at);
    CREATE TABLE messages (
        id          INTEGER PRIMARY KEY,
        contact_id  INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
        direction   TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        seq         INTEGER NOT NULL CHECK (seq >= 1),
        msg_id      BLOB NOT NULL,
        sent_at     INTEGER NOT NULL,
        received_at INTEGER,
        body        TEXT NOT NULL,
        state       TEXT NOT NULL,
        UNIQUE (contact_id, direction, seq)
    );
    CREATE TABLE outbox (
        message_id  INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
        enqueued_at INTEGER NOT NULL,
        attempts    INTEGER NOT NULL DEFAULT 0
    );
    "#,
    ),
    // ---------------------------------------------------------------- v2
    Step::Sql(
        r#"
    CREATE TABLE file_transfers (
        transfer_id BLOB PRIMARY KEY,
        contact_id  INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
        direction   TEXT NOT NULL CHECK (direction IN ('in', 'out')),
        name        TEXT NOT NULL,
        size        INTEGER NOT NULL CHECK (size >= 0),
        sha256      BLOB NOT NULL,
        chunk_size  INTEGER NOT NULL CHECK (chunk_size > 0),
        chunks_have BLOB NOT NULL,
        local_path  TEXT,
        state       TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX file_transfers_contact ON file_transfers(contact_id);
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    "#,
    ),
    // ---------------------------------------------------------------- v3
    Step::Sql(
        r#"
    CREATE TABLE received_requests (
        request_id    BLOB PRIMARY KEY,
        from_username TEXT NOT NULL,
        fingerprint   TEXT NOT NULL,
        public_cert   BLOB NOT NULL,
        payload       BLOB NOT NULL,
        note          TEXT NOT NULL,
        received_at   INTEGER NOT NULL,
        expires_at    INTEGER NOT NULL,
        key_changed   INTEGER NOT NULL DEFAULT 0 CHECK (key_changed IN (0, 1))
    );
    CREATE INDEX received_requests_from ON received_requests(from_username);
    CREATE TABLE pending_accepts (
        contact_id  INTEGER PRIMARY KEY REFERENCES contacts(id) ON DELETE CASCADE,
        envelope    TEXT NOT NULL,
        expires_at  INTEGER NOT NULL
    );
    "#,
    ),
    // ---------------------------------------------------------------- v4
    // File transfers (#7): media kind, cancel reason, the receiver's
    // encrypted part file and its key, and how many chunk frames were sent.
    Step::Sql(
        r#"
    ALTER TABLE file_transfers ADD COLUMN media TEXT NOT NULL DEFAULT 'file'
        CHECK (media IN ('file', 'image', 'voice', 'video'));
    ALTER TABLE file_transfers ADD COLUMN reason INTEGER;
    ALTER TABLE file_transfers ADD COLUMN part_file TEXT;
    ALTER TABLE file_transfers ADD COLUMN part_key BLOB;
    ALTER TABLE file_transfers ADD COLUMN chunks_sent INTEGER NOT NULL DEFAULT 0;
    "#,
    ),
    // ---------------------------------------------------------------- v5
    // Per sender key, requests expiring no later than `expires_by` are
    // answered (PROTOCOL.md §12.2 rules 2 and 4): one arriving late from
    // the mailbox is a leftover and is dropped.
    Step::Sql(
        r#"
    CREATE TABLE answered_requests (
        fingerprint TEXT PRIMARY KEY,
        expires_by  INTEGER NOT NULL
    );
    "#,
    ),
    // ---------------------------------------------------------------- v6
    Step::Code(v6_chunk_rows),
    // ---------------------------------------------------------------- v7
    // The onion service's identity key (issue 15, point 7): one row, the
    // 64-byte expanded Ed25519 secret, generated here or moved in from
    // Arti's on-disk keystore by the daemon.
    Step::Sql(
        r#"
    CREATE TABLE onion_key (
        id          INTEGER PRIMARY KEY CHECK (id = 1),
        secret      BLOB NOT NULL CHECK (length(secret) = 64),
        origin      TEXT NOT NULL CHECK (origin IN ('generated', 'migrated')),
        created_at  INTEGER NOT NULL
    );
    "#,
    ),
    // ---------------------------------------------------------------- v8
    // Groups (issue 17, PROTOCOL.md §20). The verified state is rebuilt
    // from `group_ops` at start; `groups` and `group_members` mirror it for
    // front ends. Outboxes are per (group, recipient fingerprint); they also
    // carry invites and answers for groups the recipient (or we) do not
    // hold yet, hence no foreign key to `groups`. Row ids are never reused
    // (AUTOINCREMENT): a connection writes the entries above the last id it
    // wrote, so a reused id would be skipped.
    Step::Sql(
        r#"
    CREATE TABLE groups (
        group_id    BLOB PRIMARY KEY CHECK (length(group_id) = 32),
        name        TEXT NOT NULL,
        topic       TEXT NOT NULL,
        flags       INTEGER NOT NULL CHECK (flags >= 0 AND flags < 256),
        my_role     TEXT,
        status      TEXT NOT NULL CHECK (status IN ('joining', 'active', 'removed', 'left', 'dissolved', 'frozen')),
        head_seq    INTEGER NOT NULL CHECK (head_seq >= 0),
        head        BLOB NOT NULL CHECK (length(head) = 32),
        my_seq      INTEGER NOT NULL DEFAULT 0 CHECK (my_seq >= 0),
        warning     TEXT,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE group_ops (
        group_id    BLOB NOT NULL REFERENCES groups(group_id) ON DELETE CASCADE,
        seq         INTEGER NOT NULL CHECK (seq >= 0),
        op          BLOB NOT NULL,
        PRIMARY KEY (group_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE group_members (
        group_id    BLOB NOT NULL REFERENCES groups(group_id) ON DELETE CASCADE,
        fingerprint TEXT NOT NULL,
        username    TEXT NOT NULL,
        role        TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member', 'read-only')),
        PRIMARY KEY (group_id, fingerprint)
    ) WITHOUT ROWID;
    CREATE TABLE group_messages (
        id          INTEGER PRIMARY KEY,
        group_id    BLOB NOT NULL REFERENCES groups(group_id) ON DELETE CASCADE,
        msg_id      BLOB NOT NULL CHECK (length(msg_id) = 32),
        sender      TEXT NOT NULL,
        seq         INTEGER NOT NULL CHECK (seq >= 1),
        log_seq     INTEGER NOT NULL CHECK (log_seq >= 0),
        sent_at     INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        body        TEXT,
        wire        BLOB NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'received')),
        deleted     INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
        UNIQUE (group_id, sender, seq),
        UNIQUE (group_id, msg_id)
    );
    CREATE TABLE group_outbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id    BLOB NOT NULL CHECK (length(group_id) = 32),
        recipient   TEXT NOT NULL,
        kind        TEXT NOT NULL CHECK (kind IN ('op', 'proposal', 'message', 'invite')),
        sender      TEXT NOT NULL,
        seq         INTEGER NOT NULL CHECK (seq >= 0),
        wire        BLOB NOT NULL,
        created_at  INTEGER NOT NULL
    );
    CREATE INDEX group_outbox_recipient ON group_outbox(recipient, id);
    CREATE TABLE group_cursors (
        group_id    BLOB NOT NULL REFERENCES groups(group_id) ON DELETE CASCADE,
        sender      TEXT NOT NULL,
        next_seq    INTEGER NOT NULL CHECK (next_seq >= 1),
        PRIMARY KEY (group_id, sender)
    ) WITHOUT ROWID;
    CREATE TABLE group_invites (
        group_id    BLOB NOT NULL CHECK (length(group_id) = 32),
        incoming    INTEGER NOT NULL CHECK (incoming IN (0, 1)),
        contact_id  INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
        invite      BLOB NOT NULL,
        nonce       BLOB NOT NULL CHECK (length(nonce) = 16),
        name        TEXT NOT NULL,
        role        TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'declined')),
        expires_at  INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (group_id, incoming, contact_id)
    );
    "#,
    ),
    // ---------------------------------------------------------------- v9
    // Invite links (issue 17, PROTOCOL.md §20.7.2): the secret of each link
    // we opened. Role, uses, expiry and revocation are in the op log.
    Step::Sql(
        r#"
    CREATE TABLE group_links (
        group_id    BLOB NOT NULL REFERENCES groups(group_id) ON DELETE CASCADE,
        link_id     BLOB NOT NULL CHECK (length(link_id) = 16),
        secret      BLOB NOT NULL CHECK (length(secret) = 32),
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (group_id, link_id)
    ) WITHOUT ROWID;
    "#,
    ),
];

/// The schema version this build creates and reads.
pub const LATEST_VERSION: u32 = MIGRATIONS.len() as u32;

/// The database's current `user_version`.
pub fn version(conn: &Connection) -> Result<u32, Error> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db("reading the schema version"))
}

/// Upgrade the database to [`LATEST_VERSION`].
pub fn migrate(conn: &mut Connection) -> Result<u32, Error> {
    migrate_to(conn, LATEST_VERSION)
}

/// Upgrade the database to `target` (used by tests to build old versions).
pub(crate) fn migrate_to(conn: &mut Connection, target: u32) -> Result<u32, Error> {
    let current = version(conn)?;
    if current > LATEST_VERSION {
        return Err(Error::SchemaTooNew {
            found: current,
            supported: LATEST_VERSION,
        });
    }
    for v in current..target.min(LATEST_VERSION) {
        let tx = conn
            .transaction()
            .map_err(db("starting a schema migration"))?;
        let step = MIGRATIONS.get(v as usize).ok_or(Error::SchemaTooNew {
            found: v,
            supported: LATEST_VERSION,
        })?;
        step.run(&tx).map_err(db("migrating the schema"))?;
        tx.pragma_update(None, "user_version", v + 1)
            .map_err(db("recording the schema version"))?;
        tx.commit().map_err(db("committing a schema migration"))?;
    }
    version(conn)
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn schema(conn: &Connection) -> Vec<String> {
        let mut st = conn
            .prepare("SELECT type || ' ' || name || ': ' || coalesce(sql, '') FROM sqlite_master ORDER BY type, name")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn every_version_upgrades_to_the_same_schema() {
        let mut fresh = Connection::open_in_memory().unwrap();
        assert_eq!(migrate(&mut fresh).unwrap(), LATEST_VERSION);
        let want = schema(&fresh);
        const { assert!(LATEST_VERSION >= 2) };
        for start in 0..LATEST_VERSION {
            let mut c = Connection::open_in_memory().unwrap();
            assert_eq!(migrate_to(&mut c, start).unwrap(), start);
            assert_eq!(migrate(&mut c).unwrap(), LATEST_VERSION);
            assert_eq!(schema(&c), want, "upgrade from v{start}");
            // Idempotent once at the latest version.
            assert_eq!(migrate(&mut c).unwrap(), LATEST_VERSION);
        }
    }

    #[test]
    fn v6_turns_chunk_ranges_into_rows() {
        let mut c = Connection::open_in_memory().unwrap();
        migrate_to(&mut c, 5).unwrap();
        let mut have = crate::store::ChunkSet::new();
        for i in [0, 1, 2, 7, 9] {
            have.insert(i);
        }
        c.execute_batch(
            "INSERT INTO contacts (id, username, fingerprint, public_cert, state, created_at) \
             VALUES (1, '@a', 'F', x'00', 'active', 0)",
        )
        .unwrap();
        for (id, blob) in [([1u8; 16], have.to_bytes()), ([2u8; 16], Vec::new())] {
            c.execute(
                "INSERT INTO file_transfers (transfer_id, contact_id, direction, name, size, \
                 sha256, chunk_size, chunks_have, state, created_at, updated_at) \
                 VALUES (?1, 1, 'in', 'f', 655360, x'00', 65536, ?2, 'active', 0, 0)",
                rusqlite::params![&id[..], blob],
            )
            .unwrap();
        }
        migrate(&mut c).unwrap();
        let count = |id: [u8; 16]| -> (u64, u64) {
            c.query_row(
                "SELECT chunks_count, (SELECT count(*) FROM file_chunks WHERE transfer_id = ?1) \
                 FROM file_transfers WHERE transfer_id = ?1",
                [&id[..]],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap()
        };
        assert_eq!(count([1; 16]), (5, 5));
        assert_eq!(count([2; 16]), (0, 0));
    }

    #[test]
    fn refuses_newer_schema() {
        let mut c = Connection::open_in_memory().unwrap();
        c.pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
        let e = migrate(&mut c).unwrap_err();
        assert!(matches!(e, Error::SchemaTooNew { .. }), "{e}");
    }
}
