//! Groups (PROTOCOL.md §20): the membership log, members, group messages,
//! per-member outboxes, delivery cursors and direct invites.
//!
//! The node keeps each group's verified state in memory (rebuilt from the
//! op log at start) and writes every change that belongs together with one
//! [`GroupWrite`], applied in one transaction: an op with the rows it
//! changes and the outbox entries it causes, or delivered messages with the
//! tracker cursors that make them exactly-once. Fingerprints are stored as
//! 40 upper-case hex digits, group ids as 32-byte blobs.

use rusqlite::{OptionalExtension, Row, params};

use super::err::db;
use super::{Result, Store, now};

/// Where I stand in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStatus {
    /// I accepted an invite; the log has not shown my Add yet.
    Joining,
    /// A member.
    Active,
    /// Someone removed me.
    Removed,
    /// I left.
    Left,
    /// The owner dissolved the group.
    Dissolved,
    /// A split view was detected: nothing is sent or accepted (§20.5).
    Frozen,
}

impl GroupStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupStatus::Joining => "joining",
            GroupStatus::Active => "active",
            GroupStatus::Removed => "removed",
            GroupStatus::Left => "left",
            GroupStatus::Dissolved => "dissolved",
            GroupStatus::Frozen => "frozen",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<GroupStatus> {
        Some(match s {
            "joining" => GroupStatus::Joining,
            "active" => GroupStatus::Active,
            "removed" => GroupStatus::Removed,
            "left" => GroupStatus::Left,
            "dissolved" => GroupStatus::Dissolved,
            "frozen" => GroupStatus::Frozen,
            _ => return None,
        })
    }

    /// Whether messages and ops still flow (not ended, not frozen).
    pub fn is_live(self) -> bool {
        matches!(self, GroupStatus::Active | GroupStatus::Joining)
    }
}

/// A group as stored (the summary the log determines, and my place in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// The random 32-byte group id.
    pub group_id: [u8; 32],
    /// Name (untrusted text: neutralise before display).
    pub name: String,
    /// Topic (untrusted text).
    pub topic: String,
    /// FLAG_ROOM | FLAG_HISTORY.
    pub flags: u8,
    /// My role (`owner`, `admin`, `member`, `read-only`), if a member.
    pub my_role: Option<String>,
    /// My status.
    pub status: GroupStatus,
    /// Position of the log head.
    pub head_seq: u64,
    /// Hash of the log head.
    pub head: [u8; 32],
    /// The last sequence number I used for a message.
    pub my_seq: u64,
    /// A warning for the user (split view, refused op), if any.
    pub warning: Option<String>,
    /// When the group was created or joined here.
    pub created_at: u64,
}

/// A member as stored (mirrors the log's state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMemberRecord {
    /// Fingerprint, 40 upper-case hex digits.
    pub fingerprint: String,
    /// The username from the member's certificate (untrusted text).
    pub username: String,
    /// Role name.
    pub role: String,
}

/// Delivery state of a group message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupMessageState {
    /// Mine, still in at least one member's outbox.
    Pending,
    /// Mine, acknowledged by every member I deliver to.
    Delivered,
    /// Someone else's, delivered to me.
    Received,
}

impl GroupMessageState {
    fn as_str(self) -> &'static str {
        match self {
            GroupMessageState::Pending => "pending",
            GroupMessageState::Delivered => "delivered",
            GroupMessageState::Received => "received",
        }
    }

    fn parse(s: &str) -> GroupMessageState {
        match s {
            "pending" => GroupMessageState::Pending,
            "delivered" => GroupMessageState::Delivered,
            _ => GroupMessageState::Received,
        }
    }
}

/// A group message to store.
#[derive(Debug, Clone)]
pub struct NewGroupMessage {
    /// Message id (SHA-256 of the body).
    pub msg_id: [u8; 32],
    /// Sender fingerprint.
    pub sender: String,
    /// The sender's sequence number.
    pub seq: u64,
    /// The log position the sender named.
    pub log_seq: u64,
    /// The sender's clock.
    pub sent_at: u64,
    /// Display text (`None` for contents without text: deletes, files).
    pub body: Option<String>,
    /// The whole signed message, encoded (served to pulls and relayed).
    pub wire: Vec<u8>,
    /// State.
    pub state: GroupMessageState,
}

