//! The connection registry's tie-break (PROTOCOL.md §10) against a peer that
//! reconnects: the connection the tie-break would keep stops counting once
//! the peer has said goodbye on it.
//!
//! Found as a flaky `files_hostile` test (issue #13): a peer that
//! reconnected right after its goodbye was refused whenever the old
//! connection had been dialed by the node with the lower fingerprint and had
//! not been released yet, and then waited forever. Here the old connection
//! is held open by hand, so the outcome does not depend on timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use std::time::Duration;

use umbra::node::{Event, MemoryMailbox, NodeConfig};
use umbra::transport::memory::{MemoryNetwork, MemoryTransport};
use umbra::transport::{Listener, PeerAddress, Transport};
use umbra::wire::{PeerMessage, PresenceState, Text};

use crate::support::{self, Raw, User, wait_event};

/// Two users where bob has the bytewise lower fingerprint: his dialed
/// connection wins every tie-break.
fn bob_lower() -> (User, User) {
    loop {
        let (alice, bob) = (User::new("alice"), User::new("bob"));
        if bob.cert.fingerprint().to_hex() < alice.cert.fingerprint().to_hex() {
            return (alice, bob);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_after_goodbye_replaces_the_connection_the_tie_break_keeps() {
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = bob_lower();
    let support::AliceLeft {
        b,
        a_store,
        ab,
        ba,
        b_events: mut b_ev,
    } = support::pair_then_alice_leaves_with(
        &net,
        &mailbox,
        &alice,
        &bob,
        // The test drives alice's side by hand and answers no heartbeat: bob
        // must not declare her first connection dead (and redial, winning the
        // tie-break against her reconnect) while a loaded machine runs it.
        NodeConfig {
            dead_after: Duration::from_secs(120),
            ..support::fast_config()
        },
    )
    .await;

    // alice's address now answers by hand; bob's dialer reconnects to it, so
    // bob is the connector of this connection.
    let mut listener = MemoryTransport::new(&net, "a").listen().await.unwrap();
    let stream = tokio::time::timeout(support::WAIT, listener.accept())
        .await
        .expect("bob redials alice")
        .unwrap();
    let mut first = Raw::from_store(&a_store, ab, stream).await;
    assert!(
        matches!(first.next_any().await, Some(PeerMessage::Hello(_))),
        "the connector opens with its Hello"
    );
    first.hello().await;
    wait_event(
        &mut b_ev,
        |e| matches!(e, Event::PresenceChanged { contact, online: true, .. } if *contact == ba),
    )
    .await;

    // While that connection is live, a second one from "alice" loses the
    // tie-break: bob's connector has the lower fingerprint. Bob closes it
    // without a word.
    let mallory = MemoryTransport::new(&net, "mallory");
    let Raw {
        io: first_io,
        session,
    } = first;
    let stream = mallory.connect(&PeerAddress::new("b")).await.unwrap();
    let mut second = Raw::new(stream, session);
    second.hello().await;
    assert!(second.next_any().await.is_none(), "tie-break: refused");

    // alice says goodbye on the first connection and keeps it open.
    let Raw { session, .. } = second;
    let mut first = Raw {
        io: first_io,
        session,
    };
    first
        .send(&PeerMessage::Presence(PresenceState::GoingOffline))
        .await;
    wait_event(
        &mut b_ev,
        |e| matches!(e, Event::PresenceChanged { contact, online: false, .. } if *contact == ba),
    )
    .await;

    // Her reconnect now replaces it, and carries a message.
    let Raw {
        io: mut first_io,
        session,
    } = first;
    let stream = mallory.connect(&PeerAddress::new("b")).await.unwrap();
    let mut third = Raw::new(stream, session);
    third.hello().await;
    assert!(
        matches!(third.next_any().await, Some(PeerMessage::Hello(_))),
        "the reconnect is answered"
    );
    third
        .send(&PeerMessage::Text(Text {
            id: [7; 16],
            seq: 1,
            sent_at: 1,
            body: "after the goodbye".into(),
        }))
        .await;
    wait_event(&mut b_ev, |e| matches!(e, Event::MessageReceived { .. })).await;
    // bob closed the old connection (after what he had sent on it).
    let drained = tokio::time::timeout(support::WAIT, async {
        while let Some(Ok(_)) = first_io.next().await {}
    })
    .await;
    assert!(drained.is_ok(), "the old connection is closed");
    b.shutdown().await;
}
