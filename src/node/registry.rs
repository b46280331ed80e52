//! The connection registry: which connection holds each contact's session
//! (PROTOCOL.md §10, "one connection per session").
//!
//! A sans-IO state machine: no tokio, no clock, no store. The async side
//! (`node/inbound.rs`, `node/dial.rs`) asks it what to do and carries it
//! out: it cancels a preempted connection, waits for its release, and asks
//! again. Every connection holds a [`SlotId`] from claim to release; a slot
//! id is never reused, so a late release of an old connection cannot remove
//! its successor.
//!
//! Rules:
//! - At most one slot per contact: a dialer gets one only when the contact
//!   has none ([`Registry::try_dial`]).
//! - A connection that proved the session arrives ([`Registry::inbound`]):
//!   with no slot it is claimed; against our own dialed connection that has
//!   its stream, is not going away and is not Ready for longer than the
//!   crossing window (`NodeConfig::crossing_window`), the connection whose
//!   connector has the bytewise lower fingerprint wins (the tie-break of
//!   §10); in every other case (our dial still in progress, an earlier
//!   inbound connection, a connection going away, one Ready for longer) the
//!   newcomer preempts the holder.
//! - Why the window: a peer dials only when it holds no connection with us.
//!   Two connections that cross complete their Hellos within moments of each
//!   other; a Hello that arrives long after ours was answered comes from a
//!   peer that lost our connection (it restarted, or its network went away
//!   without a word), so the connection we hold is a corpse that would
//!   otherwise win every tie-break until its dead timer (§13) fires.
//! - A preempting connection reserves the contact until it claims the
//!   session or gives up ([`Registry::unreserve`]): the dialer whose
//!   connection it preempted cannot grab the released slot first and win
//!   the tie-break against it with a fresh dial.
//! - A connection is going away once the peer announced it is going offline
//!   on it, or it stopped ([`Registry::leaving`]): it no longer wins a
//!   tie-break, and it no longer counts as connected.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::store::ContactId;

use super::peer::Side;

/// One claim on a contact's session, from claim to release. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SlotId {
    contact: ContactId,
    n: u64,
}

impl SlotId {
    /// The contact whose session this slot holds.
    pub(crate) fn contact(self) -> ContactId {
        self.contact
    }
}

/// Where a slot's connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A connector still opening its stream.
    Dialing,
    /// The stream exists (a listener's from the start).
    Open,
    /// The connection is Ready (Hellos exchanged) since then.
    Ready(Instant),
    /// Going away: goodbye received, or stopped and not yet released.
    Leaving,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    slot: SlotId,
    side: Side,
    phase: Phase,
}

/// What to do with a connection that proved it holds a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// It holds the session now.
    Claimed(SlotId),
    /// Cancel this slot's connection, wait for its release, then ask again.
    Preempt(SlotId),
    /// Our own connection wins the tie-break: close the newcomer.
    Yield,
}

/// The slots of all contacts.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    next: u64,
    live: HashMap<ContactId, Entry>,
    /// Contacts an inbound connection is preempting (see the module doc).
    reserved: HashSet<ContactId>,
}

impl Registry {
    fn claim(&mut self, contact: ContactId, side: Side, phase: Phase) -> SlotId {
        self.next += 1;
        let slot = SlotId {
            contact,
            n: self.next,
        };
        self.live.insert(contact, Entry { slot, side, phase });
        slot
    }

    fn current(&mut self, slot: SlotId) -> Option<&mut Entry> {
        self.live.get_mut(&slot.contact).filter(|e| e.slot == slot)
    }

    /// A dialer may start a connection: a slot if the contact has none.
    pub(crate) fn try_dial(&mut self, contact: ContactId) -> Option<SlotId> {
        if self.live.contains_key(&contact) || self.reserved.contains(&contact) {
            return None;
        }
        Some(self.claim(contact, Side::Connector, Phase::Dialing))
    }

    /// The connector's stream exists: from now on it takes part in the
    /// tie-break. Returns whether `slot` is still current.
    pub(crate) fn stream_opened(&mut self, slot: SlotId) -> bool {
        match self.current(slot) {
            Some(e) => {
                if e.phase == Phase::Dialing {
                    e.phase = Phase::Open;
                }
                true
            }
            None => false,
        }
    }

    /// The connection of `slot` became Ready at `now`. A connection going
    /// away stays so.
    pub(crate) fn ready(&mut self, slot: SlotId, now: Instant) {
        if let Some(e) = self.current(slot)
            && e.phase == Phase::Open
        {
            e.phase = Phase::Ready(now);
        }
    }

    /// The connection of `slot` is going away (see the module doc).
    pub(crate) fn leaving(&mut self, slot: SlotId) {
        if let Some(e) = self.current(slot) {
            e.phase = Phase::Leaving;
        }
    }

