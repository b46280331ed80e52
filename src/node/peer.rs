//! The sans-IO state machine of one peer connection (PROTOCOL.md §10, §11.4, §12).
//!
//! [`Peer`] owns the in-memory [`Session`] of the connection and turns sealed
//! frame bodies (bytes in) into [`Action`]s (bytes out, things to store, events).
//! It never touches a socket, a clock or the store: the driver
//! ([`super::conn`]) performs the actions **in order**, which is what encodes
//! the durability rules:
//!
//! * every outgoing frame is an [`Action::Write`] whose advanced send chain the
//!   driver persists *before* writing the frame;
//! * every incoming frame first yields one [`Action::Record`] carrying the
//!   advanced receive chain and the frame's effect (a Text to store, an Ack to
//!   apply); an Ack for a stored Text is only produced after that record
//!   ([`Peer::take_ack`]), so a receiver never acks what it has not stored.
//!
//! Any unexpected, undecodable, unauthentic or replayed frame moves the machine
//! to [`PeerState::Failed`] and returns an error *without* any action: nothing
//! is stored, the driver closes the connection, and the next connection
//! reloads the session from the store.

use std::collections::BTreeMap;

use crate::error::{ErrorKind, HasKind};
use crate::session::{Session, SessionError};
use crate::store::{ChainState, MessageId};
use crate::wire::{Frame, Hello, PROTOCOL_VERSION, PeerMessage, PresenceState, Text, WireError};

/// Errors that fail a peer connection. The session itself stays.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The frame does not open: bad tag, replay, wrong session, too far ahead.
    #[error("refused a sealed frame: {0}")]
    Session(#[from] SessionError),
    /// The frame or its plaintext does not decode.
    #[error("refused a frame: {0}")]
    Wire(#[from] WireError),
    /// A frame or message that is not valid in the connection's state.
    #[error("unexpected {what} while {state:?}")]
    Unexpected {
        /// What arrived.
        what: &'static str,
        /// The state it arrived in.
        state: PeerState,
    },
    /// An Ack or Receipt covers messages we never sent.
    #[error("peer acknowledged messages that were never sent")]
    AckBeyondSent,
    /// A Hello announcing protocol 0.
    #[error("malformed Hello (protocol 0)")]
    BadHello,
    /// The connection is already closed or failed.
    #[error("the connection is closed")]
    Closed,
}

impl HasKind for PeerError {
    fn kind(&self) -> ErrorKind {
        match self {
            PeerError::Session(e) => e.kind(),
            PeerError::Wire(e) => e.kind(),
            PeerError::Unexpected { .. } | PeerError::AckBeyondSent | PeerError::BadHello => {
                ErrorKind::Protocol
            }
            PeerError::Closed => ErrorKind::Io,
        }
    }
}

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Waiting for the peer's Hello (the connector has sent its own).
    AwaitingHello,
    /// Hellos exchanged: any message except Hello may flow.
    Ready,
    /// Closed deliberately (EndSession, going offline, local close).
    Closed,
    /// Closed because of a protocol violation.
    Failed,
}

/// Which end of the stream we are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// We opened the stream: we speak first.
    Connector,
    /// We accepted it: we answer the peer's Hello.
    Listener,
}

/// An outgoing Text waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutText {
    /// Store row of the message (to mark it sent).
    pub message: MessageId,
    /// The Text as it goes on the wire (same id and seq on every re-send).
    pub text: Text,
}

/// What a frame makes the driver record, next to the advanced receive chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Only the chain advances.
    Nothing,
    /// A new Text, `seq` = highest stored + 1: store it.
    Text(Text),
    /// The peer stored our Texts up to `upto`: drop them from the outbox.
    Ack(u64),
    /// The peer read our Texts up to `upto` (implies the Ack).
    Receipt(u64),
}

