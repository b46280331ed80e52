//! The daemon side of the control socket: accepts local clients, runs their
//! commands against the node, the store and the Handshaker, and streams
//! events to subscribers.
//!
//! Every connection is checked to come from our own uid (the socket is also
//! 0600 inside the 0700 data directory). Lines are bounded by
//! [`MAX_LINE`]; a line that does not parse gets a `bad_request` reply and
//! the connection continues; an over-long line closes the connection.
//! Commands run one at a time per connection, so replies come in order.

use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, broadcast, watch};
use tokio_util::codec::{Framed, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;

use super::proto::{
    ApiError, ClientMessage, ContactView, DirectoryView, ErrorCode, Event, MAX_HISTORY, MAX_LINE,
    MessageView, Reply, Request, RequestView, ServerMessage, StatusView, TorView, TransferView,
    VERSION,
};
use crate::error::{ErrorKind, HasKind};
use crate::files;
use crate::handshaker_api::binding::BindingKey;
use crate::handshaker_client::{
    Directory, DirectoryEntry, DirectoryError, HandshakerClient, HandshakerClientError,
};
use crate::identity::{Identity, Username};
use crate::node::{self, NodeError, NodeHandle, Pinned, TrustError};
use crate::store::{
    Contact, ContactId, ContactState, FileKind, FileTransfer, Message, TransferState,
};

mod errors;
mod events;
mod groups;
mod views;

use errors::{
    did_you_mean, hs_err, node_err, node_err_for, not_registered, parse_fingerprint, send_err,
};
pub use events::forward_events;
pub use views::{at, message_view, transfer_view};
use views::{contact_view, contacts, request_view};

/// Most simultaneous control connections.
pub const MAX_CLIENTS: usize = 32;

/// Store setting holding the Handshaker chosen with `register --handshaker`.
pub use crate::node::trust::HANDSHAKER_SETTING;

/// Everything the command handlers need.
pub struct Context {
    /// The running node.
    pub node: NodeHandle,
    /// Our identity (for Handshaker registration; shared with the mailbox).
    pub identity: Arc<Identity>,
    /// The Handshaker in use.
    pub directory: Arc<Directory>,
    /// Tor / onion-service state for `status`.
    pub tor: watch::Receiver<TorView>,
    /// Events for subscribers (already mapped to the API's types).
    pub events: broadcast::Sender<Event>,
    /// Cancelled when the daemon stops; `shutdown` cancels it.
    pub shutdown: CancellationToken,
    /// Unix seconds.
    pub started_at: u64,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("control::Context")
    }
}

/// Accepts control connections until `ctx.shutdown` is cancelled.
pub async fn serve(listener: UnixListener, ctx: Arc<Context>) {
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            a = listener.accept() => a,
        };
        while tasks.try_join_next().is_some() {}
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                continue;
            }
        };
        if !same_user(&stream) {
            tracing::warn!("refused a control connection from another user");
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!("too many control connections; refusing one");
            continue;
        };
        let ctx = ctx.clone();
        tasks.spawn(async move {
            connection(stream, ctx).await;
            drop(permit);
        });
    }
    tasks.shutdown().await;
}

fn same_user(stream: &UnixStream) -> bool {
    match stream.peer_cred() {
        Ok(cred) => cred.uid() == rustix::process::getuid().as_raw(),
        Err(_) => false,
    }
}

async fn connection(stream: UnixStream, ctx: Arc<Context>) {
    let mut framed = Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE));
    let mut events: Option<broadcast::Receiver<Event>> = None;
    loop {
        let line = tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            ev = next_event(&mut events) => {
                if send(&mut framed, &ServerMessage::Event(ev)).await.is_err() {
                    return;
                }
                continue;
            }
            line = framed.next() => line,
        };
        let line = match line {
            None => return,
            Some(Ok(l)) => l,
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                let err = ApiError::new(ErrorCode::BadRequest, "line over the length limit");
                let _ = send(&mut framed, &reply(0, Err(err))).await;
                return;
            }
            Some(Err(LinesCodecError::Io(_))) => return,
        };
        let (id, result) = match serde_json::from_str::<ClientMessage>(&line) {
            Err(e) => (
                0,
                Err(ApiError::new(
                    ErrorCode::BadRequest,
                    format!("not a valid control message: {e}"),
                )),
            ),
            Ok(m) if m.v != VERSION => (
                m.id,
                Err(ApiError::new(
                    ErrorCode::Version,
                    format!(
                        "control API version {} is not supported (this daemon speaks {VERSION})",
                        m.v
                    ),
                )
                .hint("use the `umbra` binary of the same version as the daemon")),
            ),
            Ok(ClientMessage {
                id,
                cmd: Request::Subscribe,
                ..
            }) => {
                events = Some(ctx.events.subscribe());
                (id, Ok(Reply::Done))
            }
            Ok(m) => (m.id, handle(&ctx, m.cmd).await),
        };
        if send(&mut framed, &reply(id, result)).await.is_err() {
            return;
        }
    }
}

