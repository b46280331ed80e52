//! Groups v1 (docs/PROTOCOL.md §20): the sans-IO heart of private groups and
//! discussion rooms, carried over the existing pairwise sessions.
//!
//! # Layout
//!
//! ```text
//!  wire        the group peer messages (kinds 32–41) and their strict codec
//!    |
//!  invite      direct invites, `umbra:group#…` links, the link join proof
//!  message     signed group messages, the per-sender delivery tracker
//!    |
//!  state       the membership log's state machine: GroupState::apply
//!    |
//!  op          ops, their hash chain, signatures, admin proposals
//! ```
//!
//! Every object that crosses the network is a postcard body (PROTOCOL.md
//! §3.4) checked for size before decoding, re-encoded after decoding and
//! refused unless the bytes are identical (canonical, no trailing bytes),
//! then checked against the limits of [`crate::limits`]. Signatures are
//! binary OpenPGP detached signatures by the author's identity key
//! ([`crate::identity::Identity::sign_detached_binary`]) over a
//! domain-separated label and the body: no new primitive.
//!
//! Nothing here reads a clock or a socket: times are arguments.

pub mod intro;
pub mod invite;
pub mod message;
pub mod op;
pub mod state;
pub mod wire;

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{ErrorKind, HasKind};
use crate::identity::IdentityError;

// ---------- public exports ----------
pub use intro::Introduction;
pub use invite::{
    DirectInvite, InviteLink, JoinMessage, JoinServer, Joined, LinkSecret, MAX_JOIN_MESSAGE,
    join_proof,
};
pub use message::{Content, DeliveryTracker, GroupMessage, MessageBody, Offer};
pub use op::{Action, GroupId, Op, OpBody, Proposal, Role};
pub use state::{Event, GroupState, LinkInfo, Member, StateSummary};
pub use wire::{GroupAck, GroupWire, PullRequest, PullResponse};

/// The groups protocol version carried in every signed group object.
pub const GROUP_VERSION: u8 = 1;

/// Group flag: a discussion room (topic, read-only members, admins may
/// delete messages for everyone).
pub const FLAG_ROOM: u8 = 0x01;
/// Group flag: members who join later may pull the history sent before
/// they joined.
pub const FLAG_HISTORY: u8 = 0x02;
/// Every flag this version knows; other bits are Malformed.
pub const FLAGS_KNOWN: u8 = FLAG_ROOM | FLAG_HISTORY;

