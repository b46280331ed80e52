//! Property tests of groups v1 (PROTOCOL.md §20): replicas converge, codecs
//! are strict and total, the delivery tracker is exactly-once and in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/group.rs"]
mod support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use support::*;
use umbra_proto::group::invite::{InviteLink, JoinMessage};
use umbra_proto::group::message::{Content, DeliveryTracker, GroupMessage, MessageBody, Offer};
use umbra_proto::group::op::{Action, GroupId, Op, OpBody, Role};
use umbra_proto::group::wire::{GroupWire, PullRequest, PullResponse};
use umbra_proto::group::{GROUP_VERSION, GroupError, GroupState};

fn role(r: u8) -> Role {
    [Role::Owner, Role::Admin, Role::Member, Role::ReadOnly][r as usize % 4]
}

/// One attempted op: who, what, to whom, and how it is (mis)built.
#[derive(Debug, Clone)]
struct Step {
    author: usize,
    kind: u8,
    target: usize,
    role: u8,
    stale: bool,
    forge: bool,
    countersign: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        // Mostly the owner and early members act; Adds are frequent so that
        // there are members to act; Dissolve (11) is rare.
        prop_oneof![3 => Just(0usize), 2 => 1..3usize, 1 => 3..6usize],
        prop_oneof![20 => Just(0u8), 32 => 1..11u8, 4 => Just(10u8), 1 => Just(11u8)],
        prop_oneof![3 => 1..3usize, 1 => 3..6usize],
        0..4u8,
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.85),
    )
        .prop_map(
            |(author, kind, target, role, stale, forge, countersign)| Step {
                author,
                kind,
                target,
                role,
                stale,
                forge,
                countersign,
            },
        )
}

fn action(s: &Step, k: usize) -> Action {
    let t = s.target;
    match s.kind {
        // Owner is never grantable (refused when signing): mostly valid roles.
        0 => add(t, role(1 + s.role % 3)),
        1 => Action::Remove { member: fpb(t) },
        2 => Action::Leave,
        3 => Action::SetRole {
            member: fpb(t),
            role: role(s.role),
        },
        4 => Action::Rename {
            name: format!("n{}", k % 3),
        },
        5 => Action::SetTopic {
            topic: format!("t{}", k % 2),
        },
        6 => Action::SetFlags { flags: s.role & 3 },
        7 => Action::TransferOwnership { to: fpb(t) },
        8 => Action::OpenLink {
            link_id: [t as u8; 16],
            role: role(s.role),
            max_uses: 1 + u16::from(s.role),
            expires_at: 3_000,
        },
        9 => Action::RevokeLink {
            link_id: [t as u8; 16],
        },
        10 => Action::Add {
            member: fpb(t),
            cert: cert(t),
            role: role(s.role),
            link: Some([s.role; 16]),
        },
        _ => Action::Dissolve,
    }
}

/// Builds the op of `s` against `p` (or against an older head when
/// stale), signed by its author (or by an impostor when forged).
fn build(p: &GroupState, history: &[GroupState], s: &Step, k: usize) -> Option<Op> {
    let base = if s.stale && history.len() > 1 {
        &history[history.len() - 2]
    } else {
        p
    };
    let b = body(base, s.author, action(s, k));
    let signer = if s.forge {
        (s.author + 1) % 6
    } else {
        s.author
    };
    let op = Op::sign(
        OpBody {
            author: fpb(s.author),
            ..b
        },
        &IDS[signer],
    );
    let op = match op {
        Ok(op) => op,
        // Refused at signing (e.g. granting Owner) or forged signer mismatch:
        // sign with the real key and break the signature instead.
        Err(_) => {
            let mut op = Op::sign(body(base, signer, action(s, k)), &IDS[signer]).ok()?;
            op.body.author = fpb(s.author);
            op
        }
    };
    if s.countersign && fp(s.author) != base.owner() && !s.stale {
        op.countersign(owner_id(base)).ok()
    } else {
        Some(op)
    }
}

