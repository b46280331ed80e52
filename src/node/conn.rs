//! Drives a [`Peer`] state machine over any framed `AsyncRead + AsyncWrite`
//! stream: reads frames, performs the machine's [`Action`]s in order against
//! the store (persist, then write), runs the heartbeat, dead-connection and
//! Ack timers, and forwards the node's commands.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::command::Command;
use super::files::{FileCtx, FileLink};
use super::peer::{Action, Effect, Peer, PeerState};
use super::store_handle::StoreHandle;
use super::{Event, NodeError};
use crate::store::{
    ChainState, ContactId, DeliveryState, Direction, IncomingEffect, Inserted, MessageId,
    NewMessage,
};
use crate::wire::{PeerMessage, PresenceState};

/// Frames handled back to back before the coalesced Ack is sent.
const BATCH: usize = 64;

/// Chunk frames read from disk per step, and how many such groups may wait in
/// the writer queue: Texts queue behind at most `CHUNK_GROUP * CHUNK_GROUPS`
/// chunks (PROTOCOL.md §14.1).
const CHUNK_GROUP: usize = 4;
const CHUNK_GROUPS: usize = 2;

/// Most frames without a chunk permit (Texts, acks, replies) that may wait
/// in the writer queue. Texts are bounded by the send window (256) and
/// replies are small; more than this means the peer keeps sending while it
/// does not read our answers, and the connection is closed
/// (SECURITY-2026-11 L3): memory stays bounded whatever the peer sends.
pub const MAX_WRITE_BACKLOG: usize = 4096;

/// Group entries not acknowledged are written again after this many Ack
/// timeouts on a live connection (a receiver that dropped one, e.g. while
/// it was behind the log, gets it again without a reconnect).
const GROUP_RESEND_FACTOR: u32 = 5;

/// How long a closing connection may take to flush its last frames.
const DRAIN: Duration = Duration::from_secs(5);

/// Timers of a connection (PROTOCOL.md §10, §13).
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// Presence heartbeat interval while Ready.
    pub heartbeat: Duration,
    /// No valid frame for this long: the peer is gone.
    pub dead_after: Duration,
    /// The peer's Hello must arrive within this.
    pub hello_timeout: Duration,
    /// Unacknowledged Texts are re-sent after this long without Ack progress.
    pub ack_timeout: Duration,
}

/// How a connection ended.
#[derive(Debug)]
pub enum Outcome {
    /// The stream closed or the node stopped it; the session stays.
    Closed {
        /// Whether the connection reached Ready.
        was_ready: bool,
    },
    /// The session ended (by us or by the peer); keys are erased.
    Ended,
    /// A protocol, store or I/O failure; the session stays.
    Failed {
        /// Whether the connection reached Ready.
        was_ready: bool,
        /// What went wrong.
        error: NodeError,
    },
}

/// What a connection needs from the node.
pub struct ConnCtx {
    /// The node (groups are node-wide state).
    pub(super) node: std::sync::Weak<super::inner::Inner>,
    /// The store.
    pub store: StoreHandle,
    /// The node's event bus.
    pub events: broadcast::Sender<Event>,
    /// The contact this session belongs to.
    pub contact: ContactId,
    /// Called when this connection becomes Ready: from then on the registry
    /// knows how long it has been Ready (the tie-break's crossing window).
    pub on_ready: Arc<dyn Fn() + Send + Sync>,
    /// Called once this connection is going away (the peer announced it
    /// is going offline, or the connection stopped), so that the registry
    /// lets a reconnect replace it instead of refusing it by the tie-break.
    pub on_leaving: Arc<dyn Fn() + Send + Sync>,
    /// Timer values.
    pub timers: Timers,
    /// File-transfer settings.
    pub files: FileCtx,
}

/// Frames for the writer, with the permit of a chunk group (released once written).
struct WriteItem {
    frames: Vec<Bytes>,
    _permit: Option<OwnedSemaphorePermit>,
    /// Frames counted in the backlog (those without a permit).
    counted: usize,
}

