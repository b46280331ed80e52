//! The group peer messages (PROTOCOL.md §20.9): kinds 32–41 of the sealed
//! frames' plaintext, `kind || postcard(body)`, carried over the existing
//! pairwise sessions. `wire::PeerMessage` decodes these kinds as `Unknown`;
//! a node that speaks groups hands a plaintext whose first byte is in
//! [`KINDS`] to [`GroupWire::decode`] first.

use std::ops::RangeInclusive;

use serde::{Deserialize, Serialize};

use super::intro::Introduction;
use super::invite::DirectInvite;
use super::message::GroupMessage;
use super::op::{GroupId, Op};
use super::{GroupError, check_len, decode, encode};
use crate::limits::{MAX_FRAME, MAX_GROUP_MEMBERS, MAX_PULL_ITEMS};

/// The peer-message kinds reserved for groups.
pub const KINDS: RangeInclusive<u8> = 32..=41;

/// Owner → proposer: why a proposal was not appended (codes of §20.9; any
/// other value means "unspecified").
pub mod refusal {
    /// Unspecified.
    pub const OTHER: u8 = 0;
    /// The proposal named an old head: propose again at the new head.
    pub const STALE_HEAD: u8 = 1;
    /// The proposer's role does not allow it.
    pub const NOT_PERMITTED: u8 = 2;
    /// The group is full.
    pub const GROUP_FULL: u8 = 3;
    /// The owner's user declined it.
    pub const DECLINED: u8 = 4;
}

/// A pull request: "send me what I miss" (§20.10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The group.
    pub group: GroupId,
    /// Our log head position.
    pub log_seq: u64,
    /// Our log head hash (the responder checks it for a split view).
    pub log_head: [u8; 32],
    /// Per sender, the next message sequence we need (senders not listed:
    /// from 1), ≤ MAX_GROUP_MEMBERS entries, sorted, no duplicates.
    #[serde(deserialize_with = "de_cursors")]
    pub cursors: Vec<([u8; 20], u64)>,
}

/// A pull response: log entries after the requester's head, then messages
/// from the cursors on, in per-sender order; at most MAX_PULL_ITEMS items
/// and MAX_PULL_BYTES of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullResponse {
    /// The group.
    pub group: GroupId,
    /// Log entries, consecutive, starting at the requester's `log_seq + 1`.
    #[serde(deserialize_with = "de_ops")]
    pub ops: Vec<Op>,
    /// Messages.
    #[serde(deserialize_with = "de_messages")]
    pub messages: Vec<GroupMessage>,
    /// Whether the responder holds more: pull again with the new cursors.
    pub more: bool,
}

/// The receiver durably stored the log up to `log_seq` and, per sender,
/// every message below the cursor: the sender's outbox may drop them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupAck {
    /// The group.
    pub group: GroupId,
    /// Highest log position stored.
    pub log_seq: u64,
    /// Per sender, the next message sequence needed (cumulative), sorted.
    #[serde(deserialize_with = "de_cursors")]
    pub cursors: Vec<([u8; 20], u64)>,
}

/// Every group peer message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupWire {
    /// Kind 32, owner → members: an appended log entry.
    Op(Op),
    /// Kind 33, admin or member → owner: a proposal (no countersignature).
    Proposal(Op),
    /// Kind 34, owner → proposer.
    ProposalRefused {
        /// The group.
        group: GroupId,
        /// The proposal's hash.
        op_hash: [u8; 32],
        /// A [`refusal`] code.
        reason: u8,
    },
    /// Kind 35: a group message, from its sender or relayed.
    Message(GroupMessage),
    /// Kind 36, owner → members.
    Introduction(Introduction),
    /// Kind 37.
    PullRequest(PullRequest),
    /// Kind 38.
    PullResponse(PullResponse),
    /// Kind 39, owner or admin → contact.
    Invite(DirectInvite),
    /// Kind 40, invitee → inviter.
    InviteAnswer {
        /// The group.
        group: GroupId,
        /// The invite's nonce.
        nonce: [u8; 16],
        /// Accepted or declined.
        accept: bool,
    },
    /// Kind 41.
    Ack(GroupAck),
}

#[derive(Serialize, Deserialize)]
struct RefusedBody {
    group: GroupId,
    op_hash: [u8; 32],
    reason: u8,
}

#[derive(Serialize, Deserialize)]
struct AnswerBody {
    group: GroupId,
    nonce: [u8; 16],
    accept: bool,
}

fn de_cursors<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<([u8; 20], u64)>, D::Error> {
    super::bounded_seq(d, MAX_GROUP_MEMBERS)
}

fn de_ops<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Op>, D::Error> {
    super::bounded_seq(d, MAX_PULL_ITEMS)
}

fn de_messages<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<GroupMessage>, D::Error> {
    super::bounded_seq(d, MAX_PULL_ITEMS)
}

fn check_cursors(cursors: &[([u8; 20], u64)]) -> Result<(), GroupError> {
    check_len("cursors", cursors.len(), MAX_GROUP_MEMBERS)?;
    if cursors.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(GroupError::Malformed {
            what: "cursors",
            reason: "not sorted or duplicated",
        });
    }
    if cursors.iter().any(|(_, n)| *n == 0) {
        return Err(GroupError::Malformed {
            what: "cursors",
            reason: "sequences start at 1",
        });
    }
    Ok(())
}

