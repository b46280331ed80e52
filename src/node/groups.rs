//! Groups in the node (PROTOCOL.md §20): the verified state of every group
//! in memory, the membership log's sequencing (owner) and proposals
//! (admins, members), fan-out through per-member outboxes, delivery through
//! the per-sender tracker, pulls, acks and direct invites.
//!
//! Every group is rebuilt from its stored op log at start (each op checked
//! again, signatures included). All group work runs under one async lock
//! ([`Groups::map`]): a change is checked on a copy of the state, written to
//! the store in one transaction, and only then becomes the in-memory state,
//! so a refused input or a failed write changes nothing.
//!
//! Delivery: every entry for a member goes into that member's outbox in the
//! store (`group_outbox`), keyed by fingerprint, and reaches the member's
//! connection as [`Command::GroupFlush`]; the connection writes what it has
//! not written yet and the member's cumulative GroupAck drops it. One
//! member offline never blocks another: each outbox drains on its own
//! connection. Only members that are our contacts are reachable; the owner
//! relays every message it receives to the members it reaches, and admins
//! relay what they got from the sender directly and forward ops, so members
//! who are not contacts of each other still get each other's messages and
//! the log, also after the ownership moved (PROTOCOL.md §20.14; §20.8
//! allows relaying; introductions are not built).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::group::wire::refusal;
use crate::group::{
    Action, Content, DeliveryTracker, DirectInvite, FLAG_HISTORY, GROUP_VERSION, GroupAck,
    GroupError, GroupId, GroupMessage, GroupState, GroupWire, Offer, Op, OpBody, PullRequest,
    PullResponse, Role, state::Event as OpEvent,
};
use crate::identity::{Fingerprint, PublicCert};
use crate::limits::{MAX_PULL_BYTES, MAX_PULL_ITEMS};
use crate::store::{
    ContactId, GroupInviteRecord, GroupMemberRecord, GroupMessageState, GroupOutboxItem,
    GroupRecord, GroupStatus, GroupWrite, NewGroupMessage, OutboxKind, Store,
};

use super::command::Command;
use super::inner::Inner;
use super::{Event, NodeError};

/// Messages naming a log entry we do not hold yet, kept per group until
/// the log catches up (then retried), at most this many.
const MAX_BEHIND: usize = 256;

/// Outbox entries a connection reads per flush.
pub(super) const FLUSH_BATCH: u32 = 256;

/// What the node reports about groups (carried by [`Event::Group`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupEvent {
    /// A message was stored (`message` is its row id).
    Message {
        /// Row id in the store.
        message: i64,
    },
    /// Members, roles, name, topic or my status changed.
    Changed,
    /// A contact invited us.
    Invited {
        /// Who.
        contact: ContactId,
    },
    /// A contact answered our invite.
    InviteAnswered {
        /// Who.
        contact: ContactId,
        /// Accepted or declined.
        accepted: bool,
    },
    /// Something the user must know: a refused op or message, a split
    /// view, a refused proposal. The text names no identifier.
    Warning {
        /// What happened.
        reason: String,
    },
}

/// The in-memory part of one group.
pub(super) struct Runtime {
    pub(super) state: GroupState,
    pub(super) tracker: DeliveryTracker<GroupMessage>,
    pub(super) rec: GroupRecord,
    pub(super) behind: Vec<(ContactId, GroupMessage)>,
}

/// Every group's runtime, under one async lock.
#[derive(Default)]
pub(super) struct Groups {
    pub(super) map: tokio::sync::Mutex<HashMap<[u8; 32], Runtime>>,
}

/// The stored name of a role.
pub fn role_name(r: Role) -> &'static str {
    match r {
        Role::Owner => "owner",
        Role::Admin => "admin",
        Role::Member => "member",
        Role::ReadOnly => "read-only",
    }
}

/// Parses a role name (`admin`, `member`, `read-only`/`readonly`; `owner`).
pub fn parse_role(s: &str) -> Option<Role> {
    Some(match s.to_ascii_lowercase().as_str() {
        "owner" => Role::Owner,
        "admin" => Role::Admin,
        "member" => Role::Member,
        "read-only" | "readonly" | "read_only" => Role::ReadOnly,
        _ => return None,
    })
}

fn hex(f: &Fingerprint) -> String {
    f.to_hex()
}

fn fpr(b: &[u8; 20]) -> Fingerprint {
    Fingerprint::from_bytes(*b)
}

fn member_rows(state: &GroupState) -> Vec<GroupMemberRecord> {
    state
        .members()
        .iter()
        .map(|(f, m)| GroupMemberRecord {
            fingerprint: hex(f),
            username: m
                .cert
                .username()
                .map(|u| u.as_str().to_owned())
                .unwrap_or_else(|_| "?".to_owned()),
            role: role_name(m.role).to_owned(),
        })
        .collect()
}

/// The stored record for `state`, keeping what the log does not decide.
fn record(state: &GroupState, old: &GroupRecord, me: &Fingerprint) -> GroupRecord {
    let role = state.role(me);
    let status = if old.status == GroupStatus::Frozen {
        GroupStatus::Frozen
    } else if state.is_dissolved() {
        GroupStatus::Dissolved
    } else if role.is_some() {
        GroupStatus::Active
    } else if matches!(old.status, GroupStatus::Joining) {
        GroupStatus::Joining
    } else if old.status == GroupStatus::Active {
        GroupStatus::Removed
    } else {
        old.status
    };
    GroupRecord {
        group_id: state.id().0,
        name: state.name().to_owned(),
        topic: state.topic().to_owned(),
        flags: state.flags(),
        my_role: role.map(|r| role_name(r).to_owned()),
        status,
        head_seq: state.head_seq(),
        head: state.head(),
        my_seq: old.my_seq,
        warning: old.warning.clone(),
        created_at: old.created_at,
    }
}

