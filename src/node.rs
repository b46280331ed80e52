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
//!   [`peer::Peer`]): at most one per session, as the sans-IO connection
//!   registry decides (PROTOCOL.md §10's tie-break);
//! * a **mailbox poller** turning ConnectionRequests into
//!   [`Event::RequestReceived`].
//!
//! # Layout
//!
//! | file | owns |
//! |---|---|
//! | `node.rs` | this map, [`Node::start`] |
//! | `node/api.rs` | [`NodeHandle`]: messages, receipts, end, presence, shutdown |
//! | `node/requests.rs` | sending, accepting, rejecting requests; opening their answers |
//! | `node/file_api.rs` | [`NodeHandle`]: offering, accepting, cancelling, saving files |
//! | `node/files.rs` | the transfer engine of one connection, lanes, part files |
//! | `node/groups.rs` | groups (§20): state, sequencing, fan-out, delivery, pulls, invites |
//! | `node/group_api.rs` | [`NodeHandle`]: creating, inviting, sending, changing groups |
//! | `node/queries.rs` | what front ends read (contacts, history, settings) |
//! | `node/registry.rs` | which connection holds each session (sans-IO, table tests) |
//! | `node/inner.rs` | shared state; claims and releases around the registry; running one connection |
//! | `node/inbound.rs` | accepting peer streams (listener side of §10) |
//! | `node/dial.rs` | dial loops and their backoff (connector side of §10) |
//! | `node/conn.rs` | one connection's task: reader, writer, timers over [`peer::Peer`] |
//! | `node/peer.rs` | the sans-IO session protocol of one connection |
//! | `node/command.rs` | commands from the API to a running connection |
//! | `node/poller.rs`, `node/mailbox.rs` | the Handshaker mailbox: polling it, and the trait |
//! | `node/housekeeping.rs` | expiries of requests, accepts and replay records (§11) |
//! | `node/error.rs`, `node/event.rs`, `node/config.rs`, `node/records.rs` | errors, events, settings, session records |
//!
//! The [`NodeHandle`] is the API the control socket and CLI build on:
//! [`NodeHandle::send_text`], [`NodeHandle::request`], [`NodeHandle::accept`],
//! [`NodeHandle::end`], [`NodeHandle::events`], [`NodeHandle::shutdown`].
//! Identifiers never reach a log line: log events carry error kinds only.

mod api;
pub mod command;
mod config;
pub mod conn;
mod dial;
mod error;
mod event;
mod file_api;
pub mod files;
mod group_api;
mod group_links;
mod groups;
mod housekeeping;
mod inbound;
mod inner;
pub mod mailbox;
pub mod peer;
mod poller;
mod queries;
mod records;
mod registry;
mod requests;
pub mod store_handle;
pub mod trust;

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::handshake::HandshakeError;
use crate::identity::Identity;
use crate::store::{ContactId, Store};
use crate::transport::{Listener, Transport};

use inner::{Inner, Tables};
use store_handle::StoreHandle;

// ---------- public exports ----------
pub use api::MESSAGE_TOO_LONG;
pub use config::{JoinLimits, NodeConfig};
pub use dial::Trouble;
pub use error::NodeError;
pub use event::{Event, ReceivedRequest};
pub use group_api::{INVITE_VALIDITY_SECS, group_hex};
pub use group_links::{CreatedLink, GroupLink, JoinStep};
pub use groups::{GroupEvent, parse_role, role_name};
pub use housekeeping::Swept;
pub(crate) use inner::Dial;
pub use mailbox::{MEMORY_HANDSHAKER, MailBatch, MailItem, Mailbox, MailboxError, MemoryMailbox};
pub use queries::ContactSummary;
pub use trust::{Pinned, TrustError};

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
        let joins = group_links::JoinGate::new(&config.joins);
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
            polling: tokio::sync::Mutex::new(()),
            openpgp: tokio::sync::Semaphore::new(inner::OPENPGP_JOBS),
            groups: groups::Groups::default(),
            joins,
            shutdown: CancellationToken::new(),
        });
        // Expired requests and accepts go before anything is dialed.
        housekeeping::sweep(&inner, crate::time::now_secs()).await?;
        groups::load(&inner).await?;
        inner.spawn(inbound::accept_loop(inner.clone(), listener));
        // Each Accept belongs to the contact's current session (accepting
        // stores both at once; a re-key replaces both).
        let accepts = inner
            .store
            .run(|s| -> Result<Vec<_>, crate::store::Error> {
                let mut out = Vec::new();
                for (contact, env) in s.pending_accepts()? {
                    if let Some(rec) = s.session_for_contact(contact)? {
                        out.push((contact, (rec.session_id, env)));
                    }
                }
                Ok(out)
            })
            .await??;
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
        inner.spawn(housekeeping::housekeeping_loop(inner.clone()));
        if inner.mailbox.is_some() {
            inner.spawn(poller::mailbox_loop(inner.clone()));
        }
        Ok(NodeHandle { inner })
    }
}
