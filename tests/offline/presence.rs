//! Presence: heartbeats keep a contact online; a peer that goes silent is
//! shown offline after the dead-connection timeout; a clean shutdown says
//! goodbye at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::{Duration, Instant};

use support::{User, connect_pair, fast_config, wait_event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use umbra::node::{Event, MemoryMailbox, NodeConfig};
use umbra::session::Session;
use umbra::transport::memory::{MemoryNetwork, MemoryTransport};
use umbra::transport::{PeerAddress, Transport};
use umbra::wire::{Hello, PeerMessage, PresenceState};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_then_silence_means_offline() {
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let dead_after = Duration::from_millis(1500);
    let config = NodeConfig {
        heartbeat: Duration::from_millis(200),
        dead_after,
        ..fast_config()
    };
    let a = alice
        .start_with(
            config.clone(),
            MemoryTransport::new(&net, "alice-hs"),
            &mailbox,
        )
        .await;
    let b = bob
        .start_with(config, MemoryTransport::new(&net, "bob-hs"), &mailbox)
        .await;
    let (ab, ba) = connect_pair(&a, &b, &bob.cert).await;

    // Heartbeats: several Presence(Online) from bob, never offline, over
    // a span longer than the dead-connection timeout.
    let mut a_events = a.events();
    let start = Instant::now();
    let mut beats = 0;
    while start.elapsed() < dead_after * 2 {
        match wait_event(&mut a_events, |_| true).await {
            Event::PresenceChanged {
                online: true,
                state: Some(PresenceState::Online),
                ..
            } => beats += 1,
            Event::PresenceChanged { online: false, .. } => {
                panic!("went offline despite heartbeats")
            }
            _ => {}
        }
    }
    assert!(beats >= 5, "only {beats} heartbeats");

    // A clean shutdown says goodbye: bob sees alice offline.
    let mut b_events = b.events();
    a.shutdown().await;
    wait_event(
        &mut b_events,
        |e| matches!(e, Event::PresenceChanged { contact, online: false, .. } if *contact == ba),
    )
    .await;

    // A peer that completes the Hello and then goes silent (alice's keys in
    // a raw stream that never sends again) is dropped after `dead_after`.
    let rec = alice.open().session_for_contact(ab).unwrap().unwrap();
    let mut session = Session::from_chains(
        rec.session_id,
        (&rec.send.chain_key, rec.send.seq),
        (&rec.recv.chain_key, rec.recv.seq),
    )
    .unwrap();
    let hello = session
        .seal(
            &PeerMessage::Hello(Hello {
                protocol: 1,
                last_received: 0,
            })
            .encode()
            .unwrap(),
        )
        .unwrap();
    let mut frame = (hello.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&hello);
    let mut stream = MemoryTransport::new(&net, "silent")
        .connect(&PeerAddress::new("bob-hs"))
        .await
        .unwrap();
    stream.write_all(&frame).await.unwrap();
    stream.flush().await.unwrap();
    wait_event(
        &mut b_events,
        |e| matches!(e, Event::PresenceChanged { contact, online: true, .. } if *contact == ba),
    )
    .await;
    let online_at = Instant::now();
    // Drain what bob sends (Hello, Presence, heartbeats) until it hangs up.
    let drain = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while stream.read(&mut buf).await.map(|n| n > 0).unwrap_or(false) {}
    });
    wait_event(
        &mut b_events,
        |e| matches!(e, Event::PresenceChanged { contact, online: false, .. } if *contact == ba),
    )
    .await;
    let silent_for = online_at.elapsed();
    assert!(
        silent_for >= dead_after - Duration::from_millis(100),
        "dropped after {silent_for:?}, before the timeout"
    );
    tokio::time::timeout(Duration::from_secs(10), drain)
        .await
        .expect("bob closes the stream")
        .unwrap();
    b.shutdown().await;
}
