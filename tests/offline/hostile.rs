//! Hostile peers: garbage, an over-limit length prefix, a frame with a bad
//! tag, a replayed old frame, an unknown session, a frame after `end`, and a
//! connection request replayed from the mailbox. Each is refused, the
//! connection is closed, and the victim's stored state does not change.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use support::{User, incoming, wait_event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use umbra::node::{Event, MemoryMailbox};
use umbra::session::Session;
use umbra::store::{ContactId, SessionRecord, Store};
use umbra::transport::memory::{MemoryNetwork, MemoryTransport};
use umbra::transport::{PeerAddress, Transport};
use umbra::wire::{Hello, PeerMessage};

/// Everything a frame could change in a store, comparable.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    session: Option<(Vec<u8>, u64, Vec<u8>, u64)>,
    messages: Vec<(u64, String, String)>,
    outbox: usize,
    contacts: usize,
}

fn snapshot(s: &Store, contact: ContactId) -> Snapshot {
    Snapshot {
        session: s.session_for_contact(contact).unwrap().map(|r| {
            (
                r.send.chain_key.to_vec(),
                r.send.seq,
                r.recv.chain_key.to_vec(),
                r.recv.seq,
            )
        }),
        messages: s
            .history(contact, u32::MAX)
            .unwrap()
            .into_iter()
            .map(|m| (m.seq, m.body, m.state.as_str().to_owned()))
            .collect(),
        outbox: s.outbox(contact).unwrap().len(),
        contacts: s.contacts().unwrap().len(),
    }
}

fn restore(r: &SessionRecord) -> Session {
    Session::from_chains(
        r.session_id,
        (&r.send.chain_key, r.send.seq),
        (&r.recv.chain_key, r.recv.seq),
    )
    .unwrap()
}