async fn next_event(rx: &mut Option<broadcast::Receiver<Event>>) -> Event {
    let Some(r) = rx else {
        return std::future::pending().await;
    };
    match r.recv().await {
        Ok(e) => e,
        Err(broadcast::error::RecvError::Lagged(missed)) => Event::Lagged { missed },
        Err(broadcast::error::RecvError::Closed) => {
            *rx = None;
            std::future::pending().await
        }
    }
}

fn reply(id: u64, r: Result<Reply, ApiError>) -> ServerMessage {
    match r {
        Ok(ok) => ServerMessage::Reply {
            id,
            ok: Some(ok),
            error: None,
        },
        Err(error) => ServerMessage::Reply {
            id,
            ok: None,
            error: Some(error),
        },
    }
}

async fn send(framed: &mut Framed<UnixStream, LinesCodec>, m: &ServerMessage) -> Result<(), ()> {
    let line = serde_json::to_string(m).map_err(|_| ())?;
    framed.send(line).await.map_err(|_| ())
}

// ---------- commands ----------

type ApiResult<T> = Result<T, ApiError>;

async fn handle(ctx: &Context, cmd: Request) -> ApiResult<Reply> {
    match cmd {
        Request::Status => status(ctx).await.map(Reply::Status),
        Request::Register {
            handshaker,
            trust_new_key,
        } => register(ctx, handshaker, trust_new_key).await,
        Request::Search { prefix, limit } => search(ctx, &prefix, limit).await,
        Request::Lookup { username } => {
            let (_, view) = lookup(ctx, &parse_name(&username)?).await?;
            Ok(Reply::Found(view))
        }
        Request::Request {
            username,
            note,
            allow_key_change,
            rekey,
        } => request(ctx, &username, &note, allow_key_change, rekey).await,
        Request::Requests => {
            if ctx.directory.current().is_some() {
                // Fresh results; a failure here still lists what is stored.
                if let Err(e) = ctx.node.poll_mailbox().await {
                    tracing::info!(kind = ?e.kind(), "mailbox poll failed");
                }
            }
            Ok(Reply::Requests(
                ctx.node
                    .requests()
                    .await
                    .map_err(node_err)?
                    .into_iter()
                    .map(request_view)
                    .collect(),
            ))
        }
        Request::Accept {
            username,
            allow_key_change,
        } => accept(ctx, &username, allow_key_change).await,
        Request::CancelRequest { username } => {
            let name = parse_name(&username)?;
            ctx.node
                .cancel_request(name.as_str())
                .await
                .map_err(node_err)?;
            Ok(Reply::Done)
        }
        Request::Reject { username, notify } => {
            let name = parse_name(&username)?;
            let req = pending_from(ctx, &name).await?;
            ctx.node
                .reject(&req.request_id, notify)
                .await
                .map_err(decided_err(&name))?;
            Ok(Reply::Done)
        }
        Request::Contacts => contacts(ctx).await.map(Reply::Contacts),
        Request::Send { username, text } => {
            let c = contact(ctx, &username).await?;
            let m = ctx
                .node
                .send_text(c.id, &text)
                .await
                .map_err(|e| send_err(&c, e))?;
            Ok(Reply::Message(message_view(&m)))
        }
        Request::History {
            username,
            limit,
            search,
        } => {
            let c = contact(ctx, &username).await?;
            // `limit: 0` asks for nothing and gets nothing.
            let limit = limit.unwrap_or(100).min(MAX_HISTORY);
            let id = c.id;
            let msgs = ctx
                .node
                .history(id, limit, search)
                .await
                .map_err(node_err)?;
            Ok(Reply::History(msgs.iter().map(message_view).collect()))
        }
        Request::MarkRead { username } => {
            let c = contact(ctx, &username).await?;
            ctx.node.mark_read(c.id).await.map_err(node_err)?;
            Ok(Reply::Done)
        }
        Request::Verify {
            username,
            fingerprint,
        } => {
            let c = contact(ctx, &username).await?;
            if let Some(f) = fingerprint {
                let given = parse_fingerprint(&f)?;
                if given != c.fingerprint {
                    return Err(ApiError::new(
                        ErrorCode::KeyChanged,
                        "the fingerprint you gave does not match the one pinned for this contact",
                    )
                    .hint("compare again over a channel you trust; nothing was marked"));
                }
            }
            let id = c.id;
            ctx.node.verify_contact(id).await.map_err(node_err)?;
            let c = contact(ctx, &username).await?;
            Ok(Reply::Contact(contact_view(ctx, &c).await?))
        }
        Request::End { username } => {
            let c = contact(ctx, &username).await?;
            ctx.node.end(c.id).await.map_err(node_err)?;
            Ok(Reply::Done)
        }
        Request::SendFile {
            username,
            path,
            media,
        } => {
            let c = contact(ctx, &username).await?;
            let media = FileKind::parse(media.as_deref().unwrap_or("file")).ok_or_else(|| {
                ApiError::new(
                    ErrorCode::BadRequest,
                    "media must be file, image, voice or video",
                )
            })?;
            let p = std::path::PathBuf::from(&path);
            if !p.is_absolute() {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "the path must be absolute (the daemon has its own working directory)",
                ));
            }
            let t = ctx
                .node
                .send_file(c.id, &p, media)
                .await
                .map_err(node_err)?;
            Ok(Reply::Transfer(transfer_view(&c, &t)))
        }
        Request::Files { username } => {
            let only = match username {
                Some(u) => Some(contact(ctx, &u).await?.id),
                None => None,
            };
            let all = ctx.node.transfers().await.map_err(node_err)?;
            let mut out = Vec::new();
            for t in all.iter().filter(|t| only.is_none_or(|c| c == t.contact)) {
                let c = contact_by_id(ctx, t.contact).await?;
                out.push(transfer_view(&c, t));
            }
            Ok(Reply::Transfers(out))
        }
        Request::AcceptFile { id } => {
            let t = find_transfer(ctx, &id).await?;
            ctx.node
                .accept_file(t.transfer_id)
                .await
                .map_err(node_err)?;
            transfer_reply(ctx, t.transfer_id).await
        }
        Request::CancelFile { id } => {
            let t = find_transfer(ctx, &id).await?;
            ctx.node
                .cancel_file(t.transfer_id)
                .await
                .map_err(node_err)?;
            transfer_reply(ctx, t.transfer_id).await
        }
        Request::SaveFile { id, path } => {
            let t = find_transfer(ctx, &id).await?;
            let p = std::path::PathBuf::from(&path);
            if !p.is_absolute() {
                return Err(ApiError::new(
                    ErrorCode::BadRequest,
                    "the path must be absolute (the daemon has its own working directory)",
                ));
            }
            ctx.node
                .save_file(t.transfer_id, &p)
                .await
                .map_err(node_err)?;
            transfer_reply(ctx, t.transfer_id).await
        }
        Request::Subscribe => Ok(Reply::Done),
        Request::Group(g) => groups::handle(ctx, g).await,
        Request::Shutdown => {
            ctx.shutdown.cancel();
            Ok(Reply::Done)
        }
    }
}

