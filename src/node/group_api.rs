//! [`NodeHandle`]: groups (PROTOCOL.md §20) for front ends — create,
//! invite, answer invites, send, change membership and settings, read.
//! The protocol work is in `groups.rs`.

use crate::group::{
    Action, Content, DirectInvite, FLAGS_KNOWN, GROUP_VERSION, GroupId, GroupState, GroupWire, Op,
    OpBody, Role,
};
use crate::identity::Fingerprint;
use crate::limits::{MAX_GROUP_NAME, MAX_GROUP_TOPIC, MAX_TEXT};
use crate::store::{
    ContactId, GroupInviteRecord, GroupMemberRecord, GroupMessageRecord, GroupOutboxItem,
    GroupRecord, GroupStatus, GroupWrite, OutboxKind,
};

use super::groups::{self, GroupEvent, Runtime, role_name};
use super::{NodeError, NodeHandle};

/// How long a direct invite stays valid.
pub const INVITE_VALIDITY_SECS: u64 = 7 * 24 * 3600;

/// A group's id as 64 lower-case hex digits (what front ends show and pass back).
pub fn group_hex(id: &[u8; 32]) -> String {
    hex::encode(id)
}

fn bad(what: &'static str, reason: &'static str) -> NodeError {
    NodeError::Invalid { what, reason }
}

fn check_line(what: &'static str, text: &str, max: usize, empty_ok: bool) -> Result<(), NodeError> {
    if text.len() > max {
        return Err(bad(what, "too long"));
    }
    if !empty_ok && text.trim().is_empty() {
        return Err(bad(what, "it is empty"));
    }
    if text.chars().any(char::is_control) {
        return Err(bad(what, "it contains control characters"));
    }
    Ok(())
}

impl NodeHandle {
    /// Resolves what a user typed for a group: its id (64 hex digits), a
    /// unique id prefix of at least 6 hex digits, or a unique name.
    pub async fn resolve_group(&self, query: &str) -> Result<[u8; 32], NodeError> {
        let q = query.trim().to_ascii_lowercase();
        let map = self.inner.groups.map.lock().await;
        let ids: Vec<[u8; 32]> = map.keys().copied().collect();
        let by_id: Vec<_> = ids
            .iter()
            .filter(|id| q.len() >= 6 && group_hex(id).starts_with(&q))
            .collect();
        if let [one] = by_id.as_slice() {
            return Ok(**one);
        }
        let by_name: Vec<_> = map
            .values()
            .filter(|rt| rt.state.name().to_lowercase() == query.trim().to_lowercase())
            .map(|rt| rt.state.id().0)
            .collect();
        match by_name.as_slice() {
            [one] => Ok(*one),
            [] if by_id.is_empty() => Err(NodeError::NotFound { what: "group" }),
            _ => Err(bad(
                "group",
                "several groups match; use more digits of its id (`umbra group list`)",
            )),
        }
    }

    /// Creates a group with us as its owner. `flags` are FLAG_ROOM |
    /// FLAG_HISTORY. Returns the group id.
    pub async fn group_create(
        &self,
        name: &str,
        topic: &str,
        flags: u8,
    ) -> Result<[u8; 32], NodeError> {
        check_line("group name", name, MAX_GROUP_NAME, false)?;
        check_line("topic", topic, MAX_GROUP_TOPIC, true)?;
        if flags & !FLAGS_KNOWN != 0 {
            return Err(bad("group flags", "unknown flag"));
        }
        let inner = &self.inner;
        let me = inner.identity.fingerprint();
        let cert = groups::own_group_cert(inner)?;
        let id = GroupId::random();
        let op = Op::sign(
            OpBody {
                version: GROUP_VERSION,
                group: id,
                seq: 0,
                prev: [0; 32],
                at: crate::time::now_secs(),
                author: *me.as_bytes(),
                action: Action::Create {
                    name: name.to_owned(),
                    topic: topic.to_owned(),
                    flags,
                    cert,
                },
            },
            &inner.identity,
        )?;
        let state = GroupState::genesis(&op)?;
        let rec = GroupRecord {
            group_id: id.0,
            name: name.to_owned(),
            topic: topic.to_owned(),
            flags,
            my_role: Some(role_name(Role::Owner).to_owned()),
            status: GroupStatus::Active,
            head_seq: 0,
            head: state.head(),
            my_seq: 0,
            warning: None,
            created_at: crate::time::now_secs(),
        };
        let w = GroupWrite {
            group: Some(rec.clone()),
            ops: vec![(0, op.encode()?)],
            members: Some(vec![GroupMemberRecord {
                fingerprint: me.to_hex(),
                username: inner.identity.username().as_str().to_owned(),
                role: role_name(Role::Owner).to_owned(),
            }]),
            ..GroupWrite::default()
        };
        let mut map = inner.groups.map.lock().await;
        let gid = id.0;
        inner.store.run(move |s| s.group_write(&gid, &w)).await??;
        map.insert(
            id.0,
            Runtime {
                state,
                tracker: crate::group::DeliveryTracker::new(),
                rec,
                behind: Vec::new(),
            },
        );
        inner.group_event(id.0, GroupEvent::Changed);
        Ok(id.0)
    }

