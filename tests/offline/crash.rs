//! Crash safety over the direct TCP transport: the receiver is killed (every
//! task aborted at its next await point, no goodbye) in the middle of a
//! 1,000-message burst and restarted from the same data dir. Nothing is lost,
//! nothing is duplicated, the order is the sender's.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use crate::support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{User, connect_pair, incoming, wait_store};
use umbra::node::MemoryMailbox;
use umbra::store::DeliveryState;
use umbra::transport::RetryPolicy;
use umbra::transport::tcp::TcpTransport;

const N: usize = 1000;

fn tcp(port: u16) -> TcpTransport {
    TcpTransport::new(SocketAddr::from(([127, 0, 0, 1], port))).with_retry(RetryPolicy {
        total: Duration::from_secs(2),
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_killed_mid_burst_loses_and_duplicates_nothing() {
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let bob_port = free_port();
    let a = alice.start(tcp(0), &mailbox).await;
    let b = bob.start(tcp(bob_port), &mailbox).await;
    let (ab, ba) = connect_pair(&a, &b, &bob.cert).await;

    let started = Instant::now();
    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 1..=N {
                a.send_text(ab, &format!("burst {i}")).await.unwrap();
            }
        })
    };
    let mut b_events = b.events();
    wait_store(&b, &mut b_events, "part of the burst at bob", move |s| {
        incoming(s, ba).len() >= N / 4
    })
    .await;
    b.abort().await; // the crash
    let crash_at = started.elapsed();
    let at_crash = bob
        .open()
        .highest_seq(ba, umbra::store::Direction::Incoming)
        .unwrap();
    eprintln!("bob crashed with {at_crash} of {N} messages stored");
    assert!(
        (N / 4) as u64 <= at_crash && at_crash < N as u64,
        "crash must hit mid-burst"
    );
    sender.await.unwrap();
    eprintln!(
        "crash after {:.2} s; all {N} queued at alice after {:.2} s",
        crash_at.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let restart = Instant::now();

    let b = bob.start(tcp(bob_port), &mailbox).await;
    let mut b_events = b.events();
    let mut a_events = a.events();
    wait_store(&b, &mut b_events, "the whole burst at bob", move |s| {
        incoming(s, ba).len() >= N
    })
    .await;
    wait_store(&a, &mut a_events, "alice's outbox drained", move |s| {
        s.outbox(ab).unwrap().is_empty()
    })
    .await;
    let elapsed = started.elapsed();
    eprintln!(
        "after the restart, the rest arrived in {:.2} s",
        restart.elapsed().as_secs_f64()
    );

    let got = b.store().run(move |s| incoming(s, ba)).await.unwrap();
    assert_eq!(got.len(), N, "nothing lost, nothing duplicated");
    let ids: HashSet<[u8; 16]> = got.iter().map(|m| m.msg_id).collect();
    assert_eq!(ids.len(), N, "distinct message ids");
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.seq, i as u64 + 1);
        assert_eq!(m.body, format!("burst {}", i + 1));
    }
    let states = a
        .store()
        .run(move |s| {
            s.history(ab, u32::MAX)
                .unwrap()
                .into_iter()
                .filter(|m| m.state != DeliveryState::Delivered)
                .count()
        })
        .await
        .unwrap();
    assert_eq!(states, 0, "every message is Delivered at alice");
    eprintln!(
        "{N} messages with a receiver crash and restart in {:.2} s",
        elapsed.as_secs_f64()
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Set in the child process: `<data dir>|<port>`.
const CHILD_ENV: &str = "UMBRA_NODE_CRASH_CHILD";

/// Not a test of its own: the receiver process of
/// [`receiver_process_killed_with_sigkill_mid_burst`]. Without the
/// environment variable it returns at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_receiver() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (dir, port) = spec.split_once('|').unwrap();
    let store = umbra::store::Store::open(std::path::Path::new(dir), &support::pw()).unwrap();
    let _node = umbra::node::Node::start(
        support::fast_config(),
        store,
        tcp(port.parse().unwrap()),
        None,
    )
    .await
    .unwrap();
    std::future::pending::<()>().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_process_killed_with_sigkill_mid_burst() {
    use umbra::node::Event;
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let bob_port = free_port();
    let a = alice.start(tcp(0), &mailbox).await;
    let b = bob.start(tcp(bob_port), &mailbox).await;
    let (ab, ba) = connect_pair(&a, &b, &bob.cert).await;
    let mut a_events = a.events();
    b.shutdown().await;
    support::wait_event(&mut a_events, |e| {
        matches!(e, Event::PresenceChanged { online: false, .. })
    })
    .await;

    // Bob comes back as a separate process.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "crash::child_receiver",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, format!("{}|{bob_port}", bob.path().display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    support::wait_event(&mut a_events, |e| {
        matches!(e, Event::PresenceChanged { online: true, .. })
    })
    .await;

    let sender = {
        let a = a.clone();
        tokio::spawn(async move {
            for i in 1..=N {
                a.send_text(ab, &format!("burst {i}")).await.unwrap();
            }
        })
    };
    support::wait_event(
        &mut a_events,
        |e| matches!(e, Event::DeliveryChanged { upto, .. } if *upto >= (N / 4) as u64),
    )
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    sender.await.unwrap();
    let at_crash = bob
        .open()
        .highest_seq(ba, umbra::store::Direction::Incoming)
        .unwrap();
    eprintln!("bob's process was killed with {at_crash} of {N} messages stored");
    assert!(at_crash < N as u64, "the kill must hit mid-burst");

    let b = bob.start(tcp(bob_port), &mailbox).await;
    let mut b_events = b.events();
    wait_store(&b, &mut b_events, "the whole burst at bob", move |s| {
        incoming(s, ba).len() >= N
    })
    .await;
    wait_store(&a, &mut a_events, "alice's outbox drained", move |s| {
        s.outbox(ab).unwrap().is_empty()
    })
    .await;
    let got = b.store().run(move |s| incoming(s, ba)).await.unwrap();
    assert_eq!(got.len(), N, "nothing lost, nothing duplicated");
    for (i, m) in got.iter().enumerate() {
        assert_eq!(m.seq, i as u64 + 1);
        assert_eq!(m.body, format!("burst {}", i + 1));
    }
    a.shutdown().await;
    b.shutdown().await;
}
