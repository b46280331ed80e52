//! Group commands, replies and events of the control API (docs/CONTROL.md
//! §4.1, PROTOCOL.md §20). Groups are named by their id (64 hex digits), a
//! unique id prefix of at least 6 digits, or a unique name; members by
//! `@name` or fingerprint.

use serde::{Deserialize, Serialize};

/// A group command (`{"group": {"send": {...}}}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum GroupRequest {
    /// Create a group with us as the owner.
    Create {
        /// 1–64 bytes, no control characters.
        name: String,
        /// At most 512 bytes.
        #[serde(default)]
        topic: String,
        /// A discussion room (read-only members, admins delete for everyone).
        #[serde(default)]
        room: bool,
        /// Members who join later may pull earlier messages.
        #[serde(default)]
        history: bool,
    },
    /// Every group, and pending invites.
    List,
    /// Invite a contact (owner or admin).
    Invite {
        /// The group.
        group: String,
        /// The contact.
        username: String,
        /// `member` (default), `admin` (owner only) or `read-only`.
        #[serde(default)]
        role: Option<String>,
    },
    /// Accept a pending direct invite.
    Join {
        /// The group id (from the invite).
        group: String,
    },
    /// Join by an invite link (`umbra:group#…`): the owner is dialled over
    /// onion services (this can take a minute).
    JoinLink {
        /// The link (it holds a secret: never log it).
        link: String,
    },
    /// Open an invite link (owner).
    LinkCreate {
        /// The group.
        group: String,
        /// Joins allowed, 1–100 (default 1).
        #[serde(default)]
        uses: Option<u16>,
        /// Seconds until it expires (default 24 h, at most 365 days).
        #[serde(default)]
        expires_in: Option<u64>,
        /// `member` (default) or `read-only`.
        #[serde(default)]
        role: Option<String>,
    },
    /// A group's invite links.
    Links {
        /// The group.
        group: String,
    },
    /// Revoke an invite link (owner).
    LinkRevoke {
        /// The group.
        group: String,
        /// The link id (32 hex digits, or a unique prefix of at least 4).
        link: String,
    },
    /// Decline a pending invite.
    Decline {
        /// The group id.
        group: String,
    },
    /// Members and roles.
    Members {
        /// The group.
        group: String,
    },
    /// Change a member's role (promote or demote).
    SetRole {
        /// The group.
        group: String,
        /// The member.
        member: String,
        /// `admin`, `member` or `read-only`.
        role: String,
    },
    /// Remove a member.
    Remove {
        /// The group.
        group: String,
        /// The member.
        member: String,
    },
    /// Leave the group (the owner must transfer ownership or dissolve first).
    Leave {
        /// The group.
        group: String,
    },
    /// Rename the group (owner or admin).
    Rename {
        /// The group.
        group: String,
        /// New name.
        name: String,
    },
    /// Set the topic (owner or admin).
    Topic {
        /// The group.
        group: String,
        /// New topic (may be empty).
        topic: String,
    },
    /// Make another member the owner; we become an admin.
    Transfer {
        /// The group.
        group: String,
        /// The new owner.
        member: String,
    },
    /// End the group for everyone (owner).
    Dissolve {
        /// The group.
        group: String,
    },
    /// Send a text to every member.
    Send {
        /// The group.
        group: String,
        /// At most 16 KiB, not blank.
        text: String,
    },
    /// Messages, oldest first.
    History {
        /// The group.
        group: String,
        /// Most messages (default 100, at most 1000).
        #[serde(default)]
        limit: Option<u32>,
    },
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupView {
    /// Group id, 64 hex digits.
    pub id: String,
    /// Name (peer text: neutralise before display).
    pub name: String,
    /// Topic (peer text).
    pub topic: String,
    /// A discussion room.
    pub room: bool,
    /// New members may pull earlier messages.
    pub history: bool,
    /// Our role, if a member.
    pub role: Option<String>,
    /// `joining`, `active`, `removed`, `left`, `dissolved`, `frozen`.
    pub status: String,
    /// How many members.
    pub members: u32,
    /// A warning (split view), if any.
    pub warning: Option<String>,
}

/// A pending or answered direct invite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupInviteView {
    /// Group id.
    pub group: String,
    /// Group name as the invite announced it (peer text).
    pub name: String,
    /// The contact who invited us, or whom we invited.
    pub username: String,
    /// `true`: we were invited.
    pub incoming: bool,
    /// Role offered.
    pub role: String,
    /// `pending`, `accepted`, `declined`.
    pub state: String,
    /// Unix seconds.
    pub expires_at: u64,
}

/// A new invite link (reply to `link_create`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupLinkCreated {
    /// Link id, 32 hex digits (for `link_revoke`).
    pub id: String,
    /// The `umbra:group#…` link. It holds the secret: show it to the user
    /// only, never log it.
    pub link: String,
    /// Joins allowed.
    pub uses: u16,
    /// Unix seconds.
    pub expires_at: u64,
}

