//! The sans-IO transfer engine of one connection (PROTOCOL.md §14): no tokio, no
//! store, no clock. Messages and what the shell read from the store go in; decisions
//! (messages to send, what to record, which lanes to open, progress to report) come
//! out. [`super::FileLink`] is the shell that performs them.
//!
//! Sending: accepted transfers queue; one is sent at a time, within an adaptive
//! window of chunks on the session stream ([`super::window`]), or over lanes (each with its own window, counted by
//! FileLaneAck). Receiving: offers are decided from the policy, lanes announced by the
//! peer are counted, chunks are checked against the offer before anything is written.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::window::Window;
use crate::files::{CHUNK_SIZE, FILE_WINDOW, FilePolicy, Layout, reason};
use crate::limits::MAX_RESUME_RANGES;
use crate::node::peer::PeerError;
use crate::store::{ChunkSet, Direction, FileKind, FileTransfer, TransferState};
use crate::wire::{FileAccept, FileChunk, FileOffer, Media, PeerMessage};

/// Progress is reported at most this often per transfer.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// Incoming lanes a connection may have announced and not yet used.
pub(super) const MAX_PENDING_LANES: usize = 16;
/// After every lane finished, how long to wait for the receiver's FileDone
/// (without acknowledgement progress) before re-synchronising.
pub(super) const LANE_SETTLE: Duration = Duration::from_secs(30);

/// The wire form of a stored media kind.
pub(super) fn media_to_wire(m: FileKind) -> Media {
    match m {
        FileKind::File => Media::File,
        FileKind::Image => Media::Image,
        FileKind::Voice => Media::Voice,
        FileKind::Video => Media::Video,
    }
}

/// The stored form of a wire media kind.
pub(super) fn media_from_wire(m: Media) -> FileKind {
    match m {
        Media::File => FileKind::File,
        Media::Image => FileKind::Image,
        Media::Voice => FileKind::Voice,
        Media::Video => FileKind::Video,
    }
}

/// A stored transfer's chunk layout.
pub(super) fn layout(t: &FileTransfer) -> Layout {
    Layout {
        size: t.size,
        chunk_size: t.chunk_size,
    }
}

/// Our FileOffer for an outgoing transfer.
pub(super) fn offer_of(t: &FileTransfer) -> PeerMessage {
    PeerMessage::FileOffer(FileOffer {
        transfer_id: t.transfer_id,
        name: t.name.clone(),
        size: t.size,
        media: media_to_wire(t.media),
        sha256: t.sha256,
        chunk_size: t.chunk_size,
    })
}

/// Our FileAccept for an incoming transfer, resuming after the chunks in `have`.
pub(super) fn accept_of(id: [u8; 16], have: &ChunkSet) -> PeerMessage {
    PeerMessage::FileAccept(FileAccept {
        transfer_id: id,
        have: have
            .ranges()
            .iter()
            .take(MAX_RESUME_RANGES)
            .copied()
            .collect(),
    })
}

/// A FileCancel.
pub(super) fn cancel(id: [u8; 16], r: u8) -> PeerMessage {
    PeerMessage::FileCancel {
        transfer_id: id,
        reason: r,
    }
}

/// What to announce for a stored unfinished transfer on a connection that has
/// not announced it yet.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Announce {
    /// Our offer (outgoing, offered or active).
    Offer,
    /// Our accept (incoming, active); `empty`: a zero-byte file, complete at once.
    Accept { empty: bool },
}

/// What an incoming offer for an id we do not know yet gets.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum OfferDecision {
    /// Over the size limit: recorded as cancelled, FileCancel TOO_LARGE.
    TooLarge,
    /// Too many offers wait for a decision: FileCancel DECLINED, nothing stored.
    Flooded,
    /// Recorded, the user decides.
    Ask,
    /// Recorded and accepted (a verified contact, small enough).
    Accept,
}

/// Decides a new offer of `size` bytes, with `pending` offers of the same
/// contact waiting and the contact `verified` or not.
pub(super) fn decide_offer(
    policy: &FilePolicy,
    size: u64,
    pending: u64,
    verified: bool,
) -> OfferDecision {
    if size > policy.max_size {
        OfferDecision::TooLarge
    } else if pending >= policy.max_pending_offers {
        OfferDecision::Flooded
    } else if verified && size <= policy.auto_accept_max {
        OfferDecision::Accept
    } else {
        OfferDecision::Ask
    }
}

