//! Group commands of the control API (docs/CONTROL.md §4.1), and group
//! events for subscribers. Everything here is a thin mapping onto
//! [`NodeHandle`]'s group methods; the rules live in the node and in
//! `umbra_proto::group`.

use super::*;
use crate::control::proto::{
    GroupEventView, GroupInviteView, GroupJoinedView, GroupLinkCreated, GroupLinkView,
    GroupMemberView, GroupMessageView, GroupRequest, GroupView, GroupsView,
};
use crate::group::{Action, FLAG_HISTORY, FLAG_ROOM, Role};
use crate::node::{GroupEvent, group_hex, parse_role};
use crate::store::{GroupMessageRecord, GroupRecord, GroupStatus};
use secrecy::ExposeSecret;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, msg)
}

fn role_arg(s: &str) -> ApiResult<Role> {
    parse_role(s).ok_or_else(|| {
        bad(format!("unknown role {s:?}")).hint("roles are admin, member and read-only")
    })
}

async fn group_id(ctx: &Context, q: &str) -> ApiResult<[u8; 32]> {
    ctx.node.resolve_group(q).await.map_err(|e| match e {
        NodeError::NotFound { .. } => ApiError::new(ErrorCode::NotFound, "no such group")
            .hint("`umbra group list` shows your groups and invites"),
        e => node_err(e),
    })
}

fn status_name(s: GroupStatus) -> &'static str {
    s.as_str()
}

async fn group_view(node: &NodeHandle, g: &GroupRecord) -> ApiResult<GroupView> {
    let members = node
        .group_members(g.group_id)
        .await
        .map_err(node_err)?
        .len() as u32;
    Ok(GroupView {
        id: group_hex(&g.group_id),
        name: g.name.clone(),
        topic: g.topic.clone(),
        room: g.flags & FLAG_ROOM != 0,
        history: g.flags & FLAG_HISTORY != 0,
        role: g.my_role.clone(),
        status: status_name(g.status).to_owned(),
        members,
        warning: g.warning.clone(),
    })
}

async fn message_view(
    ctx: &Context,
    group: [u8; 32],
    m: &GroupMessageRecord,
) -> ApiResult<GroupMessageView> {
    let me = ctx.identity.fingerprint().to_hex();
    let sender = ctx
        .node
        .group_members(group)
        .await
        .map_err(node_err)?
        .into_iter()
        .find(|x| x.fingerprint == m.sender)
        .map(|x| at(&x.username))
        .unwrap_or_else(|| m.sender.clone());
    Ok(GroupMessageView {
        id: m.id,
        sender,
        mine: m.sender == me,
        seq: m.seq,
        sent_at: m.sent_at,
        body: m.body.clone(),
        state: match m.state {
            crate::store::GroupMessageState::Pending => "pending",
            crate::store::GroupMessageState::Delivered => "delivered",
            crate::store::GroupMessageState::Received => "received",
        }
        .to_owned(),
        deleted: m.deleted,
    })
}

async fn invites(ctx: &Context) -> ApiResult<Vec<GroupInviteView>> {
    let mut out = Vec::new();
    for i in ctx.node.group_invites().await.map_err(node_err)? {
        let username = match ctx.node.contact(i.contact).await.map_err(node_err)? {
            Some(c) => at(&c.username),
            None => continue,
        };
        out.push(GroupInviteView {
            group: group_hex(&i.group_id),
            name: i.name,
            username,
            incoming: i.incoming,
            role: i.role,
            state: i.state,
            expires_at: i.expires_at,
        });
    }
    Ok(out)
}

