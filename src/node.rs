//! The node: the long-running core of the daemon (PROTOCOL.md §10–§15,
//! ARCHITECTURE.md §6).
//!
//! [`Node::start`] takes an opened [`Store`], a [`Transport`] and optionally a
//! [`Mailbox`], and runs:
//!
//! * a **listener task** accepting peer streams (capped), each handled by an
//!   inbound task: an optional first Envelope frame (an Accept for one of our
//!   pending requests establishes the session), then a Sealed Hello;
//! * one **dial loop** per session, keeping a connection to the contact with
//!   backoff (it also delivers a fresh Accept as the first frame);
//! * one **connection task** per live stream ([`conn::drive`] over the sans-IO
//!   [`peer::Peer`]): at most one per session, enforced by a per-contact lock
//!   and the tie-break of PROTOCOL.md §10;
//! * a **mailbox poller** turning ConnectionRequests into
//!   [`Event::RequestReceived`].
//!
//! The [`NodeHandle`] is the API the control socket and CLI build on:
//! [`NodeHandle::send_text`], [`NodeHandle::request`], [`NodeHandle::accept`],
//! [`NodeHandle::end`], [`NodeHandle::events`], [`NodeHandle::shutdown`].
//! Identifiers never reach a log line: log events carry error kinds only.

pub mod conn;
pub mod files;
pub mod mailbox;
pub mod peer;
pub mod store_handle;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, OwnedMutexGuard, Semaphore, broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use crate::envelope::{Freshness, SenderLookup};
use crate::error::{ErrorKind, HasKind};
use crate::handshake::{self, Answer, ConnectionRequest, HandshakeError, SeenRequests};
use crate::identity::{Fingerprint, Identity, PublicCert};
use crate::limits::{ENVELOPE_MAX_AGE_SECS, MAX_FUTURE_SKEW_SECS, MAX_TEXT};
use crate::redact::Sensitive;
use crate::session::{KeyShare, SEALED_HEADER_LEN, Session, SessionError, fill_random};
use crate::store::{
    ChainState, ContactId, ContactState, DeliveryState, Direction, Message, MessageId, NewContact,
    PendingRequest, SessionRecord, Store,
};
use crate::transport::{BoxedStream, Listener, PeerAddress, Transport};
use crate::wire::{self, Frame, PeerMessage, PresenceState, Text};

use conn::{Command, ConnCtx, Outcome, Timers};
use peer::{OutText, Peer, PeerError, PeerParams, Side};
use store_handle::StoreHandle;

// ---------- public exports ----------
pub use mailbox::{MailItem, Mailbox, MailboxError, MemoryMailbox};

/// Errors of the node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The store refused an operation.
    #[error("store: {0}")]
    Store(#[from] crate::store::Error),
    /// A peer broke the protocol; the connection was closed.
    #[error("peer connection: {0}")]
    Peer(PeerError),
    /// A handshake message was refused.
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    /// A session could not be restored or used.
    #[error("session: {0}")]
    Session(#[from] SessionError),
    /// The stream failed (I/O, or a length prefix over MAX_FRAME).
    #[error("peer stream: {source}")]
    Stream {
        /// The codec or I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] crate::transport::Error),
    /// The mailbox failed; the node retries on its next poll.
    #[error("mailbox: {0}")]
    Mailbox(#[from] MailboxError),
    /// A file operation failed.
    #[error("file: {0}")]
    File(crate::files::FileError),
    /// A peer was silent for too long.
    #[error("timed out waiting for the peer's {what}")]
    Timeout {
        /// What did not arrive.
        what: &'static str,
    },
    /// There is no session with this contact: send a new request.
    #[error("no session with this contact; send a connection request first")]
    NoSession,
    /// Not found (contact, request).
    #[error("{what} not found")]
    NotFound {
        /// What.
        what: &'static str,
    },
    /// User input is invalid.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What.
        what: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The contact's key differs from the one pinned for that name; the
    /// caller must pass an explicit override (after checking out of band).
    #[error("the key of this user differs from the one pinned for them")]
    KeyChanged,
    /// The node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// A bug.
    #[error("internal error: {what}; please report it")]
    Internal {
        /// What went wrong.
        what: &'static str,
    },
}

impl HasKind for NodeError {
    fn kind(&self) -> ErrorKind {
        match self {
            NodeError::Store(_) => ErrorKind::Io,
            NodeError::Peer(e) => e.kind(),
            NodeError::Handshake(e) => e.kind(),
            NodeError::Session(e) => e.kind(),
            NodeError::Stream { .. } | NodeError::Transport(_) | NodeError::Mailbox(_) => {
                ErrorKind::Io
            }
            NodeError::Timeout { .. } => ErrorKind::Io,
            NodeError::File(e) => e.kind(),
            NodeError::NoSession
            | NodeError::NotFound { .. }
            | NodeError::Invalid { .. }
            | NodeError::KeyChanged => ErrorKind::InvalidInput,
            NodeError::ShuttingDown => ErrorKind::Io,
            NodeError::Internal { .. } => ErrorKind::Internal,
        }
    }
}

/// Something the node reports to its front ends (control API, CLI, UI).
/// Carries local row ids only; user-facing code reads details from the store.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A new incoming message is stored (and acknowledged).
    MessageReceived {
        /// The contact.
        contact: ContactId,
        /// The stored message.
        message: MessageId,
        /// The sender's seq.
        seq: u64,
    },
    /// Our outgoing messages up to `upto` reached `state`.
    DeliveryChanged {
        /// The contact.
        contact: ContactId,
        /// Cumulative seq.
        upto: u64,
        /// Delivered or Read.
        state: DeliveryState,
    },
    /// An outgoing message will never be delivered (the session ended).
    MessageFailed {
        /// The contact.
        contact: ContactId,
        /// The message.
        message: MessageId,
    },
    /// A contact went online or offline.
    PresenceChanged {
        /// The contact.
        contact: ContactId,
        /// Whether a Ready connection exists.
        online: bool,
        /// The announced state, if any.
        state: Option<PresenceState>,
    },
    /// A connection request arrived through the mailbox.
    RequestReceived {
        /// Its id (pass it to [`NodeHandle::accept`]).
        request_id: Sensitive<[u8; 16]>,
        /// The requester's username.
        from: Sensitive<String>,
        /// The requester's verified fingerprint.
        fingerprint: Sensitive<Fingerprint>,
        /// Their key differs from the one pinned for this name (or the key
        /// is pinned under another name): accepting needs an override.
        key_changed: bool,
    },
    /// One of our requests was answered.
    RequestAnswered {
        /// The contact.
        contact: ContactId,
        /// Accepted (a session exists now) or rejected.
        accepted: bool,
    },
    /// A session ended; its keys are erased.
    SessionEnded {
        /// The contact.
        contact: ContactId,
        /// Whether the peer ended it.
        by_peer: bool,
    },
    /// A contact offered a file (details in the store).
    FileOffered {
        /// The contact.
        contact: ContactId,
        /// The transfer id.
        transfer: [u8; 16],
        /// The receiver's policy accepted it without asking.
        auto_accepted: bool,
    },
    /// Bytes of a transfer confirmed so far (rate-limited).
    FileProgress {
        /// The contact.
        contact: ContactId,
        /// The transfer id.
        transfer: [u8; 16],
        /// Bytes stored by the receiver.
        done: u64,
        /// File size.
        size: u64,
    },
    /// A transfer completed: verified by the receiver.
    FileCompleted {
        /// The contact.
        contact: ContactId,
        /// The transfer id.
        transfer: [u8; 16],
        /// Where it was saved automatically (receiver with a downloads folder).
        saved: Option<std::path::PathBuf>,
    },
    /// A transfer was cancelled or failed.
    FileCancelled {
        /// The contact.
        contact: ContactId,
        /// The transfer id.
        transfer: [u8; 16],
        /// FileCancel reason (PROTOCOL.md §14.1).
        reason: u8,
        /// The peer cancelled it.
        by_peer: bool,
    },
}

/// A received connection request awaiting the user's decision (for front ends).
#[derive(Clone)]
pub struct ReceivedRequest {
    /// Its id (pass it to [`NodeHandle::accept`]).
    pub request_id: [u8; 16],
    /// The requester's username (folded, without `@`).
    pub from: String,
    /// The requester's verified fingerprint.
    pub fingerprint: Fingerprint,
    /// Their note.
    pub note: String,
    /// Unix seconds.
    pub received_at: u64,
    /// Their key differs from the one pinned for this name.
    pub key_changed: bool,
}

impl std::fmt::Debug for ReceivedRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReceivedRequest([scrubbed])")
    }
}