/// A stored group message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMessageRecord {
    /// Row id (display order).
    pub id: i64,
    /// Message id.
    pub msg_id: [u8; 32],
    /// Sender fingerprint.
    pub sender: String,
    /// The sender's sequence number.
    pub seq: u64,
    /// The log position the sender named.
    pub log_seq: u64,
    /// The sender's clock.
    pub sent_at: u64,
    /// When it was stored here.
    pub received_at: u64,
    /// Text, if any (untrusted: neutralise before display).
    pub body: Option<String>,
    /// Delivery state.
    pub state: GroupMessageState,
    /// Hidden by a Delete for everyone.
    pub deleted: bool,
}

/// What an outbox entry carries (for the cumulative GroupAck, §20.9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxKind {
    /// A log entry at `seq`.
    Op,
    /// A proposal for log position `seq` (moot once the recipient's log reaches it).
    Proposal,
    /// The message `(sender, seq)`.
    Message,
    /// A direct invite or an answer to one (dropped by any ack for the group).
    Invite,
}

impl OutboxKind {
    fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Op => "op",
            OutboxKind::Proposal => "proposal",
            OutboxKind::Message => "message",
            OutboxKind::Invite => "invite",
        }
    }
}

/// An entry to queue for one member.
#[derive(Debug, Clone)]
pub struct GroupOutboxItem {
    /// Recipient fingerprint.
    pub recipient: String,
    /// What it is.
    pub kind: OutboxKind,
    /// Message sender (messages only; empty otherwise).
    pub sender: String,
    /// Log position (ops, proposals) or the sender's sequence (messages).
    pub seq: u64,
    /// The encoded group peer message (`kind || body`).
    pub wire: Vec<u8>,
}

/// A queued entry as read back.
#[derive(Debug, Clone)]
pub struct QueuedGroupItem {
    /// Row id.
    pub id: i64,
    /// The group.
    pub group_id: [u8; 32],
    /// The encoded group peer message.
    pub wire: Vec<u8>,
}

/// A direct invite as stored, in either direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInviteRecord {
    /// The group.
    pub group_id: [u8; 32],
    /// `true`: I was invited; `false`: I invited.
    pub incoming: bool,
    /// The contact on the other side.
    pub contact: super::ContactId,
    /// The signed invite, encoded.
    pub invite: Vec<u8>,
    /// Its nonce.
    pub nonce: [u8; 16],
    /// The group name it announced (untrusted).
    pub name: String,
    /// Role offered.
    pub role: String,
    /// `pending`, `accepted` or `declined`.
    pub state: String,
    /// Expiry.
    pub expires_at: u64,
}

/// Everything one group change writes, applied in one transaction.
#[derive(Debug, Clone, Default)]
pub struct GroupWrite {
    /// The group row to insert or update.
    pub group: Option<GroupRecord>,
    /// Log entries to append `(seq, encoded op)`.
    pub ops: Vec<(u64, Vec<u8>)>,
    /// The whole member list, replacing the stored one.
    pub members: Option<Vec<GroupMemberRecord>>,
    /// Messages to store (duplicates by `(sender, seq)` are ignored).
    pub messages: Vec<NewGroupMessage>,
    /// Tracker cursors `(sender, next expected seq)`.
    pub cursors: Vec<(String, u64)>,
    /// Recipients whose whole outbox for this group is dropped first.
    pub drop_outbox: Vec<String>,
    /// Entries to queue.
    pub enqueue: Vec<GroupOutboxItem>,
    /// Messages to hide `(target msg id)`.
    pub deletes: Vec<[u8; 32]>,
}

const GROUP_COLUMNS: &str =
    "group_id, name, topic, flags, my_role, status, head_seq, head, my_seq, warning, created_at";