/// Runs a group command.
pub(super) async fn handle(ctx: &Context, cmd: GroupRequest) -> ApiResult<Reply> {
    let node = &ctx.node;
    match cmd {
        GroupRequest::Create {
            name,
            topic,
            room,
            history,
        } => {
            let flags = if room { FLAG_ROOM } else { 0 } | if history { FLAG_HISTORY } else { 0 };
            let id = node
                .group_create(&name, &topic, flags)
                .await
                .map_err(node_err)?;
            let g = node.group(id).await.map_err(node_err)?;
            Ok(Reply::Group(group_view(&ctx.node, &g).await?))
        }
        GroupRequest::List => {
            let mut groups = Vec::new();
            for g in node.groups().await.map_err(node_err)? {
                groups.push(group_view(&ctx.node, &g).await?);
            }
            Ok(Reply::Groups(GroupsView {
                groups,
                invites: invites(ctx).await?,
            }))
        }
        GroupRequest::Invite {
            group,
            username,
            role,
        } => {
            let g = group_id(ctx, &group).await?;
            let c = contact(ctx, &username).await?;
            let role = match role {
                Some(r) => role_arg(&r)?,
                None => Role::Member,
            };
            node.group_invite(g, c.id, role).await.map_err(node_err)?;
            Ok(Reply::Done)
        }
        GroupRequest::Join { group } | GroupRequest::Decline { group } if group.len() != 64 => {
            Err(bad("give the group's full id (64 hex digits)")
                .hint("`umbra group list` shows pending invites with their ids"))
        }
        GroupRequest::Join { group } => answer(ctx, &group, true).await,
        GroupRequest::JoinLink { link } => {
            let g = node
                .group_join_link(&link, |_| {})
                .await
                .map_err(link_err)?;
            Ok(Reply::GroupJoined(GroupJoinedView {
                group: group_hex(&g),
            }))
        }
        GroupRequest::LinkCreate {
            group,
            uses,
            expires_in,
            role,
        } => {
            let g = group_id(ctx, &group).await?;
            let role = match role {
                Some(r) => role_arg(&r)?,
                None => Role::Member,
            };
            let uses = uses.unwrap_or(1);
            let expires_in = expires_in.unwrap_or(LINK_DEFAULT_SECS);
            if expires_in == 0 || expires_in > LINK_MAX_SECS {
                return Err(bad("a link expires between 1 second and 365 days from now"));
            }
            let expires_at = crate::time::now_secs() + expires_in;
            let created = node
                .group_link_create(g, role, uses, expires_at)
                .await
                .map_err(node_err)?;
            Ok(Reply::GroupLink(GroupLinkCreated {
                id: hex::encode(created.link_id),
                link: created.uri.expose_secret().to_owned(),
                uses,
                expires_at,
            }))
        }
        GroupRequest::Links { group } => {
            let g = group_id(ctx, &group).await?;
            let now = crate::time::now_secs();
            let links = node.group_links(g).await.map_err(node_err)?;
            Ok(Reply::GroupLinks(
                links
                    .into_iter()
                    .map(|l| GroupLinkView {
                        id: hex::encode(l.link_id),
                        role: crate::node::role_name(l.info.role).to_owned(),
                        max_uses: l.info.max_uses,
                        uses: l.info.uses,
                        expires_at: l.info.expires_at,
                        revoked: l.info.revoked,
                        state: if l.info.revoked {
                            "revoked"
                        } else if l.info.uses >= l.info.max_uses {
                            "used_up"
                        } else if now > l.info.expires_at {
                            "expired"
                        } else {
                            "usable"
                        }
                        .to_owned(),
                    })
                    .collect(),
            ))
        }
        GroupRequest::LinkRevoke { group, link } => {
            let g = group_id(ctx, &group).await?;
            let q = link.trim().to_ascii_lowercase();
            let ids: Vec<[u8; 16]> = node
                .group_links(g)
                .await
                .map_err(node_err)?
                .into_iter()
                .map(|l| l.link_id)
                .filter(|id| q.len() >= 4 && hex::encode(id).starts_with(&q))
                .collect();
            let [id] = ids.as_slice() else {
                return Err(ApiError::new(
                    if ids.is_empty() {
                        ErrorCode::NotFound
                    } else {
                        ErrorCode::BadRequest
                    },
                    if ids.is_empty() {
                        "no such invite link in this group"
                    } else {
                        "several invite links match; give more digits"
                    },
                )
                .hint("`umbra group link list GROUP` shows the link ids"));
            };
            node.group_link_revoke(g, *id).await.map_err(node_err)?;
            Ok(Reply::Done)
        }
        GroupRequest::Decline { group } => answer(ctx, &group, false).await,
        GroupRequest::Members { group } => {
            let g = group_id(ctx, &group).await?;
            let mut out = Vec::new();
            for m in node.group_members(g).await.map_err(node_err)? {
                let contact = node
                    .contact_by_fingerprint(&m.fingerprint)
                    .await
                    .map_err(node_err)?
                    .is_some();
                let queued = node
                    .group_outbox_len(g, &m.fingerprint)
                    .await
                    .map_err(node_err)?;
                out.push(GroupMemberView {
                    username: at(&m.username),
                    fingerprint: m.fingerprint,
                    role: m.role,
                    contact,
                    queued,
                });
            }
            Ok(Reply::GroupMembers(out))
        }
        GroupRequest::SetRole {
            group,
            member,
            role,
        } => {
            let g = group_id(ctx, &group).await?;
            let member = node.group_member(g, &member).await.map_err(node_err)?;
            let role = role_arg(&role)?;
            act(ctx, g, Action::SetRole { member, role }).await
        }
        GroupRequest::Remove { group, member } => {
            let g = group_id(ctx, &group).await?;
            let member = node.group_member(g, &member).await.map_err(node_err)?;
            act(ctx, g, Action::Remove { member }).await
        }
        GroupRequest::Leave { group } => {
            let g = group_id(ctx, &group).await?;
            act(ctx, g, Action::Leave).await
        }
        GroupRequest::Rename { group, name } => {
            let g = group_id(ctx, &group).await?;
            act(ctx, g, Action::Rename { name }).await
        }
        GroupRequest::Topic { group, topic } => {
            let g = group_id(ctx, &group).await?;
            act(ctx, g, Action::SetTopic { topic }).await
        }
        GroupRequest::Transfer { group, member } => {
            let g = group_id(ctx, &group).await?;
            let to = node.group_member(g, &member).await.map_err(node_err)?;
            act(ctx, g, Action::TransferOwnership { to }).await
        }
        GroupRequest::Dissolve { group } => {
            let g = group_id(ctx, &group).await?;
            act(ctx, g, Action::Dissolve).await
        }
        GroupRequest::Send { group, text } => {
            let g = group_id(ctx, &group).await?;
            let row = node.group_send(g, &text).await.map_err(node_err)?;
            let m = node
                .group_history(g, MAX_HISTORY)
                .await
                .map_err(node_err)?
                .into_iter()
                .find(|m| m.id == row)
                .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the sent message vanished"))?;
            Ok(Reply::GroupMessage(message_view(ctx, g, &m).await?))
        }
        GroupRequest::History { group, limit } => {
            let g = group_id(ctx, &group).await?;
            let limit = limit.unwrap_or(100).min(MAX_HISTORY);
            let mut out = Vec::new();
            for m in node.group_history(g, limit).await.map_err(node_err)? {
                out.push(message_view(ctx, g, &m).await?);
            }
            Ok(Reply::GroupHistory(out))
        }
    }
}

