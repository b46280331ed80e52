//! Chat benchmark on the local Tor network, all in one run:
//!
//! 1. two Umbra nodes (each its own Arti client and onion service) with an
//!    established session;
//! 2. on the circuit that session uses, alternately: a 64-byte round trip on a
//!    raw stream (the dialing node's own Arti client, same isolation, so Arti
//!    puts it on the session's circuit; the other node's listener echoes
//!    streams that start with a marker byte and hands every other stream to
//!    its node), and the send→ack latency of a chat message. Median and p90
//!    of each, and their ratio: like against like, since circuits on a small
//!    network differ more than the two stacks do;
//! 3. sustained messages per second in one conversation (a burst of queued
//!    messages until the last is acknowledged).
//!
//! ```text
//! cargo bench --bench chat                    # release build
//! UMBRA_BENCH_MSGS=2000 UMBRA_BENCH_RTTS=200 cargo bench --bench chat
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "common/mod.rs"]
mod common;

#[path = "../tests/support/node.rs"]
mod support;

use common::{env_num, ms, percentile};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use support::{Hooked, ReadHook, User, wait_event_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use umbra::node::{Event, MemoryMailbox, NodeConfig};
use umbra::store::DeliveryState;
use umbra::transport::arti::{ArtiNetwork, ArtiOptions, ArtiTransport};
use umbra::transport::{
    BoxedStream, Error, Listener, PeerAddress, RetryPolicy, Transport, TransportKind,
};

/// First byte of a raw echo stream (an Umbra frame starts with its version, 1).
const ECHO: u8 = 0xEE;

const LONG: Duration = Duration::from_secs(240);

async fn bootstrap(net: &umbra_testnet::TestNet, dir: &Path) -> ArtiTransport {
    let mut o = ArtiOptions::new(
        ArtiNetwork::Custom {
            arti_toml: net.arti_config_toml(),
        },
        dir,
    );
    o.dangerously_trust_everyone = true;
    o.retry = RetryPolicy {
        total: Duration::from_secs(120),
        initial: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };
    ArtiTransport::bootstrap(o).await.unwrap()
}

/// A transport whose listener answers streams that start with [`ECHO`] as a
/// raw echo server and hands every other stream to the node; it counts the
/// node's streams (to tell which side dialed the session).
#[derive(Clone)]
struct Tee {
    inner: Arc<ArtiTransport>,
    node_streams: Arc<AtomicUsize>,
}

struct TeeListener<L> {
    inner: L,
    node_streams: Arc<AtomicUsize>,
}

impl Transport for Tee {
    type Listener = TeeListener<<ArtiTransport as Transport>::Listener>;

    fn kind(&self) -> TransportKind {
        self.inner.kind()
    }

    async fn listen(&self) -> Result<Self::Listener, Error> {
        Ok(TeeListener {
            inner: self.inner.listen().await?,
            node_streams: self.node_streams.clone(),
        })
    }

    async fn connect(&self, addr: &PeerAddress) -> Result<BoxedStream, Error> {
        self.inner.connect(addr).await
    }

    async fn connect_isolated(&self, addr: &PeerAddress) -> Result<BoxedStream, Error> {
        self.inner.connect_isolated(addr).await
    }
}

impl<L: Listener> Listener for TeeListener<L> {
    fn address(&self) -> &PeerAddress {
        self.inner.address()
    }

    async fn accept(&mut self) -> Result<BoxedStream, Error> {
        loop {
            let mut s = self.inner.accept().await?;
            let mut first = [0u8; 1];
            if s.read_exact(&mut first).await.is_err() {
                continue;
            }
            if first[0] != ECHO {
                self.node_streams.fetch_add(1, Ordering::SeqCst);
                let mut replay = Some(first[0]);
                return Ok(Box::new(Hooked {
                    inner: s,
                    hook: Box::new(move |buf| match replay.take() {
                        Some(b) => {
                            buf.put_slice(&[b]);
                            ReadHook::Answered
                        }
                        None => ReadHook::Pass,
                    }),
                }));
            }
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() || s.flush().await.is_err() {
                        break;
                    }
                }
            });
        }
    }
}

/// One 64-byte round trip on a raw echo stream.
async fn echo(s: &mut BoxedStream) -> Duration {
    let mut buf = [7u8; 64];
    let t = Instant::now();
    s.write_all(&buf).await.unwrap();
    s.flush().await.unwrap();
    s.read_exact(&mut buf).await.unwrap();
    t.elapsed()
}