fn blob32(r: &Row<'_>, i: usize) -> rusqlite::Result<[u8; 32]> {
    let v: Vec<u8> = r.get(i)?;
    v.try_into().map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Blob,
            "expected 32 bytes".into(),
        )
    })
}

fn row_to_group(r: &Row<'_>) -> rusqlite::Result<GroupRecord> {
    let status: String = r.get(5)?;
    Ok(GroupRecord {
        group_id: blob32(r, 0)?,
        name: r.get(1)?,
        topic: r.get(2)?,
        flags: r.get(3)?,
        my_role: r.get(4)?,
        status: GroupStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                5,
                rusqlite::types::Type::Text,
                "unknown group status".into(),
            )
        })?,
        head_seq: r.get(6)?,
        head: blob32(r, 7)?,
        my_seq: r.get(8)?,
        warning: r.get(9)?,
        created_at: r.get(10)?,
    })
}

fn row_to_message(r: &Row<'_>) -> rusqlite::Result<GroupMessageRecord> {
    let state: String = r.get(8)?;
    Ok(GroupMessageRecord {
        id: r.get(0)?,
        msg_id: blob32(r, 1)?,
        sender: r.get(2)?,
        seq: r.get(3)?,
        log_seq: r.get(4)?,
        sent_at: r.get(5)?,
        received_at: r.get(6)?,
        body: r.get(7)?,
        state: GroupMessageState::parse(&state),
        deleted: r.get(9)?,
    })
}

const MESSAGE_COLUMNS: &str =
    "id, msg_id, sender, seq, log_seq, sent_at, received_at, body, state, deleted";