/// Default validity of a new invite link (PROTOCOL.md §20.7.2: 24 h).
const LINK_DEFAULT_SECS: u64 = 24 * 3600;
/// Longest validity of a new invite link.
const LINK_MAX_SECS: u64 = 365 * 24 * 3600;

/// A join by link that failed, with what to do next.
fn link_err(e: NodeError) -> ApiError {
    let hint = match &e {
        NodeError::JoinRefused => "ask the group's owner for a new link",
        NodeError::Unreachable { .. } => {
            "the owner's device must be online; try again later (`umbra status` shows Tor)"
        }
        NodeError::Group(crate::group::GroupError::LinkExpired) => {
            "the link has expired: ask the group's owner for a new one"
        }
        NodeError::Group(crate::group::GroupError::BadSignature { .. }) => {
            "the owner's key does not match the link: the link was altered, or someone else \
             answered at its address; do not use it"
        }
        NodeError::Group(crate::group::GroupError::BadLink(_)) => {
            "copy the whole link, starting with umbra:group#"
        }
        _ => return node_err(e),
    };
    node_err(e).hint(hint)
}

async fn answer(ctx: &Context, group: &str, accept: bool) -> ApiResult<Reply> {
    let bytes = hex::decode(group).map_err(|_| bad("the group id is not hexadecimal"))?;
    let g: [u8; 32] = bytes
        .try_into()
        .map_err(|_| bad("the group id must be 64 hex digits"))?;
    ctx.node.group_answer(g, accept).await.map_err(node_err)?;
    Ok(Reply::Done)
}

