//! Session state (per-direction chain keys and counters), pending connection requests,
//! and the replay cache of seen request ids.
//!
//! Counters only move forward: [`Store::save_send_state`] and [`Store::save_recv_state`]
//! refuse a sequence number that is not strictly greater than the stored one
//! ([`Error::CounterRegression`]). The session layer persists the advanced send state
//! *before* a frame leaves the process, so a crash can never make it reuse a chain key.
//!
//! Deleting secrets overwrites them with zeros in place before the row is deleted
//! (`secure_delete` is on as well), then the WAL is checkpointed and truncated so the
//! old pages do not linger in WAL frames. The file system may still hold old blocks;
//! they are encrypted under the database key.

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::err::db;
use super::{
    ChainState, ContactId, Error, PendingRequest, Result, SessionRecord, Store, secret_column,
};

const SESSION_COLUMNS: &str =
    "contact_id, session_id, send_chain_key, send_seq, recv_chain_key, recv_seq, created_at";

fn row_to_session(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        contact: ContactId(r.get(0)?),
        session_id: r.get(1)?,
        send: ChainState {
            chain_key: secret_column(r, 2)?,
            seq: r.get(3)?,
        },
        recv: ChainState {
            chain_key: secret_column(r, 4)?,
            seq: r.get(5)?,
        },
        created_at: r.get(6)?,
    })
}

/// Overwrite the chain keys of the matching sessions with zeros, then delete them.
pub(crate) fn wipe_sessions(
    tx: &Transaction<'_>,
    cond: &str,
    arg: &dyn rusqlite::ToSql,
) -> Result<usize> {
    tx.execute(
        &format!(
            "UPDATE sessions SET send_chain_key = zeroblob(length(send_chain_key)),
                                 recv_chain_key = zeroblob(length(recv_chain_key)) WHERE {cond}"
        ),
        [arg],
    )
    .map_err(db("wiping session keys"))?;
    tx.execute(&format!("DELETE FROM sessions WHERE {cond}"), [arg])
        .map_err(db("deleting a session"))
}

/// Persist one advanced chain (`dir` is `"send"` or `"recv"`) inside `tx`, refusing a
/// counter that does not move forward.
pub(crate) fn save_chain_tx(
    tx: &Transaction<'_>,
    session_id: &[u8; 16],
    state: &ChainState,
    dir: &'static str,
) -> Result<()> {
    let direction = if dir == "send" { "send" } else { "receive" };
    let stored: u64 = tx
        .query_row(
            &format!("SELECT {dir}_seq FROM sessions WHERE session_id = ?1 AND ended_at IS NULL"),
            [session_id],
            |r| r.get(0),
        )
        .optional()
        .map_err(db("saving session state"))?
        .ok_or(Error::NotFound { what: "session" })?;
    if state.seq <= stored {
        return Err(Error::CounterRegression {
            direction,
            stored,
            new: state.seq,
        });
    }
    tx.execute(
        &format!("UPDATE sessions SET {dir}_chain_key = ?2, {dir}_seq = ?3 WHERE session_id = ?1"),
        params![session_id, &state.chain_key[..], state.seq],
    )
    .map_err(db("saving session state"))?;
    Ok(())
}

const PENDING_COLUMNS: &str = "request_id, to_username, ephemeral_secret, session_half, created_at";

fn row_to_pending(r: &Row<'_>) -> rusqlite::Result<PendingRequest> {
    Ok(PendingRequest {
        request_id: r.get(0)?,
        to_username: r.get(1)?,
        ephemeral_secret: secret_column(r, 2)?,
        session_half: secret_column(r, 3)?,
        created_at: r.get(4)?,
    })
}

fn wipe_pending(tx: &Transaction<'_>, cond: &str, arg: &dyn rusqlite::ToSql) -> Result<usize> {
    wipe_pending_where(tx, cond, &[arg])
}

