//! Groups (PROTOCOL.md §20, issue 17) over the in-memory transport: three
//! and four real nodes (real sessions, real OpenPGP signatures, real
//! encrypted stores). The owner creates a group and invites contacts
//! directly; members exchange messages (members who are not contacts of
//! each other through the owner's relay); a member offline for a burst gets
//! every message exactly once in per-sender order; removal, ownership
//! transfer, a crash mid-burst; and hostile members whose forged ops,
//! self-promotion, stale proposals and mis-signed messages are refused with
//! the state unchanged and the user warned.

use std::collections::BTreeMap;

use futures::SinkExt;
use umbra::group::{
    Action, Content, GROUP_VERSION, GroupMessage, GroupState, GroupWire, Op, OpBody, Role,
};
use umbra::identity::{Fingerprint, Identity};
use umbra::node::{Event, GroupEvent, MemoryMailbox, NodeHandle};
use umbra::store::{GroupStatus, Store};
use umbra::transport::memory::{MemoryNetwork, MemoryTransport};
use umbra::transport::{PeerAddress, Transport};

use crate::support::{Raw, User, connect_pair, wait_event, wait_store};

/// A running node with its user.
struct Member {
    user: User,
    node: NodeHandle,
    hs: String,
}

struct Net {
    net: MemoryNetwork,
    mailbox: MemoryMailbox,
}

impl Net {
    fn new() -> Net {
        Net {
            net: MemoryNetwork::new(),
            mailbox: MemoryMailbox::new(),
        }
    }

    async fn start(&self, name: &str) -> Member {
        let user = User::new(name);
        let hs = format!("{name}-hs");
        let node = user
            .start(MemoryTransport::new(&self.net, &hs), &self.mailbox)
            .await;
        Member { user, node, hs }
    }

    async fn restart(&self, m: &mut Member) {
        m.node = m
            .user
            .start(MemoryTransport::new(&self.net, &m.hs), &self.mailbox)
            .await;
    }
}

fn fpr(m: &Member) -> String {
    m.user.cert.fingerprint().to_hex()
}

/// Waits until `cond` holds on `m`'s store.
async fn until<F>(m: &Member, what: &str, cond: F)
where
    F: Fn(&mut Store) -> bool + Send + Sync + Clone + 'static,
{
    let mut ev = m.node.events();
    wait_store(&m.node, &mut ev, what, cond).await;
}

fn status(s: &Store, g: [u8; 32]) -> Option<GroupStatus> {
    s.group(&g).unwrap().map(|r| r.status)
}

fn members(s: &Store, g: [u8; 32]) -> Vec<(String, String)> {
    s.group_members(&g)
        .unwrap()
        .into_iter()
        .map(|m| (m.fingerprint, m.role))
        .collect()
}

/// Messages per sender `(seq, body)` in the order they were stored.
fn by_sender(s: &Store, g: [u8; 32]) -> BTreeMap<String, Vec<(u64, String)>> {
    let mut out: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for m in s.group_history(&g, 100_000).unwrap() {
        out.entry(m.sender)
            .or_default()
            .push((m.seq, m.body.unwrap_or_default()));
    }
    out
}

fn count(s: &Store, g: [u8; 32]) -> usize {
    s.group_history(&g, 100_000).unwrap().len()
}

/// `owner` invites `m` (its contact `c`) and `m` accepts; returns when `m`
/// is an active member holding `n` members.
async fn invite_and_join(
    owner: &Member,
    m: &Member,
    c: umbra::store::ContactId,
    g: [u8; 32],
    role: Role,
    n: usize,
) {
    owner.node.group_invite(g, c, role).await.unwrap();
    until(m, "the invite arrives", move |s| {
        s.group_invites()
            .unwrap()
            .iter()
            .any(|i| i.group_id == g && i.incoming && i.state == "pending")
    })
    .await;
    m.node.group_answer(g, true).await.unwrap();
    until(m, "the joiner holds the log with its Add", move |s| {
        status(s, g) == Some(GroupStatus::Active) && members(s, g).len() == n
    })
    .await;
}