async fn status(ctx: &Context) -> ApiResult<StatusView> {
    let configured = ctx
        .directory
        .current()
        .map(|c| c.address().as_str().to_owned());
    let (contacts, pending) = (
        ctx.node.contacts().await.map_err(node_err)?.len(),
        ctx.node.requests().await.map_err(node_err)?.len(),
    );
    Ok(StatusView {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        username: ctx.identity.username().to_string(),
        fingerprint: ctx.identity.fingerprint().to_hex(),
        handshaker: configured,
        tor: ctx.tor.borrow().clone(),
        contacts: contacts as u64,
        pending_requests: pending as u64,
        started_at: ctx.started_at,
    })
}

fn client_for(ctx: &Context, address: &str) -> ApiResult<HandshakerClient> {
    ctx.directory.client_for(address).map_err(|e| match e {
        DirectoryError::NoTor => ApiError::new(ErrorCode::Handshaker, e.to_string())
            .hint("use an http://host:port Handshaker in direct mode, or network.kind = \"tor\""),
        DirectoryError::Client(e) => hs_err(e),
    })
}

fn handshaker(ctx: &Context) -> ApiResult<HandshakerClient> {
    ctx.directory.current().ok_or_else(|| {
        ApiError::new(ErrorCode::Handshaker, "no Handshaker is configured").hint(
            "run `umbra register --handshaker ADDRESS`, or set [handshaker] address in the config",
        )
    })
}