/// Node settings. Defaults are PROTOCOL.md §10/§13's values.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Presence heartbeat while Ready. Default 30 s.
    pub heartbeat: Duration,
    /// A connection with no valid frame for this long is dead. Default 90 s.
    pub dead_after: Duration,
    /// First frame / Hello timeout. Default 30 s.
    pub hello_timeout: Duration,
    /// Re-send unacknowledged Texts after this long. Default 60 s.
    pub ack_timeout: Duration,
    /// First reconnect delay. Default 5 s.
    pub backoff_initial: Duration,
    /// Largest reconnect delay. Default 300 s.
    pub backoff_max: Duration,
    /// Most unacknowledged Texts in flight. Default 256 (well under MAX_SKIP).
    pub window: u64,
    /// Mailbox poll interval. Default 60 s.
    pub mailbox_poll: Duration,
    /// Concurrent inbound connections. Default 64.
    pub max_inbound: usize,
    /// Event bus capacity. Default 4096.
    pub event_capacity: usize,
    /// What this node accepts as a file receiver.
    pub files: crate::files::FilePolicy,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            heartbeat: Duration::from_secs(30),
            dead_after: Duration::from_secs(90),
            hello_timeout: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(60),
            backoff_initial: Duration::from_secs(5),
            backoff_max: Duration::from_secs(300),
            window: 256,
            mailbox_poll: Duration::from_secs(60),
            max_inbound: 64,
            event_capacity: 4096,
            files: crate::files::FilePolicy::default(),
        }
    }
}

/// Type-erased `Transport::connect` (and `connect_isolated`, for file lanes).
pub(crate) trait Dial: Send + Sync {
    fn dial<'a>(
        &'a self,
        addr: &'a PeerAddress,
    ) -> BoxFuture<'a, Result<BoxedStream, crate::transport::Error>>;

    fn dial_isolated<'a>(
        &'a self,
        addr: &'a PeerAddress,
    ) -> BoxFuture<'a, Result<BoxedStream, crate::transport::Error>>;
}

impl<T: Transport> Dial for T {
    fn dial<'a>(
        &'a self,
        addr: &'a PeerAddress,
    ) -> BoxFuture<'a, Result<BoxedStream, crate::transport::Error>> {
        Box::pin(self.connect(addr))
    }

    fn dial_isolated<'a>(
        &'a self,
        addr: &'a PeerAddress,
    ) -> BoxFuture<'a, Result<BoxedStream, crate::transport::Error>> {
        Box::pin(self.connect_isolated(addr))
    }
}

/// A live (or dialing) connection of a contact.
#[derive(Clone)]
struct Slot {
    id: u64,
    side: Side,
    cmds: mpsc::UnboundedSender<Command>,
    cancel: CancellationToken,
    /// A stream exists (false while a connector is still dialing).
    connected: Arc<std::sync::atomic::AtomicBool>,
    /// The connection is going away: the peer announced it is going offline,
    /// or the connection has stopped. It no longer wins a tie-break
    /// (PROTOCOL.md §10).
    leaving: Arc<std::sync::atomic::AtomicBool>,
}

/// An exclusive claim on a contact's session: at most one per contact.
struct Claim {
    contact: ContactId,
    slot_id: u64,
    cancel: CancellationToken,
    cmds: mpsc::UnboundedReceiver<Command>,
    connected: Arc<std::sync::atomic::AtomicBool>,
    leaving: Arc<std::sync::atomic::AtomicBool>,
    _guard: OwnedMutexGuard<()>,
}

#[derive(Default)]
struct Tables {
    slots: HashMap<ContactId, Slot>,
    locks: HashMap<ContactId, Arc<tokio::sync::Mutex<()>>>,
    wakes: HashMap<ContactId, Arc<Notify>>,
    dialers: HashSet<ContactId>,
    seen_mail: HashSet<u64>,
    seen_requests: HashSet<[u8; 16]>,
    /// Accept envelopes still to be delivered, per contact.
    accepts: HashMap<ContactId, String>,
    /// SHA-256 of Accept envelopes that established a session (re-delivery).
    accepted: HashSet<[u8; 32]>,
    next_slot: u64,
}

struct Inner {
    store: StoreHandle,
    dial: Arc<dyn Dial>,
    lanes: files::LaneRegistry,
    identity: Identity,
    address: PeerAddress,
    config: NodeConfig,
    events: broadcast::Sender<Event>,
    mailbox: Option<Arc<dyn Mailbox>>,
    tables: Mutex<Tables>,
    tasks: Mutex<JoinSet<()>>,
    shutdown: CancellationToken,
}

/// Entry point of the node.
#[derive(Debug)]
pub struct Node;

/// The running node: its API for the control socket, CLI and tests.
/// Dropping it does not stop the node; call [`NodeHandle::shutdown`].
#[derive(Clone)]
pub struct NodeHandle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeHandle")
    }
}

impl Node {
    /// Starts the node: loads the identity from `store`, listens on
    /// `transport`, and starts dialing every contact with a session.
    pub async fn start<T>(
        config: NodeConfig,
        store: Store,
        transport: T,
        mailbox: Option<Arc<dyn Mailbox>>,
    ) -> Result<NodeHandle, NodeError>
    where
        T: Transport + 'static,
        T::Listener: 'static,
    {
        let own = store.identity()?.ok_or(NodeError::NotFound {
            what: "identity (run `umbra init` first)",
        })?;
        let identity =
            Identity::from_secret_bytes(&own.secret_cert).map_err(HandshakeError::Identity)?;
        let listener = transport.listen().await?;
        let (events, _) = broadcast::channel(config.event_capacity.max(16));
        let inner = Arc::new(Inner {
            store: StoreHandle::new(store),
            dial: Arc::new(transport),
            lanes: files::LaneRegistry::default(),
            identity,
            address: listener.address().clone(),
            config,
            events,
            mailbox,
            tables: Mutex::new(Tables::default()),
            tasks: Mutex::new(JoinSet::new()),
            shutdown: CancellationToken::new(),
        });
        inner.spawn(accept_loop(inner.clone(), listener));
        let accepts = inner.store.run(|s| s.pending_accepts()).await??;
        inner.table(|t| t.accepts.extend(accepts));
        let contacts = inner
            .store
            .run(|s| -> Result<Vec<ContactId>, crate::store::Error> {
                let mut out = Vec::new();
                for c in s.contacts()? {
                    if s.session_for_contact(c.id)?.is_some() {
                        out.push(c.id);
                    }
                }
                Ok(out)
            })
            .await??;
        for c in contacts {
            inner.ensure_dialer(c);
        }
        if inner.mailbox.is_some() {
            inner.spawn(mailbox_loop(inner.clone()));
        }
        Ok(NodeHandle { inner })
    }
}