    /// A connection for `contact` proved it holds the session
    /// (PROTOCOL.md §10) at `now`. `ours` and `theirs` are the two
    /// fingerprints in the same (hex) form; `window` is how long after our
    /// dialed connection became Ready a crossing one may still arrive.
    pub(crate) fn inbound(
        &mut self,
        contact: ContactId,
        ours: &str,
        theirs: &str,
        now: Instant,
        window: Duration,
    ) -> Inbound {
        let Some(e) = self.live.get(&contact).copied() else {
            self.reserved.remove(&contact);
            return Inbound::Claimed(self.claim(contact, Side::Listener, Phase::Open));
        };
        let contends = match e.phase {
            Phase::Open => true,
            Phase::Ready(since) => now.saturating_duration_since(since) < window,
            Phase::Dialing | Phase::Leaving => false,
        };
        if e.side == Side::Connector && contends && ours < theirs {
            Inbound::Yield
        } else {
            self.reserved.insert(contact);
            Inbound::Preempt(e.slot)
        }
    }

    /// A preempting connection gave up before it claimed the session: a
    /// dialer may take the contact again.
    pub(crate) fn unreserve(&mut self, contact: ContactId) {
        self.reserved.remove(&contact);
    }

    /// The connection of `slot` has stopped. Returns its side if `slot` was
    /// current (and is now gone); `None` for a stale slot (no change).
    pub(crate) fn release(&mut self, slot: SlotId) -> Option<Side> {
        let side = self.current(slot)?.side;
        self.live.remove(&slot.contact);
        Some(side)
    }

    /// The slot holding `contact`'s session, if any.
    pub(crate) fn slot_of(&self, contact: ContactId) -> Option<SlotId> {
        self.live.get(&contact).map(|e| e.slot)
    }

    /// Whether `slot` still holds its contact's session.
    #[cfg(test)]
    pub(crate) fn is_current(&self, slot: SlotId) -> bool {
        self.live.get(&slot.contact).is_some_and(|e| e.slot == slot)
    }

    /// Whether `contact` has a connection with a stream that is not going
    /// away.
    pub(crate) fn is_connected(&self, contact: ContactId) -> bool {
        self.live
            .get(&contact)
            .is_some_and(|e| matches!(e.phase, Phase::Open | Phase::Ready(_)))
    }

    /// The phase of `contact`'s slot, if any.
    #[cfg(test)]
    pub(crate) fn phase(&self, contact: ContactId) -> Option<Phase> {
        self.live.get(&contact).map(|e| e.phase)
    }
}

#[cfg(test)]
mod test {
    use super::*;

    const C: ContactId = ContactId(1);
    const D: ContactId = ContactId(2);
    const LOW: &str = "0A";
    /// The crossing window of these tests.
    const W: Duration = Duration::from_secs(30);
    const HIGH: &str = "F0";

    /// A registry where C has our dialed connection in `phase`.
    fn dialed(phase: Phase) -> (Registry, SlotId) {
        let mut r = Registry::default();
        let s = r.try_dial(C).unwrap();
        match phase {
            Phase::Dialing => {}
            Phase::Open => assert!(r.stream_opened(s)),
            Phase::Ready(at) => {
                assert!(r.stream_opened(s));
                r.ready(s, at);
            }
            Phase::Leaving => {
                assert!(r.stream_opened(s));
                r.leaving(s);
            }
        }
        (r, s)
    }

    #[test]
    fn no_entry_is_claimed_as_listener() {
        let mut r = Registry::default();
        let Inbound::Claimed(s) = r.inbound(C, LOW, HIGH, Instant::now(), W) else {
            panic!("not claimed")
        };
        assert!(r.is_current(s));
        assert!(r.is_connected(C), "a listener's stream exists at once");
        assert_eq!(r.release(s), Some(Side::Listener));
    }

    /// The tie-break table of PROTOCOL.md §10 against our own dial.
    #[test]
    fn tie_break_table() {
        // (phase of our dial, our fingerprint, theirs, expected)
        let now = Instant::now();
        let young = Phase::Ready(now - W + Duration::from_secs(1));
        let old = Phase::Ready(now - W);
        let table = [
            (Phase::Open, LOW, HIGH, "yield"),
            (Phase::Open, HIGH, LOW, "preempt"),
            // Ready moments ago: the two connections crossed.
            (young, LOW, HIGH, "yield"),
            (young, HIGH, LOW, "preempt"),
            // Ready for longer: the peer lost it (restart, dead network);
            // the newcomer replaces it whatever the fingerprints.
            (old, LOW, HIGH, "preempt"),
            (old, HIGH, LOW, "preempt"),
            (Phase::Dialing, LOW, HIGH, "preempt"),
            (Phase::Dialing, HIGH, LOW, "preempt"),
            (Phase::Leaving, LOW, HIGH, "preempt"),
            (Phase::Leaving, HIGH, LOW, "preempt"),
        ];
        for (phase, ours, theirs, want) in table {
            let (mut r, s) = dialed(phase);
            let got = match r.inbound(C, ours, theirs, now, W) {
                Inbound::Yield => "yield",
                Inbound::Preempt(old) => {
                    assert_eq!(old, s);
                    "preempt"
                }
                Inbound::Claimed(_) => "claimed",
            };
            assert_eq!(got, want, "{phase:?} ours={ours} theirs={theirs}");
            // Nothing changed hands: the holder is still there.
            assert!(r.is_current(s));
        }
    }

