//! Lanes (PROTOCOL.md §14.3): extra streams on their own circuits that carry one
//! transfer's chunks, sealed with a per-lane key announced inside the session.
//!
//! The sender runs one writer task per lane, each within its own window; the
//! receiver's [`LaneRegistry`] matches an incoming stream to the connection that
//! announced it, and [`receive_lane`] hands its chunks to that connection in batches.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{FutureExt, SinkExt, StreamExt};
use tokio::sync::{Notify, Semaphore, mpsc, watch};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use zeroize::Zeroizing;

use super::engine::{LANE_SETTLE, MAX_PENDING_LANES};
use crate::files::{FILE_WINDOW, Lane, Source};
use crate::node::command::Command;
use crate::node::store_handle::StoreHandle;
use crate::node::{Dial, NodeError};
use crate::store::ChunkSet;
use crate::transport::{BoxedStream, PeerAddress};
use crate::wire::{FileChunk, PeerMessage};

/// Lane chunk batches a lane reader may have waiting at the connection.
const LANE_BATCHES: usize = 4;

/// An announced incoming lane, waiting for its stream.
pub(crate) struct LaneEntry {
    pub(super) key: Zeroizing<[u8; 32]>,
    pub(super) id: [u8; 16],
    pub(super) cmds: mpsc::UnboundedSender<Command>,
    pub(super) owner: u64,
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