impl std::fmt::Debug for GroupLinkCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupLinkCreated")
            .field("uses", &self.uses)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An invite link as the group's log registers it (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupLinkView {
    /// Link id, 32 hex digits.
    pub id: String,
    /// `member` or `read-only`.
    pub role: String,
    /// Joins allowed.
    pub max_uses: u16,
    /// Joins so far.
    pub uses: u16,
    /// Unix seconds.
    pub expires_at: u64,
    /// Revoked by the owner.
    pub revoked: bool,
    /// `usable`, `expired`, `used_up` or `revoked` (by our clock).
    pub state: String,
}

/// A join by invite link the owner accepted (reply to `join_link`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupJoinedView {
    /// Group id, 64 hex digits. The group shows up in `list` (status
    /// `joining`, then `active`) once the owner's log arrives.
    pub group: String,
}

/// Groups and invites (reply to `list`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupsView {
    /// Every group.
    pub groups: Vec<GroupView>,
    /// Every invite.
    pub invites: Vec<GroupInviteView>,
}

/// A member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMemberView {
    /// `@name` from the member's certificate.
    pub username: String,
    /// Fingerprint, 40 hex digits.
    pub fingerprint: String,
    /// `owner`, `admin`, `member`, `read-only`.
    pub role: String,
    /// Whether the member is our contact (we deliver to it directly).
    pub contact: bool,
    /// Entries waiting in our outbox for it.
    pub queued: u64,
}

/// A group message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupMessageView {
    /// Row id (display order).
    pub id: i64,
    /// Sender `@name` (from the log), or its fingerprint if unknown.
    pub sender: String,
    /// Whether we sent it.
    pub mine: bool,
    /// The sender's sequence number in the group.
    pub seq: u64,
    /// Sender's clock, unix seconds.
    pub sent_at: u64,
    /// Text (peer text); `None` if deleted or not a text.
    pub body: Option<String>,
    /// `pending`, `delivered` (ours), `received`.
    pub state: String,
    /// Deleted for everyone.
    pub deleted: bool,
}

/// A group event (after `subscribe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum GroupEventView {
    /// A message was stored.
    Message {
        /// Group id.
        group: String,
        /// The message.
        message: GroupMessageView,
    },
    /// Members, roles, settings or our status changed.
    Changed(GroupView),
    /// A contact invited us.
    Invited(GroupInviteView),
    /// A contact answered our invite.
    Answered {
        /// Group id.
        group: String,
        /// The contact.
        username: String,
        /// Accepted or declined.
        accepted: bool,
    },
    /// Something refused or suspicious (forged op, split view…).
    Warning {
        /// Group id.
        group: String,
        /// What happened (no identifiers).
        reason: String,
    },
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::proto::{ClientMessage, Request, VERSION};

    #[test]
    fn group_command_shape() {
        let m = ClientMessage {
            v: VERSION,
            id: 1,
            cmd: Request::Group(GroupRequest::Send {
                group: "book".into(),
                text: "hi".into(),
            }),
        };
        let s = serde_json::to_string(&m).unwrap();
        assert_eq!(
            s,
            r#"{"v":5,"id":1,"cmd":{"group":{"send":{"group":"book","text":"hi"}}}}"#
        );
        assert_eq!(serde_json::from_str::<ClientMessage>(&s).unwrap(), m);
        let list: ClientMessage =
            serde_json::from_str(r#"{"v":5,"id":2,"cmd":{"group":"list"}}"#).unwrap();
        assert_eq!(list.cmd, Request::Group(GroupRequest::List));
        assert!(
            serde_json::from_str::<ClientMessage>(
                r#"{"v":5,"id":2,"cmd":{"group":{"leave":{"group":"g","x":1}}}}"#
            )
            .is_err()
        );
    }

    #[test]
    fn link_commands_shape_and_the_link_is_not_debug_printed() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"v":5,"id":3,"cmd":{"group":{"link_create":{"group":"book"}}}}"#,
        )
        .unwrap();
        assert_eq!(
            m.cmd,
            Request::Group(GroupRequest::LinkCreate {
                group: "book".into(),
                uses: None,
                expires_in: None,
                role: None,
            })
        );
        let j: ClientMessage = serde_json::from_str(
            r#"{"v":5,"id":4,"cmd":{"group":{"join_link":{"link":"umbra:group#abc"}}}}"#,
        )
        .unwrap();
        assert!(matches!(
            j.cmd,
            Request::Group(GroupRequest::JoinLink { .. })
        ));
        let created = GroupLinkCreated {
            id: "00".repeat(16),
            link: "umbra:group#SECRET".into(),
            uses: 1,
            expires_at: 5,
        };
        assert!(!format!("{created:?}").contains("SECRET"));
        let back: GroupLinkCreated =
            serde_json::from_str(&serde_json::to_string(&created).unwrap()).unwrap();
        assert_eq!(back, created);
    }
}
