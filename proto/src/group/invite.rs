//! Invites (PROTOCOL.md §20.7): direct invites sent over a 1:1 session,
//! `umbra:group#…` invite links, and the link join exchange in which the
//! joiner proves knowledge of the link secret to the owner without
//! revealing it (an HMAC over a fresh owner challenge and both
//! fingerprints).

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use super::op::{GroupId, Role};
use super::state::GroupState;
use super::{
    GROUP_VERSION, GroupError, address_ok, check_len, check_line, check_sig, decode, encode,
    labelled, sign, verify,
};
use crate::identity::{Fingerprint, Identity, PublicCert};
use crate::limits::{MAX_CERT, MAX_ENVELOPE, MAX_GROUP_MEMBERS, MAX_GROUP_NAME, MAX_INVITE_LINK};

/// The scheme and fragment marker of invite links.
pub const LINK_PREFIX: &str = "umbra:group#";
/// Domain label of the owner's signature over a link.
const LABEL_LINK_SIG: &str = "umbra/group/v1/link-sig";
/// Domain label of the join proof's HMAC input.
const LABEL_JOIN_PROOF: &str = "umbra/group/v1/join-proof";
/// Domain label of a direct invite's signature.
const LABEL_INVITE_SIG: &str = "umbra/group/v1/invite-sig";
/// Largest encoded join message: a Challenge with a certificate or a
/// Proof with a ConnectionRequest envelope.
pub const MAX_JOIN_MESSAGE: usize = MAX_ENVELOPE + 1024;