impl NodeHandle {
    /// Subscribes to the event bus.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The store, for reads by front ends (history, contacts, outbox).
    pub fn store(&self) -> StoreHandle {
        self.inner.store.clone()
    }

    /// The address peers reach this node at (an identifier: never log it).
    pub fn address(&self) -> &PeerAddress {
        &self.inner.address
    }

    /// Queues a Text to `contact` (stored with id and seq before this
    /// returns) and sends it as soon as a connection is Ready.
    pub async fn send_text(&self, contact: ContactId, body: &str) -> Result<Message, NodeError> {
        if body.len() > MAX_TEXT {
            return Err(NodeError::Invalid {
                what: "message",
                reason: "longer than 16 KiB",
            });
        }
        if self.inner.shutdown.is_cancelled() {
            return Err(NodeError::ShuttingDown);
        }
        let mut msg_id = [0u8; 16];
        fill_random(&mut msg_id);
        let sent_at = crate::time::now_secs();
        let body = body.to_owned();
        let m = self
            .inner
            .store
            .run(move |s| -> Result<Message, NodeError> {
                if s.session_for_contact(contact)?.is_none() {
                    return Err(NodeError::NoSession);
                }
                Ok(s.enqueue_message(contact, msg_id, sent_at, &body)?)
            })
            .await??;
        let out = OutText {
            message: m.id,
            text: Text {
                id: m.msg_id,
                seq: m.seq,
                sent_at: m.sent_at,
                body: m.body.clone(),
            },
        };
        let slot = self.inner.table(|t| t.slots.get(&contact).cloned());
        match slot {
            Some(s) if s.cmds.send(Command::Queue(vec![out])).is_ok() => {}
            _ => self.inner.wake(contact),
        }
        Ok(m)
    }