/// Why a group object or operation was refused. One variant per reason, so
/// that the node and the UI can say exactly what happened. A refused input
/// never changes any state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// The bytes do not decode, are not canonical or break a rule of form.
    #[error("malformed group {what}: {reason}")]
    Malformed {
        /// Which object.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// An object or field is over its limit.
    #[error("group {what} too large: {len} (limit {limit})")]
    TooLarge {
        /// Which object or field.
        what: &'static str,
        /// Observed size or count.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The object names another group.
    #[error("the object belongs to another group")]
    WrongGroup,
    /// The object announces a groups version this client does not speak.
    #[error("unsupported groups version {0}; the sender may need to upgrade (or we do)")]
    UnsupportedVersion(u8),
    /// A signature is missing or does not verify with the key it must come from.
    #[error("the {who}'s signature does not verify")]
    BadSignature {
        /// Whose signature: author, owner, sender, link.
        who: &'static str,
    },
    /// The author or sender is not a member of the group.
    #[error("the author is not a member of the group")]
    NotAMember,
    /// The op names a previous head that is not ours (a stale or forked view).
    #[error("op against a stale head: it extends entry {got_seq}, our head is entry {head_seq}")]
    StaleHead {
        /// Our head's sequence number.
        head_seq: u64,
        /// The sequence number the op extends.
        got_seq: u64,
    },
    /// The op is further ahead than our next entry: earlier ops are missing.
    #[error("op {got_seq} is ahead of our next entry {next_seq}: pull the missing ops first")]
    Ahead {
        /// The sequence number we expect next.
        next_seq: u64,
        /// The sequence number of the op.
        got_seq: u64,
    },
    /// The author's role does not allow this action.
    #[error("a {role} may not {action}")]
    RoleTooLow {
        /// The author's role at the previous head.
        role: Role,
        /// The action refused.
        action: &'static str,
    },
    /// Nobody may change their own role or remove themselves with Remove.
    #[error("nobody may {action} themselves")]
    SelfTarget {
        /// The action refused.
        action: &'static str,
    },
    /// The target's role is equal to or above the author's.
    #[error("a {role} may not {action} a member of equal or higher role")]
    TargetOutranks {
        /// The author's role.
        role: Role,
        /// The action refused.
        action: &'static str,
    },
    /// The owner can only leave its role through TransferOwnership.
    #[error("the owner cannot be removed or demoted; transfer ownership first")]
    OwnerImmovable,
    /// The role cannot be granted this way (Owner through SetRole or Add,
    /// more than member through a link).
    #[error("role {0} cannot be granted this way")]
    RoleNotGrantable(Role),
    /// The member is already in the group.
    #[error("already a member of the group")]
    AlreadyMember,
    /// The target of the op is not a member.
    #[error("the target is not a member of the group")]
    TargetNotMember,
    /// The group has reached its size limit.
    #[error("the group is full ({limit} members)")]
    GroupFull {
        /// The limit.
        limit: usize,
    },
    /// The op would not change anything.
    #[error("the op changes nothing")]
    NoChange,
    /// An admin's op needs the owner's countersignature to be appended.
    #[error("an admin's op is appended only with the owner's countersignature")]
    MissingCountersignature,
    /// The owner's own op carries a countersignature.
    #[error("the owner's own op must not carry a countersignature")]
    UnexpectedCountersignature,
    /// The group was dissolved: no further op or message is accepted.
    #[error("the group was dissolved")]
    Dissolved,
    /// The membership log reached its length limit.
    #[error("the group's membership log is full ({limit} entries); create a new group")]
    LogFull {
        /// The limit.
        limit: usize,
    },
    /// The first op of a log must be a valid Create.
    #[error("invalid genesis: {0}")]
    BadGenesis(&'static str),
    /// A certificate in an Add does not belong to the member it names, or is unusable.
    #[error("the member's certificate is unusable or belongs to someone else")]
    BadCert,
    /// The invite link is unknown to the group.
    #[error("unknown invite link")]
    LinkUnknown,
    /// The invite link was revoked.
    #[error("the invite link was revoked")]
    LinkRevoked,
    /// The invite link expired.
    #[error("the invite link expired")]
    LinkExpired,
    /// The invite link was used as often as it allows.
    #[error("the invite link was used up")]
    LinkUsedUp,
    /// A link with this id already exists.
    #[error("an invite link with this id already exists")]
    LinkExists,
    /// The group has as many links as it may.
    #[error("too many invite links ({limit}); revoke or let some expire")]
    TooManyLinks {
        /// The limit.
        limit: usize,
    },
    /// The join proof does not prove knowledge of the link secret.
    #[error("the join proof is wrong (not the link's secret, or an old challenge)")]
    BadJoinProof,
    /// An invite link string is not a valid `umbra:group#…` link.
    #[error("invalid invite link: {0}")]
    BadLink(&'static str),
    /// The invite expired.
    #[error("the invite expired")]
    InviteExpired,
    /// A message names a head at a position where we hold a different one:
    /// the owner showed two members different logs.
    #[error(
        "split view: entry {seq} of the membership log differs from ours; the group is frozen until resolved"
    )]
    SplitView {
        /// The log position where the heads differ.
        seq: u64,
    },
    /// A message names a log head we do not have yet.
    #[error("the message names log entry {need_seq}; pull the membership log first")]
    BehindLog {
        /// The log position it names.
        need_seq: u64,
    },
    /// The sender's role does not allow posting.
    #[error("a {0} may not post in this group")]
    CannotPost(Role),
    /// The sender may not delete that message.
    #[error("only the sender, or an admin in a room, may delete a message for everyone")]
    DeleteNotAllowed,
    /// A message is too far ahead of its sender's sequence to be buffered.
    #[error("message {seq} is too far ahead of the sender's next message {next}: pull first")]
    TooFarAhead {
        /// The next sequence expected from the sender.
        next: u64,
        /// The sequence of the message.
        seq: u64,
    },
    /// The sender signed two different messages with one sequence number.
    #[error("the sender signed two different messages with sequence number {seq}")]
    Equivocation {
        /// The sequence number.
        seq: u64,
    },
    /// Signing failed locally.
    #[error("could not sign the group object")]
    Sign(#[source] IdentityError),
}

impl HasKind for GroupError {
    fn kind(&self) -> ErrorKind {
        use GroupError as E;
        match self {
            E::Malformed { .. } | E::BadLink(_) | E::BadGenesis(_) | E::BadCert => {
                ErrorKind::InvalidInput
            }
            E::TooLarge { .. }
            | E::GroupFull { .. }
            | E::LogFull { .. }
            | E::TooManyLinks { .. }
            | E::TooFarAhead { .. } => ErrorKind::TooLarge,
            E::UnsupportedVersion(_) | E::WrongGroup | E::Ahead { .. } | E::BehindLog { .. } => {
                ErrorKind::Protocol
            }
            E::BadSignature { .. } | E::BadJoinProof => ErrorKind::BadSignature,
            E::LinkExpired | E::InviteExpired => ErrorKind::Stale,
            E::LinkUsedUp | E::Equivocation { .. } => ErrorKind::Replay,
            E::SplitView { .. } => ErrorKind::InvariantViolation,
            E::Sign(_) => ErrorKind::Crypto,
            E::LinkUnknown | E::TargetNotMember => ErrorKind::NotFound,
            E::AlreadyMember | E::LinkExists => ErrorKind::AlreadyExists,
            E::NotAMember
            | E::StaleHead { .. }
            | E::RoleTooLow { .. }
            | E::SelfTarget { .. }
            | E::TargetOutranks { .. }
            | E::OwnerImmovable
            | E::RoleNotGrantable(_)
            | E::NoChange
            | E::MissingCountersignature
            | E::UnexpectedCountersignature
            | E::Dissolved
            | E::LinkRevoked
            | E::CannotPost(_)
            | E::DeleteNotAllowed => ErrorKind::Protocol,
        }
    }
}

/// Encodes a postcard body; the body types of this module always encode.
pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, GroupError> {
    postcard::to_stdvec(value).map_err(|_| GroupError::Malformed {
        what,
        reason: "does not encode",
    })
}

/// Decodes a postcard body strictly: at most `limit` bytes, no trailing
/// bytes, and canonical (re-encoding gives the same bytes).
pub(crate) fn decode<T: Serialize + DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    limit: usize,
) -> Result<T, GroupError> {
    if bytes.len() > limit {
        return Err(GroupError::TooLarge {
            what,
            len: bytes.len(),
            limit,
        });
    }
    let (value, rest) =
        postcard::take_from_bytes::<T>(bytes).map_err(|_| GroupError::Malformed {
            what,
            reason: "does not decode",
        })?;
    if !rest.is_empty() {
        return Err(GroupError::Malformed {
            what,
            reason: "trailing bytes",
        });
    }
    if encode(what, &value)? != bytes {
        return Err(GroupError::Malformed {
            what,
            reason: "non-canonical encoding",
        });
    }
    Ok(value)
}

/// Deserializes a sequence of at most `max` elements, refusing a longer
/// count before allocating for it (serde's own `Vec` would reserve up to
/// 1 MiB on a claimed count).
pub(crate) fn bounded_seq<'de, D, T>(d: D, max: usize) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct V<T> {
        max: usize,
        marker: std::marker::PhantomData<T>,
    }
    impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "at most {} elements", self.max)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let hint = seq.size_hint().unwrap_or(0);
            if hint > self.max {
                return Err(serde::de::Error::custom("too many elements"));
            }
            let mut out = Vec::with_capacity(hint);
            while let Some(x) = seq.next_element()? {
                if out.len() == self.max {
                    return Err(serde::de::Error::custom("too many elements"));
                }
                out.push(x);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(V {
        max,
        marker: std::marker::PhantomData,
    })
}