/// The tracker cursors for a GroupAck or PullRequest: current members only
/// (≤ MAX_GROUP_MEMBERS), sorted by fingerprint.
fn cursors(rt: &Runtime) -> Vec<([u8; 20], u64)> {
    let mut v: Vec<([u8; 20], u64)> = rt
        .state
        .members()
        .keys()
        .map(|f| (*f.as_bytes(), rt.tracker.next_expected(f)))
        .collect();
    // Former members too, while there is room: their messages still queued
    // at the peer (relayed before they left) are acknowledged as well.
    for (f, n) in rt.tracker.cursors() {
        if v.len() >= crate::limits::MAX_GROUP_MEMBERS {
            break;
        }
        if rt.state.role(&f).is_none() {
            v.push((*f.as_bytes(), n));
        }
    }
    v.sort();
    v
}

fn ack(rt: &Runtime) -> GroupWire {
    GroupWire::Ack(GroupAck {
        group: rt.state.id(),
        log_seq: rt.state.head_seq(),
        cursors: cursors(rt),
    })
}

fn pull(rt: &Runtime) -> GroupWire {
    GroupWire::PullRequest(PullRequest {
        group: rt.state.id(),
        log_seq: rt.state.head_seq(),
        log_head: rt.state.head(),
        cursors: cursors(rt),
    })
}

/// Our own certificate as group ops and join challenges carry it (stripped).
pub(super) fn own_group_cert(inner: &Inner) -> Result<Vec<u8>, NodeError> {
    inner
        .identity
        .public_cert()
        .and_then(|c| c.stripped())
        .and_then(|c| c.to_bytes())
        .map_err(|_| NodeError::Internal {
            what: "our own certificate does not encode",
        })
}

fn encode(w: &GroupWire) -> Result<Vec<u8>, NodeError> {
    Ok(w.encode()?)
}

impl Inner {
    pub(super) fn group_event(&self, group: [u8; 32], event: GroupEvent) {
        let _ = self.events.send(Event::Group { group, event });
    }

    fn warn(&self, group: [u8; 32], reason: String) {
        tracing::info!("a group input was refused");
        self.group_event(group, GroupEvent::Warning { reason });
    }

    /// Wakes the connections of the recipients (fingerprints) that got new
    /// outbox entries.
    pub(super) async fn flush_to(self: &Arc<Self>, recipients: BTreeSet<String>) {
        if recipients.is_empty() {
            return;
        }
        let found = self
            .store
            .run(move |s| -> Result<Vec<ContactId>, crate::store::Error> {
                let mut out = Vec::new();
                for f in &recipients {
                    if let Some(c) = s.contact_by_fingerprint(f)? {
                        out.push(c.id);
                    }
                }
                Ok(out)
            })
            .await;
        match found {
            Ok(Ok(ids)) => {
                for c in ids {
                    self.command(c, Command::GroupFlush);
                }
            }
            // The entries are stored: the next connection flushes them.
            _ => {
                tracing::warn!("looking up group recipients failed; delivery waits for a reconnect")
            }
        }
    }
}

/// Loads every group from the store, replaying its log.
pub(super) async fn load(inner: &Arc<Inner>) -> Result<(), NodeError> {
    let loaded = inner
        .store
        .run(|s| -> Result<Vec<_>, crate::store::Error> {
            let mut out = Vec::new();
            for g in s.groups()? {
                let ops = s.group_ops(&g.group_id, 0)?;
                let cursors = s.group_cursors(&g.group_id)?;
                out.push((g, ops, cursors));
            }
            Ok(out)
        })
        .await??;
    let mut map = inner.groups.map.lock().await;
    for (rec, ops, cursors) in loaded {
        let decoded: Result<Vec<Op>, _> = ops.iter().map(|b| Op::decode(b)).collect();
        let state = match decoded {
            Ok(ops) if !ops.is_empty() => GroupState::from_log(&ops[0], &ops[1..]),
            _ => Err(GroupError::BadGenesis("stored log unreadable")),
        };
        let Ok(state) = state else {
            tracing::warn!("a stored group log does not verify; the group is skipped");
            continue;
        };
        let tracker = DeliveryTracker::resume(
            cursors
                .into_iter()
                .filter_map(|(f, n)| Fingerprint::from_hex(&f).ok().map(|f| (f, n))),
        );
        map.insert(
            rec.group_id,
            Runtime {
                state,
                tracker,
                rec,
                behind: Vec::new(),
            },
        );
    }
    Ok(())
}

/// Which members (fingerprints) are our contacts: the ones we deliver to.
/// A store error is an error, never "not a contact".
fn reachable(
    s: &Store,
    members: impl IntoIterator<Item = String>,
) -> Result<BTreeSet<String>, crate::store::Error> {
    let mut out = BTreeSet::new();
    for f in members {
        if s.contact_by_fingerprint(&f)?.is_some() {
            out.insert(f);
        }
    }
    Ok(out)
}

/// Writes `w` and returns the new message rows.
async fn write(inner: &Arc<Inner>, group: [u8; 32], w: GroupWrite) -> Result<Vec<i64>, NodeError> {
    Ok(inner
        .store
        .run(move |s| s.group_write(&group, &w))
        .await??)
}