fn check_address(addr: &str) -> Result<(), GroupError> {
    if !address_ok(addr) {
        return Err(GroupError::BadLink("invalid owner address"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Link secrets and links

/// An invite link's 32-byte secret: zeroized on drop, never printed.
#[derive(Clone)]
pub struct LinkSecret(Zeroizing<[u8; 32]>);

impl LinkSecret {
    /// A fresh random secret.
    pub fn random() -> Self {
        let mut s = Zeroizing::new([0u8; 32]);
        crate::session::fill_random(&mut s[..]);
        LinkSecret(s)
    }

    /// Wraps stored secret bytes (the owner's link store).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        LinkSecret(Zeroizing::new(bytes))
    }

    /// The secret bytes (to persist them in the encrypted store).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LinkSecret([redacted])")
    }
}

/// The part of a link the owner signs (everything but the secret).
#[derive(Serialize)]
struct LinkSigned<'a> {
    version: u8,
    group: &'a GroupId,
    link_id: &'a [u8; 16],
    expires_at: u64,
    owner: &'a [u8; 20],
    owner_address: &'a str,
}

/// The link's wire form (base64url of its postcard encoding).
#[derive(Serialize, Deserialize)]
struct LinkWire {
    version: u8,
    group: GroupId,
    link_id: [u8; 16],
    expires_at: u64,
    owner: [u8; 20],
    owner_address: String,
    secret: [u8; 32],
    #[serde(with = "serde_bytes")]
    sig: Vec<u8>,
}

impl Drop for LinkWire {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

/// An invite link: what a joiner needs to reach the owner over onion
/// services and prove it was given the link.
#[derive(Clone)]
pub struct InviteLink {
    /// The group.
    pub group: GroupId,
    /// The link id (registered in the log by OpenLink).
    pub link_id: [u8; 16],
    /// Unix time after which the owner refuses the link.
    pub expires_at: u64,
    /// The owner's fingerprint: pins the certificate the joiner gets.
    pub owner: Fingerprint,
    /// The owner's onion address (the only place it is given out).
    pub owner_address: String,
    /// The secret.
    pub secret: LinkSecret,
    /// The owner's binary detached signature over the link without its secret.
    pub sig: Vec<u8>,
}

impl fmt::Debug for InviteLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InviteLink")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl InviteLink {
    fn signed_body(&self) -> Result<Vec<u8>, GroupError> {
        encode(
            "invite link",
            &LinkSigned {
                version: GROUP_VERSION,
                group: &self.group,
                link_id: &self.link_id,
                expires_at: self.expires_at,
                owner: self.owner.as_bytes(),
                owner_address: &self.owner_address,
            },
        )
    }

    /// A new link with a random id and secret, signed by `owner`. Register
    /// it with an `Action::OpenLink` naming `link_id` and the same expiry
    /// before handing it out, and keep the secret.
    pub fn create(
        owner: &Identity,
        group: GroupId,
        expires_at: u64,
        owner_address: &str,
    ) -> Result<InviteLink, GroupError> {
        check_address(owner_address)?;
        let mut link_id = [0u8; 16];
        crate::session::fill_random(&mut link_id);
        let mut link = InviteLink {
            group,
            link_id,
            expires_at,
            owner: owner.fingerprint(),
            owner_address: owner_address.to_owned(),
            secret: LinkSecret::random(),
            sig: Vec::new(),
        };
        link.sig = sign(owner, LABEL_LINK_SIG, &link.signed_body()?)?;
        Ok(link)
    }

    /// The `umbra:group#…` form. It contains the secret: show it to the
    /// user only, never log it.
    pub fn to_uri(&self) -> Result<SecretString, GroupError> {
        let wire = LinkWire {
            version: GROUP_VERSION,
            group: self.group,
            link_id: self.link_id,
            expires_at: self.expires_at,
            owner: *self.owner.as_bytes(),
            owner_address: self.owner_address.clone(),
            secret: *self.secret.expose(),
            sig: self.sig.clone(),
        };
        let bytes = Zeroizing::new(encode("invite link", &wire)?);
        let mut uri = String::with_capacity(LINK_PREFIX.len() + bytes.len() * 4 / 3 + 4);
        uri.push_str(LINK_PREFIX);
        URL_SAFE_NO_PAD.encode_string(&*bytes, &mut uri);
        if uri.len() > MAX_INVITE_LINK {
            return Err(GroupError::TooLarge {
                what: "invite link",
                len: uri.len(),
                limit: MAX_INVITE_LINK,
            });
        }
        Ok(SecretString::from(uri))
    }

    /// Parses a link strictly (prefix, length, canonical base64url without
    /// padding, canonical body, address form). Verify it with
    /// [`InviteLink::verify`] once the owner's certificate is known.
    pub fn parse(uri: &str) -> Result<InviteLink, GroupError> {
        let uri = uri.trim();
        if uri.len() > MAX_INVITE_LINK {
            return Err(GroupError::TooLarge {
                what: "invite link",
                len: uri.len(),
                limit: MAX_INVITE_LINK,
            });
        }
        let b64 = uri
            .strip_prefix(LINK_PREFIX)
            .ok_or(GroupError::BadLink("it does not start with umbra:group#"))?;
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(b64)
                .map_err(|_| GroupError::BadLink("not base64url"))?,
        );
        let wire: LinkWire = decode("invite link", &bytes, MAX_INVITE_LINK)
            .map_err(|_| GroupError::BadLink("does not decode"))?;
        if wire.version != GROUP_VERSION {
            return Err(GroupError::UnsupportedVersion(wire.version));
        }
        check_address(&wire.owner_address)?;
        check_sig("link signature", &wire.sig)?;
        Ok(InviteLink {
            group: wire.group,
            link_id: wire.link_id,
            expires_at: wire.expires_at,
            owner: Fingerprint::from_bytes(wire.owner),
            owner_address: wire.owner_address.clone(),
            secret: LinkSecret::from_bytes(wire.secret),
            sig: wire.sig.clone(),
        })
    }

    /// The joiner's check once it holds the owner's certificate (from the
    /// join Challenge): the certificate is the pinned owner's and signed
    /// this link, which has not expired at `now`.
    pub fn verify(&self, owner_cert: &PublicCert, now: u64) -> Result<(), GroupError> {
        if !owner_cert.fingerprint().ct_eq(&self.owner) {
            return Err(GroupError::BadSignature { who: "owner" });
        }
        verify(
            owner_cert,
            LABEL_LINK_SIG,
            &self.signed_body()?,
            &self.sig,
            "owner",
        )?;
        if now > self.expires_at {
            return Err(GroupError::LinkExpired);
        }
        Ok(())
    }
}

