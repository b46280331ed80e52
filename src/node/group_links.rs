//! Invite links and join streams (PROTOCOL.md §20.7.2–§20.7.3).
//!
//! The owner creates a link (random id and secret: the secret goes to the
//! encrypted store, an OpenLink op to the log), lists and revokes links, and
//! serves **join streams**: a stranger holding a link dials our address, the
//! first frame is a GroupJoin (frame type 4) Hello, and [`JoinServer`] runs
//! the exchange. Join streams cost a stranger nothing, so each is bounded:
//! [`JoinLimits`] caps how many run at once, how long one may take and how
//! many Hellos are taken per interval (all links together, and per link).
//! Nothing but a proof that verifies leads to OpenPGP work. A refusal is
//! `Result { 1 }` and nothing finer on the wire; the owner's user gets the
//! reason as a group warning (for links of its groups only: a stranger
//! naming unknown groups is not worth a warning).
//!
//! The joiner side ([`NodeHandle::group_join_link`]) dials the owner's
//! address from the link, checks the owner's certificate against the link,
//! and sends its proof with a ConnectionRequest; the owner accepts that
//! request without asking (the link is its user's consent), appends the
//! Add and sends the log over the new session, where group traffic then
//! flows as for a directly invited member.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use secrecy::SecretString;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::group::{
    Action, GROUP_VERSION, GroupError, GroupId, InviteLink, JoinMessage, JoinServer, LinkInfo,
    LinkSecret, MAX_JOIN_MESSAGE, Role, join_proof,
};
use crate::identity::PublicCert;
use crate::store::{ContactState, GroupInviteRecord};
use crate::transport::PeerAddress;
use crate::wire::{self, Frame};

use super::config::JoinLimits;
use super::groups::{self, GroupEvent, Runtime, role_name};
use super::inner::Inner;
use super::mailbox::MailItem;
use super::{NodeError, NodeHandle};

/// A link we created: its id and the `umbra:group#…` text (with the
/// secret: show it to the user only, never log it).
pub struct CreatedLink {
    /// The link id (as registered by OpenLink).
    pub link_id: [u8; 16],
    /// The link.
    pub uri: SecretString,
}

impl std::fmt::Debug for CreatedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedLink").finish_non_exhaustive()
    }
}

/// One invite link of a group, as the log registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLink {
    /// The link id.
    pub link_id: [u8; 16],
    /// Role, uses, expiry and revocation.
    pub info: LinkInfo,
    /// Whether this node keeps the secret (only the owner who opened it).
    pub secret_kept: bool,
}

// ---------------------------------------------------------------------------
// Rate limits

/// A token bucket: `burst` tokens, one more per `refill`.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: u32,
    last: Instant,
}

impl Bucket {
    fn full(burst: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    /// Takes a token if there is one (after refilling for the time passed).
    fn take(&mut self, burst: u32, refill: Duration, now: Instant) -> bool {
        let refill = refill.max(Duration::from_millis(1));
        let elapsed = now.saturating_duration_since(self.last);
        let new = (elapsed.as_nanos() / refill.as_nanos()).min(u128::from(burst)) as u32;
        if new > 0 {
            self.tokens = (self.tokens + new).min(burst);
            self.last = if self.tokens == burst {
                now
            } else {
                self.last + refill * new
            };
        }
        if self.tokens == 0 {
            return false;
        }
        self.tokens -= 1;
        true
    }
}

/// Per-link buckets kept at most (links of groups we own; an unknown link
/// never gets one). When full, the buckets that are full again are dropped.
const MAX_LINK_BUCKETS: usize = 1024;

/// The node's join-stream limits in force ([`JoinLimits`]).
pub(super) struct JoinGate {
    limits: JoinLimits,
    slots: Arc<Semaphore>,
    buckets: Mutex<(Bucket, HashMap<[u8; 16], Bucket>)>,
}

impl JoinGate {
    pub(super) fn new(limits: &JoinLimits) -> JoinGate {
        let now = Instant::now();
        JoinGate {
            slots: Arc::new(Semaphore::new(limits.concurrent.max(1))),
            buckets: Mutex::new((Bucket::full(limits.burst, now), HashMap::new())),
            limits: limits.clone(),
        }
    }