    /// Offers the file at `path` to `contact` (PROTOCOL.md §14): hashes it,
    /// records the transfer, and offers it as soon as a connection is Ready
    /// (it waits like an outbox message while the contact is offline). `path`
    /// should be absolute; the file is read from there while it is sent.
    pub async fn send_file(
        &self,
        contact: ContactId,
        path: &std::path::Path,
        media: crate::store::FileKind,
    ) -> Result<crate::store::FileTransfer, NodeError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(NodeError::ShuttingDown);
        }
        let has_session = self
            .inner
            .store
            .run(move |s| s.session_for_contact(contact))
            .await??
            .is_some();
        if !has_session {
            return Err(NodeError::NoSession);
        }
        let p = path.to_path_buf();
        let (size, sha256) = tokio::task::spawn_blocking(move || crate::files::Source::hash(&p))
            .await
            .map_err(|_| NodeError::Internal {
                what: "a file task panicked",
            })?
            .map_err(NodeError::File)?;
        let name = path
            .file_name()
            .map(|n| crate::files::sanitize(&n.to_string_lossy()))
            .unwrap_or_else(|| "file".to_owned());
        let mut transfer_id = [0u8; 16];
        fill_random(&mut transfer_id);
        let new = crate::store::NewTransfer {
            transfer_id,
            contact,
            direction: Direction::Outgoing,
            name,
            size,
            sha256,
            chunk_size: crate::files::CHUNK_SIZE,
            media,
            local_path: Some(path.to_string_lossy().into_owned()),
        };
        let t = self
            .inner
            .store
            .run(move |s| -> Result<_, crate::store::Error> {
                s.add_transfer(&new)?;
                s.transfer(&transfer_id)?
                    .ok_or(crate::store::Error::NotFound { what: "transfer" })
            })
            .await??;
        self.notify_files(contact);
        Ok(t)
    }

    fn notify_files(&self, contact: ContactId) {
        match self.inner.table(|t| t.slots.get(&contact).cloned()) {
            Some(s) if s.cmds.send(Command::Files).is_ok() => {}
            _ => self.inner.wake(contact),
        }
    }

    /// Every transfer, oldest first.
    pub async fn transfers(&self) -> Result<Vec<crate::store::FileTransfer>, NodeError> {
        Ok(self.inner.store.run(|s| s.all_transfers()).await??)
    }

    /// Accepts an incoming file offer: chunks start flowing when connected.
    pub async fn accept_file(&self, transfer_id: [u8; 16]) -> Result<(), NodeError> {
        let t = self
            .inner
            .store
            .run(move |s| -> Result<_, NodeError> {
                let t = s
                    .transfer(&transfer_id)?
                    .filter(|t| t.direction == Direction::Incoming)
                    .ok_or(NodeError::NotFound { what: "transfer" })?;
                if t.state != crate::store::TransferState::Offered {
                    return Err(NodeError::Invalid {
                        what: "transfer",
                        reason: "it is not waiting for a decision",
                    });
                }
                files::accept_incoming(s, &transfer_id)?;
                Ok(t)
            })
            .await??;
        self.notify_files(t.contact);
        Ok(())
    }

    /// Declines an incoming offer or cancels any unfinished transfer; the
    /// peer is told now if connected, otherwise when it next re-offers.
    pub async fn cancel_file(&self, transfer_id: [u8; 16]) -> Result<(), NodeError> {
        let (contact, r) = self
            .inner
            .store
            .run(move |s| -> Result<_, NodeError> {
                let t = s
                    .transfer(&transfer_id)?
                    .ok_or(NodeError::NotFound { what: "transfer" })?;
                if !matches!(
                    t.state,
                    crate::store::TransferState::Offered | crate::store::TransferState::Active
                ) {
                    return Err(NodeError::Invalid {
                        what: "transfer",
                        reason: "it is already finished",
                    });
                }
                let r = if t.direction == Direction::Incoming
                    && t.state == crate::store::TransferState::Offered
                {
                    crate::files::reason::DECLINED
                } else {
                    crate::files::reason::UNSPECIFIED
                };
                files::drop_part(s, &transfer_id)?;
                s.finish_transfer(
                    &transfer_id,
                    crate::store::TransferState::Cancelled,
                    Some(r),
                )?;
                Ok((t.contact, r))
            })
            .await??;
        if let Some(slot) = self.inner.table(|t| t.slots.get(&contact).cloned()) {
            let _ = slot.cmds.send(Command::FileCancel(transfer_id, r));
        }
        let _ = self.inner.events.send(Event::FileCancelled {
            contact,
            transfer: transfer_id,
            reason: r,
            by_peer: false,
        });
        Ok(())
    }

    /// Decrypts a completed incoming file to `dest` (a new file; an existing
    /// directory means "in it, under the sanitised name"), verifying its
    /// SHA-256 on the way. Returns the path written. The encrypted copy is
    /// deleted afterwards.
    pub async fn save_file(
        &self,
        transfer_id: [u8; 16],
        dest: &std::path::Path,
    ) -> Result<std::path::PathBuf, NodeError> {
        let dest = dest.to_path_buf();
        self.inner
            .store
            .run(move |s| -> Result<std::path::PathBuf, NodeError> {
                let t = s
                    .transfer(&transfer_id)?
                    .filter(|t| t.direction == Direction::Incoming)
                    .ok_or(NodeError::NotFound { what: "transfer" })?;
                if t.state != crate::store::TransferState::Completed {
                    return Err(NodeError::Invalid {
                        what: "transfer",
                        reason: "it is not complete",
                    });
                }
                let target = if dest.is_dir() {
                    crate::files::unused_in(&dest, &crate::files::sanitize(&t.name))
                } else {
                    dest
                };
                if t.size == 0 {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&target)
                        .map_err(|e| {
                            NodeError::File(crate::files::FileError::Io {
                                what: "creating the destination file",
                                source: e,
                            })
                        })?;
                } else {
                    let part = files::open_part(s, &t).map_err(NodeError::File)?.ok_or(
                        NodeError::Invalid {
                            what: "transfer",
                            reason: "its file was already saved and removed from the data dir",
                        },
                    )?;
                    part.export(&target, &t.sha256).map_err(NodeError::File)?;
                }
                s.set_saved_path(&transfer_id, &target.to_string_lossy())?;
                files::drop_part(s, &transfer_id)?;
                Ok(target)
            })
            .await?
    }

    /// Sends a connection request to the owner of `to` (its first `@name`)
    /// through the mailbox. Returns the contact (state Requested). Refuses
    /// ([`NodeError::KeyChanged`]) if that name is pinned to another key.
    pub async fn request(&self, to: &PublicCert, note: &str) -> Result<ContactId, NodeError> {
        self.request_with(to, note, false).await
    }

    /// [`NodeHandle::request`]; with `allow_key_change`, a name pinned to
    /// another key is re-pinned to `to` (verified mark cleared, any old
    /// session ended).
    pub async fn request_with(
        &self,
        to: &PublicCert,
        note: &str,
        allow_key_change: bool,
    ) -> Result<ContactId, NodeError> {
        let mailbox = self.inner.mailbox.clone().ok_or(NodeError::NotFound {
            what: "Handshaker mailbox (configure a Handshaker)",
        })?;
        let username = to
            .usernames()
            .into_iter()
            .next()
            .ok_or(NodeError::Invalid {
                what: "certificate",
                reason: "it has no @name user ID",
            })?;
        let (envelope, pending) = handshake::make_request(
            &self.inner.identity,
            to,
            &username,
            self.inner.address.as_str(),
            note,
        )?;
        let secret = pending.share.to_secret_bytes();
        let record = PendingRequest {
            request_id: pending.request_id,
            to_username: username.as_str().to_owned(),
            session_half: zeroize::Zeroizing::new(secret[..32].to_vec()),
            ephemeral_secret: zeroize::Zeroizing::new(secret[32..].to_vec()),
            created_at: crate::time::now_secs(),
        };
        let new = NewContact {
            username: username.as_str().to_owned(),
            fingerprint: to.fingerprint().to_hex(),
            public_cert: to.to_bytes().map_err(HandshakeError::Identity)?,
            onion_address: None,
            state: ContactState::Requested,
            verified: false,
        };
        let (contact, ended) = self
            .inner
            .store
            .run(move |s| -> Result<_, NodeError> {
                let (id, ended) = pin_contact(s, &new, allow_key_change)?;
                s.add_pending_request(&record)?;
                Ok((id, ended))
            })
            .await??;
        if let Some(ended) = ended {
            self.inner.report_ended(contact, ended, false);
        }
        mailbox.deposit(username.as_str(), envelope).await?;
        Ok(contact)
    }

    /// Received connection requests awaiting a decision, oldest first
    /// (expired ones are deleted).
    pub async fn requests(&self) -> Result<Vec<ReceivedRequest>, NodeError> {
        let now = crate::time::now_secs();
        let rows = self
            .inner
            .store
            .run(move |s| -> Result<_, crate::store::Error> {
                s.expire_received_requests(now)?;
                s.received_requests(now)
            })
            .await??;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                Some(ReceivedRequest {
                    request_id: r.request_id,
                    fingerprint: Fingerprint::from_hex(&r.fingerprint).ok()?,
                    from: r.from_username,
                    note: r.note,
                    received_at: r.received_at,
                    key_changed: r.key_changed,
                })
            })
            .collect())
    }

    /// Marks everything received from `contact` as read and tells the
    /// contact with a Receipt if a connection is up (receipts are
    /// cumulative and best effort).
    pub async fn mark_read(&self, contact: ContactId) -> Result<usize, NodeError> {
        let (n, upto) = self
            .inner
            .store
            .run(move |s| -> Result<_, crate::store::Error> {
                let upto = s.highest_seq(contact, Direction::Incoming)?;
                Ok((s.mark_read(contact, Direction::Incoming, upto)?, upto))
            })
            .await??;
        if upto > 0
            && let Some(slot) = self.inner.table(|t| t.slots.get(&contact).cloned())
        {
            let _ = slot.cmds.send(Command::Receipt(upto));
        }
        Ok(n)
    }

    /// Rejects a received request: it is deleted (its replay record stays).
    /// With `notify`, a signed Reject goes to the requester's mailbox
    /// (optional in the protocol: silence reveals less).
    pub async fn reject(&self, request_id: &[u8; 16], notify: bool) -> Result<(), NodeError> {
        let rid = *request_id;
        let rec = self
            .inner
            .store
            .run(move |s| s.received_request(&rid))
            .await??
            .ok_or(NodeError::NotFound {
                what: "connection request",
            })?;
        let envelope = if notify {
            let cert =
                PublicCert::from_bytes(&rec.public_cert).map_err(HandshakeError::Identity)?;
            let request = decode_request(&rec.payload)?;
            Some(handshake::make_reject(
                &self.inner.identity,
                &cert,
                &request,
            )?)
        } else {
            None
        };
        self.inner
            .store
            .run(move |s| s.delete_received_request(&rid))
            .await??;
        if let (Some(env), Some(m)) = (envelope, self.inner.mailbox.clone()) {
            m.deposit(&rec.from_username, env).await?;
        }
        Ok(())
    }

    /// Polls the mailbox now (the poller also runs on its interval).
    pub async fn poll_mailbox(&self) -> Result<(), NodeError> {
        poll_mailbox(&self.inner).await
    }

    /// Accepts a received request: derives and stores the session, then
    /// delivers the Accept directly to the requester (retried until it
    /// arrives, also across restarts). Returns the contact. Refuses a
    /// request whose key changed ([`NodeError::KeyChanged`]); see
    /// [`NodeHandle::accept_with`].
    pub async fn accept(&self, request_id: &[u8; 16]) -> Result<ContactId, NodeError> {
        self.accept_with(request_id, false).await
    }

    /// [`NodeHandle::accept`]; with `allow_key_change`, a request whose key
    /// differs from the pinned one is accepted too: the contact's pinned
    /// key is replaced, its `verified` mark cleared and any old session
    /// ended.
    pub async fn accept_with(
        &self,
        request_id: &[u8; 16],
        allow_key_change: bool,
    ) -> Result<ContactId, NodeError> {
        let rid = *request_id;
        let now = crate::time::now_secs();
        let rec = self
            .inner
            .store
            .run(move |s| s.received_request(&rid))
            .await??
            .filter(|r| r.expires_at >= now)
            .ok_or(NodeError::NotFound {
                what: "connection request",
            })?;
        if rec.key_changed && !allow_key_change {
            return Err(NodeError::KeyChanged);
        }
        let cert = PublicCert::from_bytes(&rec.public_cert).map_err(HandshakeError::Identity)?;
        let req = decode_request(&rec.payload)?;
        let (envelope, session) = handshake::make_accept(
            &self.inner.identity,
            &cert,
            &req,
            self.inner.address.as_str(),
        )?;
        let expires = req
            .created_at
            .saturating_add(ENVELOPE_MAX_AGE_SECS + MAX_FUTURE_SKEW_SECS);
        let new = NewContact {
            username: req.from_username.clone(),
            fingerprint: cert.fingerprint().to_hex(),
            public_cert: cert.to_bytes().map_err(HandshakeError::Identity)?,
            onion_address: Some(req.onion_address.clone()),
            state: ContactState::Accepted,
            verified: false,
        };
        let (sid, send, recv) = session_parts(&session);
        drop(session);
        let env = envelope.clone();
        let (contact, ended) = self
            .inner
            .store
            .run(move |s| -> Result<_, NodeError> {
                if !s.delete_received_request(&rid)? {
                    return Err(NodeError::NotFound {
                        what: "connection request",
                    });
                }
                let (id, ended) = pin_contact(s, &new, allow_key_change)?;
                s.create_session(&SessionRecord {
                    contact: id,
                    session_id: sid,
                    send,
                    recv,
                    created_at: crate::time::now_secs(),
                })?;
                s.put_pending_accept(id, &env, expires)?;
                Ok((id, ended))
            })
            .await??;
        if let Some(ended) = ended {
            self.inner.report_ended(contact, ended, false);
        }
        self.inner.table(|t| t.accepts.insert(contact, envelope));
        self.inner.ensure_dialer(contact);
        self.inner.wake(contact);
        Ok(contact)
    }

    /// Ends the session with `contact`: EndSession is sent if a connection
    /// is Ready, then both chain keys are erased and undelivered messages
    /// marked failed.
    pub async fn end(&self, contact: ContactId) -> Result<(), NodeError> {
        let slot = self.inner.table(|t| t.slots.get(&contact).cloned());
        if let Some(s) = slot {
            let (tx, rx) = oneshot::channel();
            if s.cmds.send(Command::End(tx)).is_ok()
                && tokio::time::timeout(self.inner.config.hello_timeout, rx)
                    .await
                    .is_ok_and(|r| r.is_ok())
            {
                self.inner.wake(contact);
                return Ok(());
            }
        }
        let ended = self
            .inner
            .store
            .run(move |s| s.end_session_with(contact))
            .await??;
        if !ended.existed {
            return Err(NodeError::NoSession);
        }
        self.inner.report_ended(contact, ended, false);
        self.inner.wake(contact);
        Ok(())
    }

    /// Whether a connection to `contact` is currently open.
    pub fn is_connected(&self, contact: ContactId) -> bool {
        self.inner.table(|t| {
            t.slots.get(&contact).is_some_and(|s| {
                s.connected.load(std::sync::atomic::Ordering::Acquire)
                    && !s.leaving.load(std::sync::atomic::Ordering::Acquire)
            })
        })
    }

    /// Stops the node gracefully: connections send `Presence(GoingOffline)`
    /// and close, every task is awaited.
    pub async fn shutdown(self) {
        self.inner.shutdown.cancel();
        let mut set = {
            let mut guard = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *guard)
        };
        while set.join_next().await.is_some() {}
    }

    /// Stops every task at its next await point without any goodbye, as a
    /// crash would (for tests). Store transactions in flight complete or
    /// roll back, as after `kill -9`.
    pub async fn abort(self) {
        self.inner.shutdown.cancel();
        let mut set = {
            let mut guard = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *guard)
        };
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
}