/// Something the driver must do, in the order returned.
#[derive(Debug)]
pub enum Action {
    /// Persist `send` (and mark `sent` as written), **then** write `frame` and flush.
    Write {
        /// A complete sealed frame body.
        frame: Vec<u8>,
        /// The advanced send chain.
        send: ChainState,
        /// The outbox message this frame carries, if it is a Text.
        sent: Option<MessageId>,
    },
    /// Persist `recv` together with `effect`, in one transaction.
    Record {
        /// The advanced receive chain.
        recv: ChainState,
        /// What the frame caused.
        effect: Effect,
    },
    /// Hellos exchanged: the connection is Ready (presence online).
    Ready {
        /// Highest of our Texts the peer has stored, from its Hello.
        peer_last_received: u64,
    },
    /// The peer announced a presence state.
    Presence(PresenceState),
    /// The peer ended the session: erase the keys, then close.
    PeerEnded,
    /// A file-transfer message (PROTOCOL.md §14), for the driver's file engine
    /// once the preceding Record is durable.
    File(PeerMessage),
    /// A group peer message (kinds 32–41, PROTOCOL.md §20.9) for the
    /// node's group engine; the receive chain is recorded first.
    Group(crate::group::GroupWire),
}

/// Fixed parameters of a connection.
#[derive(Debug, Clone, Copy)]
pub struct PeerParams {
    /// Which end we are.
    pub side: Side,
    /// Highest incoming Text seq already stored (the peer's `last_received`).
    pub highest_in: u64,
    /// Highest outgoing Text seq ever assigned (Acks above it are refused).
    pub highest_out: u64,
    /// Most Texts written but not yet acknowledged at any time. Bounds the
    /// frames a crash can lose, so a reconnect never exceeds MAX_SKIP.
    pub window: u64,
}

/// One peer connection's protocol state.
pub struct Peer {
    state: PeerState,
    session: Session,
    params: PeerParams,
    /// Highest incoming seq stored (advances only through [`Effect::Text`]).
    highest_in: u64,
    /// Highest incoming seq we acked on this connection.
    acked_in: u64,
    /// An Ack is owed to the peer.
    ack_due: bool,
    /// Highest outgoing seq the peer confirmed.
    acked_out: u64,
    /// Highest outgoing seq written on this connection.
    written_out: u64,
    /// Unacknowledged outgoing Texts, by seq.
    outbox: BTreeMap<u64, OutText>,
}

fn chain_state((key, seq): (zeroize::Zeroizing<[u8; 32]>, u64)) -> ChainState {
    ChainState {
        chain_key: zeroize::Zeroizing::new(key.to_vec()),
        seq,
    }
}