    fn take_global(&self) -> bool {
        let l = &self.limits;
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        b.0.take(l.burst, l.refill, Instant::now())
    }

    fn take_link(&self, link: &[u8; 16]) -> bool {
        let l = &self.limits;
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let map = &mut b.1;
        if map.len() >= MAX_LINK_BUCKETS && !map.contains_key(link) {
            map.retain(|_, v| {
                let mut probe = v.clone();
                // Still below burst after refilling: keep it.
                probe.take(l.per_link_burst, l.per_link_refill, now)
                    && probe.tokens + 1 < l.per_link_burst
            });
        }
        map.entry(*link)
            .or_insert_with(|| Bucket::full(l.per_link_burst, now))
            .take(l.per_link_burst, l.per_link_refill, now)
    }
}

// ---------------------------------------------------------------------------
// Owner: creating, listing, revoking

impl NodeHandle {
    /// Opens an invite link to `group` (we must be its owner): `role`
    /// Member or ReadOnly, at most `max_uses` joins (1..=100), refused
    /// after `expires_at` (unix seconds). The secret is kept in the store;
    /// the OpenLink op is appended and fanned out. Returns the link text,
    /// which holds the secret: show it to the user only.
    pub async fn group_link_create(
        &self,
        group: [u8; 32],
        role: Role,
        max_uses: u16,
        expires_at: u64,
    ) -> Result<CreatedLink, NodeError> {
        let now = crate::time::now_secs();
        if expires_at <= now {
            return Err(NodeError::Invalid {
                what: "link expiry",
                reason: "it is in the past",
            });
        }
        let inner = &self.inner;
        let me = inner.identity.fingerprint();
        let mut map = inner.groups.map.lock().await;
        let rt = map
            .get_mut(&group)
            .ok_or(NodeError::NotFound { what: "group" })?;
        if rt.state.owner() != me || !rt.rec.status.is_live() {
            return Err(GroupError::RoleTooLow {
                role: rt.state.role(&me).unwrap_or(Role::ReadOnly),
                action: "open invite links",
            }
            .into());
        }
        let address = inner.address.as_str().to_owned();
        let link = inner
            .openpgp(move |i| InviteLink::create(&i.identity, GroupId(group), expires_at, &address))
            .await??;
        let uri = link.to_uri()?;
        let (link_id, secret) = (link.link_id, *link.secret.expose());
        let secret = zeroize::Zeroizing::new(secret);
        inner
            .store
            .run(move |s| s.put_group_link(&group, &link_id, &secret))
            .await??;
        let action = Action::OpenLink {
            link_id,
            role,
            max_uses,
            expires_at,
        };
        if let Err(e) = groups::act(inner, rt, action).await {
            // Nothing was appended: the secret goes too.
            inner
                .store
                .run(move |s| s.delete_group_link(&group, &link_id))
                .await??;
            return Err(e);
        }
        Ok(CreatedLink { link_id, uri })
    }

    /// The invite links of `group`, as its log registers them.
    pub async fn group_links(&self, group: [u8; 32]) -> Result<Vec<GroupLink>, NodeError> {
        let links: Vec<([u8; 16], LinkInfo)> = {
            let map = self.inner.groups.map.lock().await;
            let rt = map
                .get(&group)
                .ok_or(NodeError::NotFound { what: "group" })?;
            rt.state
                .links()
                .iter()
                .map(|(k, v)| (*k, v.clone()))
                .collect()
        };
        let ids: Vec<[u8; 16]> = links.iter().map(|(k, _)| *k).collect();
        let kept = self
            .inner
            .store
            .run(move |s| -> Result<Vec<bool>, crate::store::Error> {
                ids.iter()
                    .map(|id| Ok(s.group_link_secret(&group, id)?.is_some()))
                    .collect()
            })
            .await??;
        Ok(links
            .into_iter()
            .zip(kept)
            .map(|((link_id, info), secret_kept)| GroupLink {
                link_id,
                info,
                secret_kept,
            })
            .collect())
    }