/// `from` (the owner) hands the group to `to`; returns when `to` owns it.
async fn transfer(from: &Member, to: &Member, g: [u8; 32]) {
    let member = from.node.group_member(g, &to.user.name).await.unwrap();
    from.node
        .group_act(g, Action::TransferOwnership { to: member })
        .await
        .unwrap();
    until(to, "the new owner owns the group", move |s| {
        s.group(&g).unwrap().unwrap().my_role.as_deref() == Some("owner")
    })
    .await;
}

/// `m` renames the group to `name`.
async fn rename(m: &Member, g: [u8; 32], name: &str) {
    m.node
        .group_act(g, Action::Rename { name: name.into() })
        .await
        .unwrap();
}

/// alice (owner) with bob and carol as members; bob and carol are contacts
/// of alice only (their traffic goes through alice's relay).
struct Trio {
    net: Net,
    a: Member,
    b: Member,
    c: Member,
    g: [u8; 32],
}

/// alice, bob and carol on one network; bob and carol are contacts of
/// alice only. Returns alice's contact ids of bob and carol too.
async fn three() -> (
    Net,
    Member,
    Member,
    Member,
    umbra::store::ContactId,
    umbra::store::ContactId,
) {
    let net = Net::new();
    let a = net.start("alice").await;
    let b = net.start("bob").await;
    let c = net.start("carol").await;
    let (ab, _) = connect_pair(&a.node, &b.node, &b.user.cert).await;
    let (ac, _) = connect_pair(&a.node, &c.node, &c.user.cert).await;
    (net, a, b, c, ab, ac)
}

