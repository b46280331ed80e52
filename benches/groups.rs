//! Group fan-out benchmark (issue 17) on the in-memory transport: real
//! nodes, real sessions, real OpenPGP signatures and real encrypted stores;
//! only the network is a pipe. The owner is the hub (every member is a
//! contact of the owner only, the usual shape), so a member's message
//! reaches the others through the owner's relay.
//!
//! For each group size (default 5, 20, 50 members):
//! 1. **latency**: the owner posts; time until every member stored it
//!    ("delivered to all"); and a member posts, through the owner's relay;
//!    median and p90 over `UMBRA_BENCH_ROUNDS` posts, and the ratio to a 1:1
//!    message (send → stored at the contact) measured in the same run;
//! 2. **throughput**: the owner queues a burst of `UMBRA_BENCH_BURST`
//!    messages; messages/s until every member holds all of them;
//! 3. **one slow member**: one member's node reads every frame 100 ms late
//!    (a congested circuit); the owner's latency to the *other* members, and
//!    the burst's throughput to them, against the same group without it.
//!
//! ```text
//! cargo bench --bench groups
//! UMBRA_BENCH_SIZES=5,20 UMBRA_BENCH_ROUNDS=20 UMBRA_BENCH_BURST=200 cargo bench --bench groups
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "common/mod.rs"]
mod common;

#[path = "../tests/support/node.rs"]
mod support;

use common::{env_num, ms, percentile};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use support::{User, connect_pair, wait_event_for};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::broadcast;
use umbra::group::Role;
use umbra::node::{Event, GroupEvent, MemoryMailbox, NodeHandle};
use umbra::transport::memory::{MemoryListener, MemoryNetwork, MemoryTransport};
use umbra::transport::{BoxedStream, Error, Listener, PeerAddress, Transport, TransportKind};

const LONG: Duration = Duration::from_secs(600);
const SLOW_READ: Duration = Duration::from_millis(100);

/// A stream whose reads each wait `delay` first (a slow, congested peer).
struct Slow {
    inner: BoxedStream,
    delay: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for Slow {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let delay = self.delay;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
        if sleep.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.sleep = None;
        }
        r
    }
}