    /// Revokes an invite link (owner): a RevokeLink op is appended and the
    /// secret deleted; joins by it are refused from now on.
    pub async fn group_link_revoke(
        &self,
        group: [u8; 32],
        link_id: [u8; 16],
    ) -> Result<(), NodeError> {
        {
            let mut map = self.inner.groups.map.lock().await;
            let rt = map
                .get_mut(&group)
                .ok_or(NodeError::NotFound { what: "group" })?;
            groups::act(&self.inner, rt, Action::RevokeLink { link_id }).await?;
        }
        self.inner
            .store
            .run(move |s| s.delete_group_link(&group, &link_id))
            .await??;
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Owner: serving a join stream

/// Why a join stream was refused, for the owner's log and user.
struct Refusal {
    /// The group it named, when it is one of ours: the user is warned.
    group: Option<[u8; 32]>,
    reason: String,
}

impl Refusal {
    fn quiet(reason: &str) -> Refusal {
        Refusal {
            group: None,
            reason: reason.to_owned(),
        }
    }

    fn warn(group: [u8; 32], reason: impl Into<String>) -> Refusal {
        Refusal {
            group: Some(group),
            reason: reason.into(),
        }
    }
}

/// Reads the next join message (within the stream's deadline: the caller's
/// timeout).
async fn next_join<S: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<S, LengthDelimitedCodec>,
) -> Result<JoinMessage, String> {
    let body = match framed.next().await {
        Some(Ok(b)) => b,
        Some(Err(_)) => return Err("the stream failed or sent an oversized frame".into()),
        None => return Err("the stream closed".into()),
    };
    join_message(&body)
}

fn join_message(body: &[u8]) -> Result<JoinMessage, String> {
    match Frame::decode(body) {
        Ok(Frame::GroupJoin(m)) => JoinMessage::decode(m).map_err(|e| format!("{e}")),
        Ok(_) => Err("a frame of another type on a join stream".into()),
        Err(e) => Err(format!("{e}")),
    }
}

async fn send_join<S: AsyncRead + AsyncWrite + Unpin>(
    framed: &mut Framed<S, LengthDelimitedCodec>,
    m: &JoinMessage,
) -> Result<(), NodeError> {
    let frame = Frame::group_join(&m.encode()?).map_err(crate::node::peer::PeerError::Wire)?;
    framed
        .send(Bytes::from(frame))
        .await
        .map_err(|source| NodeError::Stream { source })
}

/// Serves one inbound join stream whose first frame is `first` (a
/// GroupJoin frame). Never longer than the configured deadline; a refusal
/// sends `Result { 1 }` and closes.
pub(super) async fn serve_join<S: AsyncRead + AsyncWrite + Unpin>(
    inner: &Arc<Inner>,
    mut framed: Framed<S, LengthDelimitedCodec>,
    first: Bytes,
) -> Result<(), NodeError> {
    let limits = &inner.config.joins;
    let outcome = match inner.joins.slots.clone().try_acquire_owned() {
        Err(_) => Err(Refusal::quiet("too many join streams at once")),
        Ok(_slot) => {
            // Later frames of a join stream are join messages: no more.
            framed
                .codec_mut()
                .set_max_frame_length(MAX_JOIN_MESSAGE + 2);
            match tokio::time::timeout(limits.deadline, exchange(inner, &mut framed, &first)).await
            {
                Ok(r) => r,
                Err(_) => Err(Refusal::quiet("the join exchange ran past its deadline")),
            }
        }
    };
    let Err(refusal) = outcome else {
        return Ok(());
    };
    // Best effort, and briefly: the stranger may not be reading.
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        send_join(&mut framed, &JoinMessage::Result { code: 1 }),
    )
    .await;
    match refusal.group {
        Some(g) => {
            tracing::info!("a join by invite link was refused");
            inner.group_event(
                g,
                GroupEvent::Warning {
                    reason: format!("refused a join by invite link: {}", refusal.reason),
                },
            );
        }
        None => tracing::debug!("a join stream was refused"),
    }
    Ok(())
}

/// The exchange of §20.7.3 on the owner's side. `Ok` means the joiner was
/// added and `Result { 0 }` sent.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    inner: &Arc<Inner>,
    framed: &mut Framed<S, LengthDelimitedCodec>,
    first: &[u8],
) -> Result<(), Refusal> {
    let hello = join_message(first).map_err(|_| Refusal::quiet("a malformed Hello"))?;
    let JoinMessage::Hello { group, link_id, .. } = &hello else {
        return Err(Refusal::quiet("the first join message is not a Hello"));
    };
    let (group, link_id) = (group.0, *link_id);
    if !inner.joins.take_global() {
        return Err(Refusal::quiet("join rate limit (all links) reached"));
    }
    let me = inner.identity.fingerprint();
    let cert = groups::own_group_cert(inner).map_err(|_| Refusal::quiet("our certificate"))?;
    let mut server = JoinServer::new();
    let challenge = {
        let map = inner.groups.map.lock().await;
        let Some(rt) = map.get(&group) else {
            return Err(Refusal::quiet("a group we do not hold"));
        };
        if rt.state.owner() != me || !rt.rec.status.is_live() {
            return Err(Refusal::quiet("a group we do not own"));
        }
        if !rt.state.links().contains_key(&link_id) {
            return Err(Refusal::quiet("a link we never opened"));
        }
        if !inner.joins.take_link(&link_id) {
            return Err(Refusal::warn(
                group,
                "too many attempts with this link in a short time (rate limit)",
            ));
        }
        server
            .on_hello(&hello, &rt.state, cert, crate::time::now_secs())
            .map_err(|e| Refusal::warn(group, e.to_string()))?
    };
    send_join(framed, &challenge)
        .await
        .map_err(|_| Refusal::quiet("the joiner went away"))?;
    let proof = next_join(framed)
        .await
        .map_err(|e| Refusal::warn(group, e))?;
    let secret = match inner
        .store
        .run(move |s| s.group_link_secret(&group, &link_id))
        .await
    {
        Ok(Ok(Some(s))) => LinkSecret::from_bytes(*s),
        Ok(Ok(None)) => {
            return Err(Refusal::warn(
                group,
                "the link's secret is not in the store (revoked meanwhile?)",
            ));
        }
        Ok(Err(e)) => return Err(Refusal::warn(group, format!("reading the link: {e}"))),
        Err(e) => return Err(Refusal::warn(group, format!("reading the link: {e}"))),
    };
    let mut map = inner.groups.map.lock().await;
    let Some(rt) = map.get_mut(&group) else {
        return Err(Refusal::quiet("the group went away"));
    };
    let joined = server
        .on_proof(&proof, &rt.state, &secret, crate::time::now_secs())
        .map_err(|e| Refusal::warn(group, e.to_string()))?;
    admit(inner, rt, joined).await?;
    drop(map);
    // The joiner was added: if this Result is lost, the Accept and the log
    // still reach it over the new session.
    let _ = send_join(framed, &JoinMessage::Result { code: 0 }).await;
    Ok(())
}