/// Writes queued frames in order and flushes. Runs next to the reading loop so
/// that a full outgoing stream never stops us from reading (two peers sending
/// files to each other would otherwise deadlock). Ends when the queue closes.
async fn write_loop<K>(
    mut sink: K,
    mut rx: mpsc::UnboundedReceiver<WriteItem>,
    backlog: Arc<AtomicUsize>,
) -> std::io::Result<()>
where
    K: Sink<Bytes, Error = std::io::Error> + Unpin,
{
    while let Some(item) = rx.recv().await {
        let mut held = vec![item];
        while held.len() < 64 {
            match rx.try_recv() {
                Ok(more) => held.push(more),
                Err(_) => break,
            }
        }
        for item in &mut held {
            for f in item.frames.drain(..) {
                sink.feed(f).await?;
            }
        }
        sink.flush().await?;
        let written: usize = held.iter().map(|i| i.counted).sum();
        backlog.fetch_sub(written, Ordering::AcqRel);
    }
    Ok(())
}

/// Runs `peer` over `framed` until it closes. `first` is a frame already read
/// (by the listener, to find the session). The machine must be fresh.
pub async fn drive<S>(
    framed: &mut Framed<S, LengthDelimitedCodec>,
    mut peer: Peer,
    first: Option<Bytes>,
    ctx: &ConnCtx,
    cmds: &mut mpsc::UnboundedReceiver<Command>,
    cancel: &CancellationToken,
) -> Outcome
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (sink, stream) = framed.split();
    let (wtx, wrx) = mpsc::unbounded_channel();
    let backlog = Arc::new(AtomicUsize::new(0));
    let writer = write_loop(sink, wrx, backlog.clone());
    tokio::pin!(writer);
    let mut run = Run {
        stream,
        writer: Some(wtx),
        backlog,
        ctx,
        session_id: peer.session_id(),
        was_ready: false,
        ack_progress: Instant::now(),
        files: FileLink::new(
            ctx.store.clone(),
            ctx.events.clone(),
            ctx.contact,
            ctx.files.clone(),
        ),
        file_inbox: Vec::new(),
        announce_due: false,
        chunk_permits: Arc::new(Semaphore::new(CHUNK_GROUPS)),
        group_inbox: Vec::new(),
        group_sent_upto: 0,
        group_resend_at: Instant::now() + ctx.timers.ack_timeout * GROUP_RESEND_FACTOR,
        peer_fpr: None,
    };
    let mut writer_done = false;
    let result = {
        let main = run.main(&mut peer, first, cmds, cancel);
        tokio::pin!(main);
        tokio::select! {
            r = &mut main => r,
            w = &mut writer => {
                writer_done = true;
                Err(NodeError::Stream {
                    source: w.err().unwrap_or_else(|| std::io::ErrorKind::BrokenPipe.into()),
                })
            }
        }
    };
    // Let the writer flush what is queued (goodbyes, EndSession), bounded.
    run.writer = None;
    if !writer_done {
        let _ = tokio::time::timeout(DRAIN, &mut writer).await;
    }
    // Mark the connection as gone before anyone hears it is offline.
    (ctx.on_leaving)();
    let was_ready = run.was_ready;
    if was_ready {
        let contact = ctx.contact;
        let now = crate::time::now_secs();
        let _ = ctx
            .store
            .run(move |s| s.set_contact_last_seen(contact, now))
            .await;
        let _ = ctx.events.send(Event::PresenceChanged {
            contact,
            online: false,
            state: None,
        });
    }
    match result {
        Ok(true) => Outcome::Ended,
        Ok(false) => Outcome::Closed { was_ready },
        Err(error) => Outcome::Failed { was_ready, error },
    }
}

struct Run<'a, R> {
    stream: R,
    writer: Option<mpsc::UnboundedSender<WriteItem>>,
    /// Frames without a permit queued for the writer, not yet written.
    backlog: Arc<AtomicUsize>,
    ctx: &'a ConnCtx,
    session_id: [u8; 16],
    was_ready: bool,
    ack_progress: Instant,
    files: FileLink,
    /// File messages of the frames being applied, for the engine.
    file_inbox: Vec<PeerMessage>,
    /// The connection just became Ready: announce transfers.
    announce_due: bool,
    chunk_permits: Arc<Semaphore>,
    /// Group messages of the frames being applied, for the group engine.
    group_inbox: Vec<crate::group::GroupWire>,
    /// Group outbox entries up to this row id were written on this connection.
    group_sent_upto: i64,
    /// When unacknowledged group entries are written again.
    group_resend_at: Instant,
    /// The peer's fingerprint (group outboxes are keyed by it).
    peer_fpr: Option<String>,
}

