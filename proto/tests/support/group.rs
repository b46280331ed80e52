//! Shared fixtures of the group tests: identities generated once per test
//! binary, and helpers that build signed ops against a state.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::LazyLock;

use umbra_proto::group::op::{Action, GroupId, Op, OpBody, Role};
use umbra_proto::group::{GROUP_VERSION, GroupState};
use umbra_proto::identity::{Fingerprint, Identity, Username};

/// Six identities: 0 is the usual owner.
pub static IDS: LazyLock<Vec<Identity>> = LazyLock::new(|| {
    ["owner", "alice", "bob", "carol", "dave", "erin"]
        .iter()
        .map(|n| Identity::generate(&Username::parse(n).unwrap()).unwrap())
        .collect()
});

/// The stripped binary public certificate of identity `i`.
pub fn cert(i: usize) -> Vec<u8> {
    cert_of(&IDS[i])
}

/// The stripped binary public certificate of `id`.
pub fn cert_of(id: &Identity) -> Vec<u8> {
    id.public_cert()
        .unwrap()
        .stripped()
        .unwrap()
        .to_bytes()
        .unwrap()
}

/// `n` fresh identities named `<prefix>000`, `<prefix>001`, ...
pub fn fresh_ids(prefix: &str, n: usize) -> Vec<Identity> {
    (0..n)
        .map(|k| Identity::generate(&Username::parse(&format!("{prefix}{k:03}")).unwrap()).unwrap())
        .collect()
}

/// `Add` of `id` as a member (no link).
pub fn add_id(id: &Identity) -> Action {
    Action::Add {
        member: *id.fingerprint().as_bytes(),
        cert: cert_of(id),
        role: Role::Member,
        link: None,
    }
}

/// Fingerprint of identity `i`.
pub fn fp(i: usize) -> Fingerprint {
    IDS[i].fingerprint()
}

/// Raw fingerprint bytes of identity `i`.
pub fn fpb(i: usize) -> [u8; 20] {
    *IDS[i].fingerprint().as_bytes()
}

/// A fixed group id (deterministic tests).
pub const GID: GroupId = GroupId([7; 32]);

/// The genesis op of a group created by identity `owner` with `flags`.
pub fn genesis(owner: usize, flags: u8) -> Op {
    let body = OpBody {
        version: GROUP_VERSION,
        group: GID,
        seq: 0,
        prev: [0; 32],
        at: 1_000,
        author: fpb(owner),
        action: Action::Create {
            name: "friends".into(),
            topic: String::new(),
            flags,
            cert: cert(owner),
        },
    };
    Op::sign(body, &IDS[owner]).unwrap()
}

/// A body by `author` extending `state`'s head.
pub fn body(state: &GroupState, author: usize, action: Action) -> OpBody {
    OpBody {
        version: GROUP_VERSION,
        group: state.id(),
        seq: state.next_seq(),
        prev: state.head(),
        at: 2_000,
        author: fpb(author),
        action,
    }
}

/// A signed op by `author` at `state`'s head, countersigned by the
/// current owner when the author is not the owner.
pub fn op(state: &GroupState, author: usize, action: Action) -> Op {
    let op = Op::sign(body(state, author, action), &IDS[author]).unwrap();
    if fp(author) == state.owner() {
        op
    } else {
        op.countersign(owner_id(state)).unwrap()
    }
}

/// The identity of `state`'s owner.
pub fn owner_id(state: &GroupState) -> &'static Identity {
    IDS.iter()
        .find(|i| i.fingerprint() == state.owner())
        .unwrap()
}

/// `Add` of identity `i` with `role`.
pub fn add(i: usize, role: Role) -> Action {
    Action::Add {
        member: fpb(i),
        cert: cert(i),
        role,
        link: None,
    }
}

/// A group of the owner (0) with members 1..=n added as `roles[k]`.
pub fn group_with(flags: u8, roles: &[Role]) -> GroupState {
    let mut s = GroupState::genesis(&genesis(0, flags)).unwrap();
    for (k, role) in roles.iter().enumerate() {
        let o = op(&s, 0, add(k + 1, *role));
        s.apply(&o).unwrap();
    }
    s
}