/// The joiner's proof verified: opens its ConnectionRequest, accepts it
/// without asking (the link is the user's consent), and appends the Add.
async fn admit(
    inner: &Arc<Inner>,
    rt: &mut Runtime,
    joined: crate::group::Joined,
) -> Result<(), Refusal> {
    let group = rt.state.id().0;
    let refuse = |why: &str| Refusal::warn(group, why.to_owned());
    let envelope = String::from_utf8(joined.request.clone())
        .map_err(|_| refuse("the joiner's connection request is not text"))?;
    let anchor = inner
        .anchor()
        .await
        .map_err(|_| refuse("no Handshaker key to check the joiner's binding with"))?;
    let item = MailItem { id: 0, envelope };
    let opened = super::poller::open_mail(inner, &anchor, &item)
        .await
        .map_err(|e| Refusal::warn(group, format!("the joiner's connection request: {e}")))?;
    let Some((request, cert)) = opened else {
        return Err(refuse("a replayed connection request"));
    };
    if !cert.fingerprint().ct_eq(&joined.joiner) {
        return Err(refuse(
            "the connection request is from someone other than the joiner",
        ));
    }
    if !request.note.is_empty() {
        return Err(refuse("the joiner's connection request carries a note"));
    }
    let request_id = request.request_id;
    let stripped = cert
        .stripped()
        .and_then(|c| c.to_bytes())
        .map_err(|_| refuse("the joiner's certificate does not encode"))?;
    let action = Action::Add {
        member: *joined.joiner.as_bytes(),
        cert: stripped,
        role: joined.role,
        link: Some(joined.link_id),
    };
    let op = groups::sign_at_head(inner, &rt.state, action)
        .map_err(|e| Refusal::warn(group, e.to_string()))?;
    // The Add is checked before anything is stored.
    rt.state
        .clone()
        .apply(&op)
        .map_err(|e| Refusal::warn(group, e.to_string()))?;
    match super::poller::store_request(inner, request, cert).await {
        Ok(Some(_)) => {}
        Ok(None) => return Err(refuse("a replayed connection request")),
        Err(e) => return Err(Refusal::warn(group, format!("storing the request: {e}"))),
    }
    let node = NodeHandle {
        inner: inner.clone(),
    };
    if let Err(e) = node.accept_with(&request_id, false).await {
        let _ = node.reject(&request_id, false).await;
        return Err(Refusal::warn(
            group,
            match e {
                NodeError::KeyChanged => {
                    "the joiner's name is pinned to another key among your contacts".to_owned()
                }
                e => format!("accepting the joiner's connection request: {e}"),
            },
        ));
    }
    groups::commit_op(inner, rt, op)
        .await
        .map_err(|e| Refusal::warn(group, format!("appending the joiner: {e}")))?;
    tracing::info!("a member joined by invite link");
    Ok(())
}