/// Finds or creates the contact for `new` (by fingerprint, then by name).
/// A name pinned to another key is an error unless `allow_key_change`;
/// then the contact is re-pinned (verified cleared) and its old session
/// ended (returned, for the events). New requests and accepts keep the
/// contact's existing row so its history stays.
fn pin_contact(
    s: &mut Store,
    new: &NewContact,
    allow_key_change: bool,
) -> Result<(ContactId, Option<crate::store::Ended>), NodeError> {
    let by_fpr = s.contact_by_fingerprint(&new.fingerprint)?;
    let by_name = s.contact_by_username(&new.username)?;
    match (by_fpr, by_name) {
        (Some(mut c), _) if c.username == new.username => {
            if new.onion_address.is_some() {
                c.onion_address = new.onion_address.clone();
            }
            if c.state != ContactState::Accepted || new.state == ContactState::Accepted {
                c.state = new.state;
            }
            s.update_contact(&c)?;
            Ok((c.id, None))
        }
        // The key is known under another name, or the name under another key.
        (Some(_), _) | (None, Some(_)) if !allow_key_change => Err(NodeError::KeyChanged),
        (Some(_), _) => Err(NodeError::Invalid {
            what: "key change",
            reason: "this key is pinned for another contact; end and remove that contact first",
        }),
        (None, Some(mut c)) => {
            let ended = s.end_session_with(c.id)?;
            c.fingerprint = new.fingerprint.clone();
            c.public_cert = new.public_cert.clone();
            c.onion_address = new.onion_address.clone();
            c.state = new.state;
            c.verified = false;
            s.update_contact(&c)?;
            s.delete_pending_accept(c.id)?;
            Ok((c.id, ended.existed.then_some(ended)))
        }
        (None, None) => Ok((s.add_contact(new)?, None)),
    }
}

/// The ConnectionRequest in a stored canonical payload.
fn decode_request(payload: &[u8]) -> Result<ConnectionRequest, NodeError> {
    match handshake::HandshakeMessage::decode(payload)? {
        handshake::HandshakeMessage::Request(r) => Ok(r),
        _ => Err(NodeError::Internal {
            what: "a stored request is not a request",
        }),
    }
}

fn session_parts(s: &Session) -> ([u8; 16], ChainState, ChainState) {
    let chain = |(k, seq): (zeroize::Zeroizing<[u8; 32]>, u64)| ChainState {
        chain_key: zeroize::Zeroizing::new(k.to_vec()),
        seq,
    };
    (s.id(), chain(s.send_chain()), chain(s.recv_chain()))
}

fn restore(rec: &SessionRecord) -> Result<Session, SessionError> {
    Session::from_chains(
        rec.session_id,
        (&rec.send.chain_key, rec.send.seq),
        (&rec.recv.chain_key, rec.recv.seq),
    )
}

impl Inner {
    /// Events for a session that ended.
    fn report_ended(&self, contact: ContactId, ended: crate::store::Ended, by_peer: bool) {
        for message in ended.failed {
            let _ = self.events.send(Event::MessageFailed { contact, message });
        }
        let _ = self.events.send(Event::SessionEnded { contact, by_peer });
    }

    /// The Accept for `contact` arrived (the peer's Hello proves it): forget it.
    fn accept_delivered(self: &Arc<Self>, contact: ContactId) {
        if self.table(|t| t.accepts.remove(&contact)).is_some() {
            let store = self.store.clone();
            self.spawn(async move {
                if let Ok(Err(e)) = store.run(move |s| s.delete_pending_accept(contact)).await {
                    tracing::debug!(kind = ?e.kind(), "forgetting a delivered accept failed");
                }
            });
        }
    }