/// Applies with a pending list for ops that arrive ahead of their turn.
fn deliver(state: &mut GroupState, arrivals: &[Op]) {
    let mut pending: Vec<&Op> = Vec::new();
    for op in arrivals {
        pending.push(op);
        loop {
            let mut progressed = false;
            pending.retain(|o| {
                let before = state.summary();
                match state.apply(o) {
                    Ok(_) => {
                        progressed = true;
                        false
                    }
                    Err(GroupError::Ahead { .. }) => true,
                    Err(_) => {
                        assert_eq!(state.summary(), before);
                        false
                    }
                }
            });
            if !progressed {
                break;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// (a) Any sequence of valid and invalid ops gives the same state on
    /// every replica that received the same ops; and the owner's log
    /// delivered in any order, with duplicates and hostile ops mixed in,
    /// converges to the owner's state. A refused op never changes a state.
    #[test]
    fn replicas_converge(
        steps in prop::collection::vec(step(), 1..32),
        seed in any::<u64>(),
    ) {
        let g = genesis(0, 0);
        let mut owner = GroupState::genesis(&g).unwrap();
        let mut history = vec![owner.clone()];
        let mut stream = Vec::new();
        let mut accepted = Vec::new();
        for (k, s) in steps.iter().enumerate() {
            let Some(op) = build(&owner, &history, s, k) else { continue };
            let before = owner.summary();
            match owner.apply(&op) {
                Ok(_) => {
                    accepted.push(op.clone());
                    history.push(owner.clone());
                }
                Err(_) => prop_assert_eq!(owner.summary(), before),
            }
            stream.push((op, s.stale));
        }
        // Same ops in the same order: same state.
        let mut r1 = GroupState::genesis(&g).unwrap();
        for (op, _) in &stream {
            let before = r1.summary();
            if r1.apply(op).is_err() {
                prop_assert_eq!(r1.summary(), before);
            }
        }
        prop_assert_eq!(r1.summary(), owner.summary());
        // The owner's log in a shuffled order with duplicates, mixed with
        // the hostile ops (stale ops excluded: an owner-signed op at a taken
        // position is an equivocation, detected as a split view instead).
        let mut arrivals: Vec<Op> = accepted.clone();
        arrivals.extend(accepted.iter().step_by(2).cloned());
        arrivals.extend(stream.iter().filter(|(_, st)| !st).map(|(o, _)| o.clone()));
        let mut x = seed | 1;
        for i in (1..arrivals.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            arrivals.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut r2 = GroupState::genesis(&g).unwrap();
        deliver(&mut r2, &arrivals);
        prop_assert_eq!(r2.summary(), owner.summary());
    }

    /// (b) Decoders never panic on arbitrary bytes, and whatever decodes
    /// re-encodes to exactly the input (canonical).
    #[test]
    fn decoders_are_total_and_canonical(bytes in prop::collection::vec(any::<u8>(), 0..600), kind in 32u8..=41) {
        let mut framed = vec![kind];
        framed.extend_from_slice(&bytes);
        for input in [&bytes[..], &framed[..]] {
            if let Ok(m) = GroupWire::decode(input) {
                prop_assert_eq!(m.encode().unwrap(), input.to_vec());
            }
            if let Ok(op) = Op::decode(input) {
                prop_assert_eq!(op.encode().unwrap(), input.to_vec());
            }
            if let Ok(m) = GroupMessage::decode(input) {
                prop_assert_eq!(m.encode().unwrap(), input.to_vec());
            }
            if let Ok(j) = JoinMessage::decode(input) {
                prop_assert_eq!(j.encode().unwrap(), input.to_vec());
            }
        }
        let _ = InviteLink::parse(&String::from_utf8_lossy(&bytes));
    }

    /// (b) Generated values round-trip through the wire codec, and flipping
    /// any byte of the encoding either is refused or decodes canonically.
    #[test]
    fn codecs_round_trip(
        text in ".{0,64}",
        seq in 1u64..u64::MAX,
        log_seq in any::<u64>(),
        parents in prop::collection::vec(any::<[u8; 32]>(), 0..=4),
        sig in prop::collection::vec(any::<u8>(), 1..200),
        cursors in prop::collection::btree_map(any::<[u8; 20]>(), 1u64..1000, 0..5),
        flip in any::<(usize, u8)>(),
    ) {
        let mut parents = parents;
        parents.sort_unstable();
        parents.dedup();
        let msg = GroupMessage {
            body: MessageBody {
                version: GROUP_VERSION,
                group: GroupId([1; 32]),
                sender: [2; 20],
                seq,
                log_seq,
                log_head: [3; 32],
                parents,
                sent_at: 4,
                content: Content::Text { body: text.clone() },
            },
            sig: sig.clone(),
        };
        let op = Op {
            body: OpBody {
                version: GROUP_VERSION,
                group: GroupId([1; 32]),
                seq,
                prev: [5; 32],
                at: log_seq,
                author: [6; 20],
                action: Action::Rename { name: format!("g{text}").chars().take(20).collect() },
            },
            author_sig: sig.clone(),
            owner_sig: Some(sig),
        };
        let cursors: Vec<_> = cursors.into_iter().collect();
        let all = [
            GroupWire::Message(msg.clone()),
            GroupWire::Op(op.clone()),
            GroupWire::PullRequest(PullRequest { group: GroupId([9; 32]), log_seq, log_head: [0; 32], cursors }),
            GroupWire::PullResponse(PullResponse { group: GroupId([9; 32]), ops: vec![op], messages: vec![msg], more: true }),
        ];
        for w in all {
            let Ok(bytes) = w.encode() else {
                // Only the name rule can refuse (control characters).
                continue;
            };
            prop_assert_eq!(&GroupWire::decode(&bytes).unwrap(), &w);
            let mut mutated = bytes.clone();
            let i = flip.0 % mutated.len();
            mutated[i] ^= flip.1 | 1;
            if let Ok(m) = GroupWire::decode(&mutated) {
                prop_assert_eq!(m.encode().unwrap(), mutated);
            }
        }
    }

    /// (c) Under any permutation and duplication of arrivals, the tracker
    /// delivers every message exactly once and in per-sender order.
    #[test]
    fn tracker_is_exactly_once_in_order(
        counts in prop::collection::vec(1u64..30, 1..4),
        dups in prop::collection::vec(any::<prop::sample::Index>(), 0..40),
        seed in any::<u64>(),
    ) {
        let mut arrivals: Vec<(usize, u64)> = counts
            .iter()
            .enumerate()
            .flat_map(|(s, n)| (1..=*n).map(move |q| (s, q)))
            .collect();
        let originals = arrivals.clone();
        for d in &dups {
            arrivals.push(*d.get(&originals));
        }
        let mut x = seed | 1;
        for i in (1..arrivals.len()).rev() {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            arrivals.swap(i, (x % (i as u64 + 1)) as usize);
        }
        let mut t = DeliveryTracker::new();
        let mut delivered: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
        for (s, q) in arrivals {
            let mut id = [0u8; 32];
            id[0] = s as u8;
            id[1..9].copy_from_slice(&q.to_be_bytes());
            match t.offer(fp(s), q, id, (s, q)).unwrap() {
                Offer::Deliver(items) => {
                    for (s2, q2) in items {
                        prop_assert_eq!(s2, s);
                        delivered.entry(s2).or_default().push(q2);
                    }
                }
                Offer::Duplicate | Offer::Buffered { .. } => {}
            }
        }
        prop_assert_eq!(t.buffered(), 0);
        for (s, n) in counts.iter().enumerate() {
            prop_assert_eq!(delivered.get(&s).cloned().unwrap_or_default(), (1..=*n).collect::<Vec<_>>());
        }
    }
}

#[test]
fn role_wire_values_are_fixed() {
    // Wire values are part of the spec (§20.3): a reordering would break peers.
    let m = |r: Role| {
        let w = GroupWire::Op(Op {
            body: OpBody {
                version: GROUP_VERSION,
                group: GroupId([0; 32]),
                seq: 1,
                prev: [0; 32],
                at: 0,
                author: [0; 20],
                action: Action::SetRole {
                    member: [0; 20],
                    role: r,
                },
            },
            author_sig: vec![1],
            owner_sig: None,
        });
        // ... role || sig len 1 || sig 0x01 || owner_sig None
        let b = w.encode().unwrap();
        b[b.len() - 4]
    };
    assert_eq!(m(Role::Admin), 1);
    assert_eq!(m(Role::Member), 2);
    assert_eq!(m(Role::ReadOnly), 3);
}