/// The answer to an offer repeated for a transfer we already stored (`have`
/// gives the resume ranges of an active one). Someone else's id, our own
/// outgoing one or changed details are a protocol error.
pub(super) fn answer_repeated_offer(
    o: &FileOffer,
    t: &FileTransfer,
    contact: crate::store::ContactId,
    have: impl FnOnce() -> Option<ChunkSet>,
) -> Vec<PeerMessage> {
    let id = o.transfer_id;
    if t.contact != contact || t.direction != Direction::Incoming {
        return vec![cancel(id, reason::PROTOCOL)];
    }
    if t.size != o.size || t.sha256 != o.sha256 || t.chunk_size != o.chunk_size {
        return vec![cancel(id, reason::PROTOCOL)];
    }
    match t.state {
        TransferState::Active => match have() {
            Some(h) => vec![accept_of(id, &h)],
            None => Vec::new(),
        },
        TransferState::Completed => vec![PeerMessage::FileDone { transfer_id: id }],
        TransferState::Cancelled | TransferState::Failed => {
            vec![cancel(id, t.reason.unwrap_or(reason::UNSPECIFIED))]
        }
        TransferState::Offered | TransferState::Paused => Vec::new(),
    }
}

/// Checks an offer before anything is stored: PROTOCOL.md §14.1 has one chunk
/// size (a smaller one would multiply our per-chunk costs for the same size).
pub(super) fn check_offer(o: &FileOffer) -> Result<(), u8> {
    if o.chunk_size != CHUNK_SIZE {
        return Err(reason::PROTOCOL);
    }
    Ok(())
}

/// Whether every chunk fits the transfer's layout: index in range and exact length.
pub(super) fn chunks_fit(lay: &Layout, chunks: &[FileChunk]) -> bool {
    chunks
        .iter()
        .all(|c| lay.chunk_len(c.index) == Some(c.data.len()))
}

/// Chunks grouped by transfer, in order of first appearance (order kept within each).
pub(super) fn by_transfer(chunks: Vec<FileChunk>) -> Vec<([u8; 16], Vec<FileChunk>)> {
    let mut by_id: Vec<([u8; 16], Vec<FileChunk>)> = Vec::new();
    for c in chunks {
        match by_id.iter_mut().find(|(id, _)| *id == c.transfer_id) {
            Some((_, v)) => v.push(c),
            None => by_id.push((c.transfer_id, vec![c])),
        }
    }
    by_id
}

/// At most one progress report per transfer every [`PROGRESS_EVERY`].
#[derive(Debug, Default)]
pub(super) struct Throttle(HashMap<[u8; 16], Instant>);

impl Throttle {
    /// Whether a report for `id` is due at `now` (always when `force`); if so,
    /// it counts as made.
    pub(super) fn due(&mut self, id: [u8; 16], now: Instant, force: bool) -> bool {
        let due = force
            || self
                .0
                .get(&id)
                .is_none_or(|t| now.saturating_duration_since(*t) >= PROGRESS_EVERY);
        if due {
            self.0.insert(id, now);
        }
        due
    }

    /// Forgets a finished transfer.
    pub(super) fn forget(&mut self, id: &[u8; 16]) {
        self.0.remove(id);
    }
}

/// Which transfers this connection announced (offers and accepts sent).
#[derive(Default)]
pub(super) struct Announced(HashSet<[u8; 16]>);

impl Announced {
    /// What to announce for `t`, if anything (and marks it announced).
    pub(super) fn announce(&mut self, t: &FileTransfer) -> Option<Announce> {
        if self.0.contains(&t.transfer_id) {
            return None;
        }
        let a = match (t.direction, t.state) {
            (Direction::Outgoing, TransferState::Offered | TransferState::Active) => {
                Announce::Offer
            }
            (Direction::Incoming, TransferState::Active) => Announce::Accept { empty: t.size == 0 },
            _ => return None,
        };
        self.0.insert(t.transfer_id);
        Some(a)
    }

    /// Marks `id` announced (an accept sent in answer to an offer).
    pub(super) fn mark(&mut self, id: [u8; 16]) {
        self.0.insert(id);
    }

    /// Forgets `id`, so that the next announcement includes it again.
    pub(super) fn forget(&mut self, id: &[u8; 16]) {
        self.0.remove(id);
    }
}

/// Incoming lanes the peer announced on this connection, with the frames
/// stored from each (what FileLaneAck reports).
#[derive(Default)]
pub(super) struct LanesIn(HashMap<[u8; 16], u64>);

impl LanesIn {
    /// A lane was announced; false if the peer announced too many.
    pub(super) fn announced(&mut self, lane_id: [u8; 16]) -> bool {
        if self.0.len() >= MAX_PENDING_LANES * 4 {
            return false;
        }
        self.0.entry(lane_id).or_insert(0);
        true
    }

    /// Whether the peer announced `lane_id` on this connection.
    pub(super) fn knows(&self, lane_id: &[u8; 16]) -> bool {
        self.0.contains_key(lane_id)
    }

    /// Forgets a lane the node-wide registry refused.
    pub(super) fn forget(&mut self, lane_id: &[u8; 16]) {
        self.0.remove(lane_id);
    }