// ---------------------------------------------------------------------------
// Joiner

/// What [`NodeHandle::group_join_link`] reports while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JoinStep {
    /// Dialling the owner's address (over Tor this can take a minute).
    Dialling,
    /// Connected; the owner's certificate and the link are being checked.
    Connected,
    /// Our proof and connection request were sent; waiting for the owner.
    Proving,
}

impl NodeHandle {
    /// Joins a group by an invite link (`umbra:group#…`): dials the owner's
    /// address from the link, checks the owner's certificate against the
    /// link, proves we hold the secret, and sends a ConnectionRequest the
    /// owner accepts. Returns the group id once the owner accepted; the
    /// group shows up (status `joining`, then `active`) when its log
    /// arrives over the new session. `progress` hears each step.
    pub async fn group_join_link(
        &self,
        link: &str,
        progress: impl Fn(JoinStep) + Send,
    ) -> Result<[u8; 32], NodeError> {
        let inner = &self.inner;
        let link = InviteLink::parse(link)?;
        let now = crate::time::now_secs();
        if now > link.expires_at {
            return Err(GroupError::LinkExpired.into());
        }
        let me = inner.identity.fingerprint();
        if link.owner.ct_eq(&me) {
            return Err(NodeError::Invalid {
                what: "invite link",
                reason: "it is a link to your own group",
            });
        }
        let group = link.group.0;
        {
            let map = inner.groups.map.lock().await;
            if map
                .get(&group)
                .is_some_and(|rt| rt.rec.status.is_live() && rt.state.role(&me).is_some())
            {
                return Err(GroupError::AlreadyMember.into());
            }
        }
        progress(JoinStep::Dialling);
        let deadline = inner.config.joins.deadline;
        let addr = PeerAddress::new(link.owner_address.clone());
        // A first onion-service connection can take a while: the transport
        // retries until its own connect timeout, bounded here as well.
        let dial = tokio::time::timeout(deadline * 3, inner.dial.dial(&addr));
        let stream = match dial.await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(NodeError::Unreachable {
                    what: "the group's owner",
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(NodeError::Unreachable {
                    what: "the group's owner",
                    reason: "no connection within the deadline".into(),
                });
            }
        };
        let mut framed = Framed::new(stream, wire::codec_with(MAX_JOIN_MESSAGE + 2));
        progress(JoinStep::Connected);
        match tokio::time::timeout(deadline, self.join_exchange(&mut framed, &link, &progress))
            .await
        {
            Ok(r) => r.map(|()| group),
            Err(_) => Err(NodeError::Unreachable {
                what: "the group's owner",
                reason: "it did not answer within the deadline; if it accepted, the group \
                         appears shortly (`umbra group list`)"
                    .into(),
            }),
        }
    }