async fn trio() -> Trio {
    let (net, a, b, c, ab, ac) = three().await;
    let g = a.node.group_create("Book club", "", 0).await.unwrap();
    invite_and_join(&a, &b, ab, g, Role::Member, 2).await;
    invite_and_join(&a, &c, ac, g, Role::Member, 3).await;
    for m in [&a, &b] {
        until(m, "everyone sees three members", move |s| {
            members(s, g).len() == 3
        })
        .await;
    }
    Trio { net, a, b, c, g }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_chat_and_an_offline_member_gets_every_message_once_in_order() {
    let Trio {
        net,
        a,
        b,
        mut c,
        g,
        ..
    } = trio().await;
    assert_eq!(a.node.resolve_group("book CLUB").await.unwrap(), g);

    // Everyone posts once; everyone ends up with the three messages.
    a.node.group_send(g, "hello from alice").await.unwrap();
    b.node.group_send(g, "hello from bob").await.unwrap();
    c.node.group_send(g, "hello from carol").await.unwrap();
    for m in [&a, &b, &c] {
        until(m, "three messages", move |s| count(s, g) == 3).await;
    }
    // alice's own message is delivered to both (acknowledged by each).
    until(&a, "alice's message delivered", move |s| {
        s.group_history(&g, 10)
            .unwrap()
            .iter()
            .all(|m| m.state != umbra::store::GroupMessageState::Pending)
    })
    .await;

    // carol goes offline; bob and alice post a burst meanwhile.
    c.node.clone().shutdown().await;
    for i in 1..=20 {
        b.node.group_send(g, &format!("bob {i}")).await.unwrap();
    }
    for i in 1..=5 {
        a.node.group_send(g, &format!("alice {i}")).await.unwrap();
    }
    until(&a, "alice has bob's burst", move |s| count(s, g) == 28).await;
    assert!(
        a.node.group_outbox_len(g, &fpr(&c)).await.unwrap() >= 25,
        "carol's outbox at alice holds the burst while she is away"
    );
    net.restart(&mut c).await;
    until(&c, "carol catches up", move |s| count(s, g) == 28).await;
    let got = c.node.store().run(move |s| by_sender(s, g)).await.unwrap();
    let bob_msgs = &got[&fpr(&b)];
    assert_eq!(bob_msgs.len(), 21, "exactly once");
    for (i, (seq, body)) in bob_msgs.iter().enumerate() {
        assert_eq!(*seq, i as u64 + 1, "per-sender order");
        if i > 0 {
            assert_eq!(*body, format!("bob {i}"));
        }
    }
    assert_eq!(got[&fpr(&a)].len(), 6);
    // The outbox for carol drains once she acknowledged.
    until(&a, "carol's outbox drained", {
        let cf = fpr(&c);
        move |s| s.group_outbox_len(&g, &cf).unwrap() == 0
    })
    .await;
    for m in [a, b, c] {
        m.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_stops_delivery_and_ownership_moves() {
    let Trio { a, b, c, g, .. } = trio().await;
    // alice removes carol: carol learns it, others stop delivering to her.
    let carol = a.node.group_member(g, "@carol").await.unwrap();
    a.node
        .group_act(g, Action::Remove { member: carol })
        .await
        .unwrap();
    until(&c, "carol learns she was removed", move |s| {
        status(s, g) == Some(GroupStatus::Removed)
    })
    .await;
    until(&b, "bob sees two members", move |s| {
        members(s, g).len() == 2
    })
    .await;
    let before = c.node.store().run(move |s| count(s, g)).await.unwrap();
    b.node.group_send(g, "after carol left").await.unwrap();
    until(&a, "alice has bob's message", move |s| count(s, g) == 1).await;
    until(&b, "bob's message is delivered", move |s| {
        s.group_history(&g, 10)
            .unwrap()
            .iter()
            .all(|m| m.state == umbra::store::GroupMessageState::Delivered)
    })
    .await;
    assert_eq!(
        a.node.group_outbox_len(g, &fpr(&c)).await.unwrap(),
        0,
        "nothing is queued for a removed member"
    );
    // carol cannot post any more, and got nothing new.
    assert!(c.node.group_send(g, "still here?").await.is_err());
    assert_eq!(
        c.node.store().run(move |s| count(s, g)).await.unwrap(),
        before
    );

    // Ownership transfer: bob becomes the owner, alice an admin; bob renames.
    transfer(&a, &b, g).await;
    rename(&b, g, "Bob's club").await;
    until(&a, "alice sees the new name", move |s| {
        s.group(&g).unwrap().unwrap().name == "Bob's club"
    })
    .await;
    // alice (now an admin) leaves: a proposal bob countersigns.
    a.node.group_act(g, Action::Leave).await.unwrap();
    until(&a, "alice has left", move |s| {
        status(s, g) == Some(GroupStatus::Left)
    })
    .await;
    until(&b, "bob is alone", move |s| members(s, g).len() == 1).await;
    for m in [a, b, c] {
        m.node.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_mid_burst_loses_nothing() {
    let Trio {
        net,
        mut a,
        b,
        c,
        g,
        ..
    } = trio().await;
    for i in 1..=40 {
        b.node.group_send(g, &format!("burst {i}")).await.unwrap();
    }
    // alice crashes while the burst arrives, then comes back.
    until(&a, "part of the burst arrived", move |s| count(s, g) >= 5).await;
    a.node.clone().abort().await;
    net.restart(&mut a).await;
    for m in [&a, &c] {
        until(m, "the whole burst", move |s| count(s, g) == 40).await;
    }
    let got = c.node.store().run(move |s| by_sender(s, g)).await.unwrap();
    let seqs: Vec<u64> = got[&fpr(&b)].iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=40).collect::<Vec<_>>(), "exactly once, in order");
    for m in [a, b, c] {
        m.node.shutdown().await;
    }
}

/// After alice (the hub: bob and carol are contacts of hers only) hands the
/// group to bob, bob's ops and messages still reach carol, and carol's reach
/// bob: alice, now an admin, relays (PROTOCOL.md §20.14). Before admins
/// relayed, carol never saw the new owner's changes or messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_owner_reaches_members_who_are_not_its_contacts() {
    let Trio { a, b, c, g, .. } = trio().await;
    transfer(&a, &b, g).await;
    until(&c, "carol sees bob as the owner", {
        let bf = fpr(&b);
        move |s| members(s, g).iter().any(|(f, r)| *f == bf && r == "owner")
    })
    .await;
    rename(&b, g, "Bob's club").await;
    until(&c, "carol sees the new owner's rename", move |s| {
        s.group(&g).unwrap().unwrap().name == "Bob's club"
    })
    .await;
    b.node.group_send(g, "from the new owner").await.unwrap();
    c.node.group_send(g, "from carol").await.unwrap();
    for m in [&a, &b, &c] {
        until(m, "both messages", move |s| count(s, g) == 2).await;
    }
    // Each exactly once although it may arrive twice (sender and relay).
    for m in [&a, &b, &c] {
        let got = m.node.store().run(move |s| by_sender(s, g)).await.unwrap();
        assert!(got.values().all(|v| v.len() == 1), "{got:?}");
    }
    for m in [a, b, c] {
        m.node.shutdown().await;
    }
}

/// A member who joins after others posted (PROTOCOL.md §20.10): without
/// HISTORY it sees none of the earlier messages but every later one (its
/// tracker must not wait for sequence numbers it may never be served);
/// with HISTORY it pulls the earlier ones too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_joiner_gets_what_follows_and_history_only_if_the_group_keeps_it() {
    let (_net, a, b, c, ab, ac) = three().await;
    let plain = a.node.group_create("Plain", "", 0).await.unwrap();
    let kept = a
        .node
        .group_create("Kept", "", umbra::group::FLAG_HISTORY)
        .await
        .unwrap();
    for g in [plain, kept] {
        invite_and_join(&a, &b, ab, g, Role::Member, 2).await;
        for i in 1..=3 {
            a.node
                .group_send(g, &format!("alice early {i}"))
                .await
                .unwrap();
            b.node
                .group_send(g, &format!("bob early {i}"))
                .await
                .unwrap();
        }
        until(&b, "the early messages", move |s| count(s, g) == 6).await;
        until(&a, "the early messages", move |s| count(s, g) == 6).await;
        invite_and_join(&a, &c, ac, g, Role::Member, 3).await;
        a.node.group_send(g, "alice late").await.unwrap();
        b.node.group_send(g, "bob late").await.unwrap();
    }
    // Without HISTORY: exactly the two later messages, one per sender.
    until(&c, "the later messages in the plain group", move |s| {
        count(s, plain) >= 2
    })
    .await;
    let got = c
        .node
        .store()
        .run(move |s| by_sender(s, plain))
        .await
        .unwrap();
    let bodies: Vec<&str> = got.values().flatten().map(|(_, b)| b.as_str()).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(
        bodies.contains(&"alice late") && bodies.contains(&"bob late"),
        "{got:?}"
    );
    assert!(!bodies.iter().any(|b| b.contains("early")), "{got:?}");
    // With HISTORY: everything, in per-sender order.
    until(&c, "everything in the group that keeps history", move |s| {
        count(s, kept) == 8
    })
    .await;
    let got = c
        .node
        .store()
        .run(move |s| by_sender(s, kept))
        .await
        .unwrap();
    for (sender, msgs) in &got {
        let seqs: Vec<u64> = msgs.iter().map(|(s, _)| *s).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4], "{sender}: {got:?}");
    }
    for m in [a, b, c] {
        m.node.shutdown().await;
    }
}