    /// `n` frames of a lane were stored: the lane's new count (None: not a
    /// lane of this connection).
    pub(super) fn stored(&mut self, lane_id: [u8; 16], n: u64) -> Option<u64> {
        let c = self.0.get_mut(&lane_id)?;
        *c = c.saturating_add(n);
        Some(*c)
    }
}

/// An outgoing lane's counts, as the engine sees them.
#[derive(Debug)]
struct LaneCount {
    /// Frames the receiver acknowledged.
    acked: u64,
    /// The lane's window.
    window: Window,
    /// Permits given to the writer so far (the window plus what was acknowledged).
    granted: u64,
    /// The writer ended: whether it completed.
    finished: Option<bool>,
}

/// The transfer being sent on this connection.
#[derive(Debug)]
pub(super) struct Sending {
    /// Its id.
    pub(super) id: [u8; 16],
    layout: Layout,
    have: ChunkSet,
    /// Next index to consider.
    next: u64,
    /// Sent indexes not yet covered by a FileAck, with when they were handed
    /// to the writer.
    inflight: VecDeque<(u64, Instant)>,
    /// How many may be in flight.
    window: Window,
    /// Chunks confirmed (held at accept time, or acknowledged since).
    confirmed: u64,
    done_sent: bool,
    /// Lanes carrying this transfer's chunks (empty: the session stream does).
    lanes: HashMap<[u8; 16], LaneCount>,
    /// All lanes finished at this instant; waiting for the receiver's FileDone.
    settling: Option<Instant>,
}

impl Sending {
    fn progress(&self) -> Progress {
        Progress {
            done: self
                .confirmed
                .saturating_mul(u64::from(self.layout.chunk_size))
                .min(self.layout.size),
            size: self.layout.size,
        }
    }
}

/// Bytes confirmed of a transfer's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Progress {
    /// Bytes confirmed.
    pub(super) done: u64,
    /// The file's size.
    pub(super) size: u64,
}

/// What a FileAck did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Acked {
    /// Not the transfer being sent on the session stream: nothing.
    Ignored,
    /// Beyond the file: the transfer fails (PROTOCOL).
    Protocol,
    /// Chunks confirmed; progress to report if due.
    Confirmed(Option<Progress>),
}

/// What to do after a lane writer ended.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum LaneEnd {
    /// Other lanes still run.
    Wait,
    /// Every lane completed: wait for the receiver's FileDone.
    Settle,
    /// A lane failed: forget the transfer on this connection and offer it
    /// again (the receiver's accept restarts it with what is missing).
    Resync,
}

/// The sending half of a connection's transfer engine.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    sending: Option<Sending>,
    /// Accepted by the peer, waiting for their turn: (id, chunks they hold).
    queue: VecDeque<([u8; 16], ChunkSet)>,
    /// No lane got through on this connection: the session stream carries chunks.
    lanes_broken: bool,
    throttle: Throttle,
}

impl Outgoing {
    /// The transfer being sent.
    pub(super) fn sending(&self) -> Option<[u8; 16]> {
        self.sending.as_ref().map(|s| s.id)
    }

    /// Whether `id` is being sent or waits its turn on this connection.
    pub(super) fn has(&self, id: &[u8; 16]) -> bool {
        self.sending.as_ref().is_some_and(|s| &s.id == id) || self.queue.iter().any(|q| &q.0 == id)
    }

    /// The peer accepted `id` (a file of `chunks` chunks) holding the chunks in
    /// `have`; it waits its turn. Ranges past the file are a protocol error.
    pub(super) fn accepted(
        &mut self,
        id: [u8; 16],
        have: &[(u64, u64)],
        chunks: u64,
    ) -> Result<(), u8> {
        let mut set = ChunkSet::new();
        for &(s, e) in have {
            if s >= e || e > chunks {
                return Err(reason::PROTOCOL);
            }
            set.insert_range(s, e);
        }
        self.queue.push_back((id, set));
        Ok(())
    }

    /// The next transfer to start, if none is being sent.
    pub(super) fn next_queued(&mut self) -> Option<([u8; 16], ChunkSet)> {
        if self.sending.is_some() {
            return None;
        }
        self.queue.pop_front()
    }

    /// How many lanes to open for a transfer with `missing` chunks, given the
    /// policy's `streams` and the fewest chunks worth lanes, `from` (0: the
    /// session stream carries it). Every lane gets at least two chunks.
    pub(super) fn lanes_for(&self, missing: u64, streams: u64, from: u64) -> u64 {
        if streams > 1 && !self.lanes_broken && missing >= (2 * streams).max(from) {
            streams
        } else {
            0
        }
    }

