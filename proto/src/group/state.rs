//! The membership log's state machine (PROTOCOL.md §20.4): a group's state
//! is what its ops, applied in log order from the genesis, produce. Every
//! op is checked against the author's role **at the previous head**; a
//! refused op leaves the state untouched (checks run on `&self`, the
//! commit that follows cannot fail).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::op::{Action, GroupId, Op, Role};
use super::{FLAG_ROOM, GROUP_VERSION, GroupError};
use crate::identity::{Fingerprint, PublicCert};
use crate::limits::{MAX_GROUP_LINKS, MAX_GROUP_LOG, MAX_GROUP_MEMBERS};

/// A member as the log describes it.
#[derive(Clone)]
pub struct Member {
    /// Current role.
    pub role: Role,
    /// The certificate from the member's Add (or the Create's author cert).
    pub cert: Arc<PublicCert>,
    /// The log position of the op that (last) added the member.
    pub joined: u64,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("role", &self.role)
            .field("joined", &self.joined)
            .finish_non_exhaustive()
    }
}

/// An invite link as registered in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Role granted by the link.
    pub role: Role,
    /// Uses allowed.
    pub max_uses: u16,
    /// Uses so far (Adds naming the link).
    pub uses: u16,
    /// Unix time after which the link is refused.
    pub expires_at: u64,
    /// Whether a RevokeLink named it.
    pub revoked: bool,
}

/// What an applied op changed, for the node (delivery lists, UI notices).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A member was added.
    Added {
        /// The new member.
        member: Fingerprint,
        /// Its role.
        role: Role,
    },
    /// A member was removed by `by`: deliver nothing more to it (the Remove
    /// op itself is its last delivery).
    Removed {
        /// The member removed.
        member: Fingerprint,
        /// Who removed it.
        by: Fingerprint,
    },
    /// A member left.
    Left {
        /// The member.
        member: Fingerprint,
    },
    /// A member's role changed.
    RoleChanged {
        /// The member.
        member: Fingerprint,
        /// Its new role.
        role: Role,
    },
    /// Name, topic or flags changed.
    Settings,
    /// Ownership moved; the old owner is now an admin.
    OwnershipTransferred {
        /// The old owner.
        from: Fingerprint,
        /// The new owner.
        to: Fingerprint,
    },
    /// An invite link was opened or revoked.
    Link,
    /// The group was dissolved.
    Dissolved,
    /// The op was already in the log (an exact duplicate): nothing changed.
    Duplicate,
}

/// A group's state at its log head.
#[derive(Clone)]
pub struct GroupState {
    id: GroupId,
    name: String,
    topic: String,
    flags: u8,
    owner: Fingerprint,
    members: BTreeMap<Fingerprint, Member>,
    links: BTreeMap<[u8; 16], LinkInfo>,
    /// `heads[i]` is the hash of log entry `i`.
    heads: Vec<[u8; 32]>,
    dissolved: bool,
}

impl fmt::Debug for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupState")
            .field("members", &self.members.len())
            .field("head_seq", &self.head_seq())
            .field("dissolved", &self.dissolved)
            .finish_non_exhaustive()
    }
}

/// What `check` found, so that `commit` cannot fail.
enum Checked {
    Duplicate,
    Apply {
        hash: [u8; 32],
        cert: Option<Arc<PublicCert>>,
    },
}

fn fpr(bytes: &[u8; 20]) -> Fingerprint {
    Fingerprint::from_bytes(*bytes)
}

/// Parses a member's certificate and checks that it is `member`'s.
fn member_cert(cert: &[u8], member: &[u8; 20]) -> Result<Arc<PublicCert>, GroupError> {
    let cert = PublicCert::from_bytes(cert).map_err(|_| GroupError::BadCert)?;
    if !cert.fingerprint().ct_eq(&fpr(member)) {
        return Err(GroupError::BadCert);
    }
    Ok(Arc::new(cert))
}

