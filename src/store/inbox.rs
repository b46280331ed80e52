//! Received connection requests awaiting the user's decision, and Accept
//! envelopes awaiting delivery (PROTOCOL.md §11.2, §11.3).
//!
//! A request is stored together with its replay record in one transaction
//! before the mailbox item is acknowledged, so neither a crash nor a replay
//! can lose or duplicate it. The stored payload holds the requester's
//! session half (secret): rows are wiped before deletion.

use rusqlite::{OptionalExtension, Transaction, params};

use super::err::db;
use super::{ContactId, Result, Store};

/// A received connection request.
pub struct ReceivedRequestRecord {
    /// The request id.
    pub request_id: [u8; 16],
    /// The requester's folded username (without `@`).
    pub from_username: String,
    /// Their verified fingerprint, 40 upper-case hex digits.
    pub fingerprint: String,
    /// Their certificate (as verified when the request was opened).
    pub public_cert: Vec<u8>,
    /// The canonical handshake payload (kind 1), holding their session half.
    pub payload: zeroize::Zeroizing<Vec<u8>>,
    /// Their note.
    pub note: String,
    /// Unix seconds.
    pub received_at: u64,
    /// After this the request can no longer be accepted.
    pub expires_at: u64,
    /// Their key differs from the one pinned for this name (or the key is
    /// pinned under another name).
    pub key_changed: bool,
}

impl std::fmt::Debug for ReceivedRequestRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceivedRequestRecord([scrubbed])")
    }
}

const COLUMNS: &str = "request_id, from_username, fingerprint, public_cert, payload, note, \
                       received_at, expires_at, key_changed";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ReceivedRequestRecord> {
    Ok(ReceivedRequestRecord {
        request_id: r.get(0)?,
        from_username: r.get(1)?,
        fingerprint: r.get(2)?,
        public_cert: r.get(3)?,
        payload: zeroize::Zeroizing::new(r.get(4)?),
        note: r.get(5)?,
        received_at: r.get(6)?,
        expires_at: r.get(7)?,
        key_changed: r.get(8)?,
    })
}

fn wipe(tx: &Transaction<'_>, cond: &str, arg: &dyn rusqlite::ToSql) -> Result<usize> {
    wipe_where(tx, cond, &[arg])
}

/// Wipes the payloads of the received requests matching `cond`, then
/// deletes them; returns how many.
fn wipe_where(tx: &Transaction<'_>, cond: &str, args: &[&dyn rusqlite::ToSql]) -> Result<usize> {
    tx.execute(
        &format!("UPDATE received_requests SET payload = zeroblob(length(payload)) WHERE {cond}"),
        args,
    )
    .map_err(db("wiping a received request"))?;
    tx.execute(&format!("DELETE FROM received_requests WHERE {cond}"), args)
        .map_err(db("deleting a received request"))
}