    /// Starts sending `id` (its source is open) over the session stream, or
    /// over `lanes` if any.
    pub(super) fn start(
        &mut self,
        id: [u8; 16],
        layout: Layout,
        have: ChunkSet,
        lanes: &[[u8; 16]],
        now: Instant,
    ) {
        let held = have.len();
        self.sending = Some(Sending {
            id,
            layout,
            confirmed: held,
            have,
            next: 0,
            inflight: VecDeque::new(),
            window: Window::new(now, held),
            done_sent: false,
            lanes: lanes
                .iter()
                .map(|l| {
                    let lane = LaneCount {
                        acked: 0,
                        window: Window::new(now, 0),
                        granted: FILE_WINDOW,
                        finished: None,
                    };
                    (*l, lane)
                })
                .collect(),
            settling: None,
        });
    }

    /// Stops `id` on this connection (sent or queued). Returns the transfer if
    /// it was being sent (its lanes are to be stopped).
    pub(super) fn stop(&mut self, id: &[u8; 16]) -> Option<Sending> {
        self.queue.retain(|(q, _)| q != id);
        self.throttle.forget(id);
        if self.sending.as_ref().is_some_and(|s| &s.id == id) {
            return self.sending.take();
        }
        None
    }

    /// Whether a chunk could be sent on the session stream now.
    pub(super) fn wants_to_send(&self) -> bool {
        self.sending.as_ref().is_some_and(|s| {
            s.lanes.is_empty() && !s.done_sent && (s.inflight.len() as u64) < s.window.size()
        })
    }

    /// Up to `max` next chunk indexes to send on the session stream, within the
    /// window (they count as in flight from `now`). None: nothing is being sent.
    pub(super) fn next_indexes(
        &mut self,
        max: usize,
        now: Instant,
    ) -> Option<([u8; 16], Vec<u64>)> {
        let s = self.sending.as_mut().filter(|s| s.lanes.is_empty())?;
        let n = s.layout.chunks();
        let room = usize::try_from(s.window.size().saturating_sub(s.inflight.len() as u64))
            .unwrap_or(usize::MAX);
        let mut idx = Vec::new();
        let mut i = s.next;
        while i < n && idx.len() < max.min(room) {
            if !s.have.contains(i) {
                idx.push(i);
            }
            i += 1;
        }
        s.next = i;
        s.inflight.extend(idx.iter().map(|i| (*i, now)));
        Some((s.id, idx))
    }

    /// After the chunks of [`Outgoing::next_indexes`]: the sender's FileDone is
    /// due once every chunk was handed out (once).
    pub(super) fn done_due(&mut self) -> Option<[u8; 16]> {
        let s = self.sending.as_mut()?;
        if s.lanes.is_empty() && s.next >= s.layout.chunks() && !s.done_sent {
            s.done_sent = true;
            return Some(s.id);
        }
        None
    }

    /// After a write: once our FileDone went out the window is not needed any
    /// more; the transfer waits for the receiver's FileDone in the store and the
    /// next one may start. True if the connection let go of one.
    pub(super) fn release_done(&mut self) -> bool {
        if self.sending.as_ref().is_some_and(|s| s.done_sent) {
            self.sending = None;
            return true;
        }
        false
    }

    /// The receiver's FileAck: it holds every chunk below `next`.
    pub(super) fn on_ack(&mut self, id: [u8; 16], next: u64, now: Instant) -> Acked {
        let Some(s) = self.sending.as_mut().filter(|s| s.id == id) else {
            return Acked::Ignored;
        };
        if next > s.layout.chunks() {
            return Acked::Protocol;
        }
        let mut newest = None;
        while let Some((_, sent_at)) = s.inflight.front().copied().filter(|(i, _)| *i < next) {
            s.inflight.pop_front();
            s.confirmed += 1;
            newest = Some(sent_at);
        }
        if let Some(sent_at) = newest {
            s.window.on_ack(now, sent_at, s.confirmed);
        }
        let p = s.progress();
        Acked::Confirmed(self.throttle.due(id, now, false).then_some(p))
    }

    /// The receiver's FileLaneAck: it stored `count` frames of a lane whose
    /// writer wrote `sent`, the newest of them at `sent_at`. Returns the
    /// window permits to give the writer (what was acknowledged, adjusted to
    /// the lane's window) and progress to report if due. A count above `sent`
    /// is a protocol error (PROTOCOL.md §14.3): a peer cannot acknowledge
    /// what it was not sent, so it cannot inflate the window.
    pub(super) fn on_lane_ack(
        &mut self,
        lane_id: [u8; 16],
        count: u64,
        sent: u64,
        sent_at: Option<Instant>,
        now: Instant,
    ) -> Result<Option<(usize, Option<Progress>)>, PeerError> {
        let Some(s) = self.sending.as_mut() else {
            return Ok(None);
        };
        let Some(l) = s.lanes.get_mut(&lane_id) else {
            return Ok(None);
        };
        if count <= l.acked {
            return Ok(None);
        }
        if count > sent {
            return Err(PeerError::AckBeyondSent);
        }
        let delta = count - l.acked;
        l.acked = count;
        if let Some(t) = sent_at {
            l.window.on_ack(now, t, count);
        }
        // Permits out (in flight or unused) = the window: a shrinking window
        // gives back less until the excess has drained.
        let want = count.saturating_add(l.window.size());
        let permits = usize::try_from(want.saturating_sub(l.granted))
            .map_err(|_| PeerError::AckBeyondSent)?;
        l.granted = l.granted.max(want);
        s.confirmed = s.confirmed.saturating_add(delta);
        if s.settling.is_some() {
            s.settling = Some(now);
        }
        let p = s.progress();
        let id = s.id;
        Ok(Some((
            permits,
            self.throttle.due(id, now, false).then_some(p),
        )))
    }