impl<R> Run<'_, R>
where
    R: Stream<Item = std::io::Result<BytesMut>> + Unpin,
{
    /// Ok(true) when the session ended, Ok(false) on a clean close.
    async fn main(
        &mut self,
        peer: &mut Peer,
        first: Option<Bytes>,
        cmds: &mut mpsc::UnboundedReceiver<Command>,
        cancel: &CancellationToken,
    ) -> Result<bool, NodeError> {
        let timers = self.ctx.timers;
        let start = peer.start()?;
        if self.apply(start).await? {
            return Ok(true);
        }
        if let Some(f) = first
            && self.on_frames(peer, f).await?
        {
            return Ok(true);
        }
        let mut heartbeat = tokio::time::interval(timers.heartbeat);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        heartbeat.reset();
        let dead = tokio::time::sleep(timers.hello_timeout);
        tokio::pin!(dead);
        let ack_timer = tokio::time::sleep(timers.ack_timeout);
        tokio::pin!(ack_timer);
        let mut last_acked = peer.acked_out();
        loop {
            if peer.acked_out() != last_acked {
                last_acked = peer.acked_out();
                self.ack_progress = Instant::now();
            }
            ack_timer
                .as_mut()
                .reset(self.ack_progress + timers.ack_timeout);
            tokio::select! {
                frame = self.stream.next() => {
                    let frame = match frame {
                        None => return Ok(false),
                        Some(Err(e)) => return Err(NodeError::Stream { source: e }),
                        Some(Ok(f)) => f.freeze(),
                    };
                    if self.on_frames(peer, frame).await? {
                        return Ok(true);
                    }
                    if peer.state() == PeerState::Closed {
                        return Ok(false);
                    }
                    let wait = if peer.state() == PeerState::Ready {
                        timers.dead_after
                    } else {
                        timers.hello_timeout
                    };
                    dead.as_mut().reset(Instant::now() + wait);
                }
                cmd = cmds.recv() => match cmd {
                    Some(Command::Queue(mut texts)) => {
                        // Coalesce commands already waiting (a burst of sends).
                        let mut pending_end = None;
                        while let Ok(more) = cmds.try_recv() {
                            match more {
                                Command::Queue(t) => texts.extend(t),
                                Command::Receipt(upto) => {
                                    if let Some(a) = peer.receipt(upto)? {
                                        self.apply(vec![a]).await?;
                                    }
                                }
                                Command::End(done) => {
                                    pending_end = Some(done);
                                    break;
                                }
                                other => self.on_file_command(peer, other).await?,
                            }
                        }
                        let actions = peer.queue(texts)?;
                        self.apply(actions).await?;
                        if let Some(done) = pending_end {
                            if let Some(a) = peer.end()? {
                                let _ = self.apply(vec![a]).await;
                            }
                            self.end_session(false).await?;
                            let _ = done.send(());
                            return Ok(true);
                        }
                    }
                    Some(Command::Receipt(upto)) => {
                        if let Some(a) = peer.receipt(upto)? {
                            self.apply(vec![a]).await?;
                        }
                    }
                    Some(c @ (Command::Files
                    | Command::GroupFlush
                    | Command::FileCancel(..)
                    | Command::LaneChunks { .. }
                    | Command::LaneDone { .. })) => {
                        self.on_file_command(peer, c).await?;
                    }
                    Some(Command::End(done)) => {
                        let frame = peer.end()?;
                        if let Some(a) = frame {
                            // Best effort: the keys are erased whatever happens.
                            let _ = self.apply(vec![a]).await;
                        }
                        self.end_session(false).await?;
                        let _ = done.send(());
                        return Ok(true);
                    }
                    None => return Ok(false),
                },
                permit = self.chunk_permits.clone().acquire_owned(),
                    if peer.state() == PeerState::Ready && self.files.wants_to_send() =>
                {
                    let permit = permit.map_err(|_| NodeError::Internal { what: "chunk permits closed" })?;
                    self.send_chunks(peer, permit).await?;
                }
                _ = heartbeat.tick() => {
                    if let Some(a) = peer.presence(PresenceState::Online)? {
                        self.apply(vec![a]).await?;
                    }
                    if peer.state() == PeerState::Ready {
                        let msgs = self.files.tick().await?;
                        self.send_files(peer, msgs).await?;
                        if Instant::now() >= self.group_resend_at {
                            self.group_resend_at = Instant::now() + timers.ack_timeout * GROUP_RESEND_FACTOR;
                            self.group_sent_upto = 0;
                            self.group_flush(peer).await?;
                        }
                    }
                }
                _ = &mut dead => {
                    return Err(NodeError::Timeout { what: if self.was_ready { "heartbeat" } else { "Hello" } });
                }
                _ = &mut ack_timer, if peer.unacked() > 0 && peer.state() == PeerState::Ready => {
                    self.ack_progress = Instant::now();
                    let actions = peer.resend_unacked()?;
                    self.apply(actions).await?;
                }
                _ = cancel.cancelled() => {
                    if let Some(a) = peer.close()? {
                        let _ = self.apply(vec![a]).await;
                    }
                    return Ok(false);
                }
            }
        }
    }

    /// Handles `frame` and every frame already buffered behind it (up to
    /// [`BATCH`]), records them in one transaction, then sends one
    /// coalesced Ack.
    async fn on_frames(&mut self, peer: &mut Peer, frame: Bytes) -> Result<bool, NodeError> {
        let mut actions = peer.on_frame(&frame)?;
        let mut n = 1;
        while n < BATCH && peer.state() == PeerState::Ready {
            let Some(Some(r)) = self.stream.next().now_or_never() else {
                break;
            };
            let f = r.map_err(|e| NodeError::Stream { source: e })?;
            match peer.on_frame(&f) {
                Ok(more) => actions.extend(more),
                Err(e) => {
                    // Nothing of the bad frame is recorded; what came before
                    // it was valid and is kept (and acknowledged) first.
                    // (No Ack on a failed connection: the peer re-sends
                    // and duplicates are dropped.)
                    self.apply(actions).await?;
                    return Err(e.into());
                }
            }
            n += 1;
        }
        if self.apply(actions).await? {
            return Ok(true);
        }
        if let Some(ack) = peer.take_ack()? {
            self.apply(vec![ack]).await?;
        }
        if std::mem::take(&mut self.announce_due) {
            let msgs = self.files.announce().await?;
            self.send_files(peer, msgs).await?;
            self.group_ready(peer).await?;
        }
        if !self.group_inbox.is_empty() {
            self.on_groups(peer).await?;
        }
        if !self.file_inbox.is_empty() {
            let inbox = std::mem::take(&mut self.file_inbox);
            let msgs = self.files.on_messages(inbox).await?;
            self.send_files(peer, msgs).await?;
        }
        Ok(false)
    }

    async fn on_file_command(&mut self, peer: &mut Peer, cmd: Command) -> Result<(), NodeError> {
        if peer.state() != PeerState::Ready {
            return Ok(()); // announced at Ready anyway
        }
        let msgs = match cmd {
            Command::Files => self.files.announce().await?,
            Command::FileCancel(id, r) => self.files.cancelled_locally(id, r),
            Command::LaneChunks {
                lane_id,
                chunks,
                permit,
            } => {
                let out = self.files.on_lane_chunks(lane_id, chunks).await?;
                drop(permit);
                out
            }
            Command::LaneDone { lane_id, ok } => self.files.lane_done(lane_id, ok).await?,
            Command::GroupFlush => {
                self.group_flush(peer).await?;
                Vec::new()
            }
            _ => Vec::new(),
        };
        self.send_files(peer, msgs).await
    }

    /// The peer's fingerprint, read once.
    async fn peer_fpr(&mut self) -> Result<Option<String>, NodeError> {
        if self.peer_fpr.is_none() {
            let contact = self.ctx.contact;
            self.peer_fpr = self
                .ctx
                .store
                .run(move |s| s.contact(contact))
                .await??
                .map(|c| c.fingerprint);
        }
        Ok(self.peer_fpr.clone())
    }

    /// Writes the group outbox entries for the peer not yet written on this
    /// connection (a batch at a time; acks make room for the next).
    async fn group_flush(&mut self, peer: &mut Peer) -> Result<(), NodeError> {
        if peer.state() != PeerState::Ready {
            return Ok(());
        }
        let Some(fpr) = self.peer_fpr().await? else {
            return Ok(());
        };
        let after = self.group_sent_upto;
        let items = self
            .ctx
            .store
            .run(move |s| s.group_outbox_after(&fpr, after, super::groups::FLUSH_BATCH))
            .await??;
        let mut actions = Vec::with_capacity(items.len());
        for it in items {
            if let Some(a) = peer.group_bytes(&it.wire)? {
                actions.push(a);
                self.group_sent_upto = self.group_sent_upto.max(it.id);
            }
        }
        self.apply(actions).await?;
        Ok(())
    }

    /// Hands the group messages of the last frames to the group engine and
    /// writes its answers, then whatever the outbox now holds for the peer.
    async fn on_groups(&mut self, peer: &mut Peer) -> Result<(), NodeError> {
        let inbox = std::mem::take(&mut self.group_inbox);
        let Some(node) = self.ctx.node.upgrade() else {
            return Ok(());
        };
        let replies = super::groups::on_inbound(&node, self.ctx.contact, inbox).await?;
        self.send_groups(peer, replies).await?;
        self.group_flush(peer).await
    }

    /// On Ready: pull requests for the groups shared with the peer, then the outbox.
    async fn group_ready(&mut self, peer: &mut Peer) -> Result<(), NodeError> {
        let Some(node) = self.ctx.node.upgrade() else {
            return Ok(());
        };
        let Some(fpr) = self.peer_fpr().await? else {
            return Ok(());
        };
        if let Ok(f) = crate::identity::Fingerprint::from_hex(&fpr) {
            let pulls = super::groups::on_ready(&node, &f).await;
            self.send_groups(peer, pulls).await?;
        }
        self.group_flush(peer).await
    }

    async fn send_groups(
        &mut self,
        peer: &mut Peer,
        msgs: Vec<crate::group::GroupWire>,
    ) -> Result<(), NodeError> {
        let mut actions = Vec::with_capacity(msgs.len());
        for m in &msgs {
            actions.extend(peer.group(m)?);
        }
        self.apply(actions).await?;
        Ok(())
    }

    /// Seals and writes file messages (not chunks).
    async fn send_files(
        &mut self,
        peer: &mut Peer,
        msgs: Vec<PeerMessage>,
    ) -> Result<(), NodeError> {
        let mut actions = Vec::with_capacity(msgs.len());
        for m in &msgs {
            actions.extend(peer.file(m)?);
        }
        self.apply(actions).await?;
        Ok(())
    }

    /// Reads, seals and queues the next chunks of the transfer being sent.
    async fn send_chunks(
        &mut self,
        peer: &mut Peer,
        permit: OwnedSemaphorePermit,
    ) -> Result<(), NodeError> {
        let Some((id, msgs, count)) = self.files.next_chunks(CHUNK_GROUP).await? else {
            return Ok(());
        };
        let mut frames = Vec::with_capacity(msgs.len());
        let mut last = None;
        for m in &msgs {
            if let Some(Action::Write { frame, send, .. }) = peer.file(m)? {
                frames.push(Bytes::from(frame));
                last = Some(send);
            }
        }
        if let Some(send) = last {
            let sid = self.session_id;
            self.ctx
                .store
                .run(move |s| s.record_sent_chunks(&sid, &send, &id, count))
                .await??;
            self.queue_frames(frames, Some(permit))?;
        }
        let more = self.files.after_write().await?;
        self.send_files(peer, more).await
    }

    fn queue_frames(
        &mut self,
        frames: Vec<Bytes>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<(), NodeError> {
        let w = self.writer.as_ref().ok_or(NodeError::Stream {
            source: std::io::ErrorKind::BrokenPipe.into(),
        })?;
        let counted = if permit.is_some() { 0 } else { frames.len() };
        let before = self.backlog.fetch_add(counted, Ordering::AcqRel);
        if before.saturating_add(counted) > MAX_WRITE_BACKLOG {
            return Err(NodeError::PeerNotReading);
        }
        w.send(WriteItem {
            frames,
            _permit: permit,
            counted,
        })
        .map_err(|_| NodeError::Stream {
            source: std::io::ErrorKind::BrokenPipe.into(),
        })
    }

    /// Performs actions in order; consecutive Writes share one store
    /// transaction (the last send state) before any of them is written, and
    /// consecutive Records share one transaction. Ok(true) when the peer
    /// ended the session.
    async fn apply(&mut self, actions: Vec<Action>) -> Result<bool, NodeError> {
        let mut it = actions.into_iter().peekable();
        while let Some(action) = it.next() {
            match action {
                Action::Write { frame, send, sent } => {
                    let mut frames = vec![frame];
                    let mut ids: Vec<_> = sent.into_iter().collect();
                    let mut last = send;
                    while let Some(Action::Write { .. }) = it.peek() {
                        let Some(Action::Write { frame, send, sent }) = it.next() else {
                            break;
                        };
                        frames.push(frame);
                        ids.extend(sent);
                        last = send;
                    }
                    self.write(frames, last, ids).await?;
                }
                Action::Record { recv, effect } => {
                    let mut effects = vec![effect];
                    let mut last = recv;
                    while let Some(Action::Record { .. }) = it.peek() {
                        let Some(Action::Record { recv, effect }) = it.next() else {
                            break;
                        };
                        effects.push(effect);
                        last = recv;
                    }
                    self.record(effects, last).await?;
                }
                Action::File(m) => self.file_inbox.push(m),
                Action::Group(m) => self.group_inbox.push(m),
                Action::Ready { peer_last_received } => {
                    tracing::debug!("peer connection ready");
                    (self.ctx.on_ready)();
                    let contact = self.ctx.contact;
                    self.was_ready = true;
                    self.announce_due = true;
                    if peer_last_received > 0 {
                        let _ = self.ctx.events.send(Event::DeliveryChanged {
                            contact,
                            upto: peer_last_received,
                            state: DeliveryState::Delivered,
                        });
                    }
                    let _ = self.ctx.events.send(Event::PresenceChanged {
                        contact,
                        online: true,
                        state: Some(PresenceState::Online),
                    });
                }
                Action::Presence(p) => {
                    if p == PresenceState::GoingOffline {
                        (self.ctx.on_leaving)();
                    }
                    let _ = self.ctx.events.send(Event::PresenceChanged {
                        contact: self.ctx.contact,
                        online: p != PresenceState::GoingOffline,
                        state: Some(p),
                    });
                }
                Action::PeerEnded => {
                    self.end_session(true).await?;
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Persists the send state, then queues the frames for the writer.
    async fn write(
        &mut self,
        frames: Vec<Vec<u8>>,
        send: ChainState,
        sent: Vec<MessageId>,
    ) -> Result<(), NodeError> {
        let sid = self.session_id;
        self.ctx
            .store
            .run(move |s| s.record_sent_frames(&sid, &send, &sent))
            .await??;
        self.queue_frames(frames.into_iter().map(Bytes::from).collect(), None)
    }

    /// Persists the receive state with the frames' effects, then reports them.
    async fn record(&mut self, effects: Vec<Effect>, recv: ChainState) -> Result<(), NodeError> {
        let contact = self.ctx.contact;
        let sid = self.session_id;
        let now = crate::time::now_secs();
        let (effects, results) = self
            .ctx
            .store
            .run(move |s| {
                let msgs: Vec<Option<NewMessage>> = effects
                    .iter()
                    .map(|e| match e {
                        Effect::Text(t) => Some(NewMessage {
                            contact,
                            direction: Direction::Incoming,
                            seq: t.seq,
                            msg_id: t.id,
                            sent_at: t.sent_at,
                            received_at: Some(now),
                            body: t.body.clone(),
                            state: DeliveryState::Received,
                        }),
                        _ => None,
                    })
                    .collect();
                let eff: Vec<IncomingEffect<'_>> = effects
                    .iter()
                    .zip(&msgs)
                    .map(|(e, m)| match (e, m) {
                        (Effect::Text(_), Some(m)) => IncomingEffect::Text(m),
                        (Effect::Ack(upto), _) => IncomingEffect::Ack {
                            contact,
                            upto: *upto,
                        },
                        (Effect::Receipt(upto), _) => IncomingEffect::Receipt {
                            contact,
                            upto: *upto,
                        },
                        _ => IncomingEffect::Nothing,
                    })
                    .collect();
                let r = s.record_received_frames(&sid, &recv, &eff);
                (effects, r)
            })
            .await?;
        let results = results?;
        for (effect, (inserted, _)) in effects.iter().zip(results) {
            let event = match (effect, inserted) {
                (Effect::Text(t), Some(Inserted::New(message))) => Event::MessageReceived {
                    contact,
                    message,
                    seq: t.seq,
                },
                (Effect::Ack(upto), _) => Event::DeliveryChanged {
                    contact,
                    upto: *upto,
                    state: DeliveryState::Delivered,
                },
                (Effect::Receipt(upto), _) => Event::DeliveryChanged {
                    contact,
                    upto: *upto,
                    state: DeliveryState::Read,
                },
                _ => continue,
            };
            let _ = self.ctx.events.send(event);
        }
        Ok(())
    }

    async fn end_session(&mut self, by_peer: bool) -> Result<(), NodeError> {
        let contact = self.ctx.contact;
        let ended = self
            .ctx
            .store
            .run(move |s| s.end_session_with(contact))
            .await??;
        for message in ended.failed {
            let _ = self
                .ctx
                .events
                .send(Event::MessageFailed { contact, message });
        }
        let _ = self
            .ctx
            .events
            .send(Event::SessionEnded { contact, by_peer });
        Ok(())
    }
}