async fn act(ctx: &Context, g: [u8; 32], action: Action) -> ApiResult<Reply> {
    let owner = ctx
        .node
        .group(g)
        .await
        .map_err(node_err)?
        .my_role
        .as_deref()
        == Some("owner");
    ctx.node.group_act(g, action).await.map_err(|e| {
        let err = node_err(e);
        if err.message.contains("transfer ownership first") {
            err.hint("`umbra group transfer GROUP @member` first, or `umbra group dissolve GROUP`")
        } else {
            err
        }
    })?;
    if owner {
        Ok(Reply::Done)
    } else {
        // Proposed to the owner: applied when the owner countersigns it.
        let g = ctx.node.group(g).await.map_err(node_err)?;
        Ok(Reply::Group(group_view(&ctx.node, &g).await?))
    }
}

/// Maps a node group event to an API event.
pub(super) async fn group_event(
    node: &NodeHandle,
    group: [u8; 32],
    event: GroupEvent,
) -> ApiResult<Option<Event>> {
    let id = group_hex(&group);
    let ev = match event {
        GroupEvent::Message { message } => {
            let Some(m) = node.group_message(message).await.map_err(node_err)? else {
                return Ok(None);
            };
            let sender = node
                .group_members(group)
                .await
                .map_err(node_err)?
                .into_iter()
                .find(|x| x.fingerprint == m.sender)
                .map(|x| at(&x.username))
                .unwrap_or_else(|| m.sender.clone());
            GroupEventView::Message {
                group: id,
                message: GroupMessageView {
                    id: m.id,
                    sender,
                    mine: false,
                    seq: m.seq,
                    sent_at: m.sent_at,
                    body: m.body,
                    state: "received".into(),
                    deleted: m.deleted,
                },
            }
        }
        GroupEvent::Changed => {
            // An ack for a group we do not hold (an invite answer): nothing to show.
            let Ok(g) = node.group(group).await else {
                return Ok(None);
            };
            GroupEventView::Changed(group_view(node, &g).await?)
        }
        GroupEvent::Invited { contact } => {
            let c = events::name_of(node, contact).await?;
            let Some(i) = node
                .group_invites()
                .await
                .map_err(node_err)?
                .into_iter()
                .find(|i| i.group_id == group && i.incoming && i.contact == contact)
            else {
                return Ok(None);
            };
            GroupEventView::Invited(GroupInviteView {
                group: id,
                name: i.name,
                username: at(&c.username),
                incoming: true,
                role: i.role,
                state: i.state,
                expires_at: i.expires_at,
            })
        }
        GroupEvent::InviteAnswered { contact, accepted } => GroupEventView::Answered {
            group: id,
            username: at(&events::name_of(node, contact).await?.username),
            accepted,
        },
        GroupEvent::Warning { reason } => GroupEventView::Warning { group: id, reason },
    };
    Ok(Some(Event::Group(ev)))
}
