//! The node's shared state and the glue between the connection registry
//! (`registry.rs`, sans-IO) and the tasks that carry connections: claims,
//! releases, wake-ups, and running one connection over a session.

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use crate::error::HasKind;
use crate::identity::Identity;
use crate::store::{ContactId, Direction};
use crate::transport::{BoxedStream, PeerAddress, Transport};
use crate::wire::Text;

use super::command::Command;
use super::conn::{self, ConnCtx, Outcome, Timers};
use super::mailbox::Mailbox;
use super::peer::{OutText, Peer, PeerParams, Side};
use super::records::restore;
use super::registry::{Inbound, Registry, SlotId};
use super::store_handle::StoreHandle;
use super::{Event, NodeConfig, NodeError, files};

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

/// The IO half of a registry slot: how to reach its connection task.
struct SlotIo {
    cmds: mpsc::UnboundedSender<Command>,
    cancel: CancellationToken,
}

/// An exclusive claim on a contact's session, held by the task that runs
/// (or dials) its connection until [`Inner::release`].
pub(super) struct Claim {
    pub(super) slot: SlotId,
    pub(super) cancel: CancellationToken,
    pub(super) cmds: mpsc::UnboundedReceiver<Command>,
}

/// Mutable state of the node, under one short-held lock.
#[derive(Default)]
pub(super) struct Tables {
    /// Which connection holds each session (sans-IO).
    pub(super) registry: Registry,
    io: HashMap<SlotId, SlotIo>,
    /// Per contact: wakes its dial loop (new work, or a listener's
    /// connection ended).
    wakes: HashMap<ContactId, Arc<Notify>>,
    /// Per contact: a slot was released (for a preempting inbound).
    released: HashMap<ContactId, Arc<Notify>>,
    pub(super) dialers: HashSet<ContactId>,
    pub(super) seen_mail: HashSet<u64>,
    /// Request ids seen at receipt, with their expiry (pruned by housekeeping).
    pub(super) seen_requests: HashMap<[u8; 16], u64>,
    /// Contacts whose connections keep failing, and how.
    pub(super) trouble: HashMap<ContactId, super::dial::Trouble>,
    /// Accept envelopes still to be delivered, per contact, with the id of
    /// the session each created.
    pub(super) accepts: HashMap<ContactId, ([u8; 16], String)>,
    /// SHA-256 of Accept envelopes that established a session (re-delivery).
    pub(super) accepted: HashSet<[u8; 32]>,
}

/// Everything the node's tasks share.
pub(super) struct Inner {
    pub(super) store: StoreHandle,
    pub(super) dial: Arc<dyn Dial>,
    pub(super) lanes: files::LaneRegistry,
    pub(super) identity: Identity,
    pub(super) address: PeerAddress,
    pub(super) config: NodeConfig,
    pub(super) events: broadcast::Sender<Event>,
    pub(super) mailbox: Option<Arc<dyn Mailbox>>,
    pub(super) tables: Mutex<Tables>,
    pub(super) tasks: Mutex<JoinSet<()>>,
    /// Held for a whole mailbox poll: one poll at a time, so an explicit
    /// poll returns only after every item fetched so far was handled (a
    /// background poll's in-flight items included).
    pub(super) polling: tokio::sync::Mutex<()>,
    /// Permits for OpenPGP work ([`Inner::openpgp`]).
    pub(super) openpgp: tokio::sync::Semaphore,
    /// Every group's verified state (PROTOCOL.md §20).
    pub(super) groups: super::groups::Groups,
    /// Limits on group join streams (PROTOCOL.md §20.13).
    pub(super) joins: super::group_links::JoinGate,
    pub(super) shutdown: CancellationToken,
}

/// OpenPGP jobs (opening or sealing an envelope) that may run at once.
pub(super) const OPENPGP_JOBS: usize = 2;

impl Inner {
    /// Events for a session that ended.
    pub(super) fn report_ended(
        &self,
        contact: ContactId,
        ended: crate::store::Ended,
        by_peer: bool,
    ) {
        self.set_trouble(contact, None);
        for message in ended.failed {
            let _ = self.events.send(Event::MessageFailed { contact, message });
        }
        let _ = self.events.send(Event::SessionEnded { contact, by_peer });
    }