/// `label || 0x00 || body`: the bytes a group signature or hash covers.
pub(crate) fn labelled(label: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(label.len() + 1 + body.len());
    out.extend_from_slice(label.as_bytes());
    out.push(0);
    out.extend_from_slice(body);
    out
}

/// The signer's binary detached signature over `labelled(label, body)`.
pub(crate) fn sign(
    identity: &crate::identity::Identity,
    label: &str,
    body: &[u8],
) -> Result<Vec<u8>, GroupError> {
    identity
        .sign_detached_binary(&labelled(label, body))
        .map_err(GroupError::Sign)
}

/// Verifies `sig` over `labelled(label, body)` with `cert`;
/// [`GroupError::BadSignature`] naming `who` otherwise.
pub(crate) fn verify(
    cert: &crate::identity::PublicCert,
    label: &str,
    body: &[u8],
    sig: &[u8],
    who: &'static str,
) -> Result<(), GroupError> {
    cert.verify_detached(&labelled(label, body), sig)
        .map(|_| ())
        .map_err(|_| GroupError::BadSignature { who })
}

/// SHA-256 of [`labelled`].
pub(crate) fn hash(label: &str, body: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(labelled(label, body)).into()
}

/// Refuses a string or byte field over `limit` bytes.
pub(crate) fn check_len(what: &'static str, len: usize, limit: usize) -> Result<(), GroupError> {
    if len > limit {
        return Err(GroupError::TooLarge { what, len, limit });
    }
    Ok(())
}