fn hello_frame(session: &mut Session) -> Vec<u8> {
    let pt = PeerMessage::Hello(Hello {
        protocol: 1,
        last_received: 0,
    })
    .encode()
    .unwrap();
    session.seal(&pt).unwrap()
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

/// Opens a raw connection to `to`, writes `bytes`, and asserts the node
/// closes the stream (EOF or reset) without sending anything.
async fn refused(net: &MemoryNetwork, to: &str, bytes: &[u8]) {
    let mallory = MemoryTransport::new(net, "mallory");
    let mut stream = mallory.connect(&PeerAddress::new(to)).await.unwrap();
    let _ = stream.write_all(bytes).await;
    let _ = stream.flush().await;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut buf))
        .await
        .expect("the node must close a hostile connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing is sent back to a hostile peer (no oracle)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_are_refused_and_change_nothing() {
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let a = alice
        .start(MemoryTransport::new(&net, "alice-hs"), &mailbox)
        .await;
    let b = bob
        .start(MemoryTransport::new(&net, "bob-hs"), &mailbox)
        .await;

    // The request, captured for a replay later.
    let mut b_events = b.events();
    let mut a_events = a.events();
    let ab = a.request(&bob.cert, "hi").await.unwrap();
    let request_envelope = mailbox.items("bob")[0].envelope.clone();
    b.poll_mailbox().await.unwrap();
    let Event::RequestReceived { request_id, .. } = wait_event(&mut b_events, |e| {
        matches!(e, Event::RequestReceived { .. })
    })
    .await
    else {
        unreachable!()
    };
    let ba = b.accept(request_id.expose()).await.unwrap();
    wait_event(
        &mut a_events,
        |e| matches!(e, Event::PresenceChanged { contact, online: true, .. } if *contact == ab),
    )
    .await;

    // An early copy of alice's state: its frames become "old" below.
    let early = a
        .store()
        .run(move |s| s.session_for_contact(ab).unwrap().unwrap())
        .await
        .unwrap();
    a.send_text(ab, "one").await.unwrap();
    wait_event(&mut b_events, |e| {
        matches!(e, Event::MessageReceived { seq: 1, .. })
    })
    .await;
    wait_event(&mut a_events, |e| {
        matches!(e, Event::DeliveryChanged { upto: 1, .. })
    })
    .await;

    // Alice goes away; bob's view is now stable.
    a.shutdown().await;
    wait_event(
        &mut b_events,
        |e| matches!(e, Event::PresenceChanged { contact, online: false, .. } if *contact == ba),
    )
    .await;
    let current = alice
        .open()
        .session_for_contact(ab)
        .unwrap()
        .expect("alice's session");
    let before = b.store().run(move |s| snapshot(s, ba)).await.unwrap();
    assert!(before.session.is_some());

    // 1. Garbage: an HTTP request (its "length" is far over the limit) and a
    //    short frame that is not a valid sealed frame.
    refused(&net, "bob-hs", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    refused(&net, "bob-hs", &framed(&[1, 2, 0xde, 0xad, 0xbe, 0xef])).await;
    refused(&net, "bob-hs", &framed(&[9, 9, 9])).await;
    // 2. A length prefix over MAX_FRAME (the body is never read).
    refused(&net, "bob-hs", &[0x00, 0x02, 0x00, 0x01, 0xff]).await;
    // 3. A frame for the live session with a bad tag.
    let mut bad = hello_frame(&mut restore(&current));
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    refused(&net, "bob-hs", &framed(&bad)).await;
    // 4. A replayed old frame (a sequence bob has already passed).
    let old = hello_frame(&mut restore(&early));
    refused(&net, "bob-hs", &framed(&old)).await;
    // 5. A sealed frame for a session bob does not have.
    let mut unknown = hello_frame(&mut restore(&current));
    unknown[2] ^= 0xff;
    refused(&net, "bob-hs", &framed(&unknown)).await;
    // 6. Two envelope frames / an envelope nobody asked for.
    refused(
        &net,
        "bob-hs",
        &framed(&umbra::wire::Frame::envelope(request_envelope.as_bytes()).unwrap()),
    )
    .await;

    // 7. The connection request replayed from the mailbox: dropped (and
    //    removed from the mailbox), no new request shown.
    mailbox.inject("bob", request_envelope);
    let mut fresh = b.events();
    b.poll_mailbox().await.unwrap();
    assert_eq!(
        mailbox.pending("bob"),
        0,
        "a replayed request is acked away"
    );
    while let Ok(e) = fresh.try_recv() {
        assert!(
            !matches!(e, Event::RequestReceived { .. }),
            "replay shown as new"
        );
    }

    let after = b.store().run(move |s| snapshot(s, ba)).await.unwrap();
    assert_eq!(before, after, "hostile input changed bob's store");

    // The session still works: alice comes back and talks.
    let a = alice
        .start(MemoryTransport::new(&net, "alice-hs"), &mailbox)
        .await;
    a.send_text(ab, "two").await.unwrap();
    wait_event(&mut b_events, |e| {
        matches!(e, Event::MessageReceived { seq: 2, .. })
    })
    .await;
    let got = b.store().run(move |s| incoming(s, ba)).await.unwrap();
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["one", "two"]
    );

    // After `end`, frames of the old session are refused by both sides and
    // neither store holds its keys.
    let last_state = a
        .store()
        .run(move |s| s.session_for_contact(ab).unwrap().unwrap())
        .await
        .unwrap();
    a.end(ab).await.unwrap();
    wait_event(&mut b_events, |e| {
        matches!(e, Event::SessionEnded { by_peer: true, .. })
    })
    .await;
    let frame = hello_frame(&mut restore(&last_state));
    let before = b.store().run(move |s| snapshot(s, ba)).await.unwrap();
    assert!(before.session.is_none());
    refused(&net, "bob-hs", &framed(&frame)).await;
    refused(&net, "alice-hs", &framed(&frame)).await;
    assert_eq!(
        before,
        b.store().run(move |s| snapshot(s, ba)).await.unwrap()
    );
    a.shutdown().await;
    b.shutdown().await;
}