    fn table<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut t)
    }

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        while set.try_join_next().is_some() {}
        if !self.shutdown.is_cancelled() {
            set.spawn(fut);
        }
    }

    fn wake_for(&self, contact: ContactId) -> Arc<Notify> {
        self.table(|t| t.wakes.entry(contact).or_default().clone())
    }

    fn wake(&self, contact: ContactId) {
        self.wake_for(contact).notify_one();
    }

    fn ensure_dialer(self: &Arc<Self>, contact: ContactId) {
        if self.table(|t| t.dialers.insert(contact)) {
            self.spawn(dial_loop(self.clone(), contact));
        }
    }

    fn lock_for(&self, contact: ContactId) -> Arc<tokio::sync::Mutex<()>> {
        self.table(|t| t.locks.entry(contact).or_default().clone())
    }

    fn register(&self, contact: ContactId, side: Side, guard: OwnedMutexGuard<()>) -> Claim {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = self.shutdown.child_token();
        // A listener's stream exists already; a connector's once dialed.
        let connected = Arc::new(std::sync::atomic::AtomicBool::new(side == Side::Listener));
        let leaving = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let slot_id = self.table(|t| {
            t.next_slot += 1;
            let id = t.next_slot;
            t.slots.insert(
                contact,
                Slot {
                    id,
                    side,
                    cmds: tx,
                    cancel: cancel.clone(),
                    connected: connected.clone(),
                    leaving: leaving.clone(),
                },
            );
            id
        });
        Claim {
            contact,
            slot_id,
            cancel,
            cmds: rx,
            connected,
            leaving,
            _guard: guard,
        }
    }

    fn release(&self, claim: Claim) {
        let contact = claim.contact;
        self.table(|t| {
            if t.slots.get(&contact).is_some_and(|s| s.id == claim.slot_id) {
                t.slots.remove(&contact);
            }
        });
        drop(claim);
        self.wake(contact);
    }

    /// An inbound connection proved it holds the session of `contact`:
    /// claim the session, preempting or yielding to an existing connection
    /// (PROTOCOL.md §10: the connection whose connector has the lower
    /// fingerprint wins).
    async fn claim_inbound(&self, contact: ContactId, peer_fpr: &str) -> Option<Claim> {
        let lock = self.lock_for(contact);
        if let Ok(g) = lock.clone().try_lock_owned() {
            return Some(self.register(contact, Side::Listener, g));
        }
        let holder = self.table(|t| t.slots.get(&contact).cloned());
        if let Some(h) = holder {
            let mine = self.identity.fingerprint().to_hex();
            // Our dialed connection wins the tie-break only once it exists:
            // a dial still in progress (perhaps retrying towards a stale
            // descriptor) yields to a connection that already proved itself.
            // So does a connection that is going away (the peer said goodbye
            // on it, or it stopped and is being released): refusing a
            // reconnect for its sake would leave the contact unreachable.
            let dialed = h.connected.load(std::sync::atomic::Ordering::Acquire);
            let leaving = h.leaving.load(std::sync::atomic::Ordering::Acquire);
            if h.side == Side::Connector && dialed && !leaving && mine.as_str() < peer_fpr {
                return None;
            }
            h.cancel.cancel();
        }
        let g = tokio::time::timeout(self.config.hello_timeout, lock.lock_owned())
            .await
            .ok()?;
        Some(self.register(contact, Side::Listener, g))
    }

    /// Runs one connection with the session of `claim.contact`.
    async fn run_conn<S>(
        self: &Arc<Self>,
        framed: &mut Framed<S, LengthDelimitedCodec>,
        mut claim: Claim,
        side: Side,
        first: Option<Bytes>,
    ) -> Outcome
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let contact = claim.contact;
        let loaded = self
            .store
            .run(move |s| -> Result<_, NodeError> {
                let rec = s
                    .session_for_contact(contact)?
                    .ok_or(NodeError::NoSession)?;
                let hi = s.highest_seq(contact, Direction::Incoming)?;
                let ho = s.highest_seq(contact, Direction::Outgoing)?;
                let outbox = s.outbox(contact)?;
                let addr = s.contact(contact)?.and_then(|c| c.onion_address);
                Ok((rec, hi, ho, outbox, addr))
            })
            .await;
        let (rec, highest_in, highest_out, outbox, peer_addr) = match loaded {
            Ok(Ok(x)) => x,
            Ok(Err(error)) | Err(error) => {
                self.release(claim);
                return Outcome::Failed {
                    was_ready: false,
                    error,
                };
            }
        };
        let session = match restore(&rec) {
            Ok(s) => s,
            Err(e) => {
                self.release(claim);
                return Outcome::Failed {
                    was_ready: false,
                    error: e.into(),
                };
            }
        };
        let mut peer = Peer::new(
            session,
            PeerParams {
                side,
                highest_in,
                highest_out,
                window: self.config.window,
            },
        );
        let texts = outbox
            .into_iter()
            .map(|m| OutText {
                message: m.id,
                text: Text {
                    id: m.msg_id,
                    seq: m.seq,
                    sent_at: m.sent_at,
                    body: m.body,
                },
            })
            .collect();
        if let Err(e) = peer.queue(texts) {
            self.release(claim);
            return Outcome::Failed {
                was_ready: false,
                error: e.into(),
            };
        }
        let peer_addr = peer_addr.map(PeerAddress::new);
        let Some(own_cmds) = self.table(|t| {
            t.slots
                .get(&contact)
                .filter(|s| s.id == claim.slot_id)
                .map(|s| s.cmds.clone())
        }) else {
            self.release(claim);
            return Outcome::Closed { was_ready: false };
        };
        let ctx = ConnCtx {
            store: self.store.clone(),
            events: self.events.clone(),
            contact,
            leaving: claim.leaving.clone(),
            timers: Timers {
                heartbeat: self.config.heartbeat,
                dead_after: self.config.dead_after,
                hello_timeout: self.config.hello_timeout,
                ack_timeout: self.config.ack_timeout,
            },
            files: files::FileCtx {
                policy: self.config.files.clone(),
                lanes: self.lanes.clone(),
                dial: self.dial.clone(),
                peer: peer_addr,
                own_cmds: own_cmds.clone(),
            },
        };
        let cancel = claim.cancel.clone();
        let outcome = conn::drive(framed, peer, first, &ctx, &mut claim.cmds, &cancel).await;
        if let Outcome::Failed { error, .. } = &outcome {
            tracing::debug!(kind = ?error.kind(), "peer connection failed");
        }
        if matches!(
            outcome,
            Outcome::Closed { was_ready: true }
                | Outcome::Failed {
                    was_ready: true,
                    ..
                }
        ) {
            // The peer's Hello proves it holds the session: the Accept arrived.
            self.accept_delivered(contact);
        }
        self.release(claim);
        outcome
    }

    /// Requester side: an Envelope frame on an inbound connection. Opens it
    /// against every pending request; a valid Accept establishes the session.
    async fn open_envelope(self: &Arc<Self>, envelope: Vec<u8>) -> Result<(), NodeError> {
        let digest: [u8; 32] = Sha256::digest(&envelope).into();
        if self.table(|t| t.accepted.contains(&digest)) {
            return Ok(()); // re-delivered identical Accept (PROTOCOL.md §5.5)
        }
        let candidates = self
            .store
            .run(|s| -> Result<Vec<_>, crate::store::Error> {
                let mut out = Vec::new();
                for p in s.pending_requests()? {
                    if let Some(c) = s.contact_by_username(&p.to_username)? {
                        out.push((p, c));
                    }
                }
                Ok(out)
            })
            .await??;
        for (pending, contact) in candidates {
            let Ok(cert) = PublicCert::from_bytes(&contact.public_cert) else {
                continue;
            };
            let mut secret = zeroize::Zeroizing::new(Vec::with_capacity(64));
            secret.extend_from_slice(&pending.session_half);
            secret.extend_from_slice(&pending.ephemeral_secret);
            let mut share = Some(KeyShare::from_secret_bytes(&secret)?);
            let rid = pending.request_id;
            let to_fingerprint = cert.fingerprint();
            let answer = handshake::open_answer(
                &envelope,
                &self.identity,
                &cert,
                &mut |id| {
                    (*id == rid).then(|| share.take()).flatten().map(|share| {
                        handshake::PendingRequest {
                            request_id: rid,
                            to_fingerprint,
                            share,
                        }
                    })
                },
                Freshness::default(),
            );
            let cid = contact.id;
            match answer {
                Ok(Answer::Accepted { accept, session }) => {
                    let (sid, send, recv) = session_parts(&session);
                    drop(session);
                    let address = accept.onion_address.clone();
                    self.store
                        .run(move |s| -> Result<(), NodeError> {
                            s.take_pending_request(&rid)?
                                .ok_or(HandshakeError::UnknownRequest)?;
                            let mut c = s
                                .contact(cid)?
                                .ok_or(NodeError::NotFound { what: "contact" })?;
                            c.state = ContactState::Accepted;
                            c.onion_address = Some(address);
                            s.update_contact(&c)?;
                            s.create_session(&SessionRecord {
                                contact: cid,
                                session_id: sid,
                                send,
                                recv,
                                created_at: crate::time::now_secs(),
                            })?;
                            Ok(())
                        })
                        .await??;
                    self.table(|t| t.accepted.insert(digest));
                    let _ = self.events.send(Event::RequestAnswered {
                        contact: cid,
                        accepted: true,
                    });
                    self.ensure_dialer(cid);
                    return Ok(());
                }
                Ok(Answer::Rejected(_)) => {
                    self.store
                        .run(move |s| -> Result<(), NodeError> {
                            s.take_pending_request(&rid)?;
                            s.set_contact_state(cid, ContactState::Rejected)?;
                            Ok(())
                        })
                        .await??;
                    let _ = self.events.send(Event::RequestAnswered {
                        contact: cid,
                        accepted: false,
                    });
                    return Err(NodeError::Handshake(HandshakeError::UnknownRequest));
                }
                Err(_) => continue,
            }
        }
        Err(HandshakeError::UnknownRequest.into())
    }
}