impl GroupState {
    /// The state after the genesis op (a Create at entry 0, self-signed by
    /// its author, who becomes the owner).
    pub fn genesis(op: &Op) -> Result<GroupState, GroupError> {
        op.validate()?;
        let b = &op.body;
        let Action::Create {
            name,
            topic,
            flags,
            cert: author_cert,
        } = &b.action
        else {
            return Err(GroupError::BadGenesis("the first entry must be Create"));
        };
        if b.seq != 0 || b.prev != [0; 32] {
            return Err(GroupError::BadGenesis(
                "Create must be entry 0 with a zero prev",
            ));
        }
        if op.owner_sig.is_some() {
            return Err(GroupError::UnexpectedCountersignature);
        }
        let cert = member_cert(author_cert, &b.author)?;
        op.verify_author(&cert)?;
        let owner = b.author();
        let mut members = BTreeMap::new();
        members.insert(
            owner,
            Member {
                role: Role::Owner,
                cert,
                joined: 0,
            },
        );
        Ok(GroupState {
            id: b.group,
            name: name.clone(),
            topic: topic.clone(),
            flags: *flags,
            owner,
            members,
            links: BTreeMap::new(),
            heads: vec![op.hash()?],
            dissolved: false,
        })
    }

    /// Replays a whole log (genesis first). Stops at the first refused op.
    pub fn from_log<'a>(
        genesis: &Op,
        rest: impl IntoIterator<Item = &'a Op>,
    ) -> Result<GroupState, GroupError> {
        let mut state = GroupState::genesis(genesis)?;
        for op in rest {
            state.apply(op)?;
        }
        Ok(state)
    }

    /// The group id.
    pub fn id(&self) -> GroupId {
        self.id
    }
    /// The group name (untrusted text: neutralise before display).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The topic (untrusted text).
    pub fn topic(&self) -> &str {
        &self.topic
    }
    /// The flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }
    /// Whether this is a discussion room.
    pub fn is_room(&self) -> bool {
        self.flags & FLAG_ROOM != 0
    }
    /// The owner (the sequencer).
    pub fn owner(&self) -> Fingerprint {
        self.owner
    }
    /// The members, owner included.
    pub fn members(&self) -> &BTreeMap<Fingerprint, Member> {
        &self.members
    }
    /// A member's role, if a member.
    pub fn role(&self, who: &Fingerprint) -> Option<Role> {
        self.members.get(who).map(|m| m.role)
    }
    /// The invite links registered in the log.
    pub fn links(&self) -> &BTreeMap<[u8; 16], LinkInfo> {
        &self.links
    }
    /// Whether the group was dissolved.
    pub fn is_dissolved(&self) -> bool {
        self.dissolved
    }
    /// The log position of the head.
    pub fn head_seq(&self) -> u64 {
        self.heads.len() as u64 - 1
    }
    /// The hash of the head entry.
    pub fn head(&self) -> [u8; 32] {
        self.heads.last().copied().unwrap_or([0; 32])
    }
    /// The hash of entry `seq`, if we have it.
    pub fn head_at(&self, seq: u64) -> Option<[u8; 32]> {
        usize::try_from(seq)
            .ok()
            .and_then(|i| self.heads.get(i).copied())
    }
    /// The position the next op must have.
    pub fn next_seq(&self) -> u64 {
        self.heads.len() as u64
    }

    /// Compares a head `(seq, hash)` another member named with ours:
    /// `Ok(true)` if we have it, `Ok(false)` if it is ahead of us (pull
    /// the log), [`GroupError::SplitView`] if we hold a different entry
    /// at that position.
    pub fn check_head(&self, seq: u64, hash: &[u8; 32]) -> Result<bool, GroupError> {
        match self.head_at(seq) {
            Some(h) if h == *hash => Ok(true),
            Some(_) => Err(GroupError::SplitView { seq }),
            None => Ok(false),
        }
    }

    /// Applies an op at the head. Refusals leave the state unchanged.
    pub fn apply(&mut self, op: &Op) -> Result<Event, GroupError> {
        match self.check(op)? {
            Checked::Duplicate => Ok(Event::Duplicate),
            Checked::Apply { hash, cert } => Ok(self.commit(op, hash, cert)),
        }
    }

    /// Checks a proposal as the owner does before countersigning it: every
    /// rule of [`GroupState::apply`] except the countersignature itself.
    pub fn check_proposal(&self, op: &Op) -> Result<(), GroupError> {
        if op.owner_sig.is_some() {
            return Err(GroupError::UnexpectedCountersignature);
        }
        self.check_inner(op, false).map(|_| ())
    }

    fn check(&self, op: &Op) -> Result<Checked, GroupError> {
        self.check_inner(op, true)
    }

    fn check_inner(&self, op: &Op, need_countersig: bool) -> Result<Checked, GroupError> {
        op.validate()?;
        let b = &op.body;
        if b.version != GROUP_VERSION {
            return Err(GroupError::UnsupportedVersion(b.version));
        }
        if b.group != self.id {
            return Err(GroupError::WrongGroup);
        }
        let hash = op.hash()?;
        let next = self.next_seq();
        if b.seq < next {
            if self.head_at(b.seq) == Some(hash) {
                return Ok(Checked::Duplicate);
            }
            return Err(GroupError::StaleHead {
                head_seq: self.head_seq(),
                got_seq: b.seq.saturating_sub(1),
            });
        }
        if b.seq > next {
            return Err(GroupError::Ahead {
                next_seq: next,
                got_seq: b.seq,
            });
        }
        if b.prev != self.head() {
            return Err(GroupError::StaleHead {
                head_seq: self.head_seq(),
                got_seq: b.seq.saturating_sub(1),
            });
        }
        if self.dissolved {
            return Err(GroupError::Dissolved);
        }
        if self.heads.len() >= MAX_GROUP_LOG {
            return Err(GroupError::LogFull {
                limit: MAX_GROUP_LOG,
            });
        }
        let author = b.author();
        let member = self.members.get(&author).ok_or(GroupError::NotAMember)?;
        op.verify_author(&member.cert)?;
        if member.role == Role::Owner {
            if op.owner_sig.is_some() {
                return Err(GroupError::UnexpectedCountersignature);
            }
        } else if need_countersig {
            let owner = self
                .members
                .get(&self.owner)
                .ok_or(GroupError::NotAMember)?;
            op.verify_countersignature(&owner.cert)?;
        }
        let cert = self.check_action(member.role, &author, b.at, &b.action)?;
        Ok(Checked::Apply { hash, cert })
    }

    /// The role rules (PROTOCOL.md §20.4, table "Who may do what").
    fn check_action(
        &self,
        role: Role,
        author: &Fingerprint,
        at: u64,
        action: &Action,
    ) -> Result<Option<Arc<PublicCert>>, GroupError> {
        let need = |min: Role, what: &'static str| {
            if role.rank() >= min.rank() {
                Ok(())
            } else {
                Err(GroupError::RoleTooLow { role, action: what })
            }
        };
        let changes = |differs: bool| {
            if differs {
                Ok(None)
            } else {
                Err(GroupError::NoChange)
            }
        };
        let target = |m: &[u8; 20]| self.members.get(&fpr(m)).ok_or(GroupError::TargetNotMember);
        match action {
            Action::Create { .. } => Err(GroupError::BadGenesis("Create is only entry 0")),
            Action::Add {
                member,
                cert,
                role: granted,
                link,
            } => {
                need(Role::Admin, "add members")?;
                if self.members.contains_key(&fpr(member)) {
                    return Err(GroupError::AlreadyMember);
                }
                if self.members.len() >= MAX_GROUP_MEMBERS {
                    return Err(GroupError::GroupFull {
                        limit: MAX_GROUP_MEMBERS,
                    });
                }
                match link {
                    Some(id) => {
                        need(Role::Owner, "add members by invite link")?;
                        let l = self.check_link(id, at)?;
                        if *granted != l.role {
                            return Err(GroupError::RoleNotGrantable(*granted));
                        }
                    }
                    None if role == Role::Admin && granted.rank() >= Role::Admin.rank() => {
                        return Err(GroupError::RoleNotGrantable(*granted));
                    }
                    None => {}
                }
                member_cert(cert, member).map(Some)
            }
            Action::Remove { member } => {
                need(Role::Admin, "remove members")?;
                self.lower_target(role, author, member, "remove")?;
                Ok(None)
            }
            Action::Leave => {
                if role == Role::Owner {
                    return Err(GroupError::OwnerImmovable);
                }
                Ok(None)
            }
            Action::SetRole {
                member,
                role: granted,
            } => {
                need(Role::Admin, "change roles")?;
                let t = self.lower_target(role, author, member, "change the role of")?;
                if granted.rank() >= role.rank() {
                    return Err(GroupError::RoleNotGrantable(*granted));
                }
                if t.role == *granted {
                    return Err(GroupError::NoChange);
                }
                Ok(None)
            }
            Action::Rename { name } => {
                need(Role::Admin, "rename the group")?;
                changes(*name != self.name)
            }
            Action::SetTopic { topic } => {
                need(Role::Admin, "set the topic")?;
                changes(*topic != self.topic)
            }
            Action::SetFlags { flags } => {
                need(Role::Owner, "change the group's flags")?;
                changes(*flags != self.flags)
            }
            Action::TransferOwnership { to } => {
                need(Role::Owner, "transfer ownership")?;
                if fpr(to) == *author {
                    return Err(GroupError::SelfTarget {
                        action: "transfer ownership to",
                    });
                }
                target(to)?;
                Ok(None)
            }
            Action::OpenLink { link_id, .. } => {
                need(Role::Owner, "open invite links")?;
                if self.links.contains_key(link_id) {
                    return Err(GroupError::LinkExists);
                }
                if self.links.len() >= MAX_GROUP_LINKS {
                    return Err(GroupError::TooManyLinks {
                        limit: MAX_GROUP_LINKS,
                    });
                }
                Ok(None)
            }
            Action::RevokeLink { link_id } => {
                need(Role::Owner, "revoke invite links")?;
                match self.links.get(link_id) {
                    None => Err(GroupError::LinkUnknown),
                    Some(l) if l.revoked => Err(GroupError::LinkRevoked),
                    Some(_) => Ok(None),
                }
            }
            Action::Dissolve => {
                need(Role::Owner, "dissolve the group")?;
                Ok(None)
            }
        }
    }

    /// The target of a Remove or SetRole by an author of `role`: another
    /// member, not the owner, of lower rank than the author.
    fn lower_target(
        &self,
        role: Role,
        author: &Fingerprint,
        member: &[u8; 20],
        action: &'static str,
    ) -> Result<&Member, GroupError> {
        if fpr(member) == *author {
            return Err(GroupError::SelfTarget { action });
        }
        let t = self
            .members
            .get(&fpr(member))
            .ok_or(GroupError::TargetNotMember)?;
        if t.role == Role::Owner {
            return Err(GroupError::OwnerImmovable);
        }
        if t.role.rank() >= role.rank() {
            return Err(GroupError::TargetOutranks { role, action });
        }
        Ok(t)
    }

    /// Whether invite link `id` may admit one more member at unix time
    /// `now`: the owner calls this before sending a join challenge and
    /// again (through [`GroupState::apply`]) when appending the Add.
    pub fn check_link(&self, id: &[u8; 16], now: u64) -> Result<&LinkInfo, GroupError> {
        let l = self.links.get(id).ok_or(GroupError::LinkUnknown)?;
        if l.revoked {
            return Err(GroupError::LinkRevoked);
        }
        if now > l.expires_at {
            return Err(GroupError::LinkExpired);
        }
        if l.uses >= l.max_uses {
            return Err(GroupError::LinkUsedUp);
        }
        Ok(l)
    }

    /// Applies a checked op. Cannot fail.
    fn commit(&mut self, op: &Op, hash: [u8; 32], cert: Option<Arc<PublicCert>>) -> Event {
        let b = &op.body;
        let author = b.author();
        self.heads.push(hash);
        match &b.action {
            Action::Create { .. } => Event::Duplicate,
            Action::Add {
                member, role, link, ..
            } => {
                if let Some(l) = link.as_ref().and_then(|id| self.links.get_mut(id)) {
                    l.uses = l.uses.saturating_add(1);
                }
                if let Some(cert) = cert {
                    self.members.insert(
                        fpr(member),
                        Member {
                            role: *role,
                            cert,
                            joined: b.seq,
                        },
                    );
                }
                Event::Added {
                    member: fpr(member),
                    role: *role,
                }
            }
            Action::Remove { member } => {
                self.members.remove(&fpr(member));
                Event::Removed {
                    member: fpr(member),
                    by: author,
                }
            }
            Action::Leave => {
                self.members.remove(&author);
                Event::Left { member: author }
            }
            Action::SetRole { member, role } => {
                if let Some(m) = self.members.get_mut(&fpr(member)) {
                    m.role = *role;
                }
                Event::RoleChanged {
                    member: fpr(member),
                    role: *role,
                }
            }
            Action::Rename { name } => {
                self.name = name.clone();
                Event::Settings
            }
            Action::SetTopic { topic } => {
                self.topic = topic.clone();
                Event::Settings
            }
            Action::SetFlags { flags } => {
                self.flags = *flags;
                Event::Settings
            }
            Action::TransferOwnership { to } => {
                let to = fpr(to);
                if let Some(m) = self.members.get_mut(&author) {
                    m.role = Role::Admin;
                }
                if let Some(m) = self.members.get_mut(&to) {
                    m.role = Role::Owner;
                }
                self.owner = to;
                Event::OwnershipTransferred { from: author, to }
            }
            Action::OpenLink {
                link_id,
                role,
                max_uses,
                expires_at,
            } => {
                self.links.insert(
                    *link_id,
                    LinkInfo {
                        role: *role,
                        max_uses: *max_uses,
                        uses: 0,
                        expires_at: *expires_at,
                        revoked: false,
                    },
                );
                Event::Link
            }
            Action::RevokeLink { link_id } => {
                if let Some(l) = self.links.get_mut(link_id) {
                    l.revoked = true;
                }
                Event::Link
            }
            Action::Dissolve => {
                self.dissolved = true;
                Event::Dissolved
            }
        }
    }

    /// A comparable summary of the state (tests, and replicas comparing
    /// notes): everything the log determines except certificates.
    pub fn summary(&self) -> StateSummary {
        StateSummary {
            head_seq: self.head_seq(),
            head: self.head(),
            name: self.name.clone(),
            topic: self.topic.clone(),
            flags: self.flags,
            owner: self.owner,
            members: self.members.iter().map(|(f, m)| (*f, m.role)).collect(),
            links: self.links.clone(),
            dissolved: self.dissolved,
        }
    }
}

/// See [`GroupState::summary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateSummary {
    /// Head position.
    pub head_seq: u64,
    /// Head hash.
    pub head: [u8; 32],
    /// Name.
    pub name: String,
    /// Topic.
    pub topic: String,
    /// Flags.
    pub flags: u8,
    /// Owner.
    pub owner: Fingerprint,
    /// Members and roles.
    pub members: Vec<(Fingerprint, Role)>,
    /// Links.
    pub links: BTreeMap<[u8; 16], LinkInfo>,
    /// Dissolved.
    pub dissolved: bool,
}