/// The join proof: `HMAC-SHA256(secret, label || 0 || group || link_id ||
/// challenge || owner || joiner)`. It shows the secret was known for this
/// challenge and this joiner only; a recorded transcript is useless with any
/// other challenge.
pub fn join_proof(
    secret: &LinkSecret,
    group: &GroupId,
    link_id: &[u8; 16],
    challenge: &[u8; 32],
    owner: &Fingerprint,
    joiner: &Fingerprint,
) -> [u8; 32] {
    let mut data = Vec::with_capacity(32 + 16 + 32 + 20 + 20);
    data.extend_from_slice(&group.0);
    data.extend_from_slice(link_id);
    data.extend_from_slice(challenge);
    data.extend_from_slice(owner.as_bytes());
    data.extend_from_slice(joiner.as_bytes());
    // HMAC accepts keys of any length: this cannot fail.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.expose()).unwrap_or_else(|_| unreachable!());
    mac.update(&labelled(LABEL_JOIN_PROOF, &data));
    mac.finalize().into_bytes().into()
}

// ---------------------------------------------------------------------------
// The join exchange

/// Messages of the join stream (frame type 4, PROTOCOL.md §20.7.3).
/// Wire values are the variant indexes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinMessage {
    /// 0, joiner → owner: which link.
    Hello {
        /// GROUP_VERSION.
        version: u8,
        /// The group.
        group: GroupId,
        /// The link id.
        link_id: [u8; 16],
    },
    /// 1, owner → joiner: a fresh challenge and the owner's certificate.
    Challenge {
        /// 32 random bytes, single use.
        nonce: [u8; 32],
        /// The owner's binary public certificate.
        #[serde(with = "serde_bytes")]
        owner_cert: Vec<u8>,
    },
    /// 2, joiner → owner: the proof and a ConnectionRequest envelope (§5.2)
    /// to the owner, whose requester must be `joiner`.
    Proof {
        /// The joiner's fingerprint.
        joiner: [u8; 20],
        /// [`join_proof`].
        proof: [u8; 32],
        /// The armored ConnectionRequest envelope.
        #[serde(with = "serde_bytes")]
        request: Vec<u8>,
    },
    /// 3, owner → joiner: 0 accepted (the Accept and the log follow over
    /// the new session), 1 refused. No finer reason (no oracle).
    Result {
        /// 0 or 1.
        code: u8,
    },
}

impl fmt::Debug for JoinMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JoinMessage::Hello { .. } => "JoinMessage::Hello",
            JoinMessage::Challenge { .. } => "JoinMessage::Challenge",
            JoinMessage::Proof { .. } => "JoinMessage::Proof",
            JoinMessage::Result { .. } => "JoinMessage::Result",
        })
    }
}

impl JoinMessage {
    fn validate(&self) -> Result<(), GroupError> {
        match self {
            JoinMessage::Hello { version, .. } if *version != GROUP_VERSION => {
                Err(GroupError::UnsupportedVersion(*version))
            }
            JoinMessage::Challenge { owner_cert, .. } => {
                check_len("certificate", owner_cert.len(), MAX_CERT)
            }
            JoinMessage::Proof { request, .. } => {
                check_len("connection request", request.len(), MAX_ENVELOPE)
            }
            JoinMessage::Result { code } if *code > 1 => Err(GroupError::Malformed {
                what: "join result",
                reason: "unknown code",
            }),
            _ => Ok(()),
        }
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>, GroupError> {
        self.validate()?;
        encode("join message", self)
    }

    /// Strict decoding: ≤ MAX_JOIN_MESSAGE bytes, canonical, within limits.
    pub fn decode(bytes: &[u8]) -> Result<JoinMessage, GroupError> {
        let m: JoinMessage = decode("join message", bytes, MAX_JOIN_MESSAGE)?;
        m.validate()?;
        Ok(m)
    }
}

/// What the owner learns from a successful join.
#[derive(Debug)]
pub struct Joined {
    /// The joiner (the ConnectionRequest's requester must match).
    pub joiner: Fingerprint,
    /// The link used.
    pub link_id: [u8; 16],
    /// The role to grant (the link's: never more than member).
    pub role: Role,
    /// The ConnectionRequest envelope, to open with the handshake code.
    pub request: Vec<u8>,
}

/// The owner's side of one join stream: Hello → Challenge → Proof →
/// Result. Any refusal moves it to `Failed`; the caller then sends
/// `Result { code: 1 }` (or nothing) and closes the stream.
#[derive(Debug)]
pub struct JoinServer {
    state: JoinServerState,
}

#[derive(Debug)]
enum JoinServerState {
    AwaitingHello,
    AwaitingProof {
        link_id: [u8; 16],
        nonce: Zeroizing<[u8; 32]>,
    },
    Done,
    Failed,
}

impl Default for JoinServer {
    fn default() -> Self {
        JoinServer {
            state: JoinServerState::AwaitingHello,
        }
    }
}

impl JoinServer {
    /// A server waiting for the joiner's Hello.
    pub fn new() -> Self {
        Self::default()
    }