    async fn join_exchange<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        framed: &mut Framed<S, LengthDelimitedCodec>,
        link: &InviteLink,
        progress: &(impl Fn(JoinStep) + Send),
    ) -> Result<(), NodeError> {
        let inner = &self.inner;
        let lost = |reason: String| NodeError::Unreachable {
            what: "the group's owner",
            reason,
        };
        send_join(
            framed,
            &JoinMessage::Hello {
                version: GROUP_VERSION,
                group: link.group,
                link_id: link.link_id,
            },
        )
        .await?;
        let (nonce, owner_cert) = match next_join(framed).await.map_err(lost)? {
            JoinMessage::Challenge { nonce, owner_cert } => (nonce, owner_cert),
            JoinMessage::Result { .. } => return Err(NodeError::JoinRefused),
            _ => return Err(lost("it answered out of order".into())),
        };
        // The owner is the one the link pins, and it signed this link.
        let cert = PublicCert::from_bytes(&owner_cert).map_err(|_| GroupError::BadCert)?;
        link.verify(&cert, crate::time::now_secs())?;
        let (contact, envelope, request_id) = self.make_request(&cert, "", false).await?;
        let rec = GroupInviteRecord {
            group_id: link.group.0,
            incoming: true,
            contact,
            invite: Vec::new(),
            nonce: link.link_id,
            name: String::new(),
            role: role_name(Role::Member).to_owned(),
            state: "accepted".into(),
            expires_at: link.expires_at,
        };
        inner.store.run(move |s| s.put_group_invite(&rec)).await??;
        let me = inner.identity.fingerprint();
        let proof = join_proof(
            &link.secret,
            &link.group,
            &link.link_id,
            &nonce,
            &link.owner,
            &me,
        );
        progress(JoinStep::Proving);
        let sent = send_join(
            framed,
            &JoinMessage::Proof {
                joiner: *me.as_bytes(),
                proof,
                request: envelope.into_bytes(),
            },
        )
        .await;
        let answer = match sent {
            Ok(()) => next_join(framed).await.map_err(lost),
            Err(e) => Err(e),
        };
        match answer {
            Ok(JoinMessage::Result { code: 0 }) => Ok(()),
            Ok(_) => {
                self.forget_join(contact, request_id, link.group.0).await;
                Err(NodeError::JoinRefused)
            }
            // The owner may have accepted before the stream broke: what we
            // recorded stays, so its Accept and log are still taken.
            Err(e) => Err(e),
        }
    }

    /// Undoes a refused join: the request it made is erased, and a contact
    /// that existed only for it goes (with its invite record). Other
    /// requests to the owner (an earlier join still waiting for its Accept)
    /// stay.
    async fn forget_join(
        &self,
        contact: crate::store::ContactId,
        request_id: [u8; 16],
        group: [u8; 32],
    ) {
        let undone = self
            .inner
            .store
            .run(move |s| -> Result<(), crate::store::Error> {
                let Some(c) = s.contact(contact)? else {
                    return Ok(());
                };
                drop(s.take_pending_request(&request_id)?);
                let others = s
                    .pending_requests()?
                    .iter()
                    .any(|p| p.to_username == c.username);
                if others {
                    return Ok(());
                }
                if let Some(mut inv) = s
                    .group_invites()?
                    .into_iter()
                    .find(|i| i.group_id == group && i.incoming && i.contact == contact)
                {
                    inv.state = "declined".into();
                    s.put_group_invite(&inv)?;
                }
                if c.state == ContactState::Requested
                    && s.session_for_contact(c.id)?.is_none()
                    && s.history(c.id, 1)?.is_empty()
                {
                    s.delete_contact(c.id)?;
                }
                Ok(())
            })
            .await;
        if !matches!(undone, Ok(Ok(()))) {
            tracing::warn!("undoing a refused join left a pending request behind");
        }
    }
}

#[cfg(test)]
mod test {
    use super::Bucket;
    use std::time::{Duration, Instant};

    #[test]
    fn a_bucket_gives_its_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let mut b = Bucket::full(3, t0);
        let r = Duration::from_secs(10);
        assert!((0..3).all(|_| b.take(3, r, t0)));
        assert!(!b.take(3, r, t0));
        assert!(!b.take(3, r, t0 + Duration::from_secs(9)));
        assert!(b.take(3, r, t0 + Duration::from_secs(10)));
        assert!(!b.take(3, r, t0 + Duration::from_secs(19)));
        // A long pause refills to the burst, never beyond.
        let later = t0 + Duration::from_secs(1000);
        assert!((0..3).all(|_| b.take(3, r, later)));
        assert!(!b.take(3, r, later));
    }
}