/// Refuses a signature field that is empty or over the limit.
pub(crate) fn check_sig(what: &'static str, sig: &[u8]) -> Result<(), GroupError> {
    if sig.is_empty() {
        return Err(GroupError::Malformed {
            what,
            reason: "empty signature",
        });
    }
    check_len(what, sig.len(), crate::limits::MAX_GROUP_SIG)
}

/// Whether `addr` has the form of an onion (or direct) address field
/// (PROTOCOL.md §3.3): 1..=MAX_ADDRESS printable ASCII bytes. The node
/// checks it against its network before dialling.
pub(crate) fn address_ok(addr: &str) -> bool {
    !addr.is_empty()
        && addr.len() <= crate::limits::MAX_ADDRESS
        && addr.bytes().all(|b| b.is_ascii_graphic())
}

/// Refuses text with control characters other than newline and tab
/// (names and topics are shown in one line of a terminal).
pub(crate) fn check_line(what: &'static str, text: &str) -> Result<(), GroupError> {
    if text.chars().any(|c| c.is_control()) {
        return Err(GroupError::Malformed {
            what,
            reason: "control characters",
        });
    }
    Ok(())
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Probe {
        n: u64,
        #[serde(deserialize_with = "de_three")]
        v: Vec<u8>,
    }

    fn de_three<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        bounded_seq(d, 3)
    }

    #[test]
    fn decode_is_strict_and_canonical() {
        let p = Probe {
            n: 300,
            v: vec![1, 2],
        };
        let bytes = encode("probe", &p).unwrap();
        assert_eq!(bytes, [0xac, 0x02, 2, 1, 2]);
        assert_eq!(decode::<Probe>("probe", &bytes, 16).unwrap(), p);
        // Trailing byte, over-long varint, over the size limit, too many elements.
        assert!(decode::<Probe>("probe", &[0xac, 0x02, 2, 1, 2, 0], 16).is_err());
        assert!(matches!(
            decode::<Probe>("probe", &[0xac, 0x82, 0x00, 2, 1, 2], 16),
            Err(GroupError::Malformed {
                reason: "non-canonical encoding",
                ..
            })
        ));
        assert!(matches!(
            decode::<Probe>("probe", &bytes, 4),
            Err(GroupError::TooLarge { .. })
        ));
        assert!(decode::<Probe>("probe", &[1, 4, 1, 2, 3, 4], 16).is_err());
        assert!(decode::<Probe>("probe", &[1, 0xff, 0xff, 0xff, 0xff, 0x0f], 16).is_err());
    }

    #[test]
    fn labels_separate_purposes() {
        assert_ne!(hash("a", b"bc"), hash("ab", b"c"));
        assert_eq!(labelled("x", b"y"), b"x\0y");
    }

    #[test]
    fn field_rules() {
        assert!(check_line("name", "ok name").is_ok());
        assert!(check_line("name", "bad\u{1b}[31m").is_err());
        assert!(check_sig("sig", &[]).is_err());
        assert!(check_sig("sig", &[0; crate::limits::MAX_GROUP_SIG + 1]).is_err());
        assert!(address_ok("abc.onion"));
        assert!(!address_ok(""));
        assert!(!address_ok("a b"));
        assert!(!address_ok(&"a".repeat(crate::limits::MAX_ADDRESS + 1)));
    }

    #[test]
    fn every_error_has_a_kind_and_a_message() {
        let e = GroupError::SplitView { seq: 3 };
        assert_eq!(e.kind(), ErrorKind::InvariantViolation);
        assert!(e.to_string().contains("split view"));
        assert_eq!(GroupError::BadJoinProof.kind(), ErrorKind::BadSignature);
        assert_eq!(GroupError::LinkExpired.kind(), ErrorKind::Stale);
    }
}
