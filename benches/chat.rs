//! Chat benchmark on the local Tor network, all in one run:
//!
//! 1. the baseline: 64-byte round trips on one raw Arti onion stream between
//!    two fresh Tor clients (median, p90);
//! 2. Umbra: two nodes (each its own Arti client and onion service) with an
//!    established session; send→ack latency of a chat message, one at a time
//!    (median, p90), with the ratio to the raw RTT;
//! 3. sustained messages per second in one conversation (a burst of queued
//!    messages until the last is acknowledged).
//!
//! ```text
//! cargo bench --bench chat                    # release build
//! UMBRA_BENCH_MSGS=2000 UMBRA_BENCH_RTTS=200 cargo bench --bench chat
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/support/node.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{User, wait_event_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use umbra::node::{Event, MemoryMailbox, NodeConfig};
use umbra::store::DeliveryState;
use umbra::transport::arti::{ArtiNetwork, ArtiOptions, ArtiTransport};
use umbra::transport::{Listener, RetryPolicy, Transport};

const LONG: Duration = Duration::from_secs(240);

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

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

/// Raw baseline: 64-byte echo round trips over one onion stream.
async fn raw_rtts(net: &umbra_testnet::TestNet, n: usize) -> Vec<Duration> {
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = bootstrap(net, da.path()).await;
    let client = bootstrap(net, db.path()).await;
    let mut listener = server.listen().await.unwrap();
    let addr = listener.address().clone();
    tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while s.read_exact(&mut buf).await.is_ok() {
                    if s.write_all(&buf).await.is_err() || s.flush().await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let mut s = client.connect(&addr).await.unwrap();
    let mut buf = [7u8; 64];
    // Warm-up round trip (circuit set up). Arti sends on flush.
    s.write_all(&buf).await.unwrap();
    s.flush().await.unwrap();
    s.read_exact(&mut buf).await.unwrap();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        s.write_all(&buf).await.unwrap();
        s.flush().await.unwrap();
        s.read_exact(&mut buf).await.unwrap();
        out.push(t.elapsed());
    }
    out.sort();
    out
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
        let raw = tokio::time::timeout(LONG, raw_rtts(&net, rtts))
            .await
            .expect("raw round trips finish");
        eprintln!("raw baseline measured");

        let (alice, bob) = (User::new("alice"), User::new("bob"));
        let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mailbox = MemoryMailbox::new();
        // Production timers, except a short reconnect backoff.
        let config = NodeConfig {
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(5),
            ..NodeConfig::default()
        };
        let a = alice
            .start_with(config.clone(), bootstrap(&net, ta.path()).await, &mailbox)
            .await;
        let b = bob
            .start_with(config, bootstrap(&net, tb.path()).await, &mailbox)
            .await;
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

        // send→ack, one message at a time.
        let mut lat = Vec::with_capacity(rtts);
        for i in 1..=rtts as u64 {
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

        // The baseline again, on new circuits: circuit paths on a small
        // network differ a lot, so both measurements are printed.
        let raw2 = tokio::time::timeout(LONG, raw_rtts(&net, rtts))
            .await
            .expect("raw round trips finish");
        let mut raw = raw;
        raw.extend(raw2.iter().copied());
        raw.sort();
        println!(
            "  raw onion RTT, second set of circuits: median {:.1} ms (first set and second pooled below)",
            ms(percentile(&raw2, 0.5))
        );
        let (rm, rp) = (percentile(&raw, 0.5), percentile(&raw, 0.9));
        let (lm, lp) = (percentile(&lat, 0.5), percentile(&lat, 0.9));
        println!("chat benchmark on the local Tor network ({} profile)", if cfg!(debug_assertions) { "dev" } else { "release" });
        println!("  request → accept → Ready:         {:.2} s", setup.as_secs_f64());
        println!(
            "  raw onion stream RTT (64 B, n={}): median {:.1} ms, p90 {:.1} ms",
            raw.len(),
            ms(rm),
            ms(rp)
        );
        println!(
            "  Umbra send→ack      (n={rtts}):    median {:.1} ms, p90 {:.1} ms",
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