    #[test]
    fn an_earlier_inbound_connection_is_preempted_whatever_the_fingerprints() {
        for (ours, theirs) in [(LOW, HIGH), (HIGH, LOW)] {
            let mut r = Registry::default();
            let Inbound::Claimed(first) = r.inbound(C, ours, theirs, Instant::now(), W) else {
                panic!()
            };
            assert_eq!(
                r.inbound(C, ours, theirs, Instant::now(), W),
                Inbound::Preempt(first)
            );
        }
    }

    #[test]
    fn preempt_then_release_then_claim() {
        let (mut r, s) = dialed(Phase::Dialing);
        assert_eq!(
            r.inbound(C, LOW, HIGH, Instant::now(), W),
            Inbound::Preempt(s)
        );
        assert_eq!(r.release(s), Some(Side::Connector));
        // The preempted dialer cannot take the slot back before the
        // preempting connection claims it.
        assert_eq!(r.try_dial(C), None, "reserved for the preempting one");
        let Inbound::Claimed(n) = r.inbound(C, LOW, HIGH, Instant::now(), W) else {
            panic!()
        };
        assert_ne!(n, s);
        assert!(!r.is_current(s));
        r.release(n);
        assert!(r.try_dial(C).is_some(), "the claim ended the reservation");
    }

    #[test]
    fn a_preempting_connection_that_gives_up_frees_the_contact() {
        let (mut r, s) = dialed(Phase::Dialing);
        assert_eq!(
            r.inbound(C, LOW, HIGH, Instant::now(), W),
            Inbound::Preempt(s)
        );
        r.release(s);
        assert_eq!(r.try_dial(C), None);
        r.unreserve(C);
        assert!(r.try_dial(C).is_some());
        assert_eq!(r.try_dial(D).map(|d| d.contact()), Some(D), "per contact");
    }

    #[test]
    fn releasing_a_stale_slot_changes_nothing() {
        let (mut r, s) = dialed(Phase::Open);
        assert_eq!(r.release(s), Some(Side::Connector));
        let Inbound::Claimed(n) = r.inbound(C, LOW, HIGH, Instant::now(), W) else {
            panic!()
        };
        assert_eq!(r.release(s), None, "second release of the old slot");
        assert!(r.is_current(n));
        // Nor do the other transitions of a stale slot.
        assert!(!r.stream_opened(s));
        r.leaving(s);
        r.ready(s, Instant::now());
        assert_eq!(r.phase(C), Some(Phase::Open));
    }

    #[test]
    fn ready_is_connected_and_going_away_wins_over_ready() {
        let now = Instant::now();
        let (mut r, s) = dialed(Phase::Open);
        r.ready(s, now);
        assert_eq!(r.phase(C), Some(Phase::Ready(now)));
        assert!(r.is_connected(C));
        r.leaving(s);
        r.ready(s, now);
        assert_eq!(r.phase(C), Some(Phase::Leaving), "a late Ready");
        assert!(!r.is_connected(C));
    }

    #[test]
    fn try_dial_needs_a_free_contact() {
        let (mut r, s) = dialed(Phase::Open);
        assert_eq!(r.try_dial(C), None, "while live");
        let d = r.try_dial(D).expect("other contacts are independent");
        assert_ne!(d.contact(), s.contact());
        r.release(s);
        assert!(r.try_dial(C).is_some(), "after release");
    }

    #[test]
    fn try_dial_loses_to_an_inbound_holder() {
        let mut r = Registry::default();
        let Inbound::Claimed(_) = r.inbound(C, LOW, HIGH, Instant::now(), W) else {
            panic!()
        };
        assert_eq!(r.try_dial(C), None);
    }

    #[test]
    fn slot_ids_never_repeat() {
        let mut r = Registry::default();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let s = r.try_dial(C).unwrap();
            assert!(seen.insert(s));
            r.release(s);
        }
    }

    #[test]
    fn connected_means_an_open_stream_not_going_away() {
        let (mut r, s) = dialed(Phase::Dialing);
        assert!(!r.is_connected(C), "still dialing");
        r.stream_opened(s);
        assert!(r.is_connected(C));
        r.leaving(s);
        assert!(!r.is_connected(C), "going away");
        assert_eq!(r.phase(C), Some(Phase::Leaving));
        // Opening again does not undo leaving.
        assert!(r.stream_opened(s));
        assert_eq!(r.phase(C), Some(Phase::Leaving));
        r.release(s);
        assert!(!r.is_connected(C));
        assert_eq!(r.phase(C), None);
    }

    #[test]
    fn release_reports_the_side() {
        let (mut r, s) = dialed(Phase::Open);
        assert_eq!(r.release(s), Some(Side::Connector));
        let Inbound::Claimed(l) = r.inbound(C, HIGH, LOW, Instant::now(), W) else {
            panic!()
        };
        assert_eq!(r.release(l), Some(Side::Listener));
    }
}
