//! The file-transfer engine of one peer connection (PROTOCOL.md §14).
//!
//! [`FileLink`] turns incoming file messages into store and part-file updates and the
//! messages to answer with, and produces the outgoing chunk stream within
//! [`FILE_WINDOW`]. The connection driver ([`super::conn`]) seals and writes what it
//! returns. Every lookup checks that the transfer belongs to this connection's contact
//! and has the right direction: a peer can only ever touch its own transfers.
//!
//! Durability: a chunk is written to the encrypted part file and synced before its
//! index joins the stored `have` set; the FileAck covering it is sent after that. The
//! frame's receive state was recorded before the engine sees the message (§7.4).

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{Notify, Semaphore, broadcast, mpsc};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use zeroize::Zeroizing;

use super::command::Command;
use super::peer::PeerError;
use super::store_handle::StoreHandle;
use super::{Dial, Event, NodeError};
use crate::error::HasKind;
use crate::files::{
    CHUNK_SIZE, FILE_WINDOW, FileError, FilePolicy, Lane, Layout, PartFile, Source, new_part,
    reason, sanitize, unused_in,
};
use crate::limits::MAX_RESUME_RANGES;
use crate::store::{
    ChunkSet, ContactId, Direction, FileKind, FileTransfer, NewTransfer, Store, TransferState,
};
use crate::transport::{BoxedStream, PeerAddress};
use crate::wire::{FileAccept, FileChunk, FileOffer, LaneKey, Media, PeerMessage};

/// Progress events are sent at most this often per transfer.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Incoming lanes a connection may have announced and not yet used.
const MAX_PENDING_LANES: usize = 16;
/// Lane chunk batches a lane reader may have waiting at the connection.
const LANE_BATCHES: usize = 4;
/// After every lane finished, how long to wait for the receiver's FileDone
/// (without acknowledgement progress) before re-synchronising.
const LANE_SETTLE: Duration = Duration::from_secs(30);

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

/// An announced incoming lane, waiting for its stream.
pub(crate) struct LaneEntry {
    key: Zeroizing<[u8; 32]>,
    id: [u8; 16],
    cmds: mpsc::UnboundedSender<Command>,
    owner: u64,
}

/// Incoming lanes by id (PROTOCOL.md §14.3), shared by the node's connections
/// and its listener.
#[derive(Clone, Default)]
pub(crate) struct LaneRegistry(Arc<(Mutex<LaneMap>, Notify)>);

type LaneMap = HashMap<[u8; 16], LaneEntry>;

impl LaneRegistry {
    fn map(&self) -> std::sync::MutexGuard<'_, LaneMap> {
        self.0.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn insert(&self, e: LaneEntry) -> bool {
        let mut m = self.map();
        if m.values().filter(|x| x.owner == e.owner).count() >= MAX_PENDING_LANES {
            return false;
        }
        m.insert(e.id, e);
        drop(m);
        self.0.1.notify_waiters();
        true
    }

    /// Takes the lane `id` (single use), waiting up to `wait` for the
    /// session message announcing it (it may arrive after the stream).
    pub(crate) async fn take(&self, id: [u8; 16], wait: Duration) -> Option<LaneEntry> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.0.1.notified();
            if let Some(e) = self.map().remove(&id) {
                return Some(e);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    fn remove_owner(&self, owner: u64) {
        self.map().retain(|_, e| e.owner != owner);
    }
}

/// Reads a lane stream (its first frame already read) and hands its chunks,
/// in batches, to the connection that announced it.
pub(crate) async fn receive_lane(
    entry: LaneEntry,
    first: Bytes,
    mut framed: Framed<BoxedStream, LengthDelimitedCodec>,
    idle: Duration,
) -> Result<(), NodeError> {
    let mut lane = Lane::new(entry.id, &entry.key);
    drop(entry.key);
    let permits = Arc::new(Semaphore::new(LANE_BATCHES));
    let open = |lane: &mut Lane, body: &[u8]| -> Result<FileChunk, NodeError> {
        let pt = lane.open(body).map_err(|_| NodeError::Invalid {
            what: "lane frame",
            reason: "does not open",
        })?;
        match PeerMessage::decode(&pt) {
            Ok(PeerMessage::FileChunk(c)) => Ok(c),
            _ => Err(NodeError::Invalid {
                what: "lane frame",
                reason: "not a file chunk",
            }),
        }
    };
    let mut next = Some(first);
    while let Some(body) = next.take() {
        let mut chunks = vec![open(&mut lane, &body)?];
        while chunks.len() < 16 {
            match framed.next().now_or_never() {
                Some(Some(Ok(b))) => chunks.push(open(&mut lane, &b)?),
                Some(Some(Err(e))) => return Err(NodeError::Stream { source: e }),
                _ => break,
            }
        }
        let permit = permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| NodeError::ShuttingDown)?;
        entry
            .cmds
            .send(Command::LaneChunks {
                lane_id: entry.id,
                chunks,
                permit,
            })
            .map_err(|_| NodeError::ShuttingDown)?;
        next = match tokio::time::timeout(idle, framed.next()).await {
            Err(_) => return Err(NodeError::Timeout { what: "lane frame" }),
            Ok(None) => None,
            Ok(Some(Err(e))) => return Err(NodeError::Stream { source: e }),
            Ok(Some(Ok(b))) => Some(b.freeze()),
        };
    }
    Ok(())
}

