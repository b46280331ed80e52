//! The file-transfer engine of one peer connection (PROTOCOL.md §14).
//!
//! [`FileLink`] is the shell around the sans-IO [`engine`]: it reads what the
//! engine needs from the store, performs what the engine decides (store updates,
//! source reads, lane writers, events) and returns the messages to send; the
//! connection driver ([`super::conn`]) seals and writes them. Every lookup checks
//! that the transfer belongs to this connection's contact and has the right
//! direction: a peer can only ever touch its own transfers.
//!
//! Durability: a chunk is written to the encrypted part file and synced before its
//! index is recorded in the store; the FileAck covering it is sent after that
//! ([`parts`]). The frame's receive state was recorded before the engine sees the
//! message (§7.4).

mod engine;
mod lanes;
mod parts;
mod receive;
mod window;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{broadcast, mpsc};

use self::engine::{
    Acked, Announce, Announced, LaneEnd, LanesIn, Outgoing, Progress, Throttle, accept_of, cancel,
    layout, offer_of,
};
use self::lanes::{LaneJob, LaneOut, LaneWork, stop_lane_tasks};
pub(crate) use self::lanes::{LaneRegistry, receive_lane};
pub(crate) use self::parts::{accept_incoming, drop_part, open_part};
use super::command::Command;
use super::store_handle::StoreHandle;
use super::{Dial, Event, NodeError};
use crate::files::{FileError, FilePolicy, Lane, Source, reason};
use crate::store::{ContactId, Direction, FileTransfer, TransferState};
use crate::transport::PeerAddress;
use crate::wire::{FileAccept, FileChunk, LaneKey, PeerMessage};

/// Shared settings of the file engines.
#[derive(Clone)]
pub struct FileCtx {
    /// What the receiver accepts; `streams` for the sender.
    pub policy: FilePolicy,
    /// Incoming lanes announced by peers (node-wide).
    pub(crate) lanes: LaneRegistry,
    /// To open lane streams.
    pub(crate) dial: Arc<dyn Dial>,
    /// The contact's address (lanes need it).
    pub(crate) peer: Option<PeerAddress>,
    /// Commands into this connection (lane readers and writers report here).
    pub(crate) own_cmds: mpsc::UnboundedSender<Command>,
}

impl std::fmt::Debug for FileCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileCtx")
    }
}

/// One connection's file engine.
pub struct FileLink {
    store: StoreHandle,
    events: broadcast::Sender<Event>,
    contact: ContactId,
    ctx: FileCtx,
    /// What we send.
    out: Outgoing,
    /// The file being sent on the session stream.
    source: Option<Arc<Source>>,
    /// The writers of the lanes of the transfer being sent.
    lanes_out: HashMap<[u8; 16], LaneOut>,
    /// Announced on this connection (offers sent, accepts sent).
    announced: Announced,
    /// Progress of what we receive.
    throttle: Throttle,
    /// Identifies this link's incoming lanes in the registry.
    link_id: u64,
    /// Incoming lanes announced on this connection: frames stored so far.
    lanes_in: LanesIn,
}

impl Drop for FileLink {
    fn drop(&mut self) {
        if self.out.sending().is_some() {
            // No runtime to give the spare counts back from here: they stay
            // counted (at most LANE_COUNT_BLOCK - 1 per lane, like a crash).
            let _ = stop_lane_tasks(std::mem::take(&mut self.lanes_out));
        }
        self.ctx.lanes.remove_owner(self.link_id);
    }
}