async fn accept_loop<L: Listener + 'static>(inner: Arc<Inner>, mut listener: L) {
    let permits = Arc::new(Semaphore::new(inner.config.max_inbound.max(1)));
    loop {
        let stream = tokio::select! {
            s = listener.accept() => s,
            _ = inner.shutdown.cancelled() => return,
        };
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(kind = ?e.kind(), "accepting a peer stream failed");
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::debug!("inbound connection cap reached; refusing a stream");
            continue;
        };
        let i = inner.clone();
        inner.spawn(async move {
            if let Err(e) = handle_inbound(&i, stream).await {
                tracing::debug!(kind = ?e.kind(), "inbound peer connection refused");
            }
            drop(permit);
        });
    }
}

async fn next_frame<S: AsyncRead + AsyncWrite + Unpin>(
    inner: &Inner,
    framed: &mut Framed<S, LengthDelimitedCodec>,
) -> Result<Bytes, NodeError> {
    tokio::select! {
        f = tokio::time::timeout(inner.config.hello_timeout, framed.next()) => match f {
            Err(_) => Err(NodeError::Timeout { what: "first frame" }),
            Ok(None) => Err(NodeError::Stream { source: std::io::ErrorKind::UnexpectedEof.into() }),
            Ok(Some(Err(e))) => Err(NodeError::Stream { source: e }),
            Ok(Some(Ok(b))) => Ok(b.freeze()),
        },
        _ = inner.shutdown.cancelled() => Err(NodeError::ShuttingDown),
    }
}

/// Listener side of PROTOCOL.md §10: optional Envelope, then a Sealed Hello
/// for a known session. Refusals close the stream and send nothing.
async fn handle_inbound(inner: &Arc<Inner>, stream: BoxedStream) -> Result<(), NodeError> {
    let mut framed = Framed::new(stream, wire::codec());
    let mut first = next_frame(inner, &mut framed).await?;
    if let Frame::Lane(body) = Frame::decode(&first).map_err(PeerError::Wire)? {
        let id = crate::files::lane_id(body).ok_or(NodeError::Invalid {
            what: "lane frame",
            reason: "truncated",
        })?;
        let entry = inner
            .lanes
            .take(id, inner.config.hello_timeout)
            .await
            .ok_or(NodeError::NotFound { what: "lane" })?;
        return files::receive_lane(entry, first, framed, inner.config.dead_after).await;
    }
    if let Frame::Envelope(env) = Frame::decode(&first).map_err(PeerError::Wire)? {
        inner.open_envelope(env.to_vec()).await?;
        first = next_frame(inner, &mut framed).await?;
    }
    let Frame::Sealed(_) = Frame::decode(&first).map_err(PeerError::Wire)? else {
        return Err(PeerError::Unexpected {
            what: "second envelope",
            state: peer::PeerState::AwaitingHello,
        }
        .into());
    };
    if first.len() < SEALED_HEADER_LEN {
        return Err(SessionError::Malformed.into());
    }
    let mut sid = [0u8; 16];
    sid.copy_from_slice(&first[2..18]);
    let found = inner
        .store
        .run(move |s| -> Result<_, crate::store::Error> {
            let Some(rec) = s.session(&sid)? else {
                return Ok(None);
            };
            let c = s.contact(rec.contact)?;
            Ok(c.map(|c| (rec, c.fingerprint)))
        })
        .await??;
    let Some((rec, peer_fpr)) = found else {
        return Err(SessionError::WrongSession.into());
    };
    // Prove possession of the session before disturbing any live connection:
    // open the Hello on a throw-away copy of the stored state.
    let mut trial = restore(&rec)?;
    let plaintext = trial.open(&first)?;
    if !matches!(
        PeerMessage::decode(&plaintext).map_err(PeerError::Wire)?,
        PeerMessage::Hello(_)
    ) {
        return Err(PeerError::Unexpected {
            what: "message before Hello",
            state: peer::PeerState::AwaitingHello,
        }
        .into());
    }
    drop(trial);
    let Some(claim) = inner.claim_inbound(rec.contact, &peer_fpr).await else {
        return Ok(()); // the peer's other connection wins the tie-break
    };
    let outcome = inner
        .run_conn(&mut framed, claim, Side::Listener, Some(first))
        .await;
    if let Outcome::Ended = outcome {
        inner.wake(rec.contact);
    }
    Ok(())
}

fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 1];
    fill_random(&mut b);
    // ±20 %: factor in [0.8, 1.2].
    let f = 0.8 + 0.4 * (f64::from(b[0]) / 255.0);
    d.mul_f64(f)
}