impl Store {
    /// Applies one group change in one transaction. Returns the row ids of
    /// the messages that were new (duplicates are skipped).
    pub fn group_write(&mut self, group_id: &[u8; 32], w: &GroupWrite) -> Result<Vec<i64>> {
        let e = db("writing a group change");
        let tx = self.conn.transaction().map_err(e)?;
        if let Some(g) = &w.group {
            tx.execute(
                "INSERT INTO groups (group_id, name, topic, flags, my_role, status, head_seq, head, my_seq, warning, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT(group_id) DO UPDATE SET name = ?2, topic = ?3, flags = ?4, my_role = ?5,
                   status = ?6, head_seq = ?7, head = ?8, my_seq = ?9, warning = ?10",
                params![
                    &g.group_id[..],
                    g.name,
                    g.topic,
                    g.flags,
                    g.my_role,
                    g.status.as_str(),
                    g.head_seq,
                    &g.head[..],
                    g.my_seq,
                    g.warning,
                    g.created_at
                ],
            )
            .map_err(db("writing a group"))?;
        }
        for (seq, op) in &w.ops {
            tx.execute(
                "INSERT INTO group_ops (group_id, seq, op) VALUES (?1, ?2, ?3)",
                params![&group_id[..], seq, op],
            )
            .map_err(db("appending a group op"))?;
        }
        if let Some(members) = &w.members {
            tx.execute(
                "DELETE FROM group_members WHERE group_id = ?1",
                [&group_id[..]],
            )
            .map_err(db("writing group members"))?;
            for m in members {
                tx.execute(
                    "INSERT INTO group_members (group_id, fingerprint, username, role) VALUES (?1, ?2, ?3, ?4)",
                    params![&group_id[..], m.fingerprint, m.username, m.role],
                )
                .map_err(db("writing group members"))?;
            }
        }
        let mut new_rows = Vec::new();
        let at = now();
        for m in &w.messages {
            let n = tx
                .execute(
                    "INSERT OR IGNORE INTO group_messages
                     (group_id, msg_id, sender, seq, log_seq, sent_at, received_at, body, wire, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        &group_id[..],
                        &m.msg_id[..],
                        m.sender,
                        m.seq,
                        m.log_seq,
                        m.sent_at,
                        at,
                        m.body,
                        m.wire,
                        m.state.as_str()
                    ],
                )
                .map_err(db("storing a group message"))?;
            if n == 1 {
                new_rows.push(tx.last_insert_rowid());
            }
        }
        for (sender, next) in &w.cursors {
            tx.execute(
                "INSERT INTO group_cursors (group_id, sender, next_seq) VALUES (?1, ?2, ?3)
                 ON CONFLICT(group_id, sender) DO UPDATE SET next_seq = max(next_seq, ?3)",
                params![&group_id[..], sender, next],
            )
            .map_err(db("writing group cursors"))?;
        }
        for target in &w.deletes {
            tx.execute(
                "UPDATE group_messages SET deleted = 1, body = NULL WHERE group_id = ?1 AND msg_id = ?2",
                params![&group_id[..], &target[..]],
            )
            .map_err(db("hiding a group message"))?;
        }
        for r in &w.drop_outbox {
            tx.execute(
                "DELETE FROM group_outbox WHERE group_id = ?1 AND recipient = ?2",
                params![&group_id[..], r],
            )
            .map_err(db("dropping a group outbox"))?;
        }
        for q in &w.enqueue {
            tx.execute(
                "INSERT INTO group_outbox (group_id, recipient, kind, sender, seq, wire, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    &group_id[..],
                    q.recipient,
                    q.kind.as_str(),
                    q.sender,
                    q.seq,
                    q.wire,
                    at
                ],
            )
            .map_err(db("queueing group traffic"))?;
        }
        if !w.drop_outbox.is_empty() {
            settle_pending(&tx, group_id)?;
        }
        tx.commit().map_err(db("writing a group change"))?;
        Ok(new_rows)
    }

    /// Every group, newest first.
    pub fn groups(&self) -> Result<Vec<GroupRecord>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {GROUP_COLUMNS} FROM groups ORDER BY created_at DESC, rowid DESC"
            ))
            .map_err(db("listing groups"))?;
        st.query_map([], row_to_group)
            .map_err(db("listing groups"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(db("listing groups"))
    }

    /// One group.
    pub fn group(&self, group_id: &[u8; 32]) -> Result<Option<GroupRecord>> {
        self.conn
            .query_row(
                &format!("SELECT {GROUP_COLUMNS} FROM groups WHERE group_id = ?1"),
                [&group_id[..]],
                row_to_group,
            )
            .optional()
            .map_err(db("reading a group"))
    }

    /// The encoded log entries of a group from position `from` on, in order.
    pub fn group_ops(&self, group_id: &[u8; 32], from: u64) -> Result<Vec<Vec<u8>>> {
        let mut st = self
            .conn
            .prepare("SELECT op FROM group_ops WHERE group_id = ?1 AND seq >= ?2 ORDER BY seq")
            .map_err(db("reading a group log"))?;
        st.query_map(params![&group_id[..], from], |r| r.get(0))
            .map_err(db("reading a group log"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(db("reading a group log"))
    }

    /// The stored member list.
    pub fn group_members(&self, group_id: &[u8; 32]) -> Result<Vec<GroupMemberRecord>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT fingerprint, username, role FROM group_members WHERE group_id = ?1
                 ORDER BY CASE role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 WHEN 'member' THEN 2 ELSE 3 END, username",
            )
            .map_err(db("reading group members"))?;
        st.query_map([&group_id[..]], |r| {
            Ok(GroupMemberRecord {
                fingerprint: r.get(0)?,
                username: r.get(1)?,
                role: r.get(2)?,
            })
        })
        .map_err(db("reading group members"))?
        .collect::<rusqlite::Result<_>>()
        .map_err(db("reading group members"))
    }

    /// The tracker cursors `(sender, next expected)` of a group.
    pub fn group_cursors(&self, group_id: &[u8; 32]) -> Result<Vec<(String, u64)>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT sender, next_seq FROM group_cursors WHERE group_id = ?1 ORDER BY sender",
            )
            .map_err(db("reading group cursors"))?;
        st.query_map([&group_id[..]], |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(db("reading group cursors"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(db("reading group cursors"))
    }

    /// The latest `limit` messages of a group, in display order (oldest first).
    pub fn group_history(
        &self,
        group_id: &[u8; 32],
        limit: u32,
    ) -> Result<Vec<GroupMessageRecord>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM (SELECT * FROM group_messages WHERE group_id = ?1
                 ORDER BY id DESC LIMIT ?2) ORDER BY id"
            ))
            .map_err(db("reading group history"))?;
        st.query_map(params![&group_id[..], limit], row_to_message)
            .map_err(db("reading group history"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(db("reading group history"))
    }

    /// One stored message by row id.
    pub fn group_message(&self, id: i64) -> Result<Option<GroupMessageRecord>> {
        self.conn
            .query_row(
                &format!("SELECT {MESSAGE_COLUMNS} FROM group_messages WHERE id = ?1"),
                [id],
                row_to_message,
            )
            .optional()
            .map_err(db("reading a group message"))
    }

    /// The sender of the stored message `msg_id`, if held.
    pub fn group_message_sender(
        &self,
        group_id: &[u8; 32],
        msg_id: &[u8; 32],
    ) -> Result<Option<String>> {
        self.conn
            .query_row(
                "SELECT sender FROM group_messages WHERE group_id = ?1 AND msg_id = ?2",
                params![&group_id[..], &msg_id[..]],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("reading a group message"))
    }

    /// The encoded messages of `sender` from sequence `from` on that were
    /// sent at log position `min_log_seq` or later, in order, at most
    /// `limit` (for pull responses: a requester without HISTORY may not see
    /// messages sent before its Add).
    pub fn group_messages_from(
        &self,
        group_id: &[u8; 32],
        sender: &str,
        from: u64,
        min_log_seq: u64,
        limit: u32,
    ) -> Result<Vec<Vec<u8>>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT wire FROM group_messages WHERE group_id = ?1 AND sender = ?2 AND seq >= ?3
                 AND log_seq >= ?4 ORDER BY seq LIMIT ?5",
            )
            .map_err(db("reading group messages"))?;
        st.query_map(
            params![&group_id[..], sender, from, min_log_seq, limit],
            |r| r.get(0),
        )
        .map_err(db("reading group messages"))?
        .collect::<rusqlite::Result<_>>()
        .map_err(db("reading group messages"))
    }

    /// Every sender with stored messages in a group.
    pub fn group_senders(&self, group_id: &[u8; 32]) -> Result<Vec<String>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT DISTINCT sender FROM group_messages WHERE group_id = ?1 ORDER BY sender",
            )
            .map_err(db("reading group messages"))?;
        st.query_map([&group_id[..]], |r| r.get(0))
            .map_err(db("reading group messages"))?
            .collect::<rusqlite::Result<_>>()
            .map_err(db("reading group messages"))
    }

    /// Queued entries for `recipient` (every group), oldest first, at most `limit`.
    pub fn group_outbox(&self, recipient: &str, limit: u32) -> Result<Vec<QueuedGroupItem>> {
        self.group_outbox_after(recipient, 0, limit)
    }

    /// Queued entries for `recipient` with a row id above `after`, oldest
    /// first, at most `limit` (a connection's next batch).
    pub fn group_outbox_after(
        &self,
        recipient: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<QueuedGroupItem>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT id, group_id, wire FROM group_outbox WHERE recipient = ?1 AND id > ?2
                 ORDER BY id LIMIT ?3",
            )
            .map_err(db("reading a group outbox"))?;
        st.query_map(params![recipient, after, limit], |r| {
            Ok(QueuedGroupItem {
                id: r.get(0)?,
                group_id: blob32(r, 1)?,
                wire: r.get(2)?,
            })
        })
        .map_err(db("reading a group outbox"))?
        .collect::<rusqlite::Result<_>>()
        .map_err(db("reading a group outbox"))
    }

    /// How many entries wait for `recipient` in `group_id`.
    pub fn group_outbox_len(&self, group_id: &[u8; 32], recipient: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT count(*) FROM group_outbox WHERE group_id = ?1 AND recipient = ?2",
                params![&group_id[..], recipient],
                |r| r.get(0),
            )
            .map_err(db("reading a group outbox"))
    }

    /// Applies a GroupAck from `recipient`: drops the entries it covers
    /// (ops and proposals up to `log_seq`, messages below each sender's
    /// cursor) and marks my messages delivered once no outbox holds them.
    /// Returns how many entries left the outbox.
    pub fn group_acked(
        &mut self,
        group_id: &[u8; 32],
        recipient: &str,
        log_seq: u64,
        cursors: &[(String, u64)],
    ) -> Result<usize> {
        let tx = self
            .conn
            .transaction()
            .map_err(db("applying a group ack"))?;
        let mut n = tx
            .execute(
                "DELETE FROM group_outbox WHERE group_id = ?1 AND recipient = ?2
                 AND (kind = 'invite' OR (kind IN ('op', 'proposal') AND seq <= ?3))",
                params![&group_id[..], recipient, log_seq],
            )
            .map_err(db("applying a group ack"))?;
        for (sender, next) in cursors {
            n += tx
                .execute(
                    "DELETE FROM group_outbox WHERE group_id = ?1 AND recipient = ?2
                     AND kind = 'message' AND sender = ?3 AND seq < ?4",
                    params![&group_id[..], recipient, sender, next],
                )
                .map_err(db("applying a group ack"))?;
        }
        if n > 0 {
            settle_pending(&tx, group_id)?;
        }
        tx.commit().map_err(db("applying a group ack"))?;
        Ok(n)
    }

    /// Stores a direct invite (replacing an earlier one for the same group,
    /// direction and contact).
    pub fn put_group_invite(&self, inv: &GroupInviteRecord) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO group_invites (group_id, incoming, contact_id, invite, nonce, name, role, state, expires_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT(group_id, incoming, contact_id) DO UPDATE SET invite = ?4, nonce = ?5,
                   name = ?6, role = ?7, state = ?8, expires_at = ?9",
                params![
                    &inv.group_id[..],
                    inv.incoming,
                    inv.contact.0,
                    inv.invite,
                    &inv.nonce[..],
                    inv.name,
                    inv.role,
                    inv.state,
                    inv.expires_at,
                    now()
                ],
            )
            .map_err(db("storing a group invite"))?;
        Ok(())
    }

    /// Every stored invite, newest first.
    pub fn group_invites(&self) -> Result<Vec<GroupInviteRecord>> {
        let mut st = self
            .conn
            .prepare(
                "SELECT group_id, incoming, contact_id, invite, nonce, name, role, state, expires_at
                 FROM group_invites ORDER BY created_at DESC, rowid DESC",
            )
            .map_err(db("reading group invites"))?;
        st.query_map([], |r| {
            let nonce: Vec<u8> = r.get(4)?;
            Ok(GroupInviteRecord {
                group_id: blob32(r, 0)?,
                incoming: r.get(1)?,
                contact: super::ContactId(r.get(2)?),
                invite: r.get(3)?,
                nonce: nonce.try_into().map_err(|_| {
                    rusqlite::Error::FromSqlConversionFailure(
                        4,
                        rusqlite::types::Type::Blob,
                        "expected 16 bytes".into(),
                    )
                })?,
                name: r.get(5)?,
                role: r.get(6)?,
                state: r.get(7)?,
                expires_at: r.get(8)?,
            })
        })
        .map_err(db("reading group invites"))?
        .collect::<rusqlite::Result<_>>()
        .map_err(db("reading group invites"))
    }
}