/// Wipes the secrets of the pending requests matching `cond`, then deletes
/// them; returns how many.
fn wipe_pending_where(
    tx: &Transaction<'_>,
    cond: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<usize> {
    tx.execute(
        &format!(
            "UPDATE pending_requests SET ephemeral_secret = zeroblob(length(ephemeral_secret)),
                                         session_half = zeroblob(length(session_half)) WHERE {cond}"
        ),
        args,
    )
    .map_err(db("wiping a pending request"))?;
    tx.execute(&format!("DELETE FROM pending_requests WHERE {cond}"), args)
        .map_err(db("deleting a pending request"))
}

impl Store {
    // ---------------------------------------------------------------- sessions

    /// Store a newly established session, replacing (and wiping) any active session
    /// with the same contact, in one transaction.
    pub fn create_session(&mut self, s: &SessionRecord) -> Result<()> {
        let tx = self.conn.transaction().map_err(db("storing a session"))?;
        let replaced = wipe_sessions(&tx, "contact_id = ?1", &s.contact.0)?;
        tx.execute(
            &format!(
                "INSERT INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            ),
            params![
                s.contact.0,
                s.session_id,
                &s.send.chain_key[..],
                s.send.seq,
                &s.recv.chain_key[..],
                s.recv.seq,
                s.created_at
            ],
        )
        .map_err(|e| match &e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Error::Conflict {
                    what: "session id (or unknown contact)",
                }
            }
            _ => db("storing a session")(e),
        })?;
        tx.commit().map_err(db("storing a session"))?;
        if replaced > 0 {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// The active session with a contact.
    pub fn session_for_contact(&self, contact: ContactId) -> Result<Option<SessionRecord>> {
        self.conn
            .query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE contact_id = ?1 AND ended_at IS NULL"),
                [contact.0],
                row_to_session,
            )
            .optional()
            .map_err(db("reading a session"))
    }

    /// The active session with this session id.
    pub fn session(&self, session_id: &[u8; 16]) -> Result<Option<SessionRecord>> {
        self.conn
            .query_row(
                &format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE session_id = ?1 AND ended_at IS NULL"),
                [session_id],
                row_to_session,
            )
            .optional()
            .map_err(db("reading a session"))
    }

    /// Persist an advanced send chain. `state.seq` must exceed the stored counter.
    pub fn save_send_state(&mut self, session_id: &[u8; 16], state: &ChainState) -> Result<()> {
        self.save_chain(session_id, state, "send")
    }

    /// Persist an advanced receive chain. `state.seq` must exceed the stored counter.
    pub fn save_recv_state(&mut self, session_id: &[u8; 16], state: &ChainState) -> Result<()> {
        self.save_chain(session_id, state, "recv")
    }

    fn save_chain(
        &mut self,
        session_id: &[u8; 16],
        state: &ChainState,
        dir: &'static str,
    ) -> Result<()> {
        let tx = self
            .conn
            .transaction()
            .map_err(db("saving session state"))?;
        save_chain_tx(&tx, session_id, state, dir)?;
        tx.commit().map_err(db("saving session state"))
    }

    /// End a session: wipe and delete its keys and record. Returns whether it existed.
    pub fn delete_session(&mut self, session_id: &[u8; 16]) -> Result<bool> {
        let tx = self.conn.transaction().map_err(db("deleting a session"))?;
        let n = wipe_sessions(&tx, "session_id = ?1", session_id)?;
        tx.commit().map_err(db("deleting a session"))?;
        self.checkpoint()?;
        Ok(n > 0)
    }

    // ---------------------------------------------------------------- pending requests

    /// Remember a connection request we sent (with its ephemeral secret) until answered.
    pub fn add_pending_request(&self, p: &PendingRequest) -> Result<()> {
        let res = self.conn.execute(
            &format!(
                "INSERT INTO pending_requests ({PENDING_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
            ),
            params![
                p.request_id,
                p.to_username,
                &p.ephemeral_secret[..],
                &p.session_half[..],
                p.created_at
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::Conflict { what: "request id" })
            }
            Err(e) => Err(db("storing a pending request")(e)),
        }
    }

    /// A pending request by id.
    pub fn pending_request(&self, request_id: &[u8; 16]) -> Result<Option<PendingRequest>> {
        self.conn
            .query_row(
                &format!("SELECT {PENDING_COLUMNS} FROM pending_requests WHERE request_id = ?1"),
                [request_id],
                row_to_pending,
            )
            .optional()
            .map_err(db("reading a pending request"))
    }

    /// All pending requests, oldest first.
    pub fn pending_requests(&self) -> Result<Vec<PendingRequest>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {PENDING_COLUMNS} FROM pending_requests ORDER BY created_at, request_id"
            ))
            .map_err(db("listing pending requests"))?;
        let rows = st
            .query_map([], row_to_pending)
            .map_err(db("listing pending requests"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db("listing pending requests"))
    }

    /// Remove a pending request and return it (atomically), e.g. when its accept arrives.
    /// The stored secrets are wiped; the returned copy is zeroized when dropped.
    pub fn take_pending_request(
        &mut self,
        request_id: &[u8; 16],
    ) -> Result<Option<PendingRequest>> {
        let tx = self
            .conn
            .transaction()
            .map_err(db("taking a pending request"))?;
        let p = tx
            .query_row(
                &format!("SELECT {PENDING_COLUMNS} FROM pending_requests WHERE request_id = ?1"),
                [request_id],
                row_to_pending,
            )
            .optional()
            .map_err(db("taking a pending request"))?;
        if p.is_some() {
            wipe_pending(&tx, "request_id = ?1", request_id)?;
        }
        tx.commit().map_err(db("taking a pending request"))?;
        if p.is_some() {
            self.checkpoint()?;
        }
        Ok(p)
    }

    /// Delete (wiping) a pending request; returns whether it existed.
    pub fn delete_pending_request(&mut self, request_id: &[u8; 16]) -> Result<bool> {
        Ok(self.take_pending_request(request_id)?.is_some())
    }

    /// Wipe and delete the pending requests matching `cond` in one
    /// transaction (checkpointed, so no old page keeps a secret); returns how many.
    fn wipe_pending_requests(
        &mut self,
        action: &'static str,
        cond: &str,
        args: &[&dyn rusqlite::ToSql],
    ) -> Result<usize> {
        let tx = self.conn.transaction().map_err(db(action))?;
        let n = wipe_pending_where(&tx, cond, args)?;
        tx.commit().map_err(db(action))?;
        if n > 0 {
            self.checkpoint()?;
        }
        Ok(n)
    }

    /// Delete (wiping) every pending request to `to_username`; returns how many
    /// (`umbra cancel-request`).
    pub fn cancel_pending_requests_to(&mut self, to_username: &str) -> Result<usize> {
        self.wipe_pending_requests(
            "cancelling pending requests",
            "to_username = ?1",
            &[&to_username],
        )
    }

    /// Delete (wiping) pending requests to `to_username` created before
    /// `created_before` (made obsolete by an answer to a newer one).
    pub fn drop_pending_requests_made_before(
        &mut self,
        to_username: &str,
        created_before: u64,
    ) -> Result<usize> {
        self.wipe_pending_requests(
            "dropping older pending requests",
            "to_username = ?1 AND created_at < ?2",
            &[&to_username, &created_before],
        )
    }

    /// Delete (wiping) pending requests created before `created_before`; returns how many.
    pub fn expire_pending_requests(&mut self, created_before: u64) -> Result<usize> {
        self.wipe_pending_requests(
            "expiring pending requests",
            "created_at < ?1",
            &[&created_before],
        )
    }

    // ---------------------------------------------------------------- replay cache

    /// Record a request id; returns `true` if it had **already** been seen (a replay).
    ///
    /// Insert-if-absent in one statement, so two concurrent checks cannot both pass.
    /// `expires_at` must be no earlier than the time after which the envelope carrying
    /// the id would be rejected as too old anyway (the freshness window), so pruning
    /// never re-opens a replay.
    pub fn seen_request_id(&self, request_id: &[u8; 16], expires_at: u64) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO seen_requests (request_id, seen_at, expires_at) VALUES (?1, ?2, ?3)",
                params![request_id, super::now(), expires_at],
            )
            .map_err(db("recording a request id"))?;
        Ok(n == 0)
    }

    /// Forget request ids that expired before `now`; returns how many.
    pub fn prune_seen_request_ids(&self, now: u64) -> Result<usize> {
        self.conn
            .execute("DELETE FROM seen_requests WHERE expires_at < ?1", [now])
            .map_err(db("pruning request ids"))
    }
}

/// The durable replay cache used by [`crate::handshake::open_request`].
impl crate::handshake::SeenRequests for Store {
    fn record_if_new(
        &mut self,
        id: [u8; 16],
        expires_at: u64,
    ) -> std::result::Result<bool, crate::handshake::SeenError> {
        self.seen_request_id(&id, expires_at)
            .map(|already| !already)
            .map_err(crate::handshake::SeenError::new)
    }
}