/// Registers at a Handshaker: its binding key is checked against the pin
/// first (pinned here on first use), then the binding in its answer is
/// verified and kept for our requests (PROTOCOL.md §17.11).
async fn register(ctx: &Context, address: Option<String>, trust_new_key: bool) -> ApiResult<Reply> {
    let hs = match &address {
        Some(a) => client_for(ctx, a.trim())?,
        None => handshaker(ctx)?,
    };
    let canonical = hs.address().as_str().to_owned();
    let info = hs.info().await.map_err(hs_err)?;
    let key = info
        .binding_key
        .as_deref()
        .ok_or(TrustError::NoBindingKey)
        .map_err(|e| node_err(e.into()))?;
    let key = BindingKey::from_hex(key).map_err(|e| {
        ApiError::new(
            ErrorCode::Handshaker,
            format!("the Handshaker published an unusable signing key: {e}"),
        )
    })?;
    let pinned = ctx
        .node
        .pin_handshaker_key(&canonical, &key, trust_new_key)
        .await
        .map_err(node_err)?;
    if pinned == Pinned::Replaced {
        tracing::warn!("the Handshaker's signing key was replaced at the user's request");
    }
    let entry = hs
        .register_with_info(&ctx.identity, &info)
        .await
        .map_err(hs_err)?;
    let binding = entry.binding.as_deref().ok_or_else(|| {
        ApiError::new(
            ErrorCode::Handshaker,
            "the Handshaker registered you but sent no signed binding of your name",
        )
    })?;
    ctx.node
        .remember_binding(&canonical, binding)
        .await
        .map_err(node_err)?;
    ctx.directory.set(hs);
    ctx.node
        .set_setting(HANDSHAKER_SETTING, &canonical)
        .await
        .map_err(node_err)?;
    Ok(Reply::Registered(DirectoryView {
        username: entry.username.to_string(),
        fingerprint: entry.fingerprint.to_hex(),
        is_contact: false,
        key_differs: false,
    }))
}

async fn search(ctx: &Context, prefix: &str, limit: Option<u32>) -> ApiResult<Reply> {
    let prefix = prefix.trim().trim_start_matches('@').to_ascii_lowercase();
    if prefix.is_empty() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "the search prefix is empty",
        ));
    }
    let hs = handshaker(ctx)?;
    let limit = limit.unwrap_or(20).clamp(1, 100) as usize;
    let hits = hs.search(&prefix, limit).await.map_err(hs_err)?;
    let mut out = Vec::with_capacity(hits.len());
    for h in hits {
        out.push(directory_view(ctx, &h.username, &h.fingerprint).await?);
    }
    Ok(Reply::Directory(out))
}

async fn directory_view(
    ctx: &Context,
    username: &str,
    fingerprint: &str,
) -> ApiResult<DirectoryView> {
    let name = username.trim_start_matches('@').to_owned();
    let fpr = fingerprint.to_owned();
    let by_fpr = ctx
        .node
        .contact_by_fingerprint(&fpr)
        .await
        .map_err(node_err)?;
    let by_name = ctx
        .node
        .contact_by_username(&name)
        .await
        .map_err(node_err)?;
    Ok(DirectoryView {
        username: format!("@{}", username.trim_start_matches('@')),
        fingerprint: fingerprint.to_owned(),
        is_contact: by_fpr.is_some(),
        key_differs: by_name.is_some_and(|c| c.fingerprint != fingerprint),
    })
}

/// Looks `name` up at the Handshaker; also says how it relates to our contacts.
async fn lookup(ctx: &Context, name: &Username) -> ApiResult<(DirectoryEntry, DirectoryView)> {
    let entry = handshaker(ctx)?
        .lookup(name)
        .await
        .map_err(hs_err)?
        .ok_or_else(|| not_registered(name))?;
    let view = directory_view(ctx, entry.username.as_str(), &entry.fingerprint.to_hex()).await?;
    Ok((entry, view))
}