/// Next chunk indexes for the lanes of one transfer (work shared by all lanes).
struct LaneWork {
    next: u64,
    n: u64,
    have: ChunkSet,
}

impl LaneWork {
    fn take(&mut self) -> Option<u64> {
        while self.next < self.n && self.have.contains(self.next) {
            self.next += 1;
        }
        (self.next < self.n).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

/// One outgoing lane of the transfer being sent.
struct LaneOut {
    permits: Arc<Semaphore>,
    acked: u64,
    finished: Option<bool>,
    task: tokio::task::JoinHandle<()>,
    /// Chunks the writer wrote (it counts), and how many are in the store.
    sent: Arc<AtomicU64>,
    recorded: u64,
}

/// Writes chunks taken from `work` to a new isolated stream, within the
/// window of `permits`; reports how many it sent.
#[allow(clippy::too_many_arguments)]
async fn lane_writer(
    dial: Arc<dyn Dial>,
    addr: PeerAddress,
    mut lane: Lane,
    transfer_id: [u8; 16],
    work: Arc<Mutex<LaneWork>>,
    source: Arc<Source>,
    permits: Arc<Semaphore>,
    report: mpsc::UnboundedSender<Command>,
    sent: Arc<AtomicU64>,
) {
    let lane_id = lane.id();
    let count = sent.clone();
    let result = async move {
        let stream = dial.dial_isolated(&addr).await.map_err(|_| ())?;
        let mut framed = Framed::new(stream, crate::wire::codec());
        loop {
            let permit = permits.acquire().await.map_err(|_| ())?;
            permit.forget();
            let Some(index) = work.lock().unwrap_or_else(|p| p.into_inner()).take() else {
                break;
            };
            let src = source.clone();
            let data = tokio::task::spawn_blocking(move || src.read_chunk(index))
                .await
                .map_err(|_| ())?
                .map_err(|_| ())?;
            let pt = PeerMessage::FileChunk(FileChunk {
                transfer_id,
                index,
                data,
            })
            .encode()
            .map_err(|_| ())?;
            let frame = lane.seal(&pt).map_err(|_| ())?;
            // Counted before it is written: the receiver's FileLaneAck for
            // it may come back (on the session's stream) before `send`
            // returns, and acks above this count are a protocol error.
            count.fetch_add(1, Ordering::Release);
            framed.send(Bytes::from(frame)).await.map_err(|_| ())?;
        }
        // Keep the stream until the receiver acknowledged every frame (all
        // permits back): closing earlier can lose the last frames in flight.
        let window = FILE_WINDOW as u32;
        match tokio::time::timeout(LANE_SETTLE, permits.acquire_many(window)).await {
            Ok(Ok(_)) => SinkExt::<Bytes>::close(&mut framed).await.map_err(|_| ()),
            _ => Err(()),
        }
    }
    .await;
    let _ = report.send(Command::LaneDone {
        lane_id,
        sent: sent.load(Ordering::Relaxed),
        ok: result.is_ok(),
    });
}

/// Aborts the lane writers of `s`; returns the chunks they wrote that are
/// not recorded yet.
fn stop_lane_tasks(s: &Sending) -> u64 {
    let mut unrecorded = 0u64;
    for l in s.lanes.values() {
        l.task.abort();
        unrecorded =
            unrecorded.saturating_add(l.sent.load(Ordering::Relaxed).saturating_sub(l.recorded));
    }
    unrecorded
}

/// The transfer being sent on this connection.
struct Sending {
    id: [u8; 16],
    source: Arc<Source>,
    layout: Layout,
    have: ChunkSet,
    /// Next index to consider.
    next: u64,
    /// Sent indexes not yet covered by a FileAck.
    inflight: VecDeque<u64>,
    /// Chunks confirmed (in `have` at accept time, or acknowledged since).
    confirmed: u64,
    done_sent: bool,
    last_progress: Option<Instant>,
    /// Lanes carrying this transfer's chunks (empty: the session stream does).
    lanes: HashMap<[u8; 16], LaneOut>,
    /// All lanes finished at this instant; waiting for the receiver's FileDone.
    settling: Option<Instant>,
}

/// One connection's file engine.
pub struct FileLink {
    store: StoreHandle,
    events: broadcast::Sender<Event>,
    contact: ContactId,
    ctx: FileCtx,
    sending: Option<Sending>,
    /// Accepted by the peer, waiting for their turn: (id, have).
    queue: VecDeque<([u8; 16], ChunkSet)>,
    /// Announced on this connection (offers sent, accepts sent).
    announced: HashSet<[u8; 16]>,
    progress_at: HashMap<[u8; 16], Instant>,
    /// Identifies this link's incoming lanes in the registry.
    link_id: u64,
    /// Incoming lanes announced on this connection: frames stored so far.
    lanes_in: HashMap<[u8; 16], u64>,
    /// Lanes could not be opened on this connection: use the session stream.
    lanes_broken: bool,
}

impl Drop for FileLink {
    fn drop(&mut self) {
        if let Some(s) = self.sending.take() {
            self.abort_lanes(s);
        }
        self.ctx.lanes.remove_owner(self.link_id);
    }
}

pub(crate) fn media_to_wire(m: FileKind) -> Media {
    match m {
        FileKind::File => Media::File,
        FileKind::Image => Media::Image,
        FileKind::Voice => Media::Voice,
        FileKind::Video => Media::Video,
    }
}

fn media_from_wire(m: Media) -> FileKind {
    match m {
        Media::File => FileKind::File,
        Media::Image => FileKind::Image,
        Media::Voice => FileKind::Voice,
        Media::Video => FileKind::Video,
    }
}

fn layout(t: &FileTransfer) -> Layout {
    Layout {
        size: t.size,
        chunk_size: t.chunk_size,
    }
}

fn offer_of(t: &FileTransfer) -> PeerMessage {
    PeerMessage::FileOffer(FileOffer {
        transfer_id: t.transfer_id,
        name: t.name.clone(),
        size: t.size,
        media: media_to_wire(t.media),
        sha256: t.sha256,
        chunk_size: t.chunk_size,
    })
}

fn accept_of(t: &FileTransfer) -> PeerMessage {
    PeerMessage::FileAccept(FileAccept {
        transfer_id: t.transfer_id,
        have: t
            .have
            .ranges()
            .iter()
            .take(MAX_RESUME_RANGES)
            .copied()
            .collect(),
    })
}

fn cancel(id: [u8; 16], r: u8) -> PeerMessage {
    PeerMessage::FileCancel {
        transfer_id: id,
        reason: r,
    }
}

/// The files directory of the store's data dir.
pub(crate) fn files_dir(s: &Store) -> PathBuf {
    s.data_dir().join("files")
}

/// Deletes a transfer's part file and forgets its key (best effort on the file).
pub(crate) fn drop_part(s: &Store, id: &[u8; 16]) -> Result<(), crate::store::Error> {
    if let Some((name, _key)) = s.part_key(id)? {
        let p = files_dir(s).join(&name);
        if let Err(e) = std::fs::remove_file(&p)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(error = %e.kind(), "could not delete a part file");
        }
    }
    s.clear_part(id)
}

/// Ends an incoming transfer as failed with `r`: its partial data is deleted.
fn fail_incoming(s: &Store, id: &[u8; 16], r: u8) -> Result<(), crate::store::Error> {
    drop_part(s, id)?;
    s.finish_transfer(id, TransferState::Failed, Some(r))
}

/// Opens the part file of an incoming transfer.
pub(crate) fn open_part(s: &Store, t: &FileTransfer) -> Result<Option<PartFile>, FileError> {
    let Ok(Some((name, key))) = s.part_key(&t.transfer_id) else {
        return Ok(None);
    };
    PartFile::open(&files_dir(s), &name, &key, t.transfer_id, layout(t)).map(Some)
}

/// Incoming transfer: accept it (part file and key), state active.
pub(crate) fn accept_incoming(s: &Store, id: &[u8; 16]) -> Result<(), crate::store::Error> {
    let (name, key) = new_part();
    s.accept_transfer(id, &name, &key)
}

/// What verifying a complete incoming file gave.
enum Verified {
    Ok { saved: Option<PathBuf> },
    Mismatch,
}

/// Checks the SHA-256 of a complete incoming transfer; on success marks it
/// completed (and saves it to the downloads folder if one is configured).
fn verify_complete(
    s: &Store,
    t: &FileTransfer,
    downloads: Option<&PathBuf>,
) -> Result<Verified, NodeError> {
    let Ok(Some(part)) = open_part(s, t) else {
        fail_incoming(s, &t.transfer_id, reason::HASH_MISMATCH)?;
        return Ok(Verified::Mismatch);
    };
    let ok = match part.sha256() {
        Ok(h) => bool::from(subtle::ConstantTimeEq::ct_eq(&h[..], &t.sha256[..])),
        Err(_) => false,
    };
    if !ok {
        drop(part);
        fail_incoming(s, &t.transfer_id, reason::HASH_MISMATCH)?;
        return Ok(Verified::Mismatch);
    }
    s.set_transfer_state(&t.transfer_id, TransferState::Completed)?;
    let mut saved = None;
    if let Some(dir) = downloads {
        let dest = unused_in(dir, &sanitize(&t.name));
        match part.export(&dest, &t.sha256) {
            Ok(()) => {
                drop(part);
                s.set_saved_path(&t.transfer_id, &dest.to_string_lossy())?;
                drop_part(s, &t.transfer_id)?;
                saved = Some(dest);
            }
            Err(e) => {
                tracing::warn!(kind = ?e.kind(), "could not save a file to the downloads folder; it stays in the data dir")
            }
        }
    }
    Ok(Verified::Ok { saved })
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
            sending: None,
            queue: VecDeque::new(),
            announced: HashSet::new(),
            progress_at: HashMap::new(),
            link_id: {
                static NEXT: AtomicU64 = AtomicU64::new(1);
                NEXT.fetch_add(1, Ordering::Relaxed)
            },
            lanes_in: HashMap::new(),
            lanes_broken: false,
        }
    }

    fn emit(&self, e: Event) {
        let _ = self.events.send(e);
    }

    fn progress(&mut self, id: [u8; 16], done: u64, size: u64, force: bool) {
        let now = Instant::now();
        let due = self
            .progress_at
            .get(&id)
            .is_none_or(|t| now.duration_since(*t) >= PROGRESS_EVERY);
        if force || due {
            self.progress_at.insert(id, now);
            self.emit(Event::FileProgress {
                contact: self.contact,
                transfer: id,
                done: done.min(size),
                size,
            });
        }
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
        let mut empty_done = Vec::new();
        for t in list {
            if self.announced.contains(&t.transfer_id) {
                continue;
            }
            match (t.direction, t.state) {
                (Direction::Outgoing, TransferState::Offered | TransferState::Active) => {
                    out.push(offer_of(&t));
                }
                (Direction::Incoming, TransferState::Active) => {
                    out.push(accept_of(&t));
                    if t.size == 0 {
                        empty_done.push(t.transfer_id);
                    }
                }
                _ => continue,
            }
            self.announced.insert(t.transfer_id);
        }
        for id in empty_done {
            out.extend(self.complete_empty(id).await?);
        }
        Ok(out)
    }

    async fn complete_empty(&mut self, id: [u8; 16]) -> Result<Vec<PeerMessage>, NodeError> {
        let ok = self
            .store
            .run(move |s| -> Result<bool, crate::store::Error> {
                let Some(t) = s.transfer(&id)? else {
                    return Ok(false);
                };
                let empty: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest([]).into();
                if t.sha256 == empty {
                    drop_part(s, &id)?;
                    s.set_transfer_state(&id, TransferState::Completed)?;
                    Ok(true)
                } else {
                    fail_incoming(s, &id, reason::HASH_MISMATCH)?;
                    Ok(false)
                }
            })
            .await??;
        if ok {
            self.emit(Event::FileCompleted {
                contact: self.contact,
                transfer: id,
                saved: None,
            });
            Ok(vec![PeerMessage::FileDone { transfer_id: id }])
        } else {
            self.emit(Event::FileCancelled {
                contact: self.contact,
                transfer: id,
                reason: reason::HASH_MISMATCH,
                by_peer: false,
            });
            Ok(vec![cancel(id, reason::HASH_MISMATCH)])
        }
    }

    /// A local cancel (the store is already updated): stop sending it, tell the peer.
    pub fn cancelled_locally(&mut self, id: [u8; 16], r: u8) -> Vec<PeerMessage> {
        self.stop(&id);
        vec![cancel(id, r)]
    }

    fn stop(&mut self, id: &[u8; 16]) {
        if self.sending.as_ref().is_some_and(|s| &s.id == id)
            && let Some(s) = self.sending.take()
        {
            self.abort_lanes(s);
        }
        self.queue.retain(|(q, _)| q != id);
    }

    /// [`FileLink::stop`], returning the chunks its lanes wrote that are not
    /// recorded yet, for the caller to record with the transfer's new state.
    fn stop_counting(&mut self, id: &[u8; 16]) -> u64 {
        let mut unrecorded = 0;
        if self.sending.as_ref().is_some_and(|s| &s.id == id)
            && let Some(s) = self.sending.take()
        {
            unrecorded = stop_lane_tasks(&s);
        }
        self.queue.retain(|(q, _)| q != id);
        unrecorded
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
                out.extend(self.on_chunks(std::mem::take(&mut chunks)).await?);
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
            out.extend(self.on_chunks(chunks).await?);
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

    async fn on_offer(&mut self, o: FileOffer) -> Result<Vec<PeerMessage>, NodeError> {
        let id = o.transfer_id;
        let contact = self.contact;
        if o.chunk_size != CHUNK_SIZE {
            // PROTOCOL.md §14.1: one chunk size. A smaller one would multiply
            // our per-chunk costs (part-file slots, bookkeeping) for the
            // same offered size. Refused before anything is stored.
            return Ok(vec![cancel(id, reason::PROTOCOL)]);
        }
        let policy = self.ctx.policy.clone();
        let existing = self.store.run(move |s| s.transfer(&id)).await??;
        if let Some(t) = existing {
            if t.contact != contact || t.direction != Direction::Incoming {
                // Someone else's id (or our own outgoing one): never touch it.
                return Ok(vec![cancel(id, reason::PROTOCOL)]);
            }
            if t.size != o.size || t.sha256 != o.sha256 || t.chunk_size != o.chunk_size {
                return Ok(vec![cancel(id, reason::PROTOCOL)]);
            }
            return Ok(match t.state {
                TransferState::Active => {
                    self.announced.insert(id);
                    vec![accept_of(&t)]
                }
                TransferState::Completed => vec![PeerMessage::FileDone { transfer_id: id }],
                TransferState::Cancelled | TransferState::Failed => {
                    vec![cancel(id, t.reason.unwrap_or(reason::UNSPECIFIED))]
                }
                TransferState::Offered | TransferState::Paused => Vec::new(),
            });
        }
        let name = sanitize(&o.name);
        let new = NewTransfer {
            transfer_id: id,
            contact,
            direction: Direction::Incoming,
            name,
            size: o.size,
            sha256: o.sha256,
            chunk_size: o.chunk_size,
            media: media_from_wire(o.media),
            local_path: None,
        };
        // Decide and record in one store call.
        let decision = self
            .store
            .run(move |s| -> Result<Decision, crate::store::Error> {
                if o.size > policy.max_size {
                    s.add_transfer(&new)?;
                    s.finish_transfer(&id, TransferState::Cancelled, Some(reason::TOO_LARGE))?;
                    return Ok(Decision::TooLarge);
                }
                if s.pending_offers(contact)? >= policy.max_pending_offers {
                    return Ok(Decision::Flooded);
                }
                s.add_transfer(&new)?;
                let verified = s.contact(contact)?.is_some_and(|c| c.verified);
                if verified && o.size <= policy.auto_accept_max {
                    accept_incoming(s, &id)?;
                    return Ok(Decision::Accepted);
                }
                Ok(Decision::Ask)
            })
            .await??;
        match decision {
            Decision::TooLarge => {
                self.emit(Event::FileCancelled {
                    contact,
                    transfer: id,
                    reason: reason::TOO_LARGE,
                    by_peer: false,
                });
                Ok(vec![cancel(id, reason::TOO_LARGE)])
            }
            Decision::Flooded => Ok(vec![cancel(id, reason::DECLINED)]),
            Decision::Ask => {
                self.emit(Event::FileOffered {
                    contact,
                    transfer: id,
                    auto_accepted: false,
                });
                Ok(Vec::new())
            }
            Decision::Accepted => {
                self.emit(Event::FileOffered {
                    contact,
                    transfer: id,
                    auto_accepted: true,
                });
                self.announce().await
            }
        }
    }

    async fn on_accept(&mut self, a: FileAccept) -> Result<Vec<PeerMessage>, NodeError> {
        let id = a.transfer_id;
        if self.sending.as_ref().is_some_and(|s| s.id == id) || self.queue.iter().any(|q| q.0 == id)
        {
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
        let n = layout(&t).chunks();
        let mut have = ChunkSet::new();
        for &(s, e) in &a.have {
            if e > n {
                return self.fail_outgoing(id, reason::PROTOCOL).await;
            }
            for i in s..e {
                have.insert(i);
            }
        }
        if t.state == TransferState::Offered {
            self.store
                .run(move |s| s.set_transfer_state(&id, TransferState::Active))
                .await??;
        }
        self.queue.push_back((id, have));
        self.start_next().await
    }

    /// Starts sending the next queued transfer if none is being sent.
    async fn start_next(&mut self) -> Result<Vec<PeerMessage>, NodeError> {
        let mut out = Vec::new();
        while self.sending.is_none() {
            let Some((id, have)) = self.queue.pop_front() else {
                break;
            };
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
            match src {
                Ok(source) => {
                    let confirmed = have.len();
                    let source = Arc::new(source);
                    let missing = lay.chunks() - confirmed;
                    let streams = self.ctx.policy.streams as u64;
                    let mut lanes = HashMap::new();
                    if streams > 1
                        && !self.lanes_broken
                        && missing >= 2 * streams
                        && let Some(addr) = self.ctx.peer.clone()
                    {
                        let work = Arc::new(Mutex::new(LaneWork {
                            next: 0,
                            n: lay.chunks(),
                            have: have.clone(),
                        }));
                        for _ in 0..streams {
                            let (lane, key) = Lane::generate();
                            let lane_id = lane.id();
                            out.push(PeerMessage::FileLane {
                                lane_id,
                                key: LaneKey::new(*key),
                            });
                            let permits = Arc::new(Semaphore::new(FILE_WINDOW as usize));
                            let sent = Arc::new(AtomicU64::new(0));
                            let task = tokio::spawn(lane_writer(
                                self.ctx.dial.clone(),
                                addr.clone(),
                                lane,
                                id,
                                work.clone(),
                                source.clone(),
                                permits.clone(),
                                self.ctx.own_cmds.clone(),
                                sent.clone(),
                            ));
                            lanes.insert(
                                lane_id,
                                LaneOut {
                                    permits,
                                    acked: 0,
                                    finished: None,
                                    task,
                                    sent,
                                    recorded: 0,
                                },
                            );
                        }
                    }
                    self.sending = Some(Sending {
                        id,
                        source,
                        layout: lay,
                        have,
                        next: 0,
                        inflight: VecDeque::new(),
                        confirmed,
                        done_sent: false,
                        last_progress: None,
                        lanes,
                        settling: None,
                    });
                }
                Err(_) => out.extend(self.fail_outgoing(id, reason::SOURCE_CHANGED).await?),
            }
        }
        Ok(out)
    }

    async fn fail_outgoing(&mut self, id: [u8; 16], r: u8) -> Result<Vec<PeerMessage>, NodeError> {
        self.stop(&id);
        self.store
            .run(move |s| s.finish_transfer(&id, TransferState::Failed, Some(r)))
            .await??;
        self.emit(Event::FileCancelled {
            contact: self.contact,
            transfer: id,
            reason: r,
            by_peer: false,
        });
        Ok(vec![cancel(id, r)])
    }

    async fn on_ack(&mut self, id: [u8; 16], next: u64) -> Result<Vec<PeerMessage>, NodeError> {
        let Some(s) = self.sending.as_mut().filter(|s| s.id == id) else {
            return Ok(Vec::new());
        };
        if next > s.layout.chunks() {
            return self.fail_outgoing(id, reason::PROTOCOL).await;
        }
        while s.inflight.front().is_some_and(|i| *i < next) {
            s.inflight.pop_front();
            s.confirmed += 1;
        }
        let done = s.confirmed * u64::from(s.layout.chunk_size);
        let size = s.layout.size;
        let now = Instant::now();
        if s.last_progress
            .is_none_or(|t| now.duration_since(t) >= PROGRESS_EVERY)
        {
            s.last_progress = Some(now);
            self.emit(Event::FileProgress {
                contact: self.contact,
                transfer: id,
                done: done.min(size),
                size,
            });
        }
        Ok(Vec::new())
    }

    async fn on_done(&mut self, id: [u8; 16]) -> Result<Vec<PeerMessage>, NodeError> {
        // Only the receiver's FileDone (for our outgoing transfer) means anything.
        let Some(t) = self.lookup(id, Direction::Outgoing).await? else {
            return Ok(Vec::new());
        };
        if !matches!(t.state, TransferState::Offered | TransferState::Active) {
            return Ok(Vec::new());
        }
        // The lanes' counts go in with the state: whoever sees Completed sees
        // them too.
        let unrecorded = self.stop_counting(&id);
        self.store
            .run(move |s| -> Result<(), crate::store::Error> {
                if unrecorded > 0 {
                    s.add_chunks_sent(&id, unrecorded)?;
                }
                s.set_transfer_state(&id, TransferState::Completed)
            })
            .await??;
        self.progress(id, t.size, t.size, true);
        self.emit(Event::FileCompleted {
            contact: self.contact,
            transfer: id,
            saved: None,
        });
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
            self.emit(Event::FileCancelled {
                contact,
                transfer: id,
                reason: r,
                by_peer: true,
            });
        }
        Ok(())
    }

    /// Stores a run of chunks: per transfer, write + sync the part file, then
    /// record the indexes; FileAck; verify and FileDone when complete.
    async fn on_chunks(&mut self, chunks: Vec<FileChunk>) -> Result<Vec<PeerMessage>, NodeError> {
        let by_id = by_transfer(chunks);
        let mut out = Vec::new();
        for (id, chunks) in by_id {
            out.extend(self.store_chunks(id, chunks).await?);
        }
        Ok(out)
    }

    async fn store_chunks(
        &mut self,
        id: [u8; 16],
        chunks: Vec<FileChunk>,
    ) -> Result<Vec<PeerMessage>, NodeError> {
        let contact = self.contact;
        let downloads = self.ctx.policy.downloads_dir.clone();
        let result = self
            .store
            .run(move |s| store_chunks_blocking(s, contact, id, chunks, downloads.as_ref()))
            .await??;
        Ok(match result {
            Stored::Unknown => vec![cancel(id, reason::UNKNOWN)],
            Stored::Ignored => Vec::new(),
            Stored::Refused(r) => {
                self.emit(Event::FileCancelled {
                    contact,
                    transfer: id,
                    reason: r,
                    by_peer: false,
                });
                vec![cancel(id, r)]
            }
            Stored::Progress {
                next,
                have,
                size,
                chunk_size,
            } => {
                self.progress(id, have * u64::from(chunk_size), size, false);
                vec![PeerMessage::FileAck {
                    transfer_id: id,
                    next,
                }]
            }
            Stored::Complete { next, size, saved } => {
                self.progress(id, size, size, true);
                self.emit(Event::FileCompleted {
                    contact,
                    transfer: id,
                    saved,
                });
                vec![
                    PeerMessage::FileAck {
                        transfer_id: id,
                        next,
                    },
                    PeerMessage::FileDone { transfer_id: id },
                ]
            }
        })
    }

    /// Whether a chunk could be sent now (a transfer is being sent and the
    /// window has room).
    pub fn wants_to_send(&self) -> bool {
        self.sending.as_ref().is_some_and(|s| {
            s.lanes.is_empty() && !s.done_sent && (s.inflight.len() as u64) < FILE_WINDOW
        })
    }

    /// Stops a transfer's lane writers and records the chunks they wrote
    /// (in the background: this also runs when the connection is dropped).
    fn abort_lanes(&self, s: Sending) {
        let unrecorded = stop_lane_tasks(&s);
        if unrecorded > 0
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let store = self.store.clone();
            let id = s.id;
            rt.spawn(async move {
                let _ = store
                    .run(move |st| st.add_chunks_sent(&id, unrecorded))
                    .await;
            });
        }
    }

    /// Receiver: a lane was announced; its stream may come.
    fn on_lane(&mut self, lane_id: [u8; 16], key: LaneKey) {
        if self.lanes_in.len() >= MAX_PENDING_LANES * 4 {
            return; // a peer opening lanes without end
        }
        let ok = self.ctx.lanes.insert(LaneEntry {
            key: Zeroizing::new(*key.expose()),
            id: lane_id,
            cmds: self.ctx.own_cmds.clone(),
            owner: self.link_id,
        });
        if ok {
            self.lanes_in.insert(lane_id, 0);
        }
    }

    /// Sender: the receiver stored `count` frames of a lane.
    fn on_lane_ack(&mut self, lane_id: [u8; 16], count: u64) -> Result<(), NodeError> {
        let contact = self.contact;
        let Some(s) = self.sending.as_mut() else {
            return Ok(());
        };
        let Some(l) = s.lanes.get_mut(&lane_id) else {
            return Ok(());
        };
        if count <= l.acked {
            return Ok(());
        }
        // A count is the peer's word: never above what the lane wrote
        // (PROTOCOL.md §14.3), so the permits and totals below stay bounded.
        if count > l.sent.load(Ordering::Acquire) {
            return Err(PeerError::AckBeyondSent.into());
        }
        let delta = count - l.acked;
        l.acked = count;
        l.permits
            .add_permits(usize::try_from(delta).map_err(|_| PeerError::AckBeyondSent)?);
        s.confirmed = s.confirmed.saturating_add(delta);
        if s.settling.is_some() {
            s.settling = Some(Instant::now());
        }
        let now = Instant::now();
        if s.last_progress
            .is_none_or(|t| now.duration_since(t) >= PROGRESS_EVERY)
        {
            s.last_progress = Some(now);
            let done = s
                .confirmed
                .saturating_mul(u64::from(s.layout.chunk_size))
                .min(s.layout.size);
            let _ = self.events.send(Event::FileProgress {
                contact,
                transfer: s.id,
                done,
                size: s.layout.size,
            });
        }
        Ok(())
    }

    /// Sender: a lane writer ended after writing `sent` chunks.
    pub async fn lane_done(
        &mut self,
        lane_id: [u8; 16],
        sent: u64,
        ok: bool,
    ) -> Result<Vec<PeerMessage>, NodeError> {
        let Some(s) = self.sending.as_mut() else {
            return Ok(Vec::new());
        };
        let Some(l) = s.lanes.get_mut(&lane_id) else {
            return Ok(Vec::new());
        };
        l.finished = Some(ok);
        let delta = sent.saturating_sub(l.recorded);
        l.recorded = sent;
        let id = s.id;
        self.store
            .run(move |st| st.add_chunks_sent(&id, delta))
            .await??;
        let Some(s) = self.sending.as_mut() else {
            return Ok(Vec::new());
        };
        if s.lanes.values().any(|l| l.finished.is_none()) {
            return Ok(Vec::new());
        }
        if s.lanes.values().all(|l| l.finished == Some(false)) {
            // No lane got through: the session stream carries the rest.
            self.lanes_broken = true;
        }
        if s.lanes.values().any(|l| l.finished == Some(false)) {
            self.resync();
            return self.announce().await;
        }
        s.settling = Some(Instant::now());
        Ok(Vec::new())
    }

    /// Sender: forget the transfer on this connection so that the next
    /// [`FileLink::announce`] offers it again; the receiver's FileAccept then
    /// restarts it with the missing chunks.
    fn resync(&mut self) {
        let Some(s) = self.sending.take() else {
            return;
        };
        self.announced.remove(&s.id);
        self.abort_lanes(s);
    }

    /// Called on the heartbeat: lanes that finished long ago without the
    /// receiver's FileDone are re-synchronised (offers to send follow).
    pub async fn tick(&mut self) -> Result<Vec<PeerMessage>, NodeError> {
        if self
            .sending
            .as_ref()
            .and_then(|s| s.settling)
            .is_some_and(|t| t.elapsed() >= LANE_SETTLE)
        {
            self.resync();
            return self.announce().await;
        }
        Ok(Vec::new())
    }

    /// Receiver: chunks that arrived on a lane.
    pub async fn on_lane_chunks(
        &mut self,
        lane_id: [u8; 16],
        chunks: Vec<FileChunk>,
    ) -> Result<Vec<PeerMessage>, NodeError> {
        let Some(count) = self.lanes_in.get(&lane_id).copied() else {
            return Ok(Vec::new());
        };
        let n = chunks.len() as u64;
        let mut out = Vec::new();
        let by_id = by_transfer(chunks);
        for (id, chunks) in by_id {
            for m in self.store_chunks(id, chunks).await? {
                // Lane chunks are acknowledged per lane, not with FileAck.
                if !matches!(m, PeerMessage::FileAck { .. }) {
                    out.push(m);
                }
            }
        }
        self.lanes_in.insert(lane_id, count + n);
        out.insert(
            0,
            PeerMessage::FileLaneAck {
                lane_id,
                count: count + n,
            },
        );
        Ok(out)
    }

    /// Reads up to `max` next chunks of the transfer being sent (within the
    /// window). Returns the transfer id and the messages (chunks, then FileDone
    /// after the last one).
    pub async fn next_chunks(
        &mut self,
        max: usize,
    ) -> Result<Option<([u8; 16], Vec<PeerMessage>, u64)>, NodeError> {
        let Some(s) = self.sending.as_mut() else {
            return Ok(None);
        };
        let n = s.layout.chunks();
        let room = FILE_WINDOW.saturating_sub(s.inflight.len() as u64) as usize;
        let mut idx = Vec::new();
        let mut i = s.next;
        while i < n && idx.len() < max.min(room) {
            if !s.have.contains(i) {
                idx.push(i);
            }
            i += 1;
        }
        s.next = i;
        let id = s.id;
        let src = s.source.clone();
        let want = idx.clone();
        let read = tokio::task::spawn_blocking(move || {
            want.iter()
                .map(|&i| src.read_chunk(i).map(|d| (i, d)))
                .collect::<Result<Vec<_>, FileError>>()
        })
        .await
        .map_err(|_| NodeError::Internal {
            what: "a file task panicked",
        })?;
        let data = match read {
            Ok(d) => d,
            Err(_) => {
                let msgs = self.fail_outgoing(id, reason::SOURCE_CHANGED).await?;
                return Ok(Some((id, msgs, 0)));
            }
        };
        let Some(s) = self.sending.as_mut() else {
            return Ok(None);
        };
        let count = data.len() as u64;
        let mut msgs: Vec<PeerMessage> = data
            .into_iter()
            .map(|(index, data)| {
                s.inflight.push_back(index);
                PeerMessage::FileChunk(FileChunk {
                    transfer_id: id,
                    index,
                    data,
                })
            })
            .collect();
        if s.next >= n && !s.done_sent {
            s.done_sent = true;
            msgs.push(PeerMessage::FileDone { transfer_id: id });
        }
        Ok(Some((id, msgs, count)))
    }

    /// After the sender's FileDone: drop the finished transfer from the
    /// connection once the receiver confirms, and move to the next one.
    pub async fn after_write(&mut self) -> Result<Vec<PeerMessage>, NodeError> {
        if self.sending.as_ref().is_some_and(|s| s.done_sent) {
            // Keep waiting for the receiver's FileDone in the store; the
            // window is no longer needed, start the next transfer.
            self.sending = None;
            return self.start_next().await;
        }
        Ok(Vec::new())
    }
}