/// bob's identity, from his store.
async fn identity_of(m: &Member) -> Identity {
    let own = m
        .node
        .store()
        .run(|s| s.identity().unwrap().unwrap())
        .await
        .unwrap();
    Identity::from_secret_bytes(&own.secret_cert).unwrap()
}

/// The group's verified state as alice's store holds it.
async fn state_of(m: &Member, g: [u8; 32]) -> GroupState {
    let ops = m
        .node
        .store()
        .run(move |s| s.group_ops(&g, 0).unwrap())
        .await
        .unwrap();
    let ops: Vec<Op> = ops.iter().map(|b| Op::decode(b).unwrap()).collect();
    GroupState::from_log(&ops[0], &ops[1..]).unwrap()
}

fn body_at(
    state: &GroupState,
    seq: u64,
    prev: [u8; 32],
    author: &Fingerprint,
    action: Action,
) -> OpBody {
    OpBody {
        version: GROUP_VERSION,
        group: state.id(),
        seq,
        prev,
        at: umbra::time::now_secs(),
        author: *author.as_bytes(),
        action,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_member_inputs_are_refused_with_state_unchanged() {
    let Trio {
        net, a, b, c, g, ..
    } = trio().await;
    let bob_id = identity_of(&b).await;
    let bob = bob_id.fingerprint();
    let carol = c.user.cert.fingerprint();
    let state = state_of(&a, g).await;
    let before = state.summary();
    let msgs_before = a.node.store().run(move |s| count(s, g)).await.unwrap();

    // bob's node stops; his session with alice is driven by hand.
    let b_store = b.node.store();
    let ba = b
        .node
        .contact_by_username("alice")
        .await
        .unwrap()
        .unwrap()
        .id;
    // Alice must have seen bob's connection end before the forged one
    // arrives: against a connection she still holds (she dialed it moments
    // ago, within the crossing window), the newcomer can lose the tie-break
    // of PROTOCOL.md §10 and be closed, and nothing sent on it is read.
    let mut a_presence = a.node.events();
    let ab = a.node.contact_by_username("bob").await.unwrap().unwrap().id;
    b.node.clone().shutdown().await;
    if a.node.is_connected(ab) {
        wait_event(&mut a_presence, |e| {
            matches!(e, Event::PresenceChanged { contact, online: false, .. } if *contact == ab)
        })
        .await;
    }
    let mallory = MemoryTransport::new(&net.net, "mallory");
    let stream = mallory
        .connect(&PeerAddress::new(a.hs.as_str()))
        .await
        .unwrap();
    let mut raw = Raw::from_store(&b_store, ba, stream).await;
    raw.hello().await;
    let mut a_ev = a.node.events();

    async fn send(raw: &mut Raw, w: &GroupWire) {
        let f = raw.session.seal(&w.encode().unwrap()).unwrap();
        raw.io.send(bytes::Bytes::from(f)).await.unwrap();
    }
    async fn warned(ev: &mut tokio::sync::broadcast::Receiver<Event>, needle: &str) {
        let needle = needle.to_owned();
        wait_event(ev, move |e| {
            matches!(e, Event::Group { event: GroupEvent::Warning { reason }, .. } if reason.contains(&needle))
        })
        .await;
    }

    // 1. A member promoting itself: SetRole on itself, as a proposal.
    let op = Op::sign(
        body_at(
            &state,
            state.next_seq(),
            state.head(),
            &bob,
            Action::SetRole {
                member: *bob.as_bytes(),
                role: Role::Admin,
            },
        ),
        &bob_id,
    )
    .unwrap();
    send(&mut raw, &GroupWire::Proposal(op)).await;
    warned(&mut a_ev, "may not").await;

    // 2. A forged op: claims alice (the owner) as author, signed by bob.
    let mut forged = Op::sign(
        body_at(
            &state,
            state.next_seq(),
            state.head(),
            &bob,
            Action::Remove {
                member: *carol.as_bytes(),
            },
        ),
        &bob_id,
    )
    .unwrap();
    forged.body.author = *state.owner().as_bytes();
    send(&mut raw, &GroupWire::Op(forged)).await;
    warned(&mut a_ev, "signature does not verify").await;

    // 3. A proposal against a stale head (built on the genesis).
    let stale = Op::sign(
        body_at(
            &state,
            1,
            state.head_at(0).unwrap(),
            &bob,
            Action::Rename {
                name: "stale".into(),
            },
        ),
        &bob_id,
    )
    .unwrap();
    send(&mut raw, &GroupWire::Proposal(stale)).await;
    // Refused with "stale head" to the proposer; alice's state stays.
    loop {
        match raw.next_any().await {
            Some(umbra::wire::PeerMessage::Unknown { kind: 34 }) => break,
            Some(_) => continue,
            None => panic!("alice closed the connection"),
        }
    }

    // 4. A message signed by bob that claims carol as its sender.
    let mut body = state.message_body(
        &carol,
        1,
        Vec::new(),
        umbra::time::now_secs(),
        Content::Text {
            body: "I am carol".into(),
        },
    );
    body.sender = *carol.as_bytes();
    let msg = GroupMessage::sign(
        state.message_body(&bob, 1, Vec::new(), 0, Content::Text { body: "x".into() }),
        &bob_id,
    )
    .unwrap();
    let mismatched = GroupMessage {
        body,
        sig: msg.sig.clone(),
    };
    send(&mut raw, &GroupWire::Message(mismatched)).await;
    warned(&mut a_ev, "sender's signature").await;

    // Nothing changed at alice.
    assert_eq!(state_of(&a, g).await.summary(), before);
    assert_eq!(
        a.node.store().run(move |s| count(s, g)).await.unwrap(),
        msgs_before
    );
    let rec = a.node.group(g).await.unwrap();
    assert_eq!(rec.status, GroupStatus::Active);
    assert_eq!(rec.head_seq, before.head_seq);
    for m in [a, c] {
        m.node.shutdown().await;
    }
}
