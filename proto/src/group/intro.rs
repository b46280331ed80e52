//! The owner's signed introduction of a member to the others (PROTOCOL.md
//! §20.8): the onion address at which members who are not contacts reach
//! each other for group traffic only. The member's key is already in the
//! log (its Add); the introduction adds only the address.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::op::GroupId;
use super::state::GroupState;
use super::{GROUP_VERSION, GroupError, address_ok, check_sig, encode, sign, verify};
use crate::identity::{Fingerprint, Identity};

/// Domain label of an introduction's signature.
const LABEL_INTRO_SIG: &str = "umbra/group/v1/intro-sig";

/// The signed part of an introduction.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntroductionBody {
    /// GROUP_VERSION.
    pub version: u8,
    /// The group.
    pub group: GroupId,
    /// The member introduced.
    pub member: [u8; 20],
    /// Its onion address (≤ MAX_ADDRESS bytes, printable ASCII).
    pub address: String,
    /// The log position at which the owner introduced it.
    pub log_seq: u64,
}

/// An introduction, signed by the owner at `log_seq`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Introduction {
    /// The signed body.
    pub body: IntroductionBody,
    /// The owner's binary detached signature.
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

impl fmt::Debug for Introduction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Onion addresses and fingerprints stay out of logs.
        f.debug_struct("Introduction")
            .field("log_seq", &self.body.log_seq)
            .finish_non_exhaustive()
    }
}

impl Introduction {
    /// The owner introduces `member` (reachable at `address`) in `group`.
    pub fn create(
        owner: &Identity,
        group: &GroupState,
        member: &Fingerprint,
        address: &str,
    ) -> Result<Introduction, GroupError> {
        if owner.fingerprint() != group.owner() {
            return Err(GroupError::RoleTooLow {
                role: group
                    .role(&owner.fingerprint())
                    .unwrap_or(super::Role::ReadOnly),
                action: "introduce members",
            });
        }
        if !group.members().contains_key(member) {
            return Err(GroupError::TargetNotMember);
        }
        let body = IntroductionBody {
            version: GROUP_VERSION,
            group: group.id(),
            member: *member.as_bytes(),
            address: address.to_owned(),
            log_seq: group.head_seq(),
        };
        validate_body(&body)?;
        let sig = sign(owner, LABEL_INTRO_SIG, &encode("introduction", &body)?)?;
        Ok(Introduction { body, sig })
    }

    /// A member's check: our group, a log position we hold, signed by the
    /// owner of our current state, naming a current member.
    pub fn verify(&self, group: &GroupState) -> Result<Fingerprint, GroupError> {
        self.check()?;
        if self.body.group != group.id() {
            return Err(GroupError::WrongGroup);
        }
        if self.body.log_seq > group.head_seq() {
            return Err(GroupError::BehindLog {
                need_seq: self.body.log_seq,
            });
        }
        let member = Fingerprint::from_bytes(self.body.member);
        if !group.members().contains_key(&member) {
            return Err(GroupError::TargetNotMember);
        }
        let owner = group
            .members()
            .get(&group.owner())
            .ok_or(GroupError::NotAMember)?;
        verify(
            &owner.cert,
            LABEL_INTRO_SIG,
            &encode("introduction", &self.body)?,
            &self.sig,
            "owner",
        )?;
        Ok(member)
    }

    /// Limits and form.
    pub(crate) fn check(&self) -> Result<(), GroupError> {
        validate_body(&self.body)?;
        check_sig("introduction signature", &self.sig)
    }
}

fn validate_body(b: &IntroductionBody) -> Result<(), GroupError> {
    if b.version != GROUP_VERSION {
        return Err(GroupError::UnsupportedVersion(b.version));
    }
    if !address_ok(&b.address) {
        return Err(GroupError::Malformed {
            what: "introduction",
            reason: "invalid address",
        });
    }
    Ok(())
}