impl GroupWire {
    /// The kind byte.
    pub fn kind(&self) -> u8 {
        match self {
            GroupWire::Op(_) => 32,
            GroupWire::Proposal(_) => 33,
            GroupWire::ProposalRefused { .. } => 34,
            GroupWire::Message(_) => 35,
            GroupWire::Introduction(_) => 36,
            GroupWire::PullRequest(_) => 37,
            GroupWire::PullResponse(_) => 38,
            GroupWire::Invite(_) => 39,
            GroupWire::InviteAnswer { .. } => 40,
            GroupWire::Ack(_) => 41,
        }
    }

    /// Limits and form of every field.
    pub fn validate(&self) -> Result<(), GroupError> {
        match self {
            GroupWire::Op(op) => op.validate(),
            GroupWire::Proposal(op) => {
                if op.owner_sig.is_some() {
                    return Err(GroupError::UnexpectedCountersignature);
                }
                op.validate()
            }
            GroupWire::Message(m) => m.validate(),
            GroupWire::Introduction(i) => i.check(),
            GroupWire::PullRequest(p) => check_cursors(&p.cursors),
            GroupWire::PullResponse(p) => {
                check_len(
                    "pull response",
                    p.ops.len() + p.messages.len(),
                    MAX_PULL_ITEMS,
                )?;
                if p.ops
                    .windows(2)
                    .any(|w| w[1].body.seq != w[0].body.seq.wrapping_add(1))
                {
                    return Err(GroupError::Malformed {
                        what: "pull response",
                        reason: "log entries not consecutive",
                    });
                }
                p.ops.iter().try_for_each(Op::validate)?;
                p.messages.iter().try_for_each(GroupMessage::validate)
            }
            GroupWire::Invite(i) => i.check(),
            GroupWire::Ack(a) => check_cursors(&a.cursors),
            GroupWire::ProposalRefused { .. } | GroupWire::InviteAnswer { .. } => Ok(()),
        }
    }

    /// Encodes `kind || postcard(body)`; refuses anything over its limits
    /// or over MAX_FRAME.
    pub fn encode(&self) -> Result<Vec<u8>, GroupError> {
        self.validate()?;
        let body = match self {
            GroupWire::Op(op) | GroupWire::Proposal(op) => encode("op", op),
            GroupWire::ProposalRefused {
                group,
                op_hash,
                reason,
            } => encode(
                "proposal refusal",
                &RefusedBody {
                    group: *group,
                    op_hash: *op_hash,
                    reason: *reason,
                },
            ),
            GroupWire::Message(m) => encode("message", m),
            GroupWire::Introduction(i) => encode("introduction", i),
            GroupWire::PullRequest(p) => encode("pull request", p),
            GroupWire::PullResponse(p) => encode("pull response", p),
            GroupWire::Invite(i) => encode("invite", i),
            GroupWire::InviteAnswer {
                group,
                nonce,
                accept,
            } => encode(
                "invite answer",
                &AnswerBody {
                    group: *group,
                    nonce: *nonce,
                    accept: *accept,
                },
            ),
            GroupWire::Ack(a) => encode("ack", a),
        }?;
        let mut out = Vec::with_capacity(body.len() + 1);
        out.push(self.kind());
        out.extend_from_slice(&body);
        check_len("group peer message", out.len(), MAX_FRAME)?;
        Ok(out)
    }

    /// Decodes a sealed frame's plaintext whose kind is in [`KINDS`]:
    /// strict, canonical, within limits. Other kinds are Malformed (they
    /// belong to `wire::PeerMessage`).
    pub fn decode(plaintext: &[u8]) -> Result<GroupWire, GroupError> {
        check_len("group peer message", plaintext.len(), MAX_FRAME)?;
        let [kind, body @ ..] = plaintext else {
            return Err(GroupError::Malformed {
                what: "group peer message",
                reason: "empty",
            });
        };
        let msg = match *kind {
            32 => GroupWire::Op(decode("op", body, MAX_FRAME)?),
            33 => GroupWire::Proposal(decode("op", body, MAX_FRAME)?),
            34 => {
                let b: RefusedBody = decode("proposal refusal", body, MAX_FRAME)?;
                GroupWire::ProposalRefused {
                    group: b.group,
                    op_hash: b.op_hash,
                    reason: b.reason,
                }
            }
            35 => GroupWire::Message(decode("message", body, MAX_FRAME)?),
            36 => GroupWire::Introduction(decode("introduction", body, MAX_FRAME)?),
            37 => GroupWire::PullRequest(decode("pull request", body, MAX_FRAME)?),
            38 => GroupWire::PullResponse(decode("pull response", body, MAX_FRAME)?),
            39 => GroupWire::Invite(decode("invite", body, MAX_FRAME)?),
            40 => {
                let b: AnswerBody = decode("invite answer", body, MAX_FRAME)?;
                GroupWire::InviteAnswer {
                    group: b.group,
                    nonce: b.nonce,
                    accept: b.accept,
                }
            }
            41 => GroupWire::Ack(decode("ack", body, MAX_FRAME)?),
            _ => {
                return Err(GroupError::Malformed {
                    what: "group peer message",
                    reason: "not a group kind",
                });
            }
        };
        msg.validate()?;
        Ok(msg)
    }
}