fn main() {
    let rtts = env_num("UMBRA_BENCH_RTTS", 100).max(20);
    let burst = env_num("UMBRA_BENCH_MSGS", 1000).max(10) as u64;
    let net = umbra_testnet::TestNet::start(umbra_testnet::TestNetOptions::default())
        .unwrap_or_else(|e| panic!("cannot start the test network: {e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (alice, bob) = (User::new("alice"), User::new("bob"));
        let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let tee = |t: ArtiTransport| Tee {
            inner: Arc::new(t),
            node_streams: Arc::new(AtomicUsize::new(0)),
        };
        let (tee_a, tee_b) = (
            tee(bootstrap(&net, ta.path()).await),
            tee(bootstrap(&net, tb.path()).await),
        );
        let mailbox = MemoryMailbox::new();
        // Production timers, except a short reconnect backoff.
        let config = NodeConfig {
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(5),
            ..NodeConfig::default()
        };
        let a = alice
            .start_with(config.clone(), tee_a.clone(), &mailbox)
            .await;
        let b = bob.start_with(config, tee_b.clone(), &mailbox).await;
        let (mut a_events, mut b_events) = (a.events(), b.events());
        let t = Instant::now();
        let ab = a.request(&bob.cert, "bench").await.unwrap();
        b.poll_mailbox().await.unwrap();
        let Event::RequestReceived { request_id, .. } = wait_event_for(&mut b_events, LONG, |e| {
            matches!(e, Event::RequestReceived { .. })
        })
        .await
        else {
            unreachable!()
        };
        b.accept(request_id.expose()).await.unwrap();
        wait_event_for(
            &mut a_events,
            LONG,
            |e| matches!(e, Event::PresenceChanged { contact, online: true, .. } if *contact == ab),
        )
        .await;
        let setup = t.elapsed();

        // The raw stream goes from the side that dialed the session's
        // connection to the side that accepted it, on the same Arti client
        // and isolation: the session's circuit.
        let (dialer, to, dialer_name) = match (
            tee_a.node_streams.load(Ordering::SeqCst),
            tee_b.node_streams.load(Ordering::SeqCst),
        ) {
            (0, n) if n > 0 => (&tee_a, b.address().clone(), "alice"),
            (n, 0) if n > 0 => (&tee_b, a.address().clone(), "bob"),
            (x, y) => panic!("cannot tell who dialed: {x} and {y} node streams accepted"),
        };
        let mut raw_stream = dialer.inner.connect(&to).await.unwrap();
        raw_stream.write_all(&[ECHO]).await.unwrap();
        echo(&mut raw_stream).await; // the stream is up

        // Alternately: raw round trip, send→ack, one message at a time.
        let (mut raw, mut lat) = (Vec::with_capacity(rtts), Vec::with_capacity(rtts));
        for i in 1..=rtts as u64 {
            raw.push(echo(&mut raw_stream).await);
            let t = Instant::now();
            a.send_text(ab, &format!("latency probe {i:05}"))
                .await
                .unwrap();
            wait_event_for(&mut a_events, LONG, |e| {
                matches!(e, Event::DeliveryChanged { contact, upto, state: DeliveryState::Delivered }
                    if *contact == ab && *upto >= i)
            })
            .await;
            lat.push(t.elapsed());
        }
        raw.sort();
        lat.sort();

        // Sustained: a burst of 100-byte messages until the last is acked.
        let body = "x".repeat(100);
        let first = rtts as u64 + 1;
        let last = first + burst - 1;
        let t = Instant::now();
        for _ in first..=last {
            a.send_text(ab, &body).await.unwrap();
        }
        let queued = t.elapsed();
        wait_event_for(&mut a_events, LONG, |e| {
            matches!(e, Event::DeliveryChanged { contact, upto, state: DeliveryState::Delivered }
                if *contact == ab && *upto >= last)
        })
        .await;
        let total = t.elapsed();

        let (rm, rp) = (percentile(&raw, 0.5), percentile(&raw, 0.9));
        let (lm, lp) = (percentile(&lat, 0.5), percentile(&lat, 0.9));
        println!(
            "chat benchmark on the local Tor network ({} profile)",
            if cfg!(debug_assertions) { "dev" } else { "release" }
        );
        println!("  request → accept → Ready:         {:.2} s", setup.as_secs_f64());
        println!(
            "  on the session's circuit ({dialer_name} dialed), probes interleaved, n={rtts} each:"
        );
        println!(
            "  raw stream RTT (64 B):             median {:.1} ms, p90 {:.1} ms",
            ms(rm),
            ms(rp)
        );
        println!(
            "  Umbra send→ack:                    median {:.1} ms, p90 {:.1} ms",
            ms(lm),
            ms(lp)
        );
        println!(
            "  ratio send→ack / raw RTT:          median {:.2}, p90 {:.2}",
            ms(lm) / ms(rm),
            ms(lp) / ms(rp)
        );
        println!(
            "  sustained: {burst} messages (100 B) queued in {:.2} s, all acked after {:.2} s: {:.0} msgs/s",
            queued.as_secs_f64(),
            total.as_secs_f64(),
            burst as f64 / total.as_secs_f64()
        );
        a.shutdown().await;
        b.shutdown().await;
    });
}