/// Keeps a connection to `contact` while its session exists.
async fn dial_loop(inner: Arc<Inner>, contact: ContactId) {
    let cfg = inner.config.clone();
    let mut backoff = cfg.backoff_initial;
    let wake = inner.wake_for(contact);
    loop {
        if inner.shutdown.is_cancelled() {
            break;
        }
        let info = inner
            .store
            .run(move |s| -> Result<_, crate::store::Error> {
                let has = s.session_for_contact(contact)?.is_some();
                let addr = s.contact(contact)?.and_then(|c| c.onion_address);
                Ok((has, addr))
            })
            .await;
        let addr = match info {
            Ok(Ok((true, Some(a)))) => PeerAddress::new(a),
            _ => break,
        };
        let lock = inner.lock_for(contact);
        let Ok(guard) = lock.try_lock_owned() else {
            tokio::select! {
                _ = wake.notified() => continue,
                _ = inner.shutdown.cancelled() => break,
            }
        };
        let claim = inner.register(contact, Side::Connector, guard);
        let connected = tokio::select! {
            r = inner.dial.dial(&addr) => Some(r),
            _ = claim.cancel.cancelled() => None,
        };
        let mut retry_now = false;
        match connected {
            None => {
                inner.release(claim);
                continue;
            }
            Some(Err(e)) => {
                tracing::debug!(kind = ?e.kind(), "dialing a contact failed");
                inner.release(claim);
            }
            Some(Ok(stream)) => {
                claim
                    .connected
                    .store(true, std::sync::atomic::Ordering::Release);
                let mut framed = Framed::new(stream, wire::codec());
                let accept = inner.table(|t| t.accepts.get(&contact).cloned());
                let mut ok = true;
                if let Some(env) = accept {
                    ok = match Frame::envelope(env.as_bytes()) {
                        Ok(f) => framed.send(Bytes::from(f)).await.is_ok(),
                        Err(_) => false,
                    };
                }
                if !ok {
                    inner.release(claim);
                } else {
                    match inner
                        .run_conn(&mut framed, claim, Side::Connector, None)
                        .await
                    {
                        Outcome::Ended => break,
                        Outcome::Closed { was_ready } | Outcome::Failed { was_ready, .. } => {
                            if was_ready {
                                inner.accept_delivered(contact);
                                backoff = cfg.backoff_initial;
                                retry_now = true;
                            }
                        }
                    }
                }
            }
        }
        if retry_now {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter(backoff)) => {}
            _ = wake.notified() => {}
            _ = inner.shutdown.cancelled() => break,
        }
        backoff = (backoff * 2).min(cfg.backoff_max);
    }
    inner.table(|t| t.dialers.remove(&contact));
}

/// Records issuer handles and vouches for nobody (first pass of opening a
/// request: learn who signed it).
struct Issuers(Vec<Fingerprint>);

impl SenderLookup for &mut Issuers {
    fn lookup(&mut self, issuers: &[sequoia_openpgp::KeyHandle]) -> Option<PublicCert> {
        for h in issuers {
            if let sequoia_openpgp::KeyHandle::Fingerprint(sequoia_openpgp::Fingerprint::V4(b)) = h
            {
                self.0.push(Fingerprint::from_bytes(*b));
            }
        }
        None
    }
}

struct SeenSet<'a>(&'a mut HashSet<[u8; 16]>);

/// Replay check at receipt, in memory: received requests are not stored yet
/// (no table), so the durable record ([`Store::seen_request_id`]) is made when
/// the user accepts; until then a restart re-fetches the unacknowledged item.
impl SeenRequests for SeenSet<'_> {
    fn record_if_new(
        &mut self,
        id: [u8; 16],
        _expires_at: u64,
    ) -> Result<bool, handshake::SeenError> {
        Ok(self.0.insert(id))
    }
}

async fn mailbox_loop(inner: Arc<Inner>) {
    loop {
        // A poll can wait on the network for minutes: never hold up a shutdown.
        let polled = tokio::select! {
            r = poll_mailbox(&inner) => r,
            _ = inner.shutdown.cancelled() => return,
        };
        if let Err(e) = polled {
            tracing::debug!(kind = ?e.kind(), "mailbox poll failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(inner.config.mailbox_poll) => {}
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

async fn poll_mailbox(inner: &Arc<Inner>) -> Result<(), NodeError> {
    let Some(mailbox) = inner.mailbox.clone() else {
        return Ok(());
    };
    let me = inner.identity.username().as_str().to_owned();
    for item in mailbox.fetch(&me).await? {
        if !inner.table(|t| t.seen_mail.insert(item.id)) {
            continue;
        }
        match open_mail(inner, mailbox.as_ref(), &item).await {
            Ok(Some((request, cert))) => {
                // Stored with its replay record before the item is acked
                // (PROTOCOL.md §11.2): a crash in between re-fetches it,
                // and the replay record then drops the copy.
                if let Some(event) = store_request(inner, request, cert).await? {
                    let _ = inner.events.send(event);
                }
            }
            Ok(None) | Err(_) => {
                // Maybe an answer to one of our requests (a Reject travels
                // through the mailbox); otherwise refused (replay, forgery,
                // expired...). Either way it leaves the mailbox.
                if inner
                    .open_envelope(item.envelope.clone().into_bytes())
                    .await
                    .is_err()
                {
                    tracing::debug!("dropping a refused mailbox item");
                }
            }
        }
        if let Err(e) = mailbox.ack(&me, item.id).await {
            tracing::debug!(kind = ?e.kind(), "mailbox ack failed; the item comes back and is dropped as a replay");
        }
    }
    Ok(())
}

/// Stores a verified request for the user's decision; `None` if it is a
/// replay. Flags a key change: the name pinned to another key, or the key
/// pinned under another name.
async fn store_request(
    inner: &Arc<Inner>,
    request: ConnectionRequest,
    cert: PublicCert,
) -> Result<Option<Event>, NodeError> {
    let fingerprint = cert.fingerprint();
    let record = crate::store::ReceivedRequestRecord {
        request_id: request.request_id,
        from_username: request.from_username.clone(),
        fingerprint: fingerprint.to_hex(),
        public_cert: cert.to_bytes().map_err(HandshakeError::Identity)?,
        payload: zeroize::Zeroizing::new(
            handshake::HandshakeMessage::Request(request.clone()).encode()?,
        ),
        note: request.note.clone(),
        received_at: crate::time::now_secs(),
        expires_at: request
            .created_at
            .saturating_add(ENVELOPE_MAX_AGE_SECS + MAX_FUTURE_SKEW_SECS),
        key_changed: false,
    };
    let (stored, key_changed) = inner
        .store
        .run(move |s| -> Result<_, crate::store::Error> {
            let mut record = record;
            let by_name = s.contact_by_username(&record.from_username)?;
            let by_fpr = s.contact_by_fingerprint(&record.fingerprint)?;
            record.key_changed = by_name.is_some_and(|c| c.fingerprint != record.fingerprint)
                || by_fpr.is_some_and(|c| c.username != record.from_username);
            Ok((s.add_received_request(&record)?, record.key_changed))
        })
        .await??;
    Ok(stored.then(|| Event::RequestReceived {
        request_id: Sensitive::new(request.request_id),
        from: Sensitive::new(request.from_username),
        fingerprint: Sensitive::new(fingerprint),
        key_changed,
    }))
}

async fn open_mail(
    inner: &Arc<Inner>,
    mailbox: &dyn Mailbox,
    item: &MailItem,
) -> Result<Option<(ConnectionRequest, PublicCert)>, NodeError> {
    let env = item.envelope.as_bytes();
    let mut issuers = Issuers(Vec::new());
    let mut scratch = HashSet::new();
    // First pass: learn the signer (fails: nobody is vouched for yet).
    let _ = handshake::open_request(
        env,
        &inner.identity,
        &mut issuers,
        &mut SeenSet(&mut scratch),
        Freshness::default(),
    );
    for fpr in issuers.0 {
        let Some(cert) = mailbox.certificate(&fpr).await? else {
            continue;
        };
        let mut seen = inner.table(|t| t.seen_requests.clone());
        let opened = handshake::open_request(
            env,
            &inner.identity,
            &cert,
            &mut SeenSet(&mut seen),
            Freshness::default(),
        );
        return match opened {
            Ok((req, _)) => {
                let fresh = inner.table(|t| t.seen_requests.insert(req.request_id));
                Ok(fresh.then_some((req, cert)))
            }
            Err(e) => Err(e.into()),
        };
    }
    Ok(None)
}
