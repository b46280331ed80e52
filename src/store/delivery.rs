//! Combined transactions for the node's delivery path.
//!
//! Each authenticated frame changes a session's chain *and* usually something else
//! (a stored message, an applied ack). Doing both in one transaction keeps the rules
//! of PROTOCOL.md §7.3/§7.4/§12 simple: the advanced send state is durable before the
//! frame leaves the process, and the advanced receive state is durable together with
//! whatever the frame caused to be stored, before any Ack for it is sent.

use rusqlite::params;

use super::err::db;
use super::messages::{apply_ack, insert};
use super::sessions::{save_chain_tx, wipe_sessions};
use super::{ChainState, ContactId, Inserted, MessageId, NewMessage, Result, Store};

/// What an authenticated incoming frame makes the store record, next to the advanced
/// receive chain.
#[derive(Debug, Clone, Copy)]
pub enum IncomingEffect<'a> {
    /// Nothing but the chain (Presence, Hello, duplicates, unknown kinds).
    Nothing,
    /// A new incoming Text.
    Text(&'a NewMessage),
    /// A cumulative Ack from the peer for our outgoing messages.
    Ack {
        /// The contact.
        contact: ContactId,
        /// Every outgoing message with `seq ≤ upto` is stored by the peer.
        upto: u64,
    },
    /// A cumulative read Receipt (implies an Ack).
    Receipt {
        /// The contact.
        contact: ContactId,
        /// Every outgoing message with `seq ≤ upto` was read.
        upto: u64,
    },
}

/// What ending a session changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// Whether a session record existed (and was wiped).
    pub existed: bool,
    /// Outgoing messages that were still in the outbox and are now `failed`.
    pub failed: Vec<MessageId>,
}

impl Store {
    /// Persist the advanced send chain of a session (and that the outbox
    /// messages in `sent` were written at least once) in one transaction.
    /// Call this **before** the sealed frames leave the process; `send` is the
    /// state after the last of them was sealed.
    pub fn record_sent_frames(
        &mut self,
        session_id: &[u8; 16],
        send: &ChainState,
        sent: &[MessageId],
    ) -> Result<()> {
        let tx = self.conn.transaction().map_err(db("recording frames"))?;
        save_chain_tx(&tx, session_id, send, "send")?;
        for id in sent {
            tx.execute(
                "UPDATE outbox SET attempts = attempts + 1 WHERE message_id = ?1",
                [id.0],
            )
            .map_err(db("recording frames"))?;
            tx.execute(
                "UPDATE messages SET state = 'sent' WHERE id = ?1 AND state = 'queued'",
                [id.0],
            )
            .map_err(db("recording frames"))?;
        }
        tx.commit().map_err(db("recording frames"))
    }

    /// Persist the advanced receive chain of a session (the state after the
    /// last of a run of frames) together with every frame's effect, in one
    /// transaction. Returns, per effect, the insert outcome for a Text and how
    /// many messages left the outbox for an Ack or Receipt.
    pub fn record_received_frames(
        &mut self,
        session_id: &[u8; 16],
        recv: &ChainState,
        effects: &[IncomingEffect<'_>],
    ) -> Result<Vec<(Option<Inserted>, usize)>> {
        let tx = self.conn.transaction().map_err(db("recording frames"))?;
        save_chain_tx(&tx, session_id, recv, "recv")?;
        let mut out = Vec::with_capacity(effects.len());
        for effect in effects {
            out.push(match *effect {
                IncomingEffect::Nothing => (None, 0),
                IncomingEffect::Text(m) => (Some(insert(&tx, m)?), 0),
                IncomingEffect::Ack { contact, upto } => (None, apply_ack(&tx, contact, upto)?),
                IncomingEffect::Receipt { contact, upto } => {
                    let n = apply_ack(&tx, contact, upto)?;
                    tx.execute(
                        "UPDATE messages SET state = 'read'
                         WHERE contact_id = ?1 AND direction = 'out' AND seq <= ?2 AND state <> 'read'",
                        params![contact.0, upto],
                    )
                    .map_err(db("applying a receipt"))?;
                    (None, n)
                }
            });
        }
        tx.commit().map_err(db("recording frames"))?;
        Ok(out)
    }

    /// Apply a cumulative ack learnt from a peer's Hello (`last_received`).
    pub fn ack_outbox_upto(&mut self, contact: ContactId, upto: u64) -> Result<usize> {
        let tx = self.conn.transaction().map_err(db("applying an ack"))?;
        let n = apply_ack(&tx, contact, upto)?;
        tx.commit().map_err(db("applying an ack"))?;
        Ok(n)
    }

    /// End the session with `contact` (PROTOCOL.md §15): wipe and delete its keys,
    /// and mark every message still in the outbox `failed` (and remove it from the
    /// outbox), in one transaction. Message history and the contact stay.
    pub fn end_session_with(&mut self, contact: ContactId) -> Result<Ended> {
        let tx = self.conn.transaction().map_err(db("ending a session"))?;
        let existed = wipe_sessions(&tx, "contact_id = ?1", &contact.0)? > 0;
        let failed = {
            let mut st = tx
                .prepare(
                    "SELECT m.id FROM outbox o JOIN messages m ON m.id = o.message_id
                     WHERE m.contact_id = ?1 ORDER BY m.seq",
                )
                .map_err(db("ending a session"))?;
            let rows = st
                .query_map([contact.0], |r| Ok(MessageId(r.get(0)?)))
                .map_err(db("ending a session"))?;
            rows.collect::<rusqlite::Result<Vec<_>>>()
                .map_err(db("ending a session"))?
        };
        tx.execute(
            "UPDATE messages SET state = 'failed' WHERE id IN (
                 SELECT message_id FROM outbox o JOIN messages m ON m.id = o.message_id
                 WHERE m.contact_id = ?1)",
            [contact.0],
        )
        .map_err(db("ending a session"))?;
        tx.execute(
            "DELETE FROM outbox WHERE message_id IN (
                 SELECT id FROM messages WHERE contact_id = ?1)",
            [contact.0],
        )
        .map_err(db("ending a session"))?;
        tx.commit().map_err(db("ending a session"))?;
        self.checkpoint()?;
        Ok(Ended { existed, failed })
    }
}
