//! Membership ops (PROTOCOL.md §20.3): the entries of a group's signed,
//! hash-chained log, their signatures and the admin-proposal wrapping.
//!
//! An op's **body** names the group, its position (`seq`), the hash of the
//! entry it extends (`prev`), its author and the action. The author signs
//! the body. Only the owner appends: an op authored by anyone else is a
//! *proposal* until the owner adds a countersignature over the op's hash.
//! The author's signature stays inside the op, so a proposal cannot be
//! altered or invented by the owner.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{
    FLAGS_KNOWN, GROUP_VERSION, GroupError, check_len, check_line, check_sig, decode, encode, hash,
    sign, verify,
};
use crate::identity::{Fingerprint, Identity, PublicCert};
use crate::limits::{MAX_CERT, MAX_GROUP_NAME, MAX_GROUP_OP, MAX_GROUP_TOPIC, MAX_LINK_USES};

/// Domain label of an op's hash (its log entry id).
const LABEL_OP: &str = "umbra/group/v1/op";
/// Domain label of the author's signature over an op body.
const LABEL_OP_SIG: &str = "umbra/group/v1/op-sig";
/// Domain label of the owner's countersignature over an op hash.
const LABEL_COUNTERSIGN: &str = "umbra/group/v1/countersign";

/// A group id: 32 random bytes chosen by the creator.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupId(pub [u8; 32]);

impl GroupId {
    /// A fresh random group id.
    pub fn random() -> Self {
        let mut id = [0u8; 32];
        crate::session::fill_random(&mut id);
        GroupId(id)
    }

    /// Lower-case hex (for storage keys; not for logs).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GroupId([scrubbed])")
    }
}

/// A member's role. Ranked Owner > Admin > Member > ReadOnly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    /// The one sequencer of the log (wire value 0).
    Owner,
    /// May add and remove members and read-only members, rename, set the
    /// topic and delete messages in rooms, through the owner (1).
    Admin,
    /// May post (2).
    Member,
    /// May read only (3).
    ReadOnly,
}

impl Role {
    /// The rank: higher may act on lower.
    pub fn rank(self) -> u8 {
        match self {
            Role::Owner => 3,
            Role::Admin => 2,
            Role::Member => 1,
            Role::ReadOnly => 0,
        }
    }

    /// Whether this role may post messages.
    pub fn may_post(self) -> bool {
        self != Role::ReadOnly
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::ReadOnly => "read-only member",
        })
    }
}

/// What an op does. Wire values are the variant indexes (0–11).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// 0: the genesis entry; its author becomes the owner.
    Create {
        /// Group name, ≤ MAX_GROUP_NAME bytes.
        name: String,
        /// Topic, ≤ MAX_GROUP_TOPIC bytes.
        topic: String,
        /// FLAG_ROOM | FLAG_HISTORY.
        flags: u8,
        /// The creator's binary public certificate, stripped, ≤ MAX_CERT bytes.
        #[serde(with = "serde_bytes")]
        cert: Vec<u8>,
    },
    /// 1: adds a member with its certificate (the introduction of its key
    /// to every member).
    Add {
        /// The new member's fingerprint.
        member: [u8; 20],
        /// Its binary public certificate, stripped, ≤ MAX_CERT bytes.
        #[serde(with = "serde_bytes")]
        cert: Vec<u8>,
        /// Its role (never Owner).
        role: Role,
        /// The invite link it joined by, if any.
        link: Option<[u8; 16]>,
    },
    /// 2: removes a member.
    Remove {
        /// The member removed.
        member: [u8; 20],
    },
    /// 3: the author leaves.
    Leave,
    /// 4: changes a member's role (never to or from Owner).
    SetRole {
        /// The member.
        member: [u8; 20],
        /// The new role.
        role: Role,
    },
    /// 5: renames the group.
    Rename {
        /// New name.
        name: String,
    },
    /// 6: sets the topic.
    SetTopic {
        /// New topic.
        topic: String,
    },
    /// 7: sets the flags.
    SetFlags {
        /// FLAG_ROOM | FLAG_HISTORY.
        flags: u8,
    },
    /// 8: makes another member the owner; the old owner becomes an admin.
    TransferOwnership {
        /// The new owner.
        to: [u8; 20],
    },
    /// 9: registers an invite link (the secret stays with the owner).
    OpenLink {
        /// Random link id.
        link_id: [u8; 16],
        /// Role granted: Member or ReadOnly.
        role: Role,
        /// Uses allowed, 1..=MAX_LINK_USES.
        max_uses: u16,
        /// Unix time after which the link is refused.
        expires_at: u64,
    },
    /// 10: revokes an invite link.
    RevokeLink {
        /// The link.
        link_id: [u8; 16],
    },
    /// 11: ends the group. Nothing is accepted after it.
    Dissolve,
}

