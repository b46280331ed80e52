//! Messages and the outbox.
//!
//! Each message has a per-contact, per-direction sequence number (from 1). Incoming
//! messages are inserted with the sender's seq; a second insert with the same
//! (contact, direction, seq) is a duplicate and changes nothing ([`Inserted::Duplicate`]),
//! which is what makes re-delivery after a lost ack harmless. Outgoing messages get the
//! next seq from [`Store::enqueue_message`], which also puts them in the outbox; they
//! leave it on a cumulative ack ([`Store::ack_outbox`]).

use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::err::db;
use super::{
    ContactId, DeliveryState, Direction, Error, Inserted, Message, MessageId, NewMessage, Result,
    Store, now,
};

const COLUMNS: &str = "id, contact_id, direction, seq, msg_id, sent_at, received_at, body, state";

fn row_to_message(r: &Row<'_>) -> rusqlite::Result<Message> {
    Ok(Message {
        id: MessageId(r.get(0)?),
        contact: ContactId(r.get(1)?),
        direction: r.get(2)?,
        seq: r.get(3)?,
        msg_id: r.get(4)?,
        sent_at: r.get(5)?,
        received_at: r.get(6)?,
        body: r.get(7)?,
        state: r.get(8)?,
    })
}

pub(super) fn insert(tx: &Transaction<'_>, m: &NewMessage) -> Result<Inserted> {
    if m.seq == 0 {
        return Err(Error::Invalid {
            what: "message seq",
            reason: "sequence numbers start at 1".into(),
        });
    }
    let n = tx
        .prepare_cached(
            "INSERT OR IGNORE INTO messages (contact_id, direction, seq, msg_id, sent_at, received_at, body, state)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .and_then(|mut st| {
            st.execute(params![
                m.contact.0,
                m.direction,
                m.seq,
                m.msg_id,
                m.sent_at,
                m.received_at,
                m.body,
                m.state
            ])
        })
        .map_err(db("storing a message"))?;
    Ok(if n == 0 {
        Inserted::Duplicate
    } else {
        Inserted::New(MessageId(tx.last_insert_rowid()))
    })
}

fn collect(st: &mut rusqlite::Statement<'_>, p: impl rusqlite::Params) -> Result<Vec<Message>> {
    let rows = st
        .query_map(p, row_to_message)
        .map_err(db("reading messages"))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(db("reading messages"))
}

/// Escape `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
fn like_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

impl Store {
    /// Insert one message (one transaction).
    pub fn insert_message(&mut self, m: &NewMessage) -> Result<Inserted> {
        let tx = self.conn.transaction().map_err(db("storing a message"))?;
        let r = insert(&tx, m)?;
        tx.commit().map_err(db("storing a message"))?;
        Ok(r)
    }

    /// Insert many messages in one transaction (one fsync): all or none are stored.
    pub fn insert_messages(&mut self, ms: &[NewMessage]) -> Result<Vec<Inserted>> {
        let tx = self.conn.transaction().map_err(db("storing messages"))?;
        let r = ms
            .iter()
            .map(|m| insert(&tx, m))
            .collect::<Result<Vec<_>>>()?;
        tx.commit().map_err(db("storing messages"))?;
        Ok(r)
    }