/// Chunks grouped by transfer, in order of first appearance (order kept within each).
fn by_transfer(chunks: Vec<FileChunk>) -> Vec<([u8; 16], Vec<FileChunk>)> {
    let mut by_id: Vec<([u8; 16], Vec<FileChunk>)> = Vec::new();
    for c in chunks {
        match by_id.iter_mut().find(|(id, _)| *id == c.transfer_id) {
            Some((_, v)) => v.push(c),
            None => by_id.push((c.transfer_id, vec![c])),
        }
    }
    by_id
}

enum Decision {
    TooLarge,
    Flooded,
    Ask,
    Accepted,
}

enum Stored {
    Unknown,
    Ignored,
    Refused(u8),
    Progress {
        next: u64,
        have: u64,
        size: u64,
        chunk_size: u32,
    },
    Complete {
        next: u64,
        size: u64,
        saved: Option<PathBuf>,
    },
}

fn store_chunks_blocking(
    s: &mut Store,
    contact: ContactId,
    id: [u8; 16],
    chunks: Vec<FileChunk>,
    downloads: Option<&PathBuf>,
) -> Result<Stored, NodeError> {
    let Some(t) = s.transfer(&id)? else {
        return Ok(Stored::Unknown);
    };
    if t.contact != contact || t.direction != Direction::Incoming {
        return Ok(Stored::Unknown);
    }
    if t.state != TransferState::Active {
        return Ok(Stored::Ignored); // cancelled or complete: late chunks
    }
    let lay = layout(&t);
    // Every chunk must fit the offer: index and exact length.
    if chunks
        .iter()
        .any(|c| lay.chunk_len(c.index) != Some(c.data.len()))
    {
        fail_incoming(s, &id, reason::PROTOCOL)?;
        return Ok(Stored::Refused(reason::PROTOCOL));
    }
    let part = match open_part(s, &t) {
        Ok(Some(p)) => p,
        Ok(None) => return Ok(Stored::Ignored),
        Err(e) => {
            tracing::warn!(kind = ?e.kind(), "cannot open a part file");
            fail_incoming(s, &id, reason::TOO_LARGE)?;
            return Ok(Stored::Refused(reason::TOO_LARGE));
        }
    };
    let mut written = Vec::with_capacity(chunks.len());
    let mut next = 0;
    for c in &chunks {
        next = next.max(c.index + 1);
        if t.have.contains(c.index) {
            continue;
        }
        if let Err(e) = part.write_chunk(c.index, &c.data) {
            tracing::warn!(kind = ?e.kind(), "cannot write a part file");
            drop(part);
            fail_incoming(s, &id, reason::TOO_LARGE)?;
            return Ok(Stored::Refused(reason::TOO_LARGE));
        }
        written.push(c.index);
    }
    if let Err(e) = part.sync() {
        tracing::warn!(kind = ?e.kind(), "cannot sync a part file");
        drop(part);
        fail_incoming(s, &id, reason::TOO_LARGE)?;
        return Ok(Stored::Refused(reason::TOO_LARGE));
    }
    drop(part);
    let have = s.mark_chunks_done(&id, &written)?;
    if have.len() < lay.chunks() {
        return Ok(Stored::Progress {
            next,
            have: have.len(),
            size: t.size,
            chunk_size: t.chunk_size,
        });
    }
    let Some(t) = s.transfer(&id)? else {
        return Ok(Stored::Unknown);
    };
    match verify_complete(s, &t, downloads)? {
        Verified::Ok { saved } => Ok(Stored::Complete {
            next,
            size: t.size,
            saved,
        }),
        Verified::Mismatch => Ok(Stored::Refused(reason::HASH_MISMATCH)),
    }
}