impl Action {
    /// A short name of the action, for logs and errors (no content).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Add { .. } => "add",
            Action::Remove { .. } => "remove",
            Action::Leave => "leave",
            Action::SetRole { .. } => "set-role",
            Action::Rename { .. } => "rename",
            Action::SetTopic { .. } => "set-topic",
            Action::SetFlags { .. } => "set-flags",
            Action::TransferOwnership { .. } => "transfer-ownership",
            Action::OpenLink { .. } => "open-link",
            Action::RevokeLink { .. } => "revoke-link",
            Action::Dissolve => "dissolve",
        }
    }

    /// The limits and rules of form of PROTOCOL.md §20.3.
    fn validate(&self) -> Result<(), GroupError> {
        match self {
            Action::Create {
                name,
                topic,
                flags,
                cert,
            } => {
                check_len("certificate", cert.len(), MAX_CERT)?;
                check_name(name)?;
                check_topic(topic)?;
                check_flags(*flags)
            }
            Action::Add { cert, role, .. } => {
                check_len("certificate", cert.len(), MAX_CERT)?;
                if *role == Role::Owner {
                    return Err(GroupError::RoleNotGrantable(Role::Owner));
                }
                Ok(())
            }
            Action::SetRole { role, .. } if *role == Role::Owner => {
                Err(GroupError::RoleNotGrantable(Role::Owner))
            }
            Action::Rename { name } => check_name(name),
            Action::SetTopic { topic } => check_topic(topic),
            Action::SetFlags { flags } => check_flags(*flags),
            Action::OpenLink { role, max_uses, .. } => {
                if !matches!(role, Role::Member | Role::ReadOnly) {
                    return Err(GroupError::RoleNotGrantable(*role));
                }
                if *max_uses == 0 || *max_uses > MAX_LINK_USES {
                    return Err(GroupError::Malformed {
                        what: "op",
                        reason: "link uses out of range",
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names, topics, fingerprints and certificates stay out of logs.
        write!(f, "Action::{}", self.name())
    }
}

fn check_name(name: &str) -> Result<(), GroupError> {
    check_len("name", name.len(), MAX_GROUP_NAME)?;
    if name.trim().is_empty() {
        return Err(GroupError::Malformed {
            what: "name",
            reason: "empty",
        });
    }
    check_line("name", name)
}

fn check_topic(topic: &str) -> Result<(), GroupError> {
    check_len("topic", topic.len(), MAX_GROUP_TOPIC)?;
    check_line("topic", topic)
}

fn check_flags(flags: u8) -> Result<(), GroupError> {
    if flags & !FLAGS_KNOWN != 0 {
        return Err(GroupError::Malformed {
            what: "flags",
            reason: "unknown flag bits",
        });
    }
    Ok(())
}

/// The signed part of an op.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpBody {
    /// GROUP_VERSION.
    pub version: u8,
    /// The group.
    pub group: GroupId,
    /// Position in the log: 0 for Create, then +1 per entry.
    pub seq: u64,
    /// Hash of entry `seq - 1` (32 zero bytes for Create).
    pub prev: [u8; 32],
    /// The author's clock, unix seconds (display, link expiry).
    pub at: u64,
    /// The author's fingerprint.
    pub author: [u8; 20],
    /// What the op does.
    pub action: Action,
}

impl OpBody {
    /// The author as a [`Fingerprint`].
    pub fn author(&self) -> Fingerprint {
        Fingerprint::from_bytes(self.author)
    }

    /// The canonical encoding (what is hashed and signed).
    pub fn encode(&self) -> Result<Vec<u8>, GroupError> {
        encode("op", self)
    }

    /// The op's hash: its log entry id, named by the next entry's `prev`.
    pub fn hash(&self) -> Result<[u8; 32], GroupError> {
        Ok(hash(LABEL_OP, &self.encode()?))
    }
}

impl fmt::Debug for OpBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpBody")
            .field("seq", &self.seq)
            .field("action", &self.action)
            .finish_non_exhaustive()
    }
}

/// A signed op: an appended log entry (with `owner_sig` when the author is
/// not the owner) or, without `owner_sig`, an admin's or member's proposal.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The signed body.
    pub body: OpBody,
    /// The author's binary detached signature over `LABEL_OP_SIG || 0 || body`.
    #[serde(with = "serde_bytes")]
    pub author_sig: Vec<u8>,
    /// The owner's countersignature over `LABEL_COUNTERSIGN || 0 || hash`,
    /// present exactly when the author is not the owner.
    #[serde(with = "serde_bytes")]
    pub owner_sig: Option<Vec<u8>>,
}