    /// Handles the Hello: the link must be open in `group` at `now`.
    /// Returns the Challenge to send (fresh nonce, `owner_cert`).
    pub fn on_hello(
        &mut self,
        msg: &JoinMessage,
        group: &GroupState,
        owner_cert: Vec<u8>,
        now: u64,
    ) -> Result<JoinMessage, GroupError> {
        let r = self.hello(msg, group, owner_cert, now);
        if r.is_err() {
            self.state = JoinServerState::Failed;
        }
        r
    }

    fn hello(
        &mut self,
        msg: &JoinMessage,
        group: &GroupState,
        owner_cert: Vec<u8>,
        now: u64,
    ) -> Result<JoinMessage, GroupError> {
        let JoinServerState::AwaitingHello = self.state else {
            return Err(GroupError::Malformed {
                what: "join exchange",
                reason: "Hello out of order",
            });
        };
        let JoinMessage::Hello {
            group: gid,
            link_id,
            ..
        } = msg
        else {
            return Err(GroupError::Malformed {
                what: "join exchange",
                reason: "expected Hello",
            });
        };
        if *gid != group.id() {
            return Err(GroupError::WrongGroup);
        }
        if group.is_dissolved() {
            return Err(GroupError::Dissolved);
        }
        group.check_link(link_id, now)?;
        let mut nonce = Zeroizing::new([0u8; 32]);
        crate::session::fill_random(&mut nonce[..]);
        let challenge = JoinMessage::Challenge {
            nonce: *nonce,
            owner_cert,
        };
        self.state = JoinServerState::AwaitingProof {
            link_id: *link_id,
            nonce,
        };
        Ok(challenge)
    }

    /// Handles the Proof with the link's `secret` (from the owner's link
    /// store): link still usable at `now`, joiner not yet a member, group
    /// not full, proof right for this stream's challenge. The owner then
    /// accepts the ConnectionRequest (its requester must be
    /// [`Joined::joiner`]) and appends `Add { link: Some(link_id), role }`.
    pub fn on_proof(
        &mut self,
        msg: &JoinMessage,
        group: &GroupState,
        secret: &LinkSecret,
        now: u64,
    ) -> Result<Joined, GroupError> {
        let r = self.proof(msg, group, secret, now);
        self.state = if r.is_ok() {
            JoinServerState::Done
        } else {
            JoinServerState::Failed
        };
        r
    }

    fn proof(
        &self,
        msg: &JoinMessage,
        group: &GroupState,
        secret: &LinkSecret,
        now: u64,
    ) -> Result<Joined, GroupError> {
        let JoinServerState::AwaitingProof { link_id, nonce } = &self.state else {
            return Err(GroupError::Malformed {
                what: "join exchange",
                reason: "Proof out of order",
            });
        };
        let JoinMessage::Proof {
            joiner,
            proof,
            request,
        } = msg
        else {
            return Err(GroupError::Malformed {
                what: "join exchange",
                reason: "expected Proof",
            });
        };
        let info = group.check_link(link_id, now)?;
        let joiner = Fingerprint::from_bytes(*joiner);
        if group.members().contains_key(&joiner) {
            return Err(GroupError::AlreadyMember);
        }
        if group.members().len() >= MAX_GROUP_MEMBERS {
            return Err(GroupError::GroupFull {
                limit: MAX_GROUP_MEMBERS,
            });
        }
        let expected = join_proof(secret, &group.id(), link_id, nonce, &group.owner(), &joiner);
        if !bool::from(expected.ct_eq(proof)) {
            return Err(GroupError::BadJoinProof);
        }
        Ok(Joined {
            joiner,
            link_id: *link_id,
            role: info.role,
            request: request.clone(),
        })
    }
}

// ---------------------------------------------------------------------------
// Direct invites

/// The signed part of a direct invite.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectInviteBody {
    /// GROUP_VERSION.
    pub version: u8,
    /// The group.
    pub group: GroupId,
    /// Its name, for the invitee's prompt (untrusted text).
    pub name: String,
    /// The owner or admin inviting.
    pub inviter: [u8; 20],
    /// The contact invited.
    pub invitee: [u8; 20],
    /// The role offered (never Owner).
    pub role: Role,
    /// Unix time after which the invite is void.
    pub expires_at: u64,
    /// Random id of the invite, echoed in the answer.
    pub nonce: [u8; 16],
}