impl AsyncWrite for Slow {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The memory transport, with every stream of this node slowed down.
struct SlowTransport(MemoryTransport);
struct SlowListener(MemoryListener);

fn slow(s: BoxedStream) -> BoxedStream {
    Box::new(Slow {
        inner: s,
        delay: SLOW_READ,
        sleep: None,
    })
}

impl Listener for SlowListener {
    fn address(&self) -> &PeerAddress {
        self.0.address()
    }
    async fn accept(&mut self) -> Result<BoxedStream, Error> {
        self.0.accept().await.map(slow)
    }
}

impl Transport for SlowTransport {
    type Listener = SlowListener;
    fn kind(&self) -> TransportKind {
        TransportKind::Memory
    }
    async fn listen(&self) -> Result<SlowListener, Error> {
        self.0.listen().await.map(SlowListener)
    }
    async fn connect(&self, addr: &PeerAddress) -> Result<BoxedStream, Error> {
        self.0.connect(addr).await.map(slow)
    }
}

/// A group of `n` members on one memory network: the owner (index 0) and
/// `n - 1` contacts of the owner; `slow_member` (if any) reads slowly.
struct Group {
    nodes: Vec<NodeHandle>,
    events: Vec<broadcast::Receiver<Event>>,
    g: [u8; 32],
    _users: Vec<User>,
}

async fn group(n: usize, slow_member: bool) -> Group {
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let users: Vec<User> = (0..n).map(|i| User::new(&format!("member{i}"))).collect();
    let mut nodes = Vec::with_capacity(n);
    for (i, u) in users.iter().enumerate() {
        let t = MemoryTransport::new(&net, &format!("m{i}-hs"));
        let node = if slow_member && i == n - 1 {
            u.start(SlowTransport(t), &mailbox).await
        } else {
            u.start(t, &mailbox).await
        };
        nodes.push(node);
    }
    let owner = nodes[0].clone();
    let g = owner.group_create("bench", "", 0).await.unwrap();
    for (i, m) in nodes.iter().enumerate().skip(1) {
        let (c, _) = connect_pair(&owner, m, &users[i].cert).await;
        let mut ev = m.events();
        owner.group_invite(g, c, Role::Member).await.unwrap();
        wait_event_for(&mut ev, LONG, |e| {
            matches!(
                e,
                Event::Group {
                    event: GroupEvent::Invited { .. },
                    ..
                }
            )
        })
        .await;
        m.group_answer(g, true).await.unwrap();
    }
    // Everyone holds the whole membership before measuring.
    for m in &nodes {
        let store = m.store();
        let deadline = Instant::now() + LONG;
        while store
            .run(move |s| s.group_members(&g).unwrap().len())
            .await
            .unwrap()
            < n
        {
            assert!(Instant::now() < deadline, "the group did not form");
            let mut ev = m.events();
            let _ = tokio::time::timeout(Duration::from_millis(200), ev.recv()).await;
        }
    }
    let events = nodes.iter().map(NodeHandle::events).collect();
    Group {
        nodes,
        events,
        g,
        _users: users,
    }
}

/// Waits until each node in `who` stored `k` more group messages.
async fn stored(events: &mut [broadcast::Receiver<Event>], who: &[usize], k: usize) {
    for &i in who {
        let mut got = 0;
        while got < k {
            wait_event_for(&mut events[i], LONG, |e| {
                matches!(
                    e,
                    Event::Group {
                        event: GroupEvent::Message { .. },
                        ..
                    }
                )
            })
            .await;
            got += 1;
        }
    }
}

/// Posts `rounds` messages from `from`, one at a time; per-post time until
/// every node in `to` stored it.
async fn latency(gr: &mut Group, from: usize, to: &[usize], rounds: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(rounds);
    for r in 0..rounds {
        // Drain what earlier rounds left (the sender's own copy).
        for e in gr.events.iter_mut() {
            *e = e.resubscribe();
        }
        let t = Instant::now();
        gr.nodes[from]
            .group_send(gr.g, &format!("round {r}"))
            .await
            .unwrap();
        stored(&mut gr.events, to, 1).await;
        out.push(t.elapsed());
    }
    out.sort();
    out
}

/// Queues `burst` posts at the owner; messages/s until every node in `to`
/// stored all of them.
async fn throughput(gr: &mut Group, to: &[usize], burst: usize) -> f64 {
    for e in gr.events.iter_mut() {
        *e = e.resubscribe();
    }
    let t = Instant::now();
    for i in 0..burst {
        gr.nodes[0]
            .group_send(gr.g, &format!("burst {i}"))
            .await
            .unwrap();
    }
    stored(&mut gr.events, to, burst).await;
    burst as f64 / t.elapsed().as_secs_f64()
}

/// 1:1 baseline: send → stored at the contact, `rounds` times.
async fn one_to_one(rounds: usize) -> Vec<Duration> {
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (a, b) = (User::new("alice"), User::new("bob"));
    let na = a.start(MemoryTransport::new(&net, "a-hs"), &mailbox).await;
    let nb = b.start(MemoryTransport::new(&net, "b-hs"), &mailbox).await;
    let (ab, _) = connect_pair(&na, &nb, &b.cert).await;
    let mut ev = nb.events();
    let mut out = Vec::with_capacity(rounds);
    for r in 0..rounds {
        let t = Instant::now();
        na.send_text(ab, &format!("round {r}")).await.unwrap();
        wait_event_for(&mut ev, LONG, |e| {
            matches!(e, Event::MessageReceived { .. })
        })
        .await;
        out.push(t.elapsed());
    }
    na.shutdown().await;
    nb.shutdown().await;
    out.sort();
    out
}

fn line(what: &str, d: &[Duration], base: Duration) {
    println!(
        "  {what:<44} median {:>7.1} ms  p90 {:>7.1} ms  = x{:.1} of 1:1",
        ms(percentile(d, 0.5)),
        ms(percentile(d, 0.9)),
        percentile(d, 0.5).as_secs_f64() / base.as_secs_f64()
    );
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let sizes: Vec<usize> = std::env::var("UMBRA_BENCH_SIZES")
        .unwrap_or_else(|_| "5,20,50".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n >= 3)
        .collect();
    let rounds = env_num("UMBRA_BENCH_ROUNDS", 20).max(1);
    let burst = env_num("UMBRA_BENCH_BURST", 200).max(1);
    rt.block_on(async {
        let base = one_to_one(rounds).await;
        let b = percentile(&base, 0.5);
        println!(
            "group fan-out on the memory transport ({rounds} posts per latency, bursts of {burst})"
        );
        println!(
            "1:1 baseline send → stored: median {:.1} ms, p90 {:.1} ms",
            ms(b),
            ms(percentile(&base, 0.9))
        );
        for &n in &sizes {
            let t = Instant::now();
            let mut gr = group(n, false).await;
            println!("{n} members (group formed in {:.1} s):", t.elapsed().as_secs_f64());
            let all: Vec<usize> = (1..n).collect();
            let d = latency(&mut gr, 0, &all, rounds).await;
            line("owner posts → delivered to all", &d, b);
            let others: Vec<usize> = (0..n).filter(|i| *i != 1).collect();
            let d = latency(&mut gr, 1, &others, rounds).await;
            line("member posts → all (through the owner)", &d, b);
            let others: Vec<usize> = (1..n - 1).collect();
            let fast_lat = latency(&mut gr, 0, &others, rounds).await;
            let mps = throughput(&mut gr, &all, burst).await;
            println!(
                "  burst: {mps:>7.1} msgs/s to every member = {:.0} deliveries/s",
                mps * (n - 1) as f64
            );
            let fast_mps = throughput(&mut gr, &others, burst).await;
            for node in gr.nodes.drain(..) {
                node.shutdown().await;
            }

            let mut gr = group(n, true).await;
            let d = latency(&mut gr, 0, &others, rounds).await;
            println!(
                "  one member reads 100 ms late: owner → the {} others median {:.1} ms (without it {:.1} ms, x{:.2})",
                n - 2,
                ms(percentile(&d, 0.5)),
                ms(percentile(&fast_lat, 0.5)),
                percentile(&d, 0.5).as_secs_f64() / percentile(&fast_lat, 0.5).as_secs_f64()
            );
            let slow_mps = throughput(&mut gr, &others, burst).await;
            println!(
                "  one member reads 100 ms late: burst to the others {slow_mps:.1} msgs/s (without it {fast_mps:.1}, x{:.2})",
                slow_mps / fast_mps
            );
            for node in gr.nodes.drain(..) {
                node.shutdown().await;
            }
        }
    });
}