    /// Runs `f` on a group's runtime under the groups lock.
    async fn with_group<R>(
        &self,
        group: [u8; 32],
        f: impl AsyncFnOnce(&std::sync::Arc<super::inner::Inner>, &mut Runtime) -> Result<R, NodeError>,
    ) -> Result<R, NodeError> {
        let mut map = self.inner.groups.map.lock().await;
        let rt = map
            .get_mut(&group)
            .ok_or(NodeError::NotFound { what: "group" })?;
        f(&self.inner, rt).await
    }

    /// Invites a contact (over our 1:1 session) with `role`. On accept, the
    /// owner adds it (an admin's invite becomes a proposal to the owner).
    pub async fn group_invite(
        &self,
        group: [u8; 32],
        contact: ContactId,
        role: Role,
    ) -> Result<(), NodeError> {
        let c = self
            .contact(contact)
            .await?
            .ok_or(NodeError::NotFound { what: "contact" })?;
        let invitee = Fingerprint::from_hex(&c.fingerprint).map_err(|_| NodeError::Internal {
            what: "a stored fingerprint does not parse",
        })?;
        let fpr = c.fingerprint.clone();
        let (inv, name) = self
            .with_group(group, async |inner, rt| {
                if rt.rec.status != GroupStatus::Active {
                    return Err(bad("group", "you are not an active member"));
                }
                if rt.state.role(&invitee).is_some() {
                    return Err(crate::group::GroupError::AlreadyMember.into());
                }
                if rt.state.members().len() >= crate::limits::MAX_GROUP_MEMBERS {
                    return Err(crate::group::GroupError::GroupFull {
                        limit: crate::limits::MAX_GROUP_MEMBERS,
                    }
                    .into());
                }
                let inv = DirectInvite::create(
                    &inner.identity,
                    &rt.state,
                    &invitee,
                    role,
                    crate::time::now_secs() + INVITE_VALIDITY_SECS,
                )?;
                Ok((inv, rt.state.name().to_owned()))
            })
            .await?;
        let rec = GroupInviteRecord {
            group_id: group,
            incoming: false,
            contact,
            invite: GroupWire::Invite(inv.clone()).encode()?,
            nonce: inv.body.nonce,
            name,
            role: role_name(role).to_owned(),
            state: "pending".into(),
            expires_at: inv.body.expires_at,
        };
        let wire = rec.invite.clone();
        // A new invite replaces an earlier one still queued for them.
        self.queue_invite(rec, fpr, wire, true).await
    }

    /// Stores an invite (or our answer to one) and queues `wire` for the
    /// contact `fpr`; it leaves the outbox on their ack for the group.
    async fn queue_invite(
        &self,
        rec: GroupInviteRecord,
        fpr: String,
        wire: Vec<u8>,
        replace: bool,
    ) -> Result<(), NodeError> {
        let group = rec.group_id;
        let f2 = fpr.clone();
        self.inner
            .store
            .run(move |s| -> Result<(), crate::store::Error> {
                s.put_group_invite(&rec)?;
                s.group_write(
                    &group,
                    &GroupWrite {
                        drop_outbox: if replace {
                            vec![f2.clone()]
                        } else {
                            Vec::new()
                        },
                        enqueue: vec![GroupOutboxItem {
                            recipient: f2,
                            kind: OutboxKind::Invite,
                            sender: String::new(),
                            seq: 0,
                            wire,
                        }],
                        ..GroupWrite::default()
                    },
                )?;
                Ok(())
            })
            .await??;
        self.inner.flush_to([fpr].into()).await;
        Ok(())
    }

    /// Accepts or declines a pending invite to `group`.
    pub async fn group_answer(&self, group: [u8; 32], accept: bool) -> Result<(), NodeError> {
        let found = self
            .inner
            .store
            .run(move |s| -> Result<_, crate::store::Error> {
                Ok(s.group_invites()?
                    .into_iter()
                    .find(|i| i.group_id == group && i.incoming && i.state == "pending"))
            })
            .await??;
        let Some(mut inv) = found else {
            return Err(NodeError::NotFound {
                what: "pending invite to this group",
            });
        };
        if accept && crate::time::now_secs() > inv.expires_at {
            return Err(crate::group::GroupError::InviteExpired.into());
        }
        let contact = inv.contact;
        let c = self
            .contact(contact)
            .await?
            .ok_or(NodeError::NotFound { what: "contact" })?;
        inv.state = if accept { "accepted" } else { "declined" }.into();
        let wire = GroupWire::InviteAnswer {
            group: GroupId(group),
            nonce: inv.nonce,
            accept,
        }
        .encode()?;
        // The answer leaves the outbox on the inviter's ack (or when the
        // log arrives).
        self.queue_invite(inv, c.fingerprint, wire, false).await
    }