/// Commits an op to the group: checked on a copy, stored with the outbox
/// entries it causes, then made current. When we are the owner (the
/// sequencer) it is fanned out to every member we reach.
pub(super) async fn commit_op(
    inner: &Arc<Inner>,
    rt: &mut Runtime,
    op: Op,
) -> Result<OpEvent, NodeError> {
    let me = inner.identity.fingerprint();
    let mut next = rt.state.clone();
    let ev = next.apply(&op)?;
    if ev == OpEvent::Duplicate {
        return Ok(ev);
    }
    let group = rt.state.id().0;
    let seq = op.body.seq;
    let sequenced = rt.state.owner() == me;
    // Admins forward the owner's ops too (§20.8): after a transfer of
    // ownership, members who are not the new owner's contacts still get
    // the log through the former owner (now an admin) or another admin.
    let relay = sequenced || rt.state.role(&me) == Some(Role::Admin);
    let op_bytes = op.encode()?;
    let op_wire = encode(&GroupWire::Op(op.clone()))?;
    let before: BTreeSet<String> = rt.state.members().keys().map(hex).collect();
    let after: BTreeSet<String> = next.members().keys().map(hex).collect();
    let mine = hex(&me);
    let mut rec = record(&next, &rt.rec, &me);
    if matches!(&ev, OpEvent::Left { member } if *member == me) {
        rec.status = GroupStatus::Left;
    }
    // Invitees of ours who were just added get the whole log from us (the
    // owner does it anyway; an admin inviter does it for its invitee).
    let added = match &ev {
        OpEvent::Added { member, .. } => Some(hex(member)),
        _ => None,
    };
    let gone = match &ev {
        OpEvent::Removed { member, .. } | OpEvent::Left { member } => Some(hex(member)),
        _ => None,
    };
    let ended_for_me = rec.status != GroupStatus::Active && rec.status != GroupStatus::Joining;
    let log_bytes: Vec<Vec<u8>> = if added.is_some() {
        let mut all = inner.store.run(move |s| s.group_ops(&group, 0)).await??;
        all.push(op_bytes.clone());
        all.into_iter()
            .map(|b| Op::decode(&b).map(GroupWire::Op).and_then(|w| w.encode()))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let my_invitee = match &added {
        Some(a) => {
            let a = a.clone();
            inner
                .store
                .run(move |s| -> Result<bool, crate::store::Error> {
                    let Some(c) = s.contact_by_fingerprint(&a)? else {
                        return Ok(false);
                    };
                    Ok(s.group_invites()?.iter().any(|i| {
                        i.group_id == group
                            && !i.incoming
                            && i.contact == c.id
                            && i.state == "accepted"
                    }))
                })
                .await??
        }
        None => false,
    };
    let members = member_rows(&next);
    let (w, recipients) = {
        let before2 = before.clone();
        let after2 = after.clone();
        let gone2 = gone.clone();
        inner
            .store
            .run(move |s| -> Result<_, crate::store::Error> {
                let mut w = GroupWrite {
                    group: Some(rec),
                    ops: vec![(seq, op_bytes)],
                    members: Some(members),
                    ..GroupWrite::default()
                };
                let mut to = BTreeSet::new();
                if let Some(g) = &gone2 {
                    w.drop_outbox.push(g.clone());
                }
                if ended_for_me {
                    w.drop_outbox.extend(before2.iter().cloned());
                }
                let everyone: BTreeSet<String> = before2.union(&after2).cloned().collect();
                let reach = reachable(s, everyone.iter().filter(|f| **f != mine).cloned())?;
                for r in &reach {
                    let is_added = added.as_deref() == Some(r.as_str());
                    if is_added && (sequenced || my_invitee) {
                        for (i, b) in log_bytes.iter().enumerate() {
                            w.enqueue.push(GroupOutboxItem {
                                recipient: r.clone(),
                                kind: OutboxKind::Op,
                                sender: String::new(),
                                seq: i as u64,
                                wire: b.clone(),
                            });
                        }
                        to.insert(r.clone());
                    } else if relay && !is_added {
                        w.enqueue.push(GroupOutboxItem {
                            recipient: r.clone(),
                            kind: OutboxKind::Op,
                            sender: String::new(),
                            seq,
                            wire: op_wire.clone(),
                        });
                        to.insert(r.clone());
                    }
                }
                Ok((w, to))
            })
            .await??
    };
    let group_rec = w.group.clone();
    write(inner, group, w).await?;
    rt.state = next;
    if let Some(r) = group_rec {
        rt.rec = r;
    }
    if let Some(g) = gone.as_ref().and_then(|g| Fingerprint::from_hex(g).ok()) {
        rt.tracker.forget_buffered(&g);
    }
    inner.group_event(group, GroupEvent::Changed);
    inner.flush_to(recipients).await;
    Ok(ev)
}

/// Our op with `action`, built and signed at the head of `state`.
pub(super) fn sign_at_head(
    inner: &Inner,
    state: &GroupState,
    action: Action,
) -> Result<Op, NodeError> {
    let body = OpBody {
        version: GROUP_VERSION,
        group: state.id(),
        seq: state.next_seq(),
        prev: state.head(),
        at: crate::time::now_secs(),
        author: *inner.identity.fingerprint().as_bytes(),
        action,
    };
    Ok(Op::sign(body, &inner.identity)?)
}

/// Appends (owner) or proposes (anyone else) an op with `action` at our head.
pub(super) async fn act(
    inner: &Arc<Inner>,
    rt: &mut Runtime,
    action: Action,
) -> Result<(), NodeError> {
    if !rt.rec.status.is_live() {
        return Err(NodeError::Invalid {
            what: "group",
            reason: "it is no longer active here (left, removed, dissolved or frozen)",
        });
    }
    let me = inner.identity.fingerprint();
    let op = sign_at_head(inner, &rt.state, action)?;
    if rt.state.owner() == me {
        commit_op(inner, rt, op).await?;
        return Ok(());
    }
    // A proposal: checked here first so the user hears a refusal at once.
    rt.state.check_proposal(&op)?;
    let owner = hex(&rt.state.owner());
    let group = rt.state.id().0;
    let seq = op.body.seq;
    let wire = encode(&GroupWire::Proposal(op))?;
    let o = owner.clone();
    let queued = inner
        .store
        .run(move |s| -> Result<bool, crate::store::Error> {
            if s.contact_by_fingerprint(&o)?.is_none() {
                return Ok(false);
            }
            s.group_write(
                &group,
                &GroupWrite {
                    enqueue: vec![GroupOutboxItem {
                        recipient: o,
                        kind: OutboxKind::Proposal,
                        sender: String::new(),
                        seq,
                        wire,
                    }],
                    ..GroupWrite::default()
                },
            )?;
            Ok(true)
        })
        .await??;
    if !queued {
        return Err(NodeError::Invalid {
            what: "group change",
            reason: "only the owner can make it, and the owner is not your contact",
        });
    }
    inner.flush_to(BTreeSet::from([owner])).await;
    Ok(())
}

/// Signs and fans out a message with `content`; returns its row id.
pub(super) async fn send(
    inner: &Arc<Inner>,
    rt: &mut Runtime,
    content: Content,
) -> Result<i64, NodeError> {
    if rt.rec.status != GroupStatus::Active {
        return Err(NodeError::Invalid {
            what: "group",
            reason: "you are not an active member (joining, left, removed, dissolved or frozen)",
        });
    }
    let me = inner.identity.fingerprint();
    let role = rt.state.role(&me).ok_or(GroupError::NotAMember)?;
    if !role.may_post() {
        return Err(GroupError::CannotPost(role).into());
    }
    let seq = rt.rec.my_seq + 1;
    let body = rt
        .state
        .message_body(&me, seq, Vec::new(), crate::time::now_secs(), content);
    let msg = GroupMessage::sign(body, &inner.identity)?;
    let id = msg.id()?;
    let stored = stored_message(&msg, id, GroupMessageState::Pending)?;
    let wire = encode(&GroupWire::Message(msg.clone()))?;
    let group = rt.state.id().0;
    let mine = hex(&me);
    let members: Vec<String> = rt
        .state
        .members()
        .keys()
        .map(hex)
        .filter(|f| *f != mine)
        .collect();
    let mut rec = rt.rec.clone();
    rec.my_seq = seq;
    let rec2 = rec.clone();
    let (rows, to) = inner
        .store
        .run(move |s| -> Result<_, crate::store::Error> {
            let to = reachable(s, members)?;
            let mut stored = stored;
            if to.is_empty() {
                stored.state = GroupMessageState::Delivered;
            }
            let w = GroupWrite {
                group: Some(rec2),
                messages: vec![stored],
                cursors: vec![(mine.clone(), seq + 1)],
                enqueue: to
                    .iter()
                    .map(|r| GroupOutboxItem {
                        recipient: r.clone(),
                        kind: OutboxKind::Message,
                        sender: mine.clone(),
                        seq,
                        wire: wire.clone(),
                    })
                    .collect(),
                ..GroupWrite::default()
            };
            Ok((s.group_write(&group, &w)?, to))
        })
        .await??;
    rt.rec = rec;
    let _ = rt.tracker.offer(me, seq, id, msg);
    inner.flush_to(to).await;
    rows.first().copied().ok_or(NodeError::Internal {
        what: "a sent group message was not stored",
    })
}

fn stored_message(
    msg: &GroupMessage,
    id: [u8; 32],
    state: GroupMessageState,
) -> Result<NewGroupMessage, NodeError> {
    let b = &msg.body;
    Ok(NewGroupMessage {
        msg_id: id,
        sender: hex(&b.sender()),
        seq: b.seq,
        log_seq: b.log_seq,
        sent_at: b.sent_at,
        body: match &b.content {
            Content::Text { body } => Some(body.clone()),
            Content::File { name, size, .. } => Some(format!("[file offer: {name}, {size} bytes]")),
            _ => None,
        },
        wire: msg.encode()?,
        state,
    })
}

/// What handling one incoming group message asks of the connection.
#[derive(Default)]
struct Reply {
    /// Send these back to the peer.
    out: Vec<GroupWire>,
    /// Groups to acknowledge to the peer after the batch.
    ack: BTreeSet<[u8; 32]>,
    /// Groups to pull from the peer after the batch.
    pull: BTreeSet<[u8; 32]>,
}

/// Freezes a group after a split view (§20.5): nothing more is sent or
/// accepted for it until the user leaves it.
async fn freeze(inner: &Arc<Inner>, rt: &mut Runtime, seq: u64) {
    let mut rec = rt.rec.clone();
    rec.status = GroupStatus::Frozen;
    let reason = format!(
        "split view: entry {seq} of the membership log differs between members; \
         the group is frozen (the owner may have shown members different logs)"
    );
    rec.warning = Some(reason.clone());
    let group = rec.group_id;
    let members: Vec<String> = rt.state.members().keys().map(hex).collect();
    let w = GroupWrite {
        group: Some(rec.clone()),
        drop_outbox: members,
        ..GroupWrite::default()
    };
    if write(inner, group, w).await.is_ok() {
        rt.rec = rec;
    }
    inner.warn(group, reason);
}

/// Verifies and delivers a message that came from `from`.
async fn on_message(
    inner: &Arc<Inner>,
    rt: &mut Runtime,
    from: ContactId,
    msg: GroupMessage,
    reply: &mut Reply,
) -> Result<(), NodeError> {
    let group = rt.state.id().0;
    reply.ack.insert(group);
    let id = match rt.state.verify_message(&msg) {
        Ok(id) => id,
        Err(GroupError::BehindLog { .. }) => {
            if rt.behind.len() < MAX_BEHIND {
                rt.behind.push((from, msg));
            }
            reply.pull.insert(group);
            return Ok(());
        }
        Err(GroupError::SplitView { seq }) => {
            freeze(inner, rt, seq).await;
            return Ok(());
        }
        Err(GroupError::NotAMember) if rt.state.role(&msg.body.sender()).is_none() => {
            // A removed member's message: refused at once (§20.5), quietly.
            tracing::debug!("a group message from a non-member was dropped");
            return Ok(());
        }
        Err(e) => {
            inner.warn(group, format!("refused a group message: {e}"));
            return Ok(());
        }
    };
    let sender = msg.body.sender();
    let seq = msg.body.seq;
    let saved = rt.tracker.clone();
    let delivered = match rt.tracker.offer(sender, seq, id, msg) {
        Ok(Offer::Deliver(list)) => list,
        Ok(Offer::Duplicate) => return Ok(()),
        Ok(Offer::Buffered { .. }) => {
            reply.pull.insert(group);
            return Ok(());
        }
        Err(e) => {
            if matches!(e, GroupError::Equivocation { .. }) {
                inner.warn(group, format!("a member misbehaved: {e}"));
            }
            reply.pull.insert(group);
            return Ok(());
        }
    };
    let me = inner.identity.fingerprint();
    let sequencer = rt.state.owner() == me;
    let admin = rt.state.role(&me) == Some(Role::Admin);
    let from_fpr = if sequencer || admin {
        inner
            .store
            .run(move |s| s.contact(from).map(|c| c.map(|c| c.fingerprint)))
            .await??
    } else {
        None
    };
    // The owner relays every message it delivers; an admin relays those it
    // got from their sender directly (§20.8: a new owner who is not a
    // contact of every member still reaches them through an admin).
    let relay = sequencer || (admin && from_fpr.as_deref() == Some(hex(&sender).as_str()));
    let mut w = GroupWrite {
        cursors: vec![(hex(&sender), rt.tracker.next_expected(&sender))],
        ..GroupWrite::default()
    };
    let mut targets = Vec::new();
    for m in &delivered {
        let mid = m.id()?;
        w.messages
            .push(stored_message(m, mid, GroupMessageState::Received)?);
        if let Content::Delete { target } = &m.body.content {
            targets.push((*target, m.body.sender()));
        }
    }
    // Deletes for everyone, honoured only when allowed (§20.6).
    for (target, deleter) in targets {
        let owner = inner
            .store
            .run(move |s| s.group_message_sender(&group, &target))
            .await??;
        if let Some(o) = owner.and_then(|o| Fingerprint::from_hex(&o).ok())
            && rt.state.check_delete(&deleter, &o).is_ok()
        {
            w.deletes.push(target);
        }
    }
    // Relays (above) pass it on to the members they reach (except the
    // sender and the member it came from): members who are not contacts of
    // each other still get every message.
    let mut to = BTreeSet::new();
    if relay {
        let skip: BTreeSet<String> = [Some(hex(&me)), Some(hex(&sender)), from_fpr]
            .into_iter()
            .flatten()
            .collect();
        let members: Vec<String> = rt
            .state
            .members()
            .keys()
            .map(hex)
            .filter(|f| !skip.contains(f))
            .collect();
        let wires: Vec<(u64, Vec<u8>)> = delivered
            .iter()
            .map(|m| Ok((m.body.seq, encode(&GroupWire::Message(m.clone()))?)))
            .collect::<Result<_, NodeError>>()?;
        let reach = inner.store.run(move |s| reachable(s, members)).await??;
        for r in &reach {
            for (seq, wire) in &wires {
                w.enqueue.push(GroupOutboxItem {
                    recipient: r.clone(),
                    kind: OutboxKind::Message,
                    sender: hex(&sender),
                    seq: *seq,
                    wire: wire.clone(),
                });
            }
        }
        to = reach;
    }
    let rows = match write(inner, group, w).await {
        Ok(r) => r,
        Err(e) => {
            rt.tracker = saved;
            return Err(e);
        }
    };
    for message in rows {
        inner.group_event(group, GroupEvent::Message { message });
    }
    inner.flush_to(to).await;
    Ok(())
}

/// Applies an op that came from `from`; warns on refusals that matter.
async fn on_op(
    inner: &Arc<Inner>,
    rt: &mut Runtime,
    op: Op,
    reply: &mut Reply,
) -> Result<(), NodeError> {
    let group = rt.state.id().0;
    reply.ack.insert(group);
    if rt.rec.status == GroupStatus::Frozen {
        return Ok(());
    }
    match commit_op(inner, rt, op).await {
        Ok(_) => {}
        Err(NodeError::Group(GroupError::Ahead { .. })) => {
            reply.pull.insert(group);
            return Ok(());
        }
        Err(NodeError::Group(e)) => {
            tracing::debug!(kind = ?crate::error::HasKind::kind(&e), "a group op was refused");
            inner.warn(group, format!("refused a change to the group: {e}"));
            return Ok(());
        }
        Err(e) => return Err(e),
    }
    // Messages that waited for this part of the log.
    let behind = std::mem::take(&mut rt.behind);
    for (from, m) in behind {
        Box::pin(on_message(inner, rt, from, m, reply)).await?;
    }
    Ok(())
}

/// The owner's handling of a proposal from `from_fpr`.
async fn on_proposal(
    inner: &Arc<Inner>,
    rt: &mut Runtime,
    from_fpr: &Fingerprint,
    op: Op,
    reply: &mut Reply,
) -> Result<(), NodeError> {
    let group = rt.state.id().0;
    reply.ack.insert(group);
    let me = inner.identity.fingerprint();
    let op_hash = op.hash()?;
    let refuse = |reason: u8| GroupWire::ProposalRefused {
        group: GroupId(group),
        op_hash,
        reason,
    };
    if rt.state.owner() != me || !rt.rec.status.is_live() {
        reply.out.push(refuse(refusal::NOT_PERMITTED));
        return Ok(());
    }
    if op.body.author() != *from_fpr {
        inner.warn(
            group,
            "refused a proposal relayed for someone else (it must come from its author)".into(),
        );
        reply.out.push(refuse(refusal::NOT_PERMITTED));
        return Ok(());
    }
    if let Err(e) = rt.state.check_proposal(&op) {
        let code = match e {
            GroupError::StaleHead { .. } => refusal::STALE_HEAD,
            GroupError::GroupFull { .. } => refusal::GROUP_FULL,
            _ => refusal::NOT_PERMITTED,
        };
        if code == refusal::NOT_PERMITTED {
            inner.warn(group, format!("refused a member's proposal: {e}"));
        }
        reply.out.push(refuse(code));
        return Ok(());
    }
    let op = op.countersign(&inner.identity)?;
    match commit_op(inner, rt, op).await {
        Ok(_) => Ok(()),
        Err(NodeError::Group(_)) => {
            reply.out.push(refuse(refusal::NOT_PERMITTED));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// A member who joined a group without HISTORY is never served the
/// messages sent before its Add (§20.10), so its tracker must not wait for
/// their sequence numbers: when a pull response gives a sender's first
/// message past a cursor that never moved (nothing delivered from that
/// sender yet), sent after our Add and verified, the gap before it is
/// messages we may not see and the tracker moves past it. A responder
/// serves each sender's messages from its floor on without holes (its own
/// tracker delivered them in order), so the first one served is the first
/// we may see — unless the responder joined after us (it then lacks some):
/// like any withholding, that loses those messages for us.
fn skip_unservable(me: &Fingerprint, rt: &mut Runtime, m: &GroupMessage) {
    let sender = m.body.sender();
    let Some(joined) = rt.state.members().get(me).map(|x| x.joined) else {
        return;
    };
    if rt.state.flags() & FLAG_HISTORY != 0
        || rt.tracker.next_expected(&sender) != 1
        || m.body.seq <= 1
        || m.body.log_seq < joined
        || rt.state.verify_message(m).is_err()
    {
        return;
    }
    rt.tracker.skip_to(sender, m.body.seq);
}

/// Answers a pull request (§20.10).
async fn on_pull(
    inner: &Arc<Inner>,
    rt: &mut Runtime,
    from_fpr: &Fingerprint,
    p: PullRequest,
    reply: &mut Reply,
) -> Result<(), NodeError> {
    let group = rt.state.id().0;
    if rt.state.role(from_fpr).is_none() || rt.rec.status == GroupStatus::Frozen {
        return Ok(());
    }
    let from_log = match rt.state.check_head(p.log_seq, &p.log_head) {
        Err(GroupError::SplitView { seq }) => {
            freeze(inner, rt, seq).await;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
        Ok(true) => Some(p.log_seq + 1),
        Ok(false) => None,
    };
    let theirs: HashMap<[u8; 20], u64> = p.cursors.iter().copied().collect();
    // Without HISTORY, messages sent before the requester's Add are not
    // read at all (so they cannot fill a page of nothing servable).
    let floor = if rt.state.flags() & FLAG_HISTORY != 0 {
        0
    } else {
        rt.state
            .members()
            .get(from_fpr)
            .map_or(u64::MAX, |m| m.joined)
    };
    let senders: Vec<(String, u64)> = rt
        .state
        .members()
        .keys()
        .map(|f| (hex(f), theirs.get(f.as_bytes()).copied().unwrap_or(1)))
        .collect();
    let (ops, msgs) = inner
        .store
        .run(move |s| -> Result<_, crate::store::Error> {
            let ops = match from_log {
                Some(n) => s.group_ops(&group, n)?,
                None => Vec::new(),
            };
            // At most MAX_PULL_ITEMS items in all are read, whatever the
            // number of senders.
            let mut msgs = Vec::new();
            for (sender, from) in senders {
                let room = MAX_PULL_ITEMS.saturating_sub(ops.len() + msgs.len());
                if room == 0 {
                    break;
                }
                msgs.extend(s.group_messages_from(&group, &sender, from, floor, room as u32)?);
            }
            Ok((ops, msgs))
        })
        .await??;
    // Everything read fills the response: there may be more.
    let full = ops.len() + msgs.len() >= MAX_PULL_ITEMS;
    let mut resp = PullResponse {
        group: GroupId(group),
        ops: Vec::new(),
        messages: Vec::new(),
        more: full,
    };
    let mut bytes = 0usize;
    let mut cut = false;
    for b in ops {
        if resp.ops.len() >= MAX_PULL_ITEMS || bytes + b.len() > MAX_PULL_BYTES {
            cut = true;
            break;
        }
        bytes += b.len();
        resp.ops.push(Op::decode(&b)?);
    }
    if !cut {
        for b in msgs {
            if resp.ops.len() + resp.messages.len() >= MAX_PULL_ITEMS
                || bytes + b.len() > MAX_PULL_BYTES
            {
                cut = true;
                break;
            }
            let m = GroupMessage::decode(&b)?;
            if rt.state.may_serve(from_fpr, &m) {
                bytes += b.len();
                resp.messages.push(m);
            }
        }
    }
    resp.more = full || cut;
    if !resp.ops.is_empty() || !resp.messages.is_empty() {
        reply.out.push(GroupWire::PullResponse(resp));
    }
    Ok(())
}

/// A joining member's first log entry, from the contact that invited it.
async fn on_genesis(
    inner: &Arc<Inner>,
    map: &mut HashMap<[u8; 32], Runtime>,
    from: ContactId,
    op: Op,
    reply: &mut Reply,
) -> Result<(), NodeError> {
    let group = op.body.group.0;
    if op.body.seq != 0 {
        return Ok(());
    }
    let invited = inner
        .store
        .run(move |s| -> Result<bool, crate::store::Error> {
            Ok(s.group_invites()?.iter().any(|i| {
                i.group_id == group && i.incoming && i.contact == from && i.state == "accepted"
            }))
        })
        .await??;
    if !invited {
        tracing::debug!("a group log from a contact we accepted no invite from was ignored");
        return Ok(());
    }
    let state = match GroupState::genesis(&op) {
        Ok(s) => s,
        Err(e) => {
            inner.warn(group, format!("refused the group's first log entry: {e}"));
            return Ok(());
        }
    };
    let me = inner.identity.fingerprint();
    let blank = GroupRecord {
        group_id: group,
        name: String::new(),
        topic: String::new(),
        flags: 0,
        my_role: None,
        status: GroupStatus::Joining,
        head_seq: 0,
        head: [0; 32],
        my_seq: 0,
        warning: None,
        created_at: crate::time::now_secs(),
    };
    let rec = record(&state, &blank, &me);
    let inviter = inner
        .store
        .run(move |s| s.contact(from).map(|c| c.map(|c| c.fingerprint)))
        .await??;
    let w = GroupWrite {
        group: Some(rec.clone()),
        ops: vec![(0, op.encode()?)],
        members: Some(member_rows(&state)),
        // Our answer was delivered: the log came.
        drop_outbox: inviter.into_iter().collect(),
        ..GroupWrite::default()
    };
    write(inner, group, w).await?;
    map.insert(
        group,
        Runtime {
            state,
            tracker: DeliveryTracker::new(),
            rec,
            behind: Vec::new(),
        },
    );
    reply.ack.insert(group);
    inner.group_event(group, GroupEvent::Changed);
    Ok(())
}

/// A direct invite from `from` (§20.7.1).
async fn on_invite(
    inner: &Arc<Inner>,
    from: ContactId,
    cert: &[u8],
    inv: DirectInvite,
    known: bool,
    reply: &mut Reply,
) -> Result<(), NodeError> {
    let group = inv.body.group.0;
    let me = inner.identity.fingerprint();
    let checked = PublicCert::from_bytes(cert)
        .map_err(|_| GroupError::BadCert)
        .and_then(|c| inv.verify(&c, &me, crate::time::now_secs()));
    if let Err(e) = checked {
        inner.warn(group, format!("refused a group invite: {e}"));
        return Ok(());
    }
    // The inviter drops its outbox entry on our ack.
    reply.out.push(GroupWire::Ack(GroupAck {
        group: GroupId(group),
        log_seq: 0,
        cursors: Vec::new(),
    }));
    if known {
        return Ok(());
    }
    let rec = GroupInviteRecord {
        group_id: group,
        incoming: true,
        contact: from,
        invite: encode(&GroupWire::Invite(inv.clone()))?,
        nonce: inv.body.nonce,
        name: inv.body.name.clone(),
        role: role_name(inv.body.role).to_owned(),
        state: "pending".into(),
        expires_at: inv.body.expires_at,
    };
    inner.store.run(move |s| s.put_group_invite(&rec)).await??;
    inner.group_event(group, GroupEvent::Invited { contact: from });
    Ok(())
}

/// A contact answered our invite.
async fn on_answer(
    inner: &Arc<Inner>,
    map: &mut HashMap<[u8; 32], Runtime>,
    (c, from_fpr): (&crate::store::Contact, &Fingerprint),
    (group, nonce, accept): ([u8; 32], [u8; 16], bool),
    reply: &mut Reply,
) -> Result<(), NodeError> {
    let from = c.id;
    let cert = c.public_cert.clone();
    let found = inner
        .store
        .run(move |s| -> Result<_, crate::store::Error> {
            Ok(s.group_invites()?.into_iter().find(|i| {
                i.group_id == group && !i.incoming && i.contact == from && i.nonce == nonce
            }))
        })
        .await??;
    let Some(mut inv) = found else {
        tracing::debug!("an answer to an invite we do not know was ignored");
        return Ok(());
    };
    reply.out.push(GroupWire::Ack(GroupAck {
        group: GroupId(group),
        log_seq: 0,
        cursors: Vec::new(),
    }));
    if inv.state != "pending" {
        return Ok(());
    }
    inv.state = if accept { "accepted" } else { "declined" }.into();
    let role = parse_role(&inv.role).unwrap_or(Role::Member);
    let saved = inv.clone();
    inner
        .store
        .run(move |s| s.put_group_invite(&saved))
        .await??;
    inner.group_event(
        group,
        GroupEvent::InviteAnswered {
            contact: from,
            accepted: accept,
        },
    );
    if !accept {
        return Ok(());
    }
    let Some(rt) = map.get_mut(&group) else {
        return Ok(());
    };
    let cert = PublicCert::from_bytes(&cert)
        .and_then(|c| c.stripped())
        .and_then(|c| c.to_bytes())
        .map_err(|_| GroupError::BadCert)?;
    let action = Action::Add {
        member: *from_fpr.as_bytes(),
        cert,
        role,
        link: None,
    };
    if let Err(e) = act(inner, rt, action).await {
        tracing::debug!(kind = ?crate::error::HasKind::kind(&e), "adding an invitee failed");
        inner.warn(group, format!("could not add the invited contact: {e}"));
    }
    Ok(())
}

/// Handles a batch of group messages from `contact` and returns what to
/// send back on the same connection.
pub(super) async fn on_inbound(
    inner: &Arc<Inner>,
    contact: ContactId,
    msgs: Vec<GroupWire>,
) -> Result<Vec<GroupWire>, NodeError> {
    let Some(c) = inner.store.run(move |s| s.contact(contact)).await?? else {
        return Ok(Vec::new());
    };
    let from_fpr = Fingerprint::from_hex(&c.fingerprint).map_err(|_| NodeError::Internal {
        what: "a stored fingerprint does not parse",
    })?;
    let mut map = inner.groups.map.lock().await;
    let mut reply = Reply::default();
    for m in msgs {
        tracing::debug!(kind = m.kind(), "group message in");
        match m {
            GroupWire::Invite(inv) => {
                let known = map.contains_key(&inv.body.group.0);
                on_invite(inner, contact, &c.public_cert, inv, known, &mut reply).await?
            }
            GroupWire::InviteAnswer {
                group,
                nonce,
                accept,
            } => {
                on_answer(
                    inner,
                    &mut map,
                    (&c, &from_fpr),
                    (group.0, nonce, accept),
                    &mut reply,
                )
                .await?
            }
            GroupWire::Ack(a) => {
                let group = a.group.0;
                let cur: Vec<(String, u64)> =
                    a.cursors.iter().map(|(f, n)| (hex(&fpr(f)), *n)).collect();
                let who = c.fingerprint.clone();
                let n = inner
                    .store
                    .run(move |s| s.group_acked(&group, &who, a.log_seq, &cur))
                    .await??;
                if n > 0 {
                    inner.group_event(group, GroupEvent::Changed);
                }
            }
            GroupWire::Op(op) => {
                let group = op.body.group.0;
                match map.get_mut(&group) {
                    Some(rt)
                        if rt.state.role(&from_fpr).is_some()
                            || rt.rec.status == GroupStatus::Joining =>
                    {
                        on_op(inner, rt, op, &mut reply).await?
                    }
                    Some(_) => {}
                    None => on_genesis(inner, &mut map, contact, op, &mut reply).await?,
                }
            }
            GroupWire::Proposal(op) => {
                if let Some(rt) = map.get_mut(&op.body.group.0)
                    && rt.state.role(&from_fpr).is_some()
                {
                    on_proposal(inner, rt, &from_fpr, op, &mut reply).await?
                }
            }
            GroupWire::ProposalRefused { group, reason, .. } if map.contains_key(&group.0) => {
                let why = match reason {
                    refusal::STALE_HEAD => "the group changed meanwhile; try again",
                    refusal::NOT_PERMITTED => "your role does not allow it",
                    refusal::GROUP_FULL => "the group is full",
                    refusal::DECLINED => "the owner declined it",
                    _ => "no reason given",
                };
                inner.warn(group.0, format!("the owner refused your change: {why}"));
            }
            GroupWire::Message(msg) => {
                if let Some(rt) = map.get_mut(&msg.body.group.0)
                    && rt.state.role(&from_fpr).is_some()
                    && rt.rec.status.is_live()
                {
                    on_message(inner, rt, contact, msg, &mut reply).await?
                }
            }
            GroupWire::PullRequest(p) => {
                if let Some(rt) = map.get_mut(&p.group.0) {
                    on_pull(inner, rt, &from_fpr, p, &mut reply).await?
                }
            }
            GroupWire::PullResponse(p) => {
                let group = p.group.0;
                let Some(rt) = map.get_mut(&group) else {
                    continue;
                };
                if rt.state.role(&from_fpr).is_none() && rt.rec.status != GroupStatus::Joining {
                    continue;
                }
                let progress = |rt: &Runtime| {
                    (
                        rt.state.head_seq(),
                        rt.tracker.cursors().map(|(_, n)| n).sum::<u64>(),
                    )
                };
                let before = progress(rt);
                for op in p.ops {
                    on_op(inner, rt, op, &mut reply).await?;
                }
                for m in p.messages {
                    if rt.rec.status.is_live() {
                        skip_unservable(&inner.identity.fingerprint(), rt, &m);
                        on_message(inner, rt, contact, m, &mut reply).await?;
                    }
                }
                // Pull on only while it brings something new (a responder
                // repeating itself does not keep us in a loop).
                let rt = map.get(&group);
                if p.more && rt.is_some_and(|rt| progress(rt) != before) {
                    reply.pull.insert(group);
                }
            }
            // Introductions are not built: members who are not contacts get
            // each other's traffic through the owner's relay.
            _ => {}
        }
    }
    for g in &reply.ack {
        if let Some(rt) = map.get(g) {
            reply.out.push(ack(rt));
        }
    }
    for g in &reply.pull {
        if let Some(rt) = map.get(g)
            && rt.rec.status.is_live()
        {
            reply.out.push(pull(rt));
        }
    }
    Ok(reply.out)
}

/// What a connection sends when it becomes Ready: a pull request for each
/// live group the peer is a member of (missed messages come back; §20.9's
/// resend is the outbox flush).
pub(super) async fn on_ready(inner: &Arc<Inner>, peer: &Fingerprint) -> Vec<GroupWire> {
    let map = inner.groups.map.lock().await;
    map.values()
        .filter(|rt| rt.rec.status.is_live() && rt.state.role(peer).is_some())
        .map(pull)
        .collect()
}