    pub(super) fn insert(&self, e: LaneEntry) -> bool {
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

    pub(super) fn remove_owner(&self, owner: u64) {
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
pub(super) struct LaneWork {
    next: u64,
    n: u64,
    have: ChunkSet,
}

impl LaneWork {
    /// Work over a file of `n` chunks, of which the receiver holds `have`.
    pub(super) fn new(n: u64, have: ChunkSet) -> Self {
        LaneWork { next: 0, n, have }
    }

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

/// One outgoing lane's writer task, as the connection holds it.
pub(super) struct LaneOut {
    /// The lane's window: FileLaneAck gives permits back.
    pub(super) permits: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
    /// Chunks the writer wrote (it counts them in the store itself, see
    /// [`LANE_COUNT_BLOCK`]).
    pub(super) sent: Arc<AtomicU64>,
    /// Chunks counted in the store and not written yet; whoever takes them
    /// (the writer when it ends, or [`stop_lane_tasks`]) gives them back.
    spare: Arc<AtomicU64>,
    /// When each frame not yet acknowledged was written, oldest first.
    written: Arc<Mutex<VecDeque<Instant>>>,
    /// Frames the receiver acknowledged; the writer closes the stream once
    /// it has them all.
    acked: watch::Sender<u64>,
}

impl LaneOut {
    /// The receiver acknowledged `count` frames (a count the engine
    /// accepted): returns when the newest of them was written.
    pub(super) fn acknowledged(&self, count: u64) -> Option<Instant> {
        let before = *self.acked.borrow();
        if count <= before {
            return None;
        }
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let mut newest = None;
        for _ in before..count {
            match written.pop_front() {
                Some(t) => newest = Some(t),
                None => break,
            }
        }
        drop(written);
        self.acked.send_replace(count);
        newest
    }
}

/// What the lanes of one transfer share: where to dial, what to read, and
/// whom to report to.
#[derive(Clone)]
pub(super) struct LaneJob {
    pub(super) dial: Arc<dyn Dial>,
    pub(super) addr: PeerAddress,
    pub(super) transfer_id: [u8; 16],
    pub(super) work: Arc<Mutex<LaneWork>>,
    pub(super) source: Arc<Source>,
    pub(super) report: mpsc::UnboundedSender<Command>,
    /// Where the writer counts the chunks it sends.
    pub(super) store: StoreHandle,
}

/// A lane writer counts its chunks in the store (`chunks_sent`) before it
/// writes them, this many at a time, and gives back what it did not use when
/// it ends: the count is durable across a crash like the session stream's, at
/// one commit per 512 KiB, and a writer killed in between (a crash, an abort)
/// leaves it at most `LANE_COUNT_BLOCK - 1` high. A writer stopped from
/// outside ([`stop_lane_tasks`]) has its spare count taken by the stopper,
/// which gives it back: a transfer that completes while its writers still wait
/// for their streams to close shows the exact count.
pub(super) const LANE_COUNT_BLOCK: u64 = 8;

impl LaneJob {
    /// Starts a writer for `lane` with a window of [`FILE_WINDOW`] (the
    /// engine widens it as acknowledgements come back).
    pub(super) fn spawn(&self, lane: Lane) -> LaneOut {
        let permits = Arc::new(Semaphore::new(FILE_WINDOW as usize));
        let sent = Arc::new(AtomicU64::new(0));
        let spare = Arc::new(AtomicU64::new(0));
        let written = Arc::new(Mutex::new(VecDeque::new()));
        let (acked, acked_rx) = watch::channel(0);
        let task = tokio::spawn(lane_writer(
            self.clone(),
            lane,
            LaneCounts {
                permits: permits.clone(),
                sent: sent.clone(),
                spare: spare.clone(),
                written: written.clone(),
                acked: acked_rx,
            },
        ));
        LaneOut {
            permits,
            task,
            sent,
            spare,
            written,
            acked,
        }
    }
}

/// The writer's side of a lane's counts.
struct LaneCounts {
    permits: Arc<Semaphore>,
    sent: Arc<AtomicU64>,
    spare: Arc<AtomicU64>,
    written: Arc<Mutex<VecDeque<Instant>>>,
    acked: watch::Receiver<u64>,
}

/// Writes chunks taken from the job's work to a new isolated stream, within
/// the window of its permits; reports how many it sent.
async fn lane_writer(job: LaneJob, mut lane: Lane, counts: LaneCounts) {
    let LaneCounts {
        permits,
        sent,
        spare,
        written,
        mut acked,
    } = counts;
    let LaneJob {
        dial,
        addr,
        transfer_id,
        work,
        source,
        report,
        store,
    } = job;
    let lane_id = lane.id();
    let count = sent.clone();
    let result = async {
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
            if spare
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_err()
            {
                store
                    .run(move |s| s.add_chunks_sent(&transfer_id, LANE_COUNT_BLOCK))
                    .await
                    .map_err(|_| ())?
                    .map_err(|_| ())?;
                spare.fetch_add(LANE_COUNT_BLOCK - 1, Ordering::AcqRel);
            }
            // Counted before it is written: the receiver's FileLaneAck for
            // it may come back (on the session's stream) before `send`
            // returns, and acks above this count are a protocol error.
            written
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(Instant::now());
            count.fetch_add(1, Ordering::Release);
            framed.send(Bytes::from(frame)).await.map_err(|_| ())?;
        }
        // Keep the stream until the receiver acknowledged every frame:
        // closing earlier can lose the last frames in flight.
        let all = count.load(Ordering::Acquire);
        let all_acked = matches!(
            tokio::time::timeout(LANE_SETTLE, acked.wait_for(|a| *a >= all)).await,
            Ok(Ok(_))
        );
        if !all_acked {
            return Err(());
        }
        SinkExt::<Bytes>::close(&mut framed).await.map_err(|_| ())
    }
    .await;
    let unused = spare.swap(0, Ordering::AcqRel);
    if unused > 0 {
        // Best effort: a failure leaves the count high, never low.
        let _ = store
            .run(move |s| s.return_chunks_sent(&transfer_id, unused))
            .await;
    }
    tracing::debug!(
        ok = result.is_ok(),
        sent = sent.load(Ordering::Relaxed),
        "a file lane ended"
    );
    let _ = report.send(Command::LaneDone {
        lane_id,
        ok: result.is_ok(),
    });
}

/// Aborts lane writers (their chunks are counted already); returns the
/// chunks they had counted and not written, for the caller to give back.
pub(super) fn stop_lane_tasks(lanes: HashMap<[u8; 16], LaneOut>) -> u64 {
    lanes
        .into_values()
        .map(|l| {
            l.task.abort();
            l.spare.swap(0, Ordering::AcqRel)
        })
        .sum()
}