    /// Highest stored seq for a contact and direction (0 if none).
    pub fn highest_seq(&self, contact: ContactId, direction: Direction) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT coalesce(max(seq), 0) FROM messages WHERE contact_id = ?1 AND direction = ?2",
                params![contact.0, direction],
                |r| r.get(0),
            )
            .map_err(db("reading a sequence number"))
    }

    /// A message by row id.
    pub fn message(&self, id: MessageId) -> Result<Option<Message>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM messages WHERE id = ?1"),
                [id.0],
                row_to_message,
            )
            .optional()
            .map_err(db("reading a message"))
    }

    /// The latest `limit` messages with a contact, oldest first.
    pub fn history(&self, contact: ContactId, limit: u32) -> Result<Vec<Message>> {
        self.history_before(contact, MessageId(i64::MAX), limit)
    }

    /// The `limit` messages with a contact stored just before `before`, oldest first
    /// (for paging back through history).
    pub fn history_before(
        &self,
        contact: ContactId,
        before: MessageId,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT * FROM (SELECT {COLUMNS} FROM messages WHERE contact_id = ?1 AND id < ?2
                 ORDER BY id DESC LIMIT ?3) ORDER BY id"
            ))
            .map_err(db("reading history"))?;
        collect(&mut st, params![contact.0, before.0, limit])
    }

    /// Messages whose body contains `needle` (case-insensitive for ASCII), newest first,
    /// optionally restricted to one contact.
    pub fn search_messages(
        &self,
        contact: Option<ContactId>,
        needle: &str,
        limit: u32,
    ) -> Result<Vec<Message>> {
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM messages
                 WHERE body LIKE ?1 ESCAPE '\\' AND (?2 IS NULL OR contact_id = ?2)
                 ORDER BY id DESC LIMIT ?3"
            ))
            .map_err(db("searching messages"))?;
        collect(
            &mut st,
            params![like_pattern(needle), contact.map(|c| c.0), limit],
        )
    }

    /// Set one message's delivery state.
    pub fn set_message_state(&self, id: MessageId, state: DeliveryState) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE messages SET state = ?2 WHERE id = ?1",
                params![id.0, state],
            )
            .map_err(db("updating a message"))?;
        if n == 0 {
            return Err(Error::NotFound { what: "message" });
        }
        Ok(())
    }

    /// Mark messages in one direction up to `upto` (inclusive) as read; returns how many changed.
    pub fn mark_read(&self, contact: ContactId, direction: Direction, upto: u64) -> Result<usize> {
        self.conn
            .execute(
                "UPDATE messages SET state = 'read'
                 WHERE contact_id = ?1 AND direction = ?2 AND seq <= ?3 AND state <> 'read'",
                params![contact.0, direction, upto],
            )
            .map_err(db("marking messages read"))
    }

    /// Incoming messages from `contact` not yet marked read.
    pub fn unread_count(&self, contact: ContactId) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM messages
                 WHERE contact_id = ?1 AND direction = 'in' AND state <> 'read'",
                params![contact.0],
                |r| r.get(0),
            )
            .map_err(db("counting unread messages"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    // ---------------------------------------------------------------- outbox

    /// Store an outgoing message with the next seq and put it in the outbox, atomically.
    pub fn enqueue_message(
        &mut self,
        contact: ContactId,
        msg_id: [u8; 16],
        sent_at: u64,
        body: &str,
    ) -> Result<Message> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db("queueing a message"))?;
        let seq: u64 = tx
            .query_row(
                "SELECT coalesce(max(seq), 0) + 1 FROM messages WHERE contact_id = ?1 AND direction = 'out'",
                [contact.0],
                |r| r.get(0),
            )
            .map_err(db("queueing a message"))?;
        let m = NewMessage {
            contact,
            direction: Direction::Outgoing,
            seq,
            msg_id,
            sent_at,
            received_at: None,
            body: body.to_owned(),
            state: DeliveryState::Queued,
        };
        let Inserted::New(id) = insert(&tx, &m).map_err(|e| match e {
            Error::Database { source, .. } if matches!(&source,
                rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation) =>
            {
                Error::NotFound { what: "contact" }
            }
            e => e,
        })?
        else {
            return Err(Error::Conflict {
                what: "outgoing message seq",
            });
        };
        tx.execute(
            "INSERT INTO outbox (message_id, enqueued_at) VALUES (?1, ?2)",
            params![id.0, now()],
        )
        .map_err(db("queueing a message"))?;
        tx.commit().map_err(db("queueing a message"))?;
        Ok(Message {
            id,
            contact: m.contact,
            direction: m.direction,
            seq,
            msg_id,
            sent_at,
            received_at: None,
            body: m.body,
            state: m.state,
        })
    }

    /// Outgoing messages to a contact that are not yet acknowledged, by seq.
    pub fn outbox(&self, contact: ContactId) -> Result<Vec<Message>> {
        let cols = COLUMNS
            .split(", ")
            .map(|c| format!("m.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut st = self
            .conn
            .prepare_cached(&format!(
                "SELECT {cols} FROM outbox o JOIN messages m ON m.id = o.message_id
                 WHERE m.contact_id = ?1 ORDER BY m.seq"
            ))
            .map_err(db("reading the outbox"))?;
        collect(&mut st, [contact.0])
    }

    /// Contacts that have messages waiting in the outbox.
    pub fn outbox_contacts(&self) -> Result<Vec<ContactId>> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT DISTINCT m.contact_id FROM outbox o JOIN messages m ON m.id = o.message_id
                 ORDER BY m.contact_id",
            )
            .map_err(db("reading the outbox"))?;
        let rows = st
            .query_map([], |r| Ok(ContactId(r.get(0)?)))
            .map_err(db("reading the outbox"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db("reading the outbox"))
    }

    /// Record that a queued message was written to a connection (state `sent`, one more attempt).
    pub fn mark_sent(&mut self, id: MessageId) -> Result<()> {
        let tx = self
            .conn
            .transaction()
            .map_err(db("marking a message sent"))?;
        tx.execute(
            "UPDATE outbox SET attempts = attempts + 1 WHERE message_id = ?1",
            [id.0],
        )
        .map_err(db("marking a message sent"))?;
        tx.execute(
            "UPDATE messages SET state = 'sent' WHERE id = ?1 AND state = 'queued'",
            [id.0],
        )
        .map_err(db("marking a message sent"))?;
        tx.commit().map_err(db("marking a message sent"))
    }

    /// Apply a cumulative ack: every outgoing message to `contact` with seq ≤ `upto`
    /// leaves the outbox and becomes `delivered`. Returns how many left the outbox.
    pub fn ack_outbox(&mut self, contact: ContactId, upto: u64) -> Result<usize> {
        let tx = self.conn.transaction().map_err(db("applying an ack"))?;
        let n = apply_ack(&tx, contact, upto)?;
        tx.commit().map_err(db("applying an ack"))?;
        Ok(n)
    }
}

/// Applies a cumulative ack inside `tx`: every outgoing message to `contact`
/// with seq ≤ `upto` leaves the outbox and becomes `delivered`.
pub(super) fn apply_ack(tx: &Transaction<'_>, contact: ContactId, upto: u64) -> Result<usize> {
    let n = tx
        .execute(
            "DELETE FROM outbox WHERE message_id IN (
                 SELECT id FROM messages WHERE contact_id = ?1 AND direction = 'out' AND seq <= ?2)",
            params![contact.0, upto],
        )
        .map_err(db("applying an ack"))?;
    tx.execute(
        "UPDATE messages SET state = 'delivered'
         WHERE contact_id = ?1 AND direction = 'out' AND seq <= ?2 AND state IN ('queued', 'sent')",
        params![contact.0, upto],
    )
    .map_err(db("applying an ack"))?;
    Ok(n)
}

#[cfg(test)]
mod test {
    use super::like_pattern;

    #[test]
    fn like_escapes() {
        assert_eq!(like_pattern("50%_a\\b"), "%50\\%\\_a\\\\b%");
    }
}