    /// Sends a text to every member. Returns the stored message's row id.
    pub async fn group_send(&self, group: [u8; 32], text: &str) -> Result<i64, NodeError> {
        if text.len() > MAX_TEXT {
            return Err(bad("message", super::MESSAGE_TOO_LONG));
        }
        if text.trim().is_empty() {
            return Err(bad("message", "it is empty"));
        }
        let body = text.to_owned();
        self.with_group(group, async move |inner, rt| {
            groups::send(inner, rt, Content::Text { body }).await
        })
        .await
    }

    /// Deletes one of our messages (or, in a room as admin, anyone's) for
    /// everyone.
    pub async fn group_delete(&self, group: [u8; 32], message: i64) -> Result<(), NodeError> {
        let m = self
            .inner
            .store
            .run(move |s| s.group_message(message))
            .await??
            .ok_or(NodeError::NotFound { what: "message" })?;
        let target = m.msg_id;
        self.with_group(group, async move |inner, rt| {
            let sender = Fingerprint::from_hex(&m.sender).map_err(|_| NodeError::Internal {
                what: "a stored fingerprint does not parse",
            })?;
            rt.state
                .check_delete(&inner.identity.fingerprint(), &sender)?;
            groups::send(inner, rt, Content::Delete { target }).await?;
            Ok(())
        })
        .await
    }

    /// Changes the group with `action`: appended at once by the owner,
    /// proposed to the owner by anyone else.
    pub async fn group_act(&self, group: [u8; 32], action: Action) -> Result<(), NodeError> {
        self.with_group(group, async move |inner, rt| {
            groups::act(inner, rt, action).await
        })
        .await
    }

    /// The fingerprint of the member `who` names (username with or without
    /// `@`, or fingerprint), as a target for remove, roles and transfer.
    pub async fn group_member(&self, group: [u8; 32], who: &str) -> Result<[u8; 20], NodeError> {
        let who = who.trim().trim_start_matches('@').to_lowercase();
        let members = self.group_members(group).await?;
        let hits: Vec<&GroupMemberRecord> = members
            .iter()
            .filter(|m| {
                m.fingerprint.to_lowercase() == who
                    || m.username.trim_start_matches('@').to_lowercase() == who
            })
            .collect();
        match hits.as_slice() {
            [one] => Fingerprint::from_hex(&one.fingerprint)
                .map(|f| *f.as_bytes())
                .map_err(|_| NodeError::Internal {
                    what: "a stored fingerprint does not parse",
                }),
            [] => Err(NodeError::NotFound {
                what: "member of this group",
            }),
            _ => Err(bad(
                "member",
                "several members have this name; give the fingerprint",
            )),
        }
    }

    /// Every group we know.
    pub async fn groups(&self) -> Result<Vec<GroupRecord>, NodeError> {
        Ok(self.inner.store.run(|s| s.groups()).await??)
    }

    /// A group's stored record.
    pub async fn group(&self, group: [u8; 32]) -> Result<GroupRecord, NodeError> {
        self.inner
            .store
            .run(move |s| s.group(&group))
            .await??
            .ok_or(NodeError::NotFound { what: "group" })
    }

    /// A group's members (owner first).
    pub async fn group_members(
        &self,
        group: [u8; 32],
    ) -> Result<Vec<GroupMemberRecord>, NodeError> {
        Ok(self
            .inner
            .store
            .run(move |s| s.group_members(&group))
            .await??)
    }

    /// The latest `limit` messages of a group, oldest first.
    pub async fn group_history(
        &self,
        group: [u8; 32],
        limit: u32,
    ) -> Result<Vec<GroupMessageRecord>, NodeError> {
        Ok(self
            .inner
            .store
            .run(move |s| s.group_history(&group, limit))
            .await??)
    }

    /// One stored group message by row id.
    pub async fn group_message(&self, id: i64) -> Result<Option<GroupMessageRecord>, NodeError> {
        Ok(self.inner.store.run(move |s| s.group_message(id)).await??)
    }

    /// Every invite, both directions.
    pub async fn group_invites(&self) -> Result<Vec<GroupInviteRecord>, NodeError> {
        Ok(self.inner.store.run(|s| s.group_invites()).await??)
    }

    /// How many entries wait in our outbox for `member` in `group`.
    pub async fn group_outbox_len(&self, group: [u8; 32], member: &str) -> Result<u64, NodeError> {
        let m = member.to_owned();
        Ok(self
            .inner
            .store
            .run(move |s| s.group_outbox_len(&group, &m))
            .await??)
    }
}