impl FileLink {
    /// A fresh engine for a connection with `contact`.
    pub fn new(
        store: StoreHandle,
        events: broadcast::Sender<Event>,
        contact: ContactId,
        ctx: FileCtx,
    ) -> FileLink {
        FileLink {
            store,
            events,
            contact,
            ctx,
            out: Outgoing::default(),
            source: None,
            lanes_out: HashMap::new(),
            announced: Announced::default(),
            throttle: Throttle::default(),
            link_id: {
                static NEXT: AtomicU64 = AtomicU64::new(1);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
            lanes_in: LanesIn::default(),
        }
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn report(&self, id: [u8; 16], p: Progress) {
        self.emit(Event::FileProgress {
            contact: self.contact,
            transfer: id,
            done: p.done,
            size: p.size,
        });
    }

    fn cancelled(&self, id: [u8; 16], r: u8, by_peer: bool) {
        self.emit(Event::FileCancelled {
            contact: self.contact,
            transfer: id,
            reason: r,
            by_peer,
        });
    }

    fn completed(&mut self, id: [u8; 16], size: u64, saved: Option<PathBuf>) {
        self.throttle.due(id, Instant::now(), true);
        self.throttle.forget(&id);
        self.report(id, Progress { done: size, size });
        self.emit(Event::FileCompleted {
            contact: self.contact,
            transfer: id,
            saved,
        });
    }

    /// On Ready and whenever the node says transfers changed: offers for our
    /// unfinished outgoing transfers, accepts for incoming ones the user or policy
    /// accepted, not yet announced on this connection.
    pub async fn announce(&mut self) -> Result<Vec<PeerMessage>, NodeError> {
        let contact = self.contact;
        let list = self
            .store
            .run(move |s| s.unfinished_transfers(contact))
            .await??;
        let mut out = Vec::new();
        for t in list {
            match self.announced.announce(&t) {
                None => {}
                Some(Announce::Offer) => out.push(offer_of(&t)),
                Some(Announce::Accept { empty: true }) => {
                    out.push(accept_of(t.transfer_id, &Default::default()));
                    out.extend(self.complete_empty(t.transfer_id).await?);
                }
                Some(Announce::Accept { empty: false }) => {
                    let id = t.transfer_id;
                    let have = self.store.run(move |s| s.chunks_have(&id)).await??;
                    out.push(accept_of(id, &have));
                }
            }
        }
        Ok(out)
    }

    /// A local cancel (the store is already updated): stop sending it, tell the peer.
    pub fn cancelled_locally(&mut self, id: [u8; 16], r: u8) -> Vec<PeerMessage> {
        self.stop(&id);
        vec![cancel(id, r)]
    }

    /// Stops `id` on this connection, lanes included.
    fn stop(&mut self, id: &[u8; 16]) {
        let spare = self.stop_sending(id);
        self.give_back(*id, spare);
    }

    /// Stops `id` on this connection, lanes included; returns the chunk
    /// counts its lane writers had reserved in the store and not used.
    fn stop_sending(&mut self, id: &[u8; 16]) -> u64 {
        if self.out.stop(id).is_none() {
            return 0;
        }
        self.source = None;
        stop_lane_tasks(std::mem::take(&mut self.lanes_out))
    }

    /// Gives `spare` reserved chunk counts of `id` back to the store, in the
    /// background (best effort: a failure leaves `chunks_sent` high, never
    /// low).
    fn give_back(&self, id: [u8; 16], spare: u64) {
        if spare == 0 {
            return;
        }
        let store = self.store.clone();
        tokio::spawn(async move {
            let _ = store.run(move |s| s.return_chunks_sent(&id, spare)).await;
        });
    }

    /// Handles the file messages of a batch of frames, in order. Returns the
    /// messages to send back.
    pub async fn on_messages(
        &mut self,
        msgs: Vec<PeerMessage>,
    ) -> Result<Vec<PeerMessage>, NodeError> {
        let mut out = Vec::new();
        let mut chunks: Vec<FileChunk> = Vec::new();
        for m in msgs {
            if let PeerMessage::FileChunk(c) = m {
                chunks.push(c);
                continue;
            }
            // Keep order: chunks before this message are stored first.
            if !chunks.is_empty() {
                out.extend(self.on_chunks(std::mem::take(&mut chunks), true).await?);
            }
            match m {
                PeerMessage::FileOffer(o) => out.extend(self.on_offer(o).await?),
                PeerMessage::FileAccept(a) => out.extend(self.on_accept(a).await?),
                PeerMessage::FileAck { transfer_id, next } => {
                    out.extend(self.on_ack(transfer_id, next).await?)
                }
                PeerMessage::FileDone { transfer_id } => {
                    out.extend(self.on_done(transfer_id).await?)
                }
                PeerMessage::FileLane { lane_id, key } => self.on_lane(lane_id, key),
                PeerMessage::FileLaneAck { lane_id, count } => self.on_lane_ack(lane_id, count)?,
                PeerMessage::FileCancel {
                    transfer_id,
                    reason: r,
                } => self.on_cancel(transfer_id, r).await?,
                _ => {}
            }
        }
        if !chunks.is_empty() {
            out.extend(self.on_chunks(chunks, true).await?);
        }
        Ok(out)
    }

    /// The transfer `id` if it is this contact's, in `direction`.
    async fn lookup(
        &self,
        id: [u8; 16],
        direction: Direction,
    ) -> Result<Option<FileTransfer>, NodeError> {
        let contact = self.contact;
        let t = self.store.run(move |s| s.transfer(&id)).await??;
        Ok(t.filter(|t| t.contact == contact && t.direction == direction))
    }

    async fn on_accept(&mut self, a: FileAccept) -> Result<Vec<PeerMessage>, NodeError> {
        let id = a.transfer_id;
        if self.out.has(&id) {
            return Ok(Vec::new()); // already sending it on this connection
        }
        let Some(t) = self.lookup(id, Direction::Outgoing).await? else {
            return Ok(vec![cancel(id, reason::UNKNOWN)]);
        };
        match t.state {
            TransferState::Offered | TransferState::Active => {}
            TransferState::Completed => return Ok(Vec::new()),
            _ => return Ok(vec![cancel(id, t.reason.unwrap_or(reason::UNSPECIFIED))]),
        }
        if let Err(r) = self.out.accepted(id, &a.have, layout(&t).chunks()) {
            return self.fail_outgoing(id, r).await;
        }
        if t.state == TransferState::Offered {
            self.store
                .run(move |s| s.set_transfer_state(&id, TransferState::Active))
                .await??;
        }
        self.start_next().await
    }

    /// Starts sending the next queued transfer if none is being sent.
    async fn start_next(&mut self) -> Result<Vec<PeerMessage>, NodeError> {
        let mut out = Vec::new();
        while let Some((id, have)) = self.out.next_queued() {
            let Some(t) = self.lookup(id, Direction::Outgoing).await? else {
                continue;
            };
            let lay = layout(&t);
            let path = t.local_path.clone().map(PathBuf::from);
            let src = tokio::task::spawn_blocking(move || match path {
                Some(p) => Source::open(&p, lay),
                None => Err(FileError::SourceChanged),
            })
            .await
            .map_err(|_| NodeError::Internal {
                what: "a file task panicked",
            })?;
            let Ok(source) = src else {
                out.extend(self.fail_outgoing(id, reason::SOURCE_CHANGED).await?);
                continue;
            };
            let streams = self.ctx.policy.streams as u64;
            let from = self
                .ctx
                .policy
                .lanes_from
                .div_ceil(u64::from(lay.chunk_size).max(1));
            let n = self.out.lanes_for(lay.chunks() - have.len(), streams, from);
            let mut lane_ids = Vec::new();
            if n > 0
                && let Some(addr) = self.ctx.peer.clone()
            {
                let job = LaneJob {
                    dial: self.ctx.dial.clone(),
                    addr,
                    transfer_id: id,
                    work: Arc::new(Mutex::new(LaneWork::new(lay.chunks(), have.clone()))),
                    source: Arc::new(source),
                    report: self.ctx.own_cmds.clone(),
                    store: self.store.clone(),
                };
                for _ in 0..n {
                    let (lane, key) = Lane::generate();
                    let lane_id = lane.id();
                    out.push(PeerMessage::FileLane {
                        lane_id,
                        key: LaneKey::new(*key),
                    });
                    self.lanes_out.insert(lane_id, job.spawn(lane));
                    lane_ids.push(lane_id);
                }
                tracing::debug!(lanes = n, "sending a transfer on lanes");
                self.out.start(id, lay, have, &lane_ids, Instant::now());
                self.source = None;
            } else {
                self.out.start(id, lay, have, &[], Instant::now());
                self.source = Some(Arc::new(source));
            }
        }
        Ok(out)
    }

    async fn fail_outgoing(&mut self, id: [u8; 16], r: u8) -> Result<Vec<PeerMessage>, NodeError> {
        self.stop(&id);
        self.store
            .run(move |s| s.finish_transfer(&id, TransferState::Failed, Some(r)))
            .await??;
        self.cancelled(id, r, false);
        Ok(vec![cancel(id, r)])
    }

    async fn on_ack(&mut self, id: [u8; 16], next: u64) -> Result<Vec<PeerMessage>, NodeError> {
        match self.out.on_ack(id, next, Instant::now()) {
            Acked::Ignored | Acked::Confirmed(None) => Ok(Vec::new()),
            Acked::Confirmed(Some(p)) => {
                self.report(id, p);
                Ok(Vec::new())
            }
            Acked::Protocol => self.fail_outgoing(id, reason::PROTOCOL).await,
        }
    }

    async fn on_done(&mut self, id: [u8; 16]) -> Result<Vec<PeerMessage>, NodeError> {
        // Only the receiver's FileDone (for our outgoing transfer) means anything.
        let Some(t) = self.lookup(id, Direction::Outgoing).await? else {
            return Ok(Vec::new());
        };
        if !matches!(t.state, TransferState::Offered | TransferState::Active) {
            return Ok(Vec::new());
        }
        // The lanes counted their chunks before writing them: whoever sees
        // Completed sees them too, and not the counts they reserved and did
        // not use (given back in the same store call).
        let spare = self.stop_sending(&id);
        self.store
            .run(move |s| -> Result<(), crate::store::Error> {
                if spare > 0 {
                    s.return_chunks_sent(&id, spare)?;
                }
                s.set_transfer_state(&id, TransferState::Completed)
            })
            .await??;
        self.completed(id, t.size, None);
        self.start_next().await
    }

    async fn on_cancel(&mut self, id: [u8; 16], r: u8) -> Result<(), NodeError> {
        let contact = self.contact;
        let changed = self
            .store
            .run(move |s| -> Result<bool, crate::store::Error> {
                let Some(t) = s.transfer(&id)? else {
                    return Ok(false);
                };
                if t.contact != contact
                    || !matches!(t.state, TransferState::Offered | TransferState::Active)
                {
                    return Ok(false);
                }
                drop_part(s, &id)?;
                s.finish_transfer(&id, TransferState::Cancelled, Some(r))?;
                Ok(true)
            })
            .await??;
        if changed {
            self.stop(&id);
            self.throttle.forget(&id);
            self.cancelled(id, r, true);
        }
        Ok(())
    }

    /// Whether a chunk could be sent now (a transfer is being sent on the
    /// session stream and the window has room).
    pub fn wants_to_send(&self) -> bool {
        self.out.wants_to_send()
    }

    /// Sender: the receiver stored `count` frames of a lane.
    fn on_lane_ack(&mut self, lane_id: [u8; 16], count: u64) -> Result<(), NodeError> {
        let Some(l) = self.lanes_out.get(&lane_id) else {
            return Ok(());
        };
        let sent = l.sent.load(Ordering::Acquire);
        let sent_at = (count <= sent).then(|| l.acknowledged(count)).flatten();
        let Some((permits, progress)) =
            self.out
                .on_lane_ack(lane_id, count, sent, sent_at, Instant::now())?
        else {
            return Ok(());
        };
        l.permits.add_permits(permits);
        if let (Some(p), Some(id)) = (progress, self.out.sending()) {
            self.report(id, p);
        }
        Ok(())
    }

    /// Sender: a lane writer ended (`ok`: every frame it wrote was acknowledged).
    pub async fn lane_done(
        &mut self,
        lane_id: [u8; 16],
        ok: bool,
    ) -> Result<Vec<PeerMessage>, NodeError> {
        if self.out.sending().is_none() || !self.lanes_out.contains_key(&lane_id) {
            return Ok(Vec::new());
        }
        match self.out.lane_ended(lane_id, ok, Instant::now()) {
            Some(LaneEnd::Resync) => {
                self.resync();
                self.announce().await
            }
            None | Some(LaneEnd::Wait) | Some(LaneEnd::Settle) => Ok(Vec::new()),
        }
    }

    /// Sender: forget the transfer on this connection so that the next
    /// [`FileLink::announce`] offers it again; the receiver's FileAccept then
    /// restarts it with the missing chunks.
    fn resync(&mut self) {
        let Some(s) = self.out.take() else {
            return;
        };
        tracing::debug!("re-synchronising a transfer with the receiver");
        self.announced.forget(&s.id);
        self.source = None;
        let spare = stop_lane_tasks(std::mem::take(&mut self.lanes_out));
        self.give_back(s.id, spare);
    }

    /// Called on the heartbeat: lanes that finished long ago without the
    /// receiver's FileDone are re-synchronised (offers to send follow).
    pub async fn tick(&mut self) -> Result<Vec<PeerMessage>, NodeError> {
        if self.out.settle_expired(Instant::now()) {
            self.resync();
            return self.announce().await;
        }
        Ok(Vec::new())
    }

    /// Reads up to `max` next chunks of the transfer being sent (within the
    /// window). Returns the transfer id, the messages (chunks, then FileDone
    /// after the last one) and how many chunks they hold.
    pub async fn next_chunks(
        &mut self,
        max: usize,
    ) -> Result<Option<([u8; 16], Vec<PeerMessage>, u64)>, NodeError> {
        let (Some((id, idx)), Some(src)) = (
            self.out.next_indexes(max, Instant::now()),
            self.source.clone(),
        ) else {
            return Ok(None);
        };
        let read = tokio::task::spawn_blocking(move || {
            idx.iter()
                .map(|&i| src.read_chunk(i).map(|d| (i, d)))
                .collect::<Result<Vec<_>, FileError>>()
        })
        .await
        .map_err(|_| NodeError::Internal {
            what: "a file task panicked",
        })?;
        let Ok(data) = read else {
            let msgs = self.fail_outgoing(id, reason::SOURCE_CHANGED).await?;
            return Ok(Some((id, msgs, 0)));
        };
        let count = data.len() as u64;
        let mut msgs: Vec<PeerMessage> = data
            .into_iter()
            .map(|(index, data)| {
                PeerMessage::FileChunk(FileChunk {
                    transfer_id: id,
                    index,
                    data,
                })
            })
            .collect();
        if let Some(id) = self.out.done_due() {
            msgs.push(PeerMessage::FileDone { transfer_id: id });
        }
        Ok(Some((id, msgs, count)))
    }

    /// After the sender's FileDone: the transfer waits for the receiver's
    /// FileDone in the store; the window is no longer needed, so the next
    /// transfer starts.
    pub async fn after_write(&mut self) -> Result<Vec<PeerMessage>, NodeError> {
        if self.out.release_done() {
            self.source = None;
            return self.start_next().await;
        }
        Ok(Vec::new())
    }
}