    /// A lane writer ended (`ok`: it wrote its share and the receiver
    /// acknowledged it). None: not a lane of the transfer being sent.
    pub(super) fn lane_ended(
        &mut self,
        lane_id: [u8; 16],
        ok: bool,
        now: Instant,
    ) -> Option<LaneEnd> {
        let s = self.sending.as_mut()?;
        s.lanes.get_mut(&lane_id)?.finished = Some(ok);
        if s.lanes.values().any(|l| l.finished.is_none()) {
            return Some(LaneEnd::Wait);
        }
        if s.lanes.values().all(|l| l.finished == Some(false)) {
            // No lane got through: the session stream carries the rest.
            self.lanes_broken = true;
        }
        if s.lanes.values().any(|l| l.finished == Some(false)) {
            return Some(LaneEnd::Resync);
        }
        s.settling = Some(now);
        Some(LaneEnd::Settle)
    }

    /// Whether the lanes finished [`LANE_SETTLE`] ago without the receiver's
    /// FileDone or any acknowledgement since (re-synchronise then).
    pub(super) fn settle_expired(&self, now: Instant) -> bool {
        self.sending
            .as_ref()
            .and_then(|s| s.settling)
            .is_some_and(|t| now.saturating_duration_since(t) >= LANE_SETTLE)
    }