impl Store {
    /// Stores a received request and its replay record in one transaction,
    /// replacing an older request from the same key. Returns `false` (and
    /// stores no request) if the request id was seen before or a newer
    /// request from the same key is stored (the replay record is kept).
    pub fn add_received_request(&mut self, r: &ReceivedRequestRecord) -> Result<bool> {
        let tx = self
            .conn
            .transaction()
            .map_err(db("storing a received request"))?;
        let n = tx
            .execute(
                "INSERT OR IGNORE INTO seen_requests (request_id, seen_at, expires_at) VALUES (?1, ?2, ?3)",
                params![r.request_id, super::now(), r.expires_at],
            )
            .map_err(db("recording a request id"))?;
        if n == 0 {
            return Ok(false);
        }
        // One request per sender key, the newest (PROTOCOL.md §12.2 rule 2);
        // `expires_at` is `created_at` plus a constant, so it orders them.
        // A request no newer than one already answered (accepted by us, or
        // whose crossing Accept we applied: rules 2 and 4) is a leftover.
        let newer_exists: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM received_requests WHERE fingerprint = ?1
                   AND (expires_at > ?2 OR (expires_at = ?2 AND request_id > ?3)))
                 OR EXISTS (SELECT 1 FROM answered_requests WHERE fingerprint = ?1
                   AND expires_by >= ?2)",
                params![r.fingerprint, r.expires_at, r.request_id],
                |row| row.get(0),
            )
            .map_err(db("comparing received requests"))?;
        if newer_exists {
            tx.commit().map_err(db("storing a received request"))?;
            return Ok(false);
        }
        wipe(&tx, "fingerprint = ?1", &r.fingerprint)?;
        tx.execute(
            &format!(
                "INSERT INTO received_requests ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ),
            params![
                r.request_id,
                r.from_username,
                r.fingerprint,
                r.public_cert,
                &r.payload[..],
                r.note,
                r.received_at,
                r.expires_at,
                r.key_changed
            ],
        )
        .map_err(db("storing a received request"))?;
        tx.commit().map_err(db("storing a received request"))?;
        Ok(true)
    }

    /// Received requests not yet expired at `now`, oldest first.
    pub fn received_requests(&self, now: u64) -> Result<Vec<ReceivedRequestRecord>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM received_requests WHERE expires_at >= ?1
                 ORDER BY received_at, request_id"
            ))
            .map_err(db("listing received requests"))?;
        let rows = st
            .query_map([now], row)
            .map_err(db("listing received requests"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db("listing received requests"))
    }

    /// One received request.
    pub fn received_request(&self, request_id: &[u8; 16]) -> Result<Option<ReceivedRequestRecord>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM received_requests WHERE request_id = ?1"),
                [request_id],
                row,
            )
            .optional()
            .map_err(db("reading a received request"))
    }

    /// Deletes (wiping) a received request; returns whether it existed.
    pub fn delete_received_request(&mut self, request_id: &[u8; 16]) -> Result<bool> {
        let tx = self
            .conn
            .transaction()
            .map_err(db("deleting a received request"))?;
        let n = wipe(&tx, "request_id = ?1", request_id)?;
        tx.commit().map_err(db("deleting a received request"))?;
        Ok(n > 0)
    }

    /// Marks the requests from `fingerprint` that expire no later than
    /// `expires_by` as answered: stored ones are deleted (wiped), and one
    /// arriving later is refused by [`Store::add_received_request`] like a
    /// replay. Returns how many were deleted.
    pub fn answer_received_requests_from(
        &mut self,
        fingerprint: &str,
        expires_by: u64,
    ) -> Result<usize> {
        let tx = self
            .conn
            .transaction()
            .map_err(db("deleting received requests"))?;
        let n = wipe_where(
            &tx,
            "fingerprint = ?1 AND expires_at <= ?2",
            &[&fingerprint, &expires_by],
        )?;
        tx.execute(
            "INSERT INTO answered_requests (fingerprint, expires_by) VALUES (?1, ?2)
             ON CONFLICT (fingerprint) DO UPDATE SET expires_by = max(expires_by, excluded.expires_by)",
            params![fingerprint, expires_by],
        )
        .map_err(db("recording answered requests"))?;
        tx.commit().map_err(db("deleting received requests"))?;
        Ok(n)
    }

    /// Deletes (wiping) received requests that expired before `now`.
    pub fn expire_received_requests(&mut self, now: u64) -> Result<usize> {
        let tx = self
            .conn
            .transaction()
            .map_err(db("expiring received requests"))?;
        let n = wipe(&tx, "expires_at < ?1", &now)?;
        // Requests they cover could no longer be accepted anyway.
        tx.execute("DELETE FROM answered_requests WHERE expires_by < ?1", [now])
            .map_err(db("expiring received requests"))?;
        tx.commit().map_err(db("expiring received requests"))?;
        Ok(n)
    }

    // ---------------------------------------------------------------- accepts

    /// Remembers the Accept envelope to deliver to `contact` (replacing one).
    pub fn put_pending_accept(
        &self,
        contact: ContactId,
        envelope: &str,
        expires_at: u64,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO pending_accepts (contact_id, envelope, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (contact_id) DO UPDATE SET envelope = excluded.envelope,
                                                        expires_at = excluded.expires_at",
                params![contact.0, envelope, expires_at],
            )
            .map_err(db("storing an accept"))
            .map(|_| ())
    }

    /// Every Accept still to deliver.
    pub fn pending_accepts(&self) -> Result<Vec<(ContactId, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT contact_id, envelope FROM pending_accepts ORDER BY contact_id")
            .map_err(db("listing accepts"))?;
        let rows = st
            .query_map([], |r| Ok((ContactId(r.get(0)?), r.get(1)?)))
            .map_err(db("listing accepts"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db("listing accepts"))
    }

    /// Contacts whose undelivered Accept expired before `now` (the
    /// request's window elapsed without the requester's Hello).
    pub fn expired_pending_accepts(&self, now: u64) -> Result<Vec<ContactId>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT contact_id FROM pending_accepts WHERE expires_at < ?1 ORDER BY contact_id",
            )
            .map_err(db("listing expired accepts"))?;
        let rows = st
            .query_map([now], |r| Ok(ContactId(r.get(0)?)))
            .map_err(db("listing expired accepts"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db("listing expired accepts"))
    }

    /// Forgets the Accept for `contact` (delivered, or the session ended).
    pub fn delete_pending_accept(&self, contact: ContactId) -> Result<bool> {
        self.conn
            .execute(
                "DELETE FROM pending_accepts WHERE contact_id = ?1",
                [contact.0],
            )
            .map_err(db("deleting an accept"))
            .map(|n| n > 0)
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use crate::store::test_support::temp_store as store;

    /// A request with id `id` from a key of its own.
    fn rec(id: u8, at: u64) -> ReceivedRequestRecord {
        from_key(id, at, &format!("{id:02X}").repeat(20))
    }

    fn from_key(id: u8, at: u64, fingerprint: &str) -> ReceivedRequestRecord {
        ReceivedRequestRecord {
            request_id: [id; 16],
            from_username: "bob".into(),
            fingerprint: fingerprint.to_owned(),
            public_cert: vec![1, 2],
            payload: zeroize::Zeroizing::new(vec![9; 10]),
            note: "hi".into(),
            received_at: at,
            expires_at: at + 100,
            key_changed: false,
        }
    }

    #[test]
    fn received_requests_are_stored_once_and_expire() {
        let (_t, mut s) = store();
        assert!(s.add_received_request(&rec(1, 1000)).unwrap());
        // A replay of the same id stores nothing.
        assert!(!s.add_received_request(&rec(1, 1000)).unwrap());
        assert!(s.add_received_request(&rec(2, 2000)).unwrap());
        let all = s.received_requests(1050).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].request_id, [1; 16]);
        assert_eq!(&all[0].payload[..], &[9; 10]);
        assert_eq!(s.received_requests(1101).unwrap().len(), 1);
        assert_eq!(s.expire_received_requests(1101).unwrap(), 1);
        assert!(s.received_request(&[1; 16]).unwrap().is_none());
        assert!(s.delete_received_request(&[2; 16]).unwrap());
        assert!(!s.delete_received_request(&[2; 16]).unwrap());
        // Still a replay after deletion: the seen record stays.
        assert!(!s.add_received_request(&rec(2, 2000)).unwrap());
    }

    /// PROTOCOL.md §12.2 rules 2 and 4: once requests up to some time are
    /// answered, a copy arriving later is a leftover; newer ones are not,
    /// and the mark goes when those requests would have expired.
    #[test]
    fn answered_requests_leave_no_leftovers() {
        let (_t, mut s) = store();
        let key = "C".repeat(40);
        assert!(s.add_received_request(&from_key(1, 1000, &key)).unwrap());
        // Answered up to requests made at 1500 (they expire at 1600).
        assert_eq!(s.answer_received_requests_from(&key, 1600).unwrap(), 1);
        assert!(s.received_requests(0).unwrap().is_empty());
        for (id, at) in [(2, 1200), (3, 1500)] {
            assert!(
                !s.add_received_request(&from_key(id, at, &key)).unwrap(),
                "made at {at}: a leftover"
            );
        }
        // An earlier mark never lowers a later one.
        s.answer_received_requests_from(&key, 1100).unwrap();
        assert!(!s.add_received_request(&from_key(4, 1400, &key)).unwrap());
        assert!(s.add_received_request(&from_key(5, 1501, &key)).unwrap());
        // Other keys are not affected.
        assert!(
            s.add_received_request(&from_key(6, 1000, &"D".repeat(40)))
                .unwrap()
        );
        // Expiry drops the mark with the requests it covered.
        let marks = |s: &Store| -> u32 {
            s.conn
                .query_row("SELECT count(*) FROM answered_requests", [], |r| r.get(0))
                .unwrap()
        };
        s.expire_received_requests(1600).unwrap();
        assert_eq!(marks(&s), 1);
        s.expire_received_requests(1601).unwrap();
        assert_eq!(marks(&s), 0);
    }

    /// PROTOCOL.md §12.2 rule 2: one request per sender key, the newest,
    /// whatever order they arrive in.
    #[test]
    fn one_request_per_key_the_newest() {
        let (_t, mut s) = store();
        let key = "B".repeat(40);
        assert!(s.add_received_request(&from_key(1, 1000, &key)).unwrap());
        assert!(
            s.add_received_request(&from_key(2, 2000, &key)).unwrap(),
            "newer replaces"
        );
        assert!(
            !s.add_received_request(&from_key(3, 1500, &key)).unwrap(),
            "older is dropped"
        );
        // Same time: the larger request id wins, deterministically.
        assert!(s.add_received_request(&from_key(4, 2000, &key)).unwrap());
        assert!(!s.add_received_request(&from_key(0, 2000, &key)).unwrap());
        let ids: Vec<_> = s
            .received_requests(0)
            .unwrap()
            .iter()
            .map(|r| r.request_id[0])
            .collect();
        assert_eq!(ids, vec![4]);
        // Dropped ones are still replays later.
        assert!(!s.add_received_request(&from_key(3, 1500, &key)).unwrap());
        // Another key is independent.
        assert!(
            s.add_received_request(&from_key(5, 500, &"C".repeat(40)))
                .unwrap()
        );
        assert_eq!(s.received_requests(0).unwrap().len(), 2);
    }
}