impl Peer {
    /// A connection over `session`. Call [`Peer::start`] once the stream is open.
    pub fn new(session: Session, params: PeerParams) -> Peer {
        Peer {
            state: PeerState::AwaitingHello,
            session,
            params,
            highest_in: params.highest_in,
            acked_in: 0,
            ack_due: false,
            acked_out: 0,
            written_out: 0,
            outbox: BTreeMap::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> PeerState {
        self.state
    }

    /// The session id (an identifier: never log it).
    pub fn session_id(&self) -> [u8; 16] {
        self.session.id()
    }

    /// Highest outgoing seq the peer has confirmed on this connection.
    pub fn acked_out(&self) -> u64 {
        self.acked_out
    }

    /// Number of outgoing Texts not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.outbox.len()
    }

    /// Opening move: the connector sends its Hello.
    pub fn start(&mut self) -> Result<Vec<Action>, PeerError> {
        match (self.state, self.params.side) {
            (PeerState::AwaitingHello, Side::Connector) => Ok(vec![self.hello()?]),
            (PeerState::AwaitingHello, Side::Listener) => Ok(Vec::new()),
            _ => Err(PeerError::Closed),
        }
    }

    fn hello(&mut self) -> Result<Action, PeerError> {
        self.seal(
            &PeerMessage::Hello(Hello {
                protocol: PROTOCOL_VERSION,
                last_received: self.highest_in,
            }),
            None,
        )
    }

    fn seal(&mut self, msg: &PeerMessage, sent: Option<MessageId>) -> Result<Action, PeerError> {
        let plaintext = zeroize::Zeroizing::new(msg.encode()?);
        let frame = self.session.seal(&plaintext)?;
        Ok(Action::Write {
            frame,
            send: chain_state(self.session.send_chain()),
            sent,
        })
    }

    fn fail<T>(&mut self, e: PeerError) -> Result<T, PeerError> {
        self.state = PeerState::Failed;
        Err(e)
    }

    /// Handles one frame body read from the stream.
    pub fn on_frame(&mut self, body: &[u8]) -> Result<Vec<Action>, PeerError> {
        if matches!(self.state, PeerState::Closed | PeerState::Failed) {
            return Err(PeerError::Closed);
        }
        match self.on_frame_inner(body) {
            Ok(actions) => Ok(actions),
            Err(e) => self.fail(e),
        }
    }

    fn on_frame_inner(&mut self, body: &[u8]) -> Result<Vec<Action>, PeerError> {
        let sealed = match Frame::decode(body)? {
            Frame::Sealed(s) => s,
            Frame::Envelope(_) => {
                return Err(PeerError::Unexpected {
                    what: "envelope frame",
                    state: self.state,
                });
            }
            Frame::Lane(_) => {
                return Err(PeerError::Unexpected {
                    what: "lane frame on a session stream",
                    state: self.state,
                });
            }
            Frame::GroupJoin(_) => {
                return Err(PeerError::Unexpected {
                    what: "group join frame on a session stream",
                    state: self.state,
                });
            }
        };
        // On any error below the machine fails and is discarded: no action is
        // returned, nothing is stored, the next connection reloads the session.
        let plaintext = self.session.open(sealed)?;
        let recv = chain_state(self.session.recv_chain());
        // Group kinds go to their own codec first (PROTOCOL.md §20.9).
        if self.state == PeerState::Ready
            && plaintext
                .first()
                .is_some_and(|k| crate::group::wire::KINDS.contains(k))
        {
            let mut out = vec![Action::Record {
                recv,
                effect: Effect::Nothing,
            }];
            match crate::group::GroupWire::decode(&plaintext) {
                Ok(m) => out.push(Action::Group(m)),
                // The session is fine (the frame was authentic): a group
                // message that does not decode is dropped, not the
                // connection, so that 1:1 traffic is never held hostage.
                Err(e) => tracing::debug!(kind = ?e.kind(), "dropped a malformed group message"),
            }
            return Ok(out);
        }
        let msg = PeerMessage::decode(&plaintext)?;
        let mut out = Vec::new();
        match (self.state, msg) {
            (PeerState::AwaitingHello, PeerMessage::Hello(h)) => {
                if h.protocol == 0 {
                    return Err(PeerError::BadHello);
                }
                if h.last_received > self.params.highest_out {
                    return Err(PeerError::AckBeyondSent);
                }
                let effect = if h.last_received > self.acked_out {
                    Effect::Ack(h.last_received)
                } else {
                    Effect::Nothing
                };
                out.push(Action::Record { recv, effect });
                self.acked_out = self.acked_out.max(h.last_received);
                self.written_out = self.acked_out;
                self.outbox.retain(|seq, _| *seq > h.last_received);
                if self.params.side == Side::Listener {
                    out.push(self.hello()?);
                }
                self.state = PeerState::Ready;
                out.push(Action::Ready {
                    peer_last_received: h.last_received,
                });
                // PROTOCOL.md §13: announce presence right after Ready.
                out.push(self.seal(&PeerMessage::Presence(PresenceState::Online), None)?);
                self.pump(&mut out)?;
            }
            (PeerState::AwaitingHello, _) => {
                return Err(PeerError::Unexpected {
                    what: "message before Hello",
                    state: self.state,
                });
            }
            (PeerState::Ready, PeerMessage::Hello(_)) => {
                return Err(PeerError::Unexpected {
                    what: "second Hello",
                    state: self.state,
                });
            }
            (PeerState::Ready, PeerMessage::Text(t)) => {
                let effect = if t.seq == self.highest_in + 1 {
                    self.highest_in = t.seq;
                    Effect::Text(t)
                } else {
                    // Duplicate (seq ≤ h) or gap (seq > h + 1): drop, re-ack h.
                    Effect::Nothing
                };
                out.push(Action::Record { recv, effect });
                self.ack_due = true;
            }
            (PeerState::Ready, PeerMessage::Ack { upto }) => {
                let effect = self.on_ack(upto, false)?;
                out.push(Action::Record { recv, effect });
                self.pump(&mut out)?;
            }
            (PeerState::Ready, PeerMessage::Receipt { upto }) => {
                let effect = self.on_ack(upto, true)?;
                out.push(Action::Record { recv, effect });
                self.pump(&mut out)?;
            }
            (PeerState::Ready, PeerMessage::Presence(p)) => {
                out.push(Action::Record {
                    recv,
                    effect: Effect::Nothing,
                });
                out.push(Action::Presence(p));
            }
            (PeerState::Ready, PeerMessage::EndSession) => {
                self.state = PeerState::Closed;
                out.push(Action::PeerEnded);
            }
            (
                PeerState::Ready,
                m @ (PeerMessage::FileOffer(_)
                | PeerMessage::FileAccept(_)
                | PeerMessage::FileChunk(_)
                | PeerMessage::FileDone { .. }
                | PeerMessage::FileCancel { .. }
                | PeerMessage::FileAck { .. }
                | PeerMessage::FileLane { .. }
                | PeerMessage::FileLaneAck { .. }),
            ) => {
                out.push(Action::Record {
                    recv,
                    effect: Effect::Nothing,
                });
                out.push(Action::File(m));
            }
            (PeerState::Ready, _) => {
                // Unknown kinds: ignored, the chain still advances.
                out.push(Action::Record {
                    recv,
                    effect: Effect::Nothing,
                });
            }
            (PeerState::Closed | PeerState::Failed, _) => return Err(PeerError::Closed),
        }
        Ok(out)
    }

    fn on_ack(&mut self, upto: u64, receipt: bool) -> Result<Effect, PeerError> {
        if upto > self.params.highest_out {
            return Err(PeerError::AckBeyondSent);
        }
        if receipt {
            self.acked_out = self.acked_out.max(upto);
            self.outbox.retain(|seq, _| *seq > upto);
            return Ok(Effect::Receipt(upto));
        }
        if upto <= self.acked_out {
            return Ok(Effect::Nothing);
        }
        self.acked_out = upto;
        self.outbox.retain(|seq, _| *seq > upto);
        Ok(Effect::Ack(upto))
    }

    /// Writes queued Texts while the window allows.
    fn pump(&mut self, out: &mut Vec<Action>) -> Result<(), PeerError> {
        if self.state != PeerState::Ready {
            return Ok(());
        }
        let limit = self.acked_out.saturating_add(self.params.window);
        let next: Vec<OutText> = self
            .outbox
            .range(self.written_out + 1..)
            .take_while(|(seq, _)| **seq <= limit)
            .map(|(_, t)| t.clone())
            .collect();
        for t in next {
            let seq = t.text.seq;
            out.push(self.seal(&PeerMessage::Text(t.text), Some(t.message))?);
            self.written_out = seq;
        }
        Ok(())
    }

    /// Adds outbox Texts (in any order; already known or acked ones are
    /// ignored) and writes what the window allows.
    pub fn queue(&mut self, texts: Vec<OutText>) -> Result<Vec<Action>, PeerError> {
        if matches!(self.state, PeerState::Closed | PeerState::Failed) {
            return Err(PeerError::Closed);
        }
        for t in texts {
            let seq = t.text.seq;
            if seq > self.acked_out {
                self.params.highest_out = self.params.highest_out.max(seq);
                self.outbox.entry(seq).or_insert(t);
            }
        }
        let mut out = Vec::new();
        self.pump(&mut out)?;
        Ok(out)
    }

    /// The Ack owed for stored Texts, if any (call after the Records of a
    /// batch of frames are durable; coalesces Acks).
    pub fn take_ack(&mut self) -> Result<Option<Action>, PeerError> {
        if !self.ack_due || self.state != PeerState::Ready {
            return Ok(None);
        }
        self.ack_due = false;
        self.acked_in = self.highest_in;
        Ok(Some(self.seal(
            &PeerMessage::Ack {
                upto: self.highest_in,
            },
            None,
        )?))
    }

    /// Highest incoming seq acknowledged on this connection.
    pub fn acked_in(&self) -> u64 {
        self.acked_in
    }

    /// A Receipt ("read up to `upto`"), while Ready.
    pub fn receipt(&mut self, upto: u64) -> Result<Option<Action>, PeerError> {
        if self.state != PeerState::Ready || upto == 0 {
            return Ok(None);
        }
        Ok(Some(self.seal(&PeerMessage::Receipt { upto }, None)?))
    }

    /// Seals a file-transfer message, while Ready.
    pub fn file(&mut self, msg: &PeerMessage) -> Result<Option<Action>, PeerError> {
        if self.state != PeerState::Ready {
            return Ok(None);
        }
        Ok(Some(self.seal(msg, None)?))
    }

    /// Seals a group peer message (not sequenced: groups have their own
    /// acknowledgements). `None` unless Ready.
    pub fn group(&mut self, msg: &crate::group::GroupWire) -> Result<Option<Action>, PeerError> {
        if self.state != PeerState::Ready {
            return Ok(None);
        }
        let plaintext =
            zeroize::Zeroizing::new(msg.encode().map_err(|_| PeerError::Unexpected {
                what: "group message over its limits",
                state: self.state,
            })?);
        let frame = self.session.seal(&plaintext)?;
        Ok(Some(Action::Write {
            frame,
            send: chain_state(self.session.send_chain()),
            sent: None,
        }))
    }

    /// Seals an already encoded group peer message (from a group outbox).
    pub fn group_bytes(&mut self, plaintext: &[u8]) -> Result<Option<Action>, PeerError> {
        if self.state != PeerState::Ready {
            return Ok(None);
        }
        let frame = self.session.seal(plaintext)?;
        Ok(Some(Action::Write {
            frame,
            send: chain_state(self.session.send_chain()),
            sent: None,
        }))
    }

    /// A heartbeat (Presence), while Ready.
    pub fn presence(&mut self, state: PresenceState) -> Result<Option<Action>, PeerError> {
        if self.state != PeerState::Ready {
            return Ok(None);
        }
        Ok(Some(self.seal(&PeerMessage::Presence(state), None)?))
    }

    /// Re-sends every unacknowledged Text (after the Ack timeout), as new frames.
    pub fn resend_unacked(&mut self) -> Result<Vec<Action>, PeerError> {
        self.written_out = self.acked_out;
        let mut out = Vec::new();
        self.pump(&mut out)?;
        Ok(out)
    }

    /// Local `end`: the EndSession frame to send if Ready (best effort). The
    /// machine is Closed afterwards; the caller erases the keys.
    pub fn end(&mut self) -> Result<Option<Action>, PeerError> {
        let frame = if self.state == PeerState::Ready {
            Some(self.seal(&PeerMessage::EndSession, None)?)
        } else {
            None
        };
        self.state = PeerState::Closed;
        Ok(frame)
    }

    /// Closes deliberately: `Presence(GoingOffline)` to send first, if Ready.
    pub fn close(&mut self) -> Result<Option<Action>, PeerError> {
        let frame = self.presence(PresenceState::GoingOffline)?;
        self.state = PeerState::Closed;
        Ok(frame)
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::identity::Fingerprint;
    use crate::session::{Binding, KeyShare, PeerShare, Role};

    fn pair() -> (Session, Session) {
        let (a, b) = (KeyShare::generate(), KeyShare::generate());
        let binding = Binding {
            request_id: [7; 16],
            requester: Fingerprint::from_bytes([1; 20]),
            acceptor: Fingerprint::from_bytes([2; 20]),
        };
        let pa = PeerShare {
            half: a.half(),
            ephemeral_public: a.ephemeral_public(),
        };
        let pb = PeerShare {
            half: b.half(),
            ephemeral_public: b.ephemeral_public(),
        };
        (
            Session::derive(Role::Requester, a, &pb, &binding).unwrap(),
            Session::derive(Role::Acceptor, b, &pa, &binding).unwrap(),
        )
    }

    fn params(side: Side) -> PeerParams {
        PeerParams {
            side,
            highest_in: 0,
            highest_out: 0,
            window: 4,
        }
    }

    fn frames(actions: &[Action]) -> Vec<Vec<u8>> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Write { frame, .. } => Some(frame.clone()),
                _ => None,
            })
            .collect()
    }

    fn text(seq: u64) -> OutText {
        OutText {
            message: MessageId(seq as i64),
            text: Text {
                id: [seq as u8; 16],
                seq,
                sent_at: 0,
                body: format!("m{seq}"),
            },
        }
    }

    /// Connects two machines; returns them Ready.
    fn ready() -> (Peer, Peer) {
        let (sa, sb) = pair();
        let mut a = Peer::new(sa, params(Side::Connector));
        let mut b = Peer::new(sb, params(Side::Listener));
        let hello = frames(&a.start().unwrap());
        let reply = frames(&b.on_frame(&hello[0]).unwrap());
        assert_eq!(b.state(), PeerState::Ready);
        a.on_frame(&reply[0]).unwrap();
        assert_eq!(a.state(), PeerState::Ready);
        (a, b)
    }

    /// Delivers every Write of `actions` to `to`, returning `to`'s actions.
    fn deliver(actions: &[Action], to: &mut Peer) -> Vec<Action> {
        frames(actions)
            .iter()
            .flat_map(|f| to.on_frame(f).unwrap())
            .collect()
    }

    /// The seqs of the Texts `actions` record.
    fn text_seqs(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .filter_map(|x| match x {
                Action::Record {
                    effect: Effect::Text(t),
                    ..
                } => Some(t.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn hello_exchange_then_text_store_then_ack() {
        let (mut a, mut b) = ready();
        let sent = a.queue(vec![text(1), text(2)]).unwrap();
        assert_eq!(frames(&sent).len(), 2);
        let got = deliver(&sent, &mut b);
        let stored = text_seqs(&got);
        assert_eq!(stored, vec![1, 2]);
        // No Ack before the driver says the records are durable.
        assert!(frames(&got).is_empty());
        let ack = b.take_ack().unwrap().unwrap();
        let back = deliver(&[ack], &mut a);
        assert!(matches!(
            back[0],
            Action::Record {
                effect: Effect::Ack(2),
                ..
            }
        ));
        assert_eq!(a.unacked(), 0);
    }

    #[test]
    fn duplicates_and_gaps_are_not_stored_but_reacked() {
        let (mut a, mut b) = ready();
        let first = a.queue(vec![text(1)]).unwrap();
        deliver(&first, &mut b);
        b.take_ack().unwrap();
        // Re-send (new frame, same seq): duplicate.
        let again = a.resend_unacked().unwrap();
        let got = deliver(&again, &mut b);
        assert!(matches!(
            got[0],
            Action::Record {
                effect: Effect::Nothing,
                ..
            }
        ));
        assert!(b.take_ack().unwrap().is_some());
        // A gap (seq 3 without 2) is dropped.
        let gap = a.queue(vec![text(3)]).unwrap();
        let got = deliver(&gap, &mut b);
        assert!(matches!(
            got[0],
            Action::Record {
                effect: Effect::Nothing,
                ..
            }
        ));
    }

    #[test]
    fn window_limits_unacked_frames() {
        let (mut a, _b) = ready();
        let sent = a.queue((1..=10).map(text).collect()).unwrap();
        assert_eq!(frames(&sent).len(), 4);
    }

    #[test]
    fn hello_last_received_resends_only_the_rest() {
        let (sa, sb) = pair();
        let mut a = Peer::new(
            sa,
            PeerParams {
                highest_out: 3,
                ..params(Side::Connector)
            },
        );
        let mut b = Peer::new(
            sb,
            PeerParams {
                highest_in: 2,
                ..params(Side::Listener)
            },
        );
        a.queue(vec![text(1), text(2), text(3)]).unwrap();
        let hello = a.start().unwrap();
        let reply = deliver(&hello, &mut b);
        let got = deliver(&reply, &mut a);
        let texts: Vec<_> = frames(&got);
        assert_eq!(texts.len(), 2, "Presence, then only seq 3 is re-sent");
        assert!(matches!(
            got[0],
            Action::Record {
                effect: Effect::Ack(2),
                ..
            }
        ));
        let stored = deliver(&got, &mut b);
        let texts = text_seqs(&stored);
        assert_eq!(texts, vec![3]);
    }

    #[test]
    fn hostile_frames_fail_without_actions() {
        // Garbage.
        let (_a, mut b) = ready();
        assert!(b.on_frame(b"\x01\x02garbage").is_err());
        assert_eq!(b.state(), PeerState::Failed);
        assert!(matches!(b.on_frame(b"x"), Err(PeerError::Closed)));

        // Bad tag.
        let (mut a, mut b) = ready();
        let mut f = frames(&a.queue(vec![text(1)]).unwrap()).remove(0);
        let last = f.len() - 1;
        f[last] ^= 1;
        assert!(matches!(
            b.on_frame(&f),
            Err(PeerError::Session(SessionError::BadTag))
        ));

        // Replay.
        let (mut a, mut b) = ready();
        let f = frames(&a.queue(vec![text(1)]).unwrap()).remove(0);
        b.on_frame(&f).unwrap();
        assert!(matches!(
            b.on_frame(&f),
            Err(PeerError::Session(SessionError::Replay { .. }))
        ));

        // Message before Hello.
        let (sa, sb) = pair();
        let mut a = Peer::new(sa, params(Side::Connector));
        let mut b = Peer::new(sb, params(Side::Listener));
        a.state = PeerState::Ready;
        let f = frames(&a.queue(vec![text(1)]).unwrap()).remove(0);
        assert!(matches!(b.on_frame(&f), Err(PeerError::Unexpected { .. })));

        // Ack beyond what was sent.
        let (mut a, mut b) = ready();
        b.highest_in = 5;
        b.ack_due = true;
        let ack = b.take_ack().unwrap().unwrap();
        assert!(matches!(
            a.on_frame(&frames(&[ack])[0]),
            Err(PeerError::AckBeyondSent)
        ));

        // Second Hello.
        let (mut a, mut b) = ready();
        let h = a.hello().unwrap();
        assert!(matches!(
            b.on_frame(&frames(&[h])[0]),
            Err(PeerError::Unexpected { .. })
        ));
    }

    #[test]
    fn end_session_is_noticed() {
        let (mut a, mut b) = ready();
        let end = a.end().unwrap().unwrap();
        assert_eq!(a.state(), PeerState::Closed);
        let got = deliver(&[end], &mut b);
        assert!(matches!(got[0], Action::PeerEnded));
        assert_eq!(b.state(), PeerState::Closed);
    }
}