    /// Lets go of the transfer being sent (to offer it again).
    pub(super) fn take(&mut self) -> Option<Sending> {
        self.sending.take()
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::files::FILE_WINDOW_MAX;
    use crate::store::ContactId;

    const ID: [u8; 16] = [1; 16];
    const L1: [u8; 16] = [11; 16];
    const L2: [u8; 16] = [12; 16];

    /// `ms` milliseconds after a fixed start.
    fn at(ms: u64) -> Instant {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *START.get_or_init(Instant::now) + Duration::from_millis(ms)
    }

    fn lay(chunks: u64) -> Layout {
        Layout {
            size: chunks * u64::from(CHUNK_SIZE),
            chunk_size: CHUNK_SIZE,
        }
    }

    fn sending(chunks: u64, have: &[(u64, u64)], lanes: &[[u8; 16]]) -> Outgoing {
        let mut o = Outgoing::default();
        o.accepted(ID, have, chunks).unwrap();
        let (id, set) = o.next_queued().unwrap();
        o.start(id, lay(chunks), set, lanes, at(0));
        o
    }

    fn transfer(direction: Direction, state: TransferState) -> FileTransfer {
        FileTransfer {
            transfer_id: ID,
            contact: ContactId(7),
            direction,
            name: "f".into(),
            size: 10,
            sha256: [5; 32],
            chunk_size: CHUNK_SIZE,
            have_count: 0,
            local_path: None,
            state,
            media: FileKind::File,
            reason: None,
            part_file: None,
            chunks_sent: 0,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn offer(size: u64, chunk_size: u32) -> FileOffer {
        FileOffer {
            transfer_id: ID,
            name: "f".into(),
            size,
            media: Media::File,
            sha256: [5; 32],
            chunk_size,
        }
    }

    #[test]
    fn accept_ranges_past_the_file_or_empty_are_refused() {
        let mut o = Outgoing::default();
        assert_eq!(o.accepted(ID, &[(0, 11)], 10), Err(reason::PROTOCOL));
        assert_eq!(o.accepted(ID, &[(3, 3)], 10), Err(reason::PROTOCOL));
        assert!(!o.has(&ID));
        assert_eq!(o.accepted(ID, &[(0, 10)], 10), Ok(()));
        assert!(o.has(&ID));
    }

    #[test]
    fn one_transfer_at_a_time_in_queue_order() {
        let mut o = Outgoing::default();
        o.accepted([1; 16], &[], 4).unwrap();
        o.accepted([2; 16], &[], 4).unwrap();
        let (a, set) = o.next_queued().unwrap();
        assert_eq!(a, [1; 16]);
        o.start(a, lay(4), set, &[], at(0));
        assert_eq!(o.next_queued(), None, "one is being sent");
        assert!(o.stop(&[1; 16]).is_some());
        assert_eq!(o.next_queued().unwrap().0, [2; 16]);
    }

    #[test]
    fn the_window_bounds_what_is_in_flight() {
        let mut o = sending(100, &[], &[]);
        let (_, first) = o.next_indexes(usize::MAX, at(0)).unwrap();
        assert_eq!(first.len() as u64, FILE_WINDOW);
        assert!(!o.wants_to_send());
        assert_eq!(o.next_indexes(8, at(0)).unwrap().1, Vec::<u64>::new());
        // Acknowledging 5 chunks makes room for 5.
        let now = Instant::now();
        assert!(matches!(o.on_ack(ID, 5, now), Acked::Confirmed(_)));
        assert!(o.wants_to_send());
        assert_eq!(
            o.next_indexes(usize::MAX, at(0)).unwrap().1,
            (32..37).collect::<Vec<_>>()
        );
    }

    #[test]
    fn the_window_grows_with_what_the_path_carries_and_stops_at_the_ceiling() {
        let mut o = sending(10_000, &[], &[]);
        let mut sent = o.next_indexes(usize::MAX, at(0)).unwrap().1;
        assert_eq!(sent.len() as u64, FILE_WINDOW);
        // Every round trip of 100 ms acknowledges the whole window: the
        // window doubles each time, up to FILE_WINDOW_MAX.
        let mut sizes = Vec::new();
        for round in 1..=6u64 {
            let next = sent.last().unwrap() + 1;
            assert!(matches!(
                o.on_ack(ID, next, at(100 * round)),
                Acked::Confirmed(_)
            ));
            sent = o.next_indexes(usize::MAX, at(100 * round)).unwrap().1;
            sizes.push(sent.len() as u64);
        }
        assert_eq!(sizes, vec![64, 128, 256, 512, 512, 512]);
        assert_eq!(*sizes.last().unwrap(), FILE_WINDOW_MAX);
        assert!(!o.wants_to_send());
    }

    #[test]
    fn held_chunks_are_skipped_and_done_follows_the_last() {
        let mut o = sending(6, &[(0, 2), (4, 5)], &[]);
        assert_eq!(o.next_indexes(usize::MAX, at(0)).unwrap().1, vec![2, 3, 5]);
        assert_eq!(o.done_due(), Some(ID));
        assert_eq!(o.done_due(), None, "FileDone once");
        assert!(!o.wants_to_send());
        assert!(o.release_done());
        assert_eq!(o.sending(), None);
    }

    #[test]
    fn an_ack_beyond_the_file_is_a_protocol_error_and_others_are_ignored() {
        let mut o = sending(4, &[], &[]);
        let now = Instant::now();
        assert_eq!(o.on_ack(ID, 5, now), Acked::Protocol);
        assert_eq!(o.on_ack([9; 16], 1, now), Acked::Ignored);
        o.next_indexes(4, at(0));
        assert_eq!(
            o.on_ack(ID, 4, now),
            Acked::Confirmed(Some(Progress {
                done: 4 * u64::from(CHUNK_SIZE),
                size: 4 * u64::from(CHUNK_SIZE)
            }))
        );
        // Within PROGRESS_EVERY: confirmed, no report.
        assert_eq!(o.on_ack(ID, 4, now), Acked::Confirmed(None));
    }

    #[test]
    fn lane_acks_return_permits_and_never_exceed_what_was_sent() {
        let mut o = sending(100, &[], &[L1, L2]);
        let now = Instant::now();
        assert!(!o.wants_to_send(), "lanes carry it");
        assert_eq!(o.next_indexes(8, at(0)), None);
        let (permits, p) = o.on_lane_ack(L1, 3, 5, None, now).unwrap().unwrap();
        assert_eq!(permits, 3);
        assert!(p.is_some());
        // Old or repeated counts do nothing.
        assert_eq!(o.on_lane_ack(L1, 2, 5, None, now).unwrap(), None);
        assert_eq!(o.on_lane_ack(L1, 5, 5, None, now).unwrap().unwrap().0, 2);
        // Unknown lane: nothing.
        assert_eq!(o.on_lane_ack([99; 16], 1, 1, None, now).unwrap(), None);
    }

    #[test]
    fn an_absurd_lane_count_is_an_error_not_a_panic() {
        let mut o = sending(100, &[], &[L1]);
        let now = Instant::now();
        assert!(matches!(
            o.on_lane_ack(L1, u64::MAX, 10, None, now),
            Err(PeerError::AckBeyondSent)
        ));
        assert!(matches!(
            o.on_lane_ack(L1, 11, 10, None, now),
            Err(PeerError::AckBeyondSent)
        ));
        // The lane still works after the refused count.
        assert_eq!(o.on_lane_ack(L1, 10, 10, None, now).unwrap().unwrap().0, 10);
    }

    #[test]
    fn a_lane_window_follows_its_path_and_a_shrink_drains_before_permits_come_back() {
        let mut o = sending(10_000, &[], &[L1]);
        // The writer used its 32 permits at 0 ms, all acknowledged at 100 ms:
        // the 32 come back plus 32 more (the window doubled).
        let (p, _) = o
            .on_lane_ack(L1, 32, 32, Some(at(0)), at(100))
            .unwrap()
            .unwrap();
        assert_eq!(p, 64);
        let (p, _) = o
            .on_lane_ack(L1, 96, 96, Some(at(100)), at(200))
            .unwrap()
            .unwrap();
        assert_eq!(p, 128, "64 acknowledged, window 64 → 128");
        // Much later the path carries 10 chunks/s: the window falls back to
        // the floor, and nothing comes back until the excess has drained.
        let (p, _) = o
            .on_lane_ack(L1, 97, 224, Some(at(9_900)), at(10_000))
            .unwrap()
            .unwrap();
        assert_eq!(p, 0);
    }

    #[test]
    fn lanes_that_all_complete_settle_and_expire_without_progress() {
        let mut o = sending(100, &[], &[L1, L2]);
        let t0 = Instant::now();
        assert_eq!(o.lane_ended(L1, true, t0), Some(LaneEnd::Wait));
        assert_eq!(o.lane_ended(L2, true, t0), Some(LaneEnd::Settle));
        assert!(!o.settle_expired(t0 + LANE_SETTLE / 2));
        // An acknowledgement while settling restarts the wait.
        let t1 = t0 + LANE_SETTLE / 2;
        o.on_lane_ack(L1, 1, 1, None, t1).unwrap();
        assert!(!o.settle_expired(t0 + LANE_SETTLE));
        assert!(o.settle_expired(t1 + LANE_SETTLE));
        assert_eq!(o.lane_ended([99; 16], true, t1), None);
    }

    #[test]
    fn a_failed_lane_resyncs_and_all_failed_fall_back_to_the_session_stream() {
        let mut o = sending(100, &[], &[L1, L2]);
        let now = Instant::now();
        assert_eq!(o.lanes_for(100, 2, 0), 2);
        o.lane_ended(L1, true, now);
        assert_eq!(o.lane_ended(L2, false, now), Some(LaneEnd::Resync));
        assert_eq!(o.lanes_for(100, 2, 0), 2, "one lane worked: lanes stay on");
        o.take();
        let mut o2 = sending(100, &[], &[L1, L2]);
        o2.lane_ended(L1, false, now);
        assert_eq!(o2.lane_ended(L2, false, now), Some(LaneEnd::Resync));
        assert_eq!(o2.lanes_for(100, 2, 0), 0, "no lane got through");
    }

    #[test]
    fn lanes_only_for_enough_chunks_and_more_than_one_stream() {
        let o = Outgoing::default();
        assert_eq!(o.lanes_for(1000, 1, 0), 0);
        assert_eq!(o.lanes_for(7, 4, 0), 0);
        assert_eq!(o.lanes_for(8, 4, 0), 4);
        // Below the size lanes are worth, the session stream carries it.
        assert_eq!(o.lanes_for(127, 2, 128), 0);
        assert_eq!(o.lanes_for(128, 2, 128), 2);
    }

    #[test]
    fn stopping_drops_the_queued_and_the_sent() {
        let mut o = Outgoing::default();
        o.accepted([1; 16], &[], 4).unwrap();
        o.accepted([2; 16], &[], 4).unwrap();
        assert!(o.stop(&[2; 16]).is_none(), "was only queued");
        assert!(!o.has(&[2; 16]));
        let (a, set) = o.next_queued().unwrap();
        o.start(a, lay(4), set, &[], at(0));
        assert_eq!(o.stop(&[1; 16]).unwrap().id, [1; 16]);
        assert_eq!(o.sending(), None);
    }

    #[test]
    fn offers_are_decided_by_size_flood_and_trust() {
        let p = FilePolicy {
            max_size: 1000,
            auto_accept_max: 100,
            max_pending_offers: 2,
            ..FilePolicy::default()
        };
        assert_eq!(decide_offer(&p, 1001, 0, true), OfferDecision::TooLarge);
        assert_eq!(decide_offer(&p, 10, 2, true), OfferDecision::Flooded);
        assert_eq!(decide_offer(&p, 100, 1, true), OfferDecision::Accept);
        assert_eq!(decide_offer(&p, 101, 1, true), OfferDecision::Ask);
        assert_eq!(decide_offer(&p, 10, 0, false), OfferDecision::Ask);
    }

    #[test]
    fn only_the_protocol_chunk_size_is_offered() {
        assert_eq!(check_offer(&offer(10, CHUNK_SIZE)), Ok(()));
        assert_eq!(check_offer(&offer(10, 1)), Err(reason::PROTOCOL));
        assert_eq!(
            check_offer(&offer(10, CHUNK_SIZE * 2)),
            Err(reason::PROTOCOL)
        );
    }

    #[test]
    fn a_repeated_offer_gets_the_stored_answer_or_a_protocol_error() {
        let c = ContactId(7);
        let o = offer(10, CHUNK_SIZE);
        let none = || None;
        let active = transfer(Direction::Incoming, TransferState::Active);
        let mut have = ChunkSet::new();
        have.insert(0);
        assert_eq!(
            answer_repeated_offer(&o, &active, c, || Some(have.clone())),
            vec![accept_of(ID, &have)]
        );
        let done = transfer(Direction::Incoming, TransferState::Completed);
        assert_eq!(
            answer_repeated_offer(&o, &done, c, none),
            vec![PeerMessage::FileDone { transfer_id: ID }]
        );
        let ours = transfer(Direction::Outgoing, TransferState::Active);
        assert_eq!(
            answer_repeated_offer(&o, &ours, c, none),
            vec![cancel(ID, reason::PROTOCOL)]
        );
        assert_eq!(
            answer_repeated_offer(&o, &active, ContactId(8), none),
            vec![cancel(ID, reason::PROTOCOL)],
            "another contact's transfer"
        );
        let changed = offer(11, CHUNK_SIZE);
        assert_eq!(
            answer_repeated_offer(&changed, &active, c, none),
            vec![cancel(ID, reason::PROTOCOL)]
        );
        let mut gone = transfer(Direction::Incoming, TransferState::Cancelled);
        gone.reason = Some(reason::DECLINED);
        assert_eq!(
            answer_repeated_offer(&o, &gone, c, none),
            vec![cancel(ID, reason::DECLINED)]
        );
    }

    #[test]
    fn announcements_once_per_connection_until_forgotten() {
        let mut a = Announced::default();
        let out = transfer(Direction::Outgoing, TransferState::Offered);
        assert_eq!(a.announce(&out), Some(Announce::Offer));
        assert_eq!(a.announce(&out), None);
        a.forget(&ID);
        assert_eq!(a.announce(&out), Some(Announce::Offer));
        let mut b = Announced::default();
        let mut inc = transfer(Direction::Incoming, TransferState::Active);
        inc.size = 0;
        assert_eq!(b.announce(&inc), Some(Announce::Accept { empty: true }));
        let mut c = Announced::default();
        let waiting = transfer(Direction::Incoming, TransferState::Offered);
        assert_eq!(c.announce(&waiting), None, "the user has not decided");
        let finished = transfer(Direction::Outgoing, TransferState::Completed);
        assert_eq!(c.announce(&finished), None);
    }

    #[test]
    fn chunks_must_fit_the_layout_exactly() {
        let l = Layout {
            size: u64::from(CHUNK_SIZE) + 3,
            chunk_size: CHUNK_SIZE,
        };
        let chunk = |index, len| FileChunk {
            transfer_id: ID,
            index,
            data: vec![0; len],
        };
        assert!(chunks_fit(
            &l,
            &[chunk(0, CHUNK_SIZE as usize), chunk(1, 3)]
        ));
        assert!(!chunks_fit(&l, &[chunk(1, 2)]));
        assert!(!chunks_fit(&l, &[chunk(0, 1)]));
        assert!(!chunks_fit(&l, &[chunk(2, 0)]));
    }

    #[test]
    fn a_peer_cannot_announce_lanes_without_end() {
        let mut l = LanesIn::default();
        for i in 0..MAX_PENDING_LANES * 4 {
            assert!(l.announced([i as u8; 16]));
        }
        assert!(!l.announced([0xff; 16]));
        assert_eq!(l.stored([0; 16], 3), Some(3));
        assert_eq!(l.stored([0; 16], 2), Some(5));
        assert_eq!(l.stored([0xff; 16], 1), None);
    }

    #[test]
    fn progress_reports_are_throttled_per_transfer() {
        let mut t = Throttle::default();
        let now = Instant::now();
        assert!(t.due([1; 16], now, false));
        assert!(!t.due([1; 16], now, false));
        assert!(t.due([2; 16], now, false), "per transfer");
        assert!(t.due([1; 16], now, true), "forced");
        assert!(t.due([1; 16], now + PROGRESS_EVERY, false));
    }

    #[test]
    fn grouping_keeps_first_appearance_and_order_within() {
        let c = |id: u8, index| FileChunk {
            transfer_id: [id; 16],
            index,
            data: Vec::new(),
        };
        let g = by_transfer(vec![c(2, 0), c(1, 5), c(2, 1), c(1, 6)]);
        let got: Vec<_> = g
            .iter()
            .map(|(id, v)| (id[0], v.iter().map(|c| c.index).collect::<Vec<_>>()))
            .collect();
        assert_eq!(got, vec![(2, vec![0, 1]), (1, vec![5, 6])]);
    }
}