    /// A connection on session `session_id` became Ready: the peer's Hello
    /// proves it holds that session, so the Accept that created it arrived.
    /// Forgotten only if that session is still the contact's current one: a
    /// re-key may have replaced it (and its Accept) meanwhile.
    pub(super) fn accept_delivered(self: &Arc<Self>, contact: ContactId, session_id: [u8; 16]) {
        let mine = self.table(|t| match t.accepts.get(&contact) {
            Some((sid, _)) if *sid == session_id => t.accepts.remove(&contact).is_some(),
            _ => false,
        });
        if !mine {
            return;
        }
        let inner = self.clone();
        self.spawn(async move {
            let forgot = inner
                .store
                .run(move |s| -> Result<bool, crate::store::Error> {
                    let current = s.session_for_contact(contact)?.map(|r| r.session_id);
                    if current != Some(session_id) {
                        return Ok(false);
                    }
                    s.delete_pending_accept(contact)
                })
                .await;
            match forgot {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::debug!(kind = ?e.kind(), "forgetting a delivered accept failed")
                }
                Err(e) => {
                    tracing::debug!(kind = ?e.kind(), "forgetting a delivered accept failed")
                }
            }
        });
    }

    /// Runs OpenPGP work (opening or sealing an envelope) on the blocking
    /// pool, at most [`OPENPGP_JOBS`] at a time: envelopes from strangers
    /// cost bounded CPU and never stall the async workers that Arti and the
    /// peer connections run on (SECURITY-2026-11 M2).
    pub(super) async fn openpgp<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Inner) -> R + Send + 'static,
    ) -> Result<R, NodeError> {
        let _permit = self
            .openpgp
            .acquire()
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .map_err(|_| NodeError::Internal {
                what: "an OpenPGP task panicked",
            })
    }

    pub(super) fn table<R>(&self, f: impl FnOnce(&mut Tables) -> R) -> R {
        let mut t = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut t)
    }

    pub(super) fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        while set.try_join_next().is_some() {}
        if !self.shutdown.is_cancelled() {
            set.spawn(fut);
        }
    }

    pub(super) fn wake_for(&self, contact: ContactId) -> Arc<Notify> {
        self.table(|t| t.wakes.entry(contact).or_default().clone())
    }

    /// Wakes `contact`'s dial loop (it dials at once if it may).
    pub(super) fn wake(&self, contact: ContactId) {
        self.wake_for(contact).notify_one();
    }

    pub(super) fn ensure_dialer(self: &Arc<Self>, contact: ContactId) {
        if self.table(|t| t.dialers.insert(contact)) {
            self.spawn(super::dial::dial_loop(self.clone(), contact));
        }
    }

    /// The command channel of `contact`'s current connection, if any.
    pub(super) fn cmds(&self, contact: ContactId) -> Option<mpsc::UnboundedSender<Command>> {
        self.table(|t| {
            let slot = t.registry.slot_of(contact)?;
            t.io.get(&slot).map(|io| io.cmds.clone())
        })
    }

    /// What is wrong with `contact`'s connection, if anything.
    pub(super) fn trouble(&self, contact: ContactId) -> Option<super::dial::Trouble> {
        self.table(|t| t.trouble.get(&contact).copied())
    }

    /// Records (or clears) what is wrong with `contact`'s connection.
    pub(super) fn set_trouble(&self, contact: ContactId, trouble: Option<super::dial::Trouble>) {
        self.table(|t| match trouble {
            Some(x) => {
                t.trouble.insert(contact, x);
            }
            None => {
                t.trouble.remove(&contact);
            }
        });
    }

    /// Closes `contact`'s live connection, if any: its session was just
    /// replaced. The slot stops counting at once (it never wins a
    /// tie-break against the new session's connection).
    pub(super) fn drop_connection(&self, contact: ContactId) {
        let cancel = self.table(|t| {
            let slot = t.registry.slot_of(contact)?;
            t.registry.leaving(slot);
            t.io.get(&slot).map(|io| io.cancel.clone())
        });
        if let Some(c) = cancel {
            c.cancel();
        }
    }

    /// Sends `cmd` to `contact`'s connection; wakes its dialer if none runs.
    pub(super) fn command(&self, contact: ContactId, cmd: Command) {
        match self.cmds(contact) {
            Some(tx) if tx.send(cmd).is_ok() => {}
            _ => self.wake(contact),
        }
    }

    /// The IO half of a freshly claimed slot.
    fn open_slot(t: &mut Tables, slot: SlotId, shutdown: &CancellationToken) -> Claim {
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = shutdown.child_token();
        t.io.insert(
            slot,
            SlotIo {
                cmds: tx,
                cancel: cancel.clone(),
            },
        );
        Claim {
            slot,
            cancel,
            cmds: rx,
        }
    }

    /// A dial loop may start a connection: a claim if the contact has no
    /// connection (or dial) yet.
    pub(super) fn try_dial(&self, contact: ContactId) -> Option<Claim> {
        self.table(|t| {
            let slot = t.registry.try_dial(contact)?;
            Some(Self::open_slot(t, slot, &self.shutdown))
        })
    }

    /// The dialed stream exists; `false` if the claim was lost meanwhile.
    pub(super) fn stream_opened(&self, claim: &Claim) -> bool {
        self.table(|t| t.registry.stream_opened(claim.slot))
    }

    /// The connection of `claim` has stopped. A listener's connection wakes
    /// the dial loop (we try to reconnect); a dialer's own release does not
    /// (it waits its backoff: PROTOCOL.md §10).
    pub(super) fn release(&self, claim: Claim) {
        let contact = claim.slot.contact();
        let (side, released) = self.table(|t| {
            t.io.remove(&claim.slot);
            let side = t.registry.release(claim.slot);
            let released = t.released.entry(contact).or_default().clone();
            (side, released)
        });
        drop(claim);
        released.notify_waiters();
        if side == Some(Side::Listener) {
            self.wake(contact);
        }
    }

    /// An inbound connection proved it holds the session of `contact`:
    /// claim the session, preempting or yielding to an existing connection
    /// as the registry decides (PROTOCOL.md §10). A preempted connection is
    /// cancelled and its release awaited, within the Hello timeout.
    pub(super) async fn claim_inbound(&self, contact: ContactId, peer_fpr: &str) -> Option<Claim> {
        let mine = self.identity.fingerprint().to_hex();
        let deadline = tokio::time::Instant::now() + self.config.hello_timeout;
        loop {
            let released = self.table(|t| t.released.entry(contact).or_default().clone());
            let notified = released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let decision = self.table(|t| {
                match t.registry.inbound(
                    contact,
                    &mine,
                    peer_fpr,
                    std::time::Instant::now(),
                    self.config.crossing_window,
                ) {
                    Inbound::Claimed(slot) => Ok(Self::open_slot(t, slot, &self.shutdown)),
                    Inbound::Yield => Err(None),
                    Inbound::Preempt(old) => match t.io.get(&old) {
                        Some(io) => Err(Some(io.cancel.clone())),
                        None => {
                            // Not reachable (slots and their IO change together);
                            // refuse rather than wait for a release that never comes.
                            t.registry.unreserve(contact);
                            Err(None)
                        }
                    },
                }
            });
            match decision {
                Ok(claim) => {
                    tracing::debug!("an inbound connection holds the session");
                    return Some(claim);
                }
                Err(None) => {
                    tracing::debug!("an inbound connection lost the tie-break to our own");
                    return None;
                }
                Err(Some(cancel)) => {
                    tracing::debug!("an inbound connection preempts the current one");
                    cancel.cancel();
                    if tokio::time::timeout_at(deadline, notified).await.is_err() {
                        tracing::debug!("a preempted connection did not stop in time");
                        self.table(|t| t.registry.unreserve(contact));
                        self.wake(contact);
                        return None;
                    }
                }
            }
        }
    }

    /// Runs one connection with the session of `claim.contact`.
    pub(super) async fn run_conn<S>(
        self: &Arc<Self>,
        framed: &mut Framed<S, LengthDelimitedCodec>,
        mut claim: Claim,
        side: Side,
        first: Option<Bytes>,
    ) -> Outcome
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let contact = claim.slot.contact();
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
        let session_id = rec.session_id;
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
        let Some(own_cmds) = self.table(|t| t.io.get(&claim.slot).map(|io| io.cmds.clone())) else {
            self.release(claim);
            return Outcome::Closed { was_ready: false };
        };
        let ctx = ConnCtx {
            node: Arc::downgrade(self),
            store: self.store.clone(),
            events: self.events.clone(),
            contact,
            on_ready: {
                let inner = Arc::downgrade(self);
                let slot = claim.slot;
                Arc::new(move || {
                    if let Some(i) = inner.upgrade() {
                        i.table(|t| t.registry.ready(slot, std::time::Instant::now()));
                    }
                })
            },
            on_leaving: {
                let inner = Arc::downgrade(self);
                let slot = claim.slot;
                Arc::new(move || {
                    if let Some(i) = inner.upgrade() {
                        i.table(|t| t.registry.leaving(slot));
                    }
                })
            },
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
        let started = std::time::Instant::now();
        // A panic under the connection (our code or a dependency's stream)
        // costs this connection, not the contact: without this the dial loop
        // or listener task died with it and the claim stayed held, so the
        // contact was unreachable until a restart.
        let driven = AssertUnwindSafe(conn::drive(
            framed,
            peer,
            first,
            &ctx,
            &mut claim.cmds,
            &cancel,
        ))
        .catch_unwind()
        .await;
        let outcome = driven.unwrap_or_else(|_| {
            tracing::error!(
                ?side,
                "a peer connection panicked; it is dropped, the session is kept"
            );
            Outcome::Failed {
                was_ready: false,
                error: NodeError::Internal {
                    what: "a connection panicked",
                },
            }
        });
        let secs = started.elapsed().as_secs();
        match &outcome {
            Outcome::Failed { error, was_ready } => tracing::debug!(
                ?side, was_ready, secs, kind = ?error.kind(), "peer connection failed"
            ),
            Outcome::Closed { was_ready } => {
                tracing::debug!(?side, was_ready, secs, "peer connection closed")
            }
            Outcome::Ended => tracing::debug!(?side, secs, "peer connection ended its session"),
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
            self.accept_delivered(contact, session_id);
        }
        self.release(claim);
        outcome
    }
}