/// An op not yet countersigned, as an admin or member sends it to the owner.
pub type Proposal = Op;

impl fmt::Debug for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Op")
            .field("body", &self.body)
            .field("countersigned", &self.owner_sig.is_some())
            .finish()
    }
}

impl Op {
    /// Signs `body` as its author. `identity` must be the author named in
    /// the body.
    pub fn sign(body: OpBody, identity: &Identity) -> Result<Op, GroupError> {
        if !identity.fingerprint().ct_eq(&body.author()) {
            return Err(GroupError::BadSignature { who: "author" });
        }
        body.action.validate()?;
        let sig = sign(identity, LABEL_OP_SIG, &body.encode()?)?;
        Ok(Op {
            body,
            author_sig: sig,
            owner_sig: None,
        })
    }

    /// The owner's wrapping of a proposal: adds the countersignature over
    /// the op's hash. The author's signature is kept unchanged, so the
    /// owner cannot alter what the author asked for. The owner should check
    /// the proposal with [`crate::group::GroupState::check_proposal`] first.
    pub fn countersign(mut self, owner: &Identity) -> Result<Op, GroupError> {
        self.owner_sig = Some(sign(owner, LABEL_COUNTERSIGN, &self.body.hash()?)?);
        Ok(self)
    }

    /// The op's hash (see [`OpBody::hash`]).
    pub fn hash(&self) -> Result<[u8; 32], GroupError> {
        self.body.hash()
    }

    /// Verifies the author's signature with `cert`.
    pub(crate) fn verify_author(&self, cert: &PublicCert) -> Result<(), GroupError> {
        verify(
            cert,
            LABEL_OP_SIG,
            &self.body.encode()?,
            &self.author_sig,
            "author",
        )
    }

    /// Verifies the owner's countersignature with `owner`.
    pub(crate) fn verify_countersignature(&self, owner: &PublicCert) -> Result<(), GroupError> {
        let sig = self
            .owner_sig
            .as_ref()
            .ok_or(GroupError::MissingCountersignature)?;
        verify(owner, LABEL_COUNTERSIGN, &self.hash()?, sig, "owner")
    }

    /// Checks version and limits (no signature, no state).
    pub fn validate(&self) -> Result<(), GroupError> {
        if self.body.version != GROUP_VERSION {
            return Err(GroupError::UnsupportedVersion(self.body.version));
        }
        check_sig("author signature", &self.author_sig)?;
        if let Some(s) = &self.owner_sig {
            check_sig("owner signature", s)?;
        }
        self.body.action.validate()
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>, GroupError> {
        self.validate()?;
        let out = encode("op", self)?;
        check_len("op", out.len(), MAX_GROUP_OP)?;
        Ok(out)
    }

    /// Strict decoding: ≤ MAX_GROUP_OP bytes, canonical, within limits.
    pub fn decode(bytes: &[u8]) -> Result<Op, GroupError> {
        let op: Op = decode("op", bytes, MAX_GROUP_OP)?;
        op.validate()?;
        Ok(op)
    }
}