/// My pending messages that no outbox holds any more are delivered.
fn settle_pending(tx: &rusqlite::Transaction<'_>, group_id: &[u8; 32]) -> Result<()> {
    tx.execute(
        "UPDATE group_messages SET state = 'delivered'
         WHERE group_id = ?1 AND state = 'pending' AND NOT EXISTS (
           SELECT 1 FROM group_outbox o WHERE o.group_id = group_messages.group_id
           AND o.kind = 'message' AND o.sender = group_messages.sender AND o.seq = group_messages.seq)",
        [&group_id[..]],
    )
    .map_err(db("settling group deliveries"))?;
    Ok(())
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    use crate::store::test_support::{group_record as group, temp_store as store};

    fn msg(sender: &str, seq: u64, state: GroupMessageState) -> NewGroupMessage {
        NewGroupMessage {
            msg_id: [seq as u8; 32],
            sender: sender.into(),
            seq,
            log_seq: 0,
            sent_at: 1,
            body: Some(format!("m{seq}")),
            wire: vec![seq as u8],
            state,
        }
    }

    fn item(recipient: &str, sender: &str, seq: u64) -> GroupOutboxItem {
        GroupOutboxItem {
            recipient: recipient.into(),
            kind: OutboxKind::Message,
            sender: sender.into(),
            seq,
            wire: vec![seq as u8],
        }
    }

    #[test]
    fn write_ack_and_settle() {
        let (_t, mut s) = store();
        let g = [7; 32];
        let w = GroupWrite {
            group: Some(group(7)),
            ops: vec![(0, vec![0])],
            members: Some(vec![GroupMemberRecord {
                fingerprint: "A".into(),
                username: "@a".into(),
                role: "owner".into(),
            }]),
            messages: vec![msg("A", 1, GroupMessageState::Pending)],
            cursors: vec![("A".into(), 2)],
            enqueue: vec![item("B", "A", 1), item("C", "A", 1)],
            ..GroupWrite::default()
        };
        assert_eq!(s.group_write(&g, &w).unwrap().len(), 1);
        // The same message again is a duplicate: nothing new.
        let again = GroupWrite {
            messages: vec![msg("A", 1, GroupMessageState::Pending)],
            ..GroupWrite::default()
        };
        assert!(s.group_write(&g, &again).unwrap().is_empty());
        assert_eq!(s.groups().unwrap().len(), 1);
        assert_eq!(s.group_ops(&g, 0).unwrap(), vec![vec![0]]);
        assert_eq!(s.group_outbox("B", 10).unwrap().len(), 1);
        assert_eq!(s.group_acked(&g, "B", 0, &[("A".into(), 2)]).unwrap(), 1);
        let h = s.group_history(&g, 10).unwrap();
        assert_eq!(h[0].state, GroupMessageState::Pending, "C has not acked");
        assert_eq!(s.group_acked(&g, "C", 0, &[("A".into(), 1)]).unwrap(), 0);
        assert_eq!(s.group_acked(&g, "C", 0, &[("A".into(), 2)]).unwrap(), 1);
        let h = s.group_history(&g, 10).unwrap();
        assert_eq!(h[0].state, GroupMessageState::Delivered);
        // Cursors never move back.
        let back = GroupWrite {
            cursors: vec![("A".into(), 1)],
            ..GroupWrite::default()
        };
        s.group_write(&g, &back).unwrap();
        assert_eq!(s.group_cursors(&g).unwrap(), vec![("A".to_owned(), 2)]);
    }

    #[test]
    fn a_failed_write_changes_nothing() {
        let (_t, mut s) = store();
        let g = [8; 32];
        s.group_write(
            &g,
            &GroupWrite {
                group: Some(group(8)),
                ops: vec![(0, vec![0])],
                ..GroupWrite::default()
            },
        )
        .unwrap();
        // A duplicate log position fails the whole write: the message and
        // the outbox entry that came with it are not stored.
        let bad = GroupWrite {
            ops: vec![(0, vec![9])],
            messages: vec![msg("A", 1, GroupMessageState::Received)],
            enqueue: vec![item("B", "A", 1)],
            ..GroupWrite::default()
        };
        assert!(s.group_write(&g, &bad).is_err());
        assert!(s.group_history(&g, 10).unwrap().is_empty());
        assert!(s.group_outbox("B", 10).unwrap().is_empty());
        assert_eq!(s.group_ops(&g, 0).unwrap(), vec![vec![0]]);
    }
}