/// A direct invite, sent over the inviter's 1:1 session with the invitee.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectInvite {
    /// The signed body.
    pub body: DirectInviteBody,
    /// The inviter's binary detached signature.
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

impl fmt::Debug for DirectInvite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectInvite")
            .field("role", &self.body.role)
            .field("expires_at", &self.body.expires_at)
            .finish_non_exhaustive()
    }
}

impl DirectInvite {
    /// Signs an invite of `invitee` by `inviter` (who must be the owner or
    /// an admin of `group`).
    pub fn create(
        inviter: &Identity,
        group: &GroupState,
        invitee: &Fingerprint,
        role: Role,
        expires_at: u64,
    ) -> Result<DirectInvite, GroupError> {
        let me = inviter.fingerprint();
        let my_role = group.role(&me).ok_or(GroupError::NotAMember)?;
        if my_role.rank() < Role::Admin.rank() {
            return Err(GroupError::RoleTooLow {
                role: my_role,
                action: "invite members",
            });
        }
        if role == Role::Owner || (my_role == Role::Admin && role == Role::Admin) {
            return Err(GroupError::RoleNotGrantable(role));
        }
        let mut nonce = [0u8; 16];
        crate::session::fill_random(&mut nonce);
        let body = DirectInviteBody {
            version: GROUP_VERSION,
            group: group.id(),
            name: group.name().to_owned(),
            inviter: *me.as_bytes(),
            invitee: *invitee.as_bytes(),
            role,
            expires_at,
            nonce,
        };
        body_validate(&body)?;
        let sig = sign(inviter, LABEL_INVITE_SIG, &encode("invite", &body)?)?;
        Ok(DirectInvite { body, sig })
    }

    /// The invitee's check: addressed to `me`, signed by `inviter_cert`
    /// (the contact it came from), not expired at `now`. Whether the
    /// inviter may invite is the owner's check when it appends the Add.
    pub fn verify(
        &self,
        inviter_cert: &PublicCert,
        me: &Fingerprint,
        now: u64,
    ) -> Result<(), GroupError> {
        self.validate()?;
        if !Fingerprint::from_bytes(self.body.invitee).ct_eq(me) {
            return Err(GroupError::Malformed {
                what: "invite",
                reason: "addressed to someone else",
            });
        }
        if !inviter_cert
            .fingerprint()
            .ct_eq(&Fingerprint::from_bytes(self.body.inviter))
        {
            return Err(GroupError::BadSignature { who: "inviter" });
        }
        verify(
            inviter_cert,
            LABEL_INVITE_SIG,
            &encode("invite", &self.body)?,
            &self.sig,
            "inviter",
        )?;
        if now > self.body.expires_at {
            return Err(GroupError::InviteExpired);
        }
        Ok(())
    }

    fn validate(&self) -> Result<(), GroupError> {
        body_validate(&self.body)?;
        check_sig("invite signature", &self.sig)
    }
}

fn body_validate(b: &DirectInviteBody) -> Result<(), GroupError> {
    if b.version != GROUP_VERSION {
        return Err(GroupError::UnsupportedVersion(b.version));
    }
    check_len("name", b.name.len(), MAX_GROUP_NAME)?;
    check_line("name", &b.name)?;
    if b.role == Role::Owner {
        return Err(GroupError::RoleNotGrantable(Role::Owner));
    }
    Ok(())
}

impl DirectInvite {
    /// Limits and form (for the wire codec).
    pub(crate) fn check(&self) -> Result<(), GroupError> {
        self.validate()
    }
}
