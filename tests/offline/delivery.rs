//! Two nodes over the in-memory and the direct TCP transports: request →
//! accept → chat both ways; offline delivery of 100 messages; `end`
//! destroys the keys on both sides.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use support::{
    MemoryPair, User, connect_pair, fast_config, incoming, memory_pair, wait_event, wait_store,
};
use umbra::node::{Event, MemoryMailbox, NodeHandle};
use umbra::session::Session;
use umbra::store::{ContactId, DeliveryState, Direction};
use umbra::transport::memory::MemoryTransport;
use umbra::transport::tcp::TcpTransport;
use umbra::transport::{RetryPolicy, Transport};

async fn chat_both_ways(a: &NodeHandle, b: &NodeHandle, ab: ContactId, ba: ContactId) {
    let mut b_events = b.events();
    let mut a_events = a.events();
    // Empty and whitespace-only texts are refused and use no seq (UX-2026-11 A6).
    for blank in ["", "   ", "\n\t "] {
        let e = a.send_text(ab, blank).await.unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
    }
    let sent = a.send_text(ab, "hello bob").await.unwrap();
    assert_eq!(sent.seq, 1);
    wait_event(
        &mut b_events,
        |e| matches!(e, Event::MessageReceived { contact, seq: 1, .. } if *contact == ba),
    )
    .await;
    wait_event(&mut a_events, |e| {
        matches!(e, Event::DeliveryChanged { contact, upto: 1, state: DeliveryState::Delivered } if *contact == ab)
    })
    .await;
    b.send_text(ba, "hello alice").await.unwrap();
    wait_event(
        &mut a_events,
        |e| matches!(e, Event::MessageReceived { contact, seq: 1, .. } if *contact == ab),
    )
    .await;
    let got_b = b.store().run(move |s| incoming(s, ba)).await.unwrap();
    assert_eq!(got_b.len(), 1);
    assert_eq!(got_b[0].body, "hello bob");
    assert_eq!(got_b[0].msg_id, sent.msg_id);
    let got_a = a.store().run(move |s| incoming(s, ab)).await.unwrap();
    assert_eq!(got_a[0].body, "hello alice");
    let state = a
        .store()
        .run(move |s| s.message(sent.id).unwrap().unwrap().state)
        .await
        .unwrap();
    assert_eq!(state, DeliveryState::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_accept_chat_over_memory() {
    let pair = memory_pair(fast_config()).await;
    let (a, b, ab, ba) = pair.nodes();
    chat_both_ways(&a, &b, ab, ba).await;
    a.shutdown().await;
    b.shutdown().await;
}

fn tcp(port: u16) -> TcpTransport {
    TcpTransport::new(SocketAddr::from(([127, 0, 0, 1], port))).with_retry(RetryPolicy {
        total: Duration::from_secs(2),
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_accept_chat_over_tcp() {
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let a = alice.start(tcp(0), &mailbox).await;
    let b = bob.start(tcp(0), &mailbox).await;
    assert_eq!(tcp(0).kind(), umbra::transport::TransportKind::DirectTcp);
    let (ab, ba) = connect_pair(&a, &b, &bob.cert).await;
    chat_both_ways(&a, &b, ab, ba).await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_receiver_gets_100_messages_exactly_once_in_order() {
    let MemoryPair {
        net,
        mailbox,
        alice: _alice,
        bob,
        a,
        b,
        ab,
        ba,
    } = memory_pair(fast_config()).await;
    let mut a_events = a.events();
    b.shutdown().await;
    wait_event(
        &mut a_events,
        |e| matches!(e, Event::PresenceChanged { contact, online: false, .. } if *contact == ab),
    )
    .await;

    for i in 1..=100 {
        a.send_text(ab, &format!("offline message {i}"))
            .await
            .unwrap();
    }
    let queued = a
        .store()
        .run(move |s| s.outbox(ab).unwrap().len())
        .await
        .unwrap();
    assert_eq!(queued, 100, "all 100 wait in the outbox while bob is down");

    let b = bob
        .start(MemoryTransport::new(&net, "bob-hs"), &mailbox)
        .await;
    let mut b_events = b.events();
    wait_store(&b, &mut b_events, "100 messages at bob", move |s| {
        incoming(s, ba).len() >= 100
    })
    .await;
    wait_store(&a, &mut a_events, "alice's outbox drained", move |s| {
        s.outbox(ab).unwrap().is_empty()
    })
    .await;
    let got = b.store().run(move |s| incoming(s, ba)).await.unwrap();
    assert_eq!(got.len(), 100, "exactly once");
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.seq, i as u64 + 1);
        assert_eq!(m.body, format!("offline message {}", i + 1));
    }
    // Display order (by row id) is the sender's order too.
    let history = b
        .store()
        .run(move |s| s.history(ba, 1000).unwrap())
        .await
        .unwrap();
    let seqs: Vec<u64> = history
        .iter()
        .filter(|m| m.direction == Direction::Incoming)
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_destroys_keys_on_both_sides() {
    let pair = memory_pair(fast_config()).await;
    let (a, b, ab, ba) = pair.nodes();

    // Keep copies of both sides' session state: with them, frames can be
    // sealed and opened while the session lives.
    let a_rec = a
        .store()
        .run(move |s| s.session_for_contact(ab).unwrap().unwrap())
        .await
        .unwrap();
    let restore = |r: &umbra::store::SessionRecord| {
        Session::from_chains(
            r.session_id,
            (&r.send.chain_key, r.send.seq),
            (&r.recv.chain_key, r.recv.seq),
        )
        .unwrap()
    };
    let mut old_sender = restore(&a_rec);
    let old_frame = old_sender.seal(b"\x04\x00").unwrap();
    let sid = a_rec.session_id;

    let mut b_events = b.events();
    a.end(ab).await.unwrap();
    wait_event(
        &mut b_events,
        |e| matches!(e, Event::SessionEnded { contact, by_peer: true } if *contact == ba),
    )
    .await;

    for node in [&a, &b] {
        let gone = node
            .store()
            .run(move |s| s.session(&sid).unwrap().is_none())
            .await
            .unwrap();
        assert!(gone, "session keys erased");
    }
    assert!(
        a.store()
            .run(move |s| s.session_for_contact(ab).unwrap().is_none())
            .await
            .unwrap()
    );
    assert!(
        b.store()
            .run(move |s| s.session_for_contact(ba).unwrap().is_none())
            .await
            .unwrap()
    );
    // Neither side can send any more.
    assert!(a.send_text(ab, "after end").await.is_err());
    assert!(b.send_text(ba, "after end").await.is_err());
    // An old frame finds no session on the receiving side: with the stored
    // state gone there is nothing to open it with.
    let b_has = b
        .store()
        .run(move |s| s.session(&sid).unwrap().is_some())
        .await
        .unwrap();
    assert!(!b_has);
    assert!(!old_frame.is_empty());
    a.shutdown().await;
    b.shutdown().await;
}