async fn request(
    ctx: &Context,
    username: &str,
    note: &str,
    allow_key_change: bool,
    rekey: bool,
) -> ApiResult<Reply> {
    let name = parse_name(username)?;
    if name == *ctx.identity.username() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "you cannot send a connection request to yourself",
        ));
    }
    let (entry, _) = lookup(ctx, &name).await?;
    // The node refuses a key change without the override (before any
    // store or network side effect).
    let id = ctx
        .node
        .request_opts(&entry.cert, note, allow_key_change, rekey)
        .await
        .map_err(node_err_for(&name))?;
    let c = contact_by_id(ctx, id).await?;
    Ok(Reply::Contact(contact_view(ctx, &c).await?))
}

async fn pending_from(ctx: &Context, name: &Username) -> ApiResult<node::ReceivedRequest> {
    ctx.node
        .requests()
        .await
        .map_err(node_err)?
        .into_iter()
        .rev()
        .find(|r| r.from == name.as_str())
        .ok_or_else(|| no_pending(name))
}

fn no_pending(name: &Username) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!("there is no pending connection request from {name}"),
    )
    .hint("`umbra requests` lists the pending ones")
}

/// [`node_err_for`] for a decision on a request found a moment ago: if it
/// is gone now (a crossing Accept answered it, or it expired), say so as if
/// it had been gone already.
fn decided_err(name: &Username) -> impl FnOnce(NodeError) -> ApiError + '_ {
    move |e| match e {
        NodeError::NotFound { .. } => no_pending(name),
        e => node_err_for(name)(e),
    }
}

async fn accept(ctx: &Context, username: &str, allow_key_change: bool) -> ApiResult<Reply> {
    let name = parse_name(username)?;
    let req = pending_from(ctx, &name).await?;
    let id = ctx
        .node
        .accept_with(&req.request_id, allow_key_change)
        .await
        .map_err(decided_err(&name))?;
    let c = contact_by_id(ctx, id).await?;
    Ok(Reply::Contact(contact_view(ctx, &c).await?))
}

/// A transfer by full hex id or unique prefix (≥ 4 hex digits).
async fn find_transfer(ctx: &Context, id: &str) -> ApiResult<FileTransfer> {
    let want = id.trim().to_ascii_lowercase();
    if want.len() < 4 || want.len() > 32 || !want.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            "a transfer id is 4 to 32 hex digits (see `umbra files`)",
        ));
    }
    let all = ctx.node.transfers().await.map_err(node_err)?;
    let mut hits = all
        .into_iter()
        .filter(|t| hex::encode(t.transfer_id).starts_with(&want));
    match (hits.next(), hits.next()) {
        (Some(t), None) => Ok(t),
        (None, _) => Err(ApiError::new(ErrorCode::NotFound, "no such transfer")
            .hint("list them with `umbra files`")),
        (Some(_), Some(_)) => Err(ApiError::new(
            ErrorCode::BadRequest,
            "several transfers start with these digits; give more of the id",
        )),
    }
}

async fn transfer_reply(ctx: &Context, id: [u8; 16]) -> ApiResult<Reply> {
    let t = ctx
        .node
        .transfer(id)
        .await
        .map_err(node_err)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such transfer"))?;
    let c = contact_by_id(ctx, t.contact).await?;
    Ok(Reply::Transfer(transfer_view(&c, &t)))
}

fn parse_name(input: &str) -> ApiResult<Username> {
    Username::parse(input.trim())
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("invalid username: {e}")))
}

async fn contact(ctx: &Context, username: &str) -> ApiResult<Contact> {
    let name = parse_name(username)?;
    let folded = name.as_str().trim_start_matches('@').to_owned();
    if let Some(c) = ctx
        .node
        .contact_by_username(&folded)
        .await
        .map_err(node_err)?
    {
        return Ok(c);
    }
    let all = ctx.node.contacts().await.map_err(node_err)?;
    let err = ApiError::new(
        ErrorCode::NotFound,
        format!("{name} is not one of your contacts"),
    );
    let names = all.iter().map(|c| c.username.as_str());
    Err(match did_you_mean(name.as_str(), names) {
        Some(close) => err.hint(format!(
            "did you mean {close}? (`umbra contacts` lists them; a new contact needs \
             `umbra request {name}`)"
        )),
        None => err.hint(format!(
            "send a connection request first: umbra request {name}"
        )),
    })
}

async fn contact_by_id(ctx: &Context, id: ContactId) -> ApiResult<Contact> {
    ctx.node
        .contact(id)
        .await
        .map_err(node_err)?
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, "the contact vanished from the store"))
}
