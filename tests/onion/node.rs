//! Two nodes over real onion services of the local Tor network
//! (`umbra-testnet`, shared by the tests of this binary): request → accept →
//! a few messages both ways, with send→ack latency printed; then a file sent
//! over three lane streams on their own circuits (PROTOCOL.md §14.3).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{User, wait_event_for};
use umbra::node::{Event, MemoryMailbox, NodeConfig};
use umbra::store::DeliveryState;
use umbra::transport::RetryPolicy;
use umbra::transport::arti::{ArtiNetwork, ArtiOptions, ArtiTransport};

const LONG: Duration = Duration::from_secs(240);

fn run<F: std::future::Future<Output = ()>>(f: F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(f);
    rt.shutdown_timeout(Duration::from_secs(10));
}

async fn bootstrap(net: &umbra_testnet::TestNet, dir: &Path) -> ArtiTransport {
    let mut o = ArtiOptions::new(
        ArtiNetwork::Custom {
            arti_toml: net.arti_config_toml(),
        },
        dir,
    );
    o.dangerously_trust_everyone = true;
    o.bootstrap_timeout = Duration::from_secs(60);
    o.retry = RetryPolicy {
        total: Duration::from_secs(90),
        initial: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };
    ArtiTransport::bootstrap(o)
        .await
        .unwrap_or_else(|e| panic!("bootstrap failed: {e:?}\n{}", net.log_tail(3)))
}

#[test]
fn chat_over_local_onion_services() {
    let net = umbra_testnet::shared();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(async {
        let mailbox = MemoryMailbox::new();
        let config = NodeConfig {
            files: umbra::files::FilePolicy {
                streams: 3,
                lanes_from: 0,
                ..Default::default()
            },
            hello_timeout: Duration::from_secs(60),
            dead_after: Duration::from_secs(90),
            heartbeat: Duration::from_secs(30),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(5),
            ..support::fast_config()
        };
        let a = alice
            .start_with(config.clone(), bootstrap(net, ta.path()).await, &mailbox)
            .await;
        let b = bob
            .start_with(config, bootstrap(net, tb.path()).await, &mailbox)
            .await;
        let (mut a_events, mut b_events) = (a.events(), b.events());
        let t0 = Instant::now();
        let ab = a.request(&bob.cert, "over onion services").await.unwrap();
        b.poll_mailbox().await.unwrap();
        let Event::RequestReceived { request_id, .. } = wait_event_for(&mut b_events, LONG, |e| {
            matches!(e, Event::RequestReceived { .. })
        })
        .await
        else {
            unreachable!()
        };
        let ba = b.accept(request_id.expose()).await.unwrap();
        wait_event_for(
            &mut a_events,
            LONG,
            |e| matches!(e, Event::PresenceChanged { contact, online: true, .. } if *contact == ab),
        )
        .await;
        eprintln!(
            "request → accept → Ready over onion services: {:.1} s",
            t0.elapsed().as_secs_f64()
        );

        let mut latencies = Vec::new();
        for i in 1..=10u64 {
            let sent = Instant::now();
            a.send_text(ab, &format!("onion message {i}"))
                .await
                .unwrap();
            wait_event_for(&mut a_events, LONG, |e| {
                matches!(e, Event::DeliveryChanged { contact, upto, state: DeliveryState::Delivered }
                    if *contact == ab && *upto >= i)
            })
            .await;
            latencies.push(sent.elapsed());
        }
        b.send_text(ba, "and back").await.unwrap();
        wait_event_for(
            &mut a_events,
            LONG,
            |e| matches!(e, Event::MessageReceived { contact, seq: 1, .. } if *contact == ab),
        )
        .await;
        let got = b
            .store()
            .run(move |s| support::incoming(s, ba))
            .await
            .unwrap();
        assert_eq!(got.len(), 10);
        for (i, m) in got.iter().enumerate() {
            assert_eq!(m.body, format!("onion message {}", i + 1));
        }
        latencies.sort();
        eprintln!(
            "send→ack over onion services: median {:.0} ms, max {:.0} ms (10 messages)",
            latencies[5].as_secs_f64() * 1e3,
            latencies[9].as_secs_f64() * 1e3
        );

        // A 4 MiB file over three lanes (alice's config: streams = 3).
        let src = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..4u32 << 20)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let path = src.path().join("over-lanes.bin");
        std::fs::write(&path, &data).unwrap();
        let t0 = Instant::now();
        let t = a
            .send_file(ab, &path, umbra::store::FileKind::File)
            .await
            .unwrap();
        let Event::FileOffered { transfer, .. } = wait_event_for(&mut b_events, LONG, |e| {
            matches!(e, Event::FileOffered { .. })
        })
        .await
        else {
            unreachable!()
        };
        b.accept_file(transfer).await.unwrap();
        wait_event_for(
            &mut a_events,
            LONG,
            |e| matches!(e, Event::FileCompleted { transfer, .. } if *transfer == t.transfer_id),
        )
        .await;
        let sent = a.transfers().await.unwrap()[0].chunks_sent;
        eprintln!(
            "4 MiB over 3 lanes: {:.1} s, {sent} chunk frames for 64 chunks",
            t0.elapsed().as_secs_f64()
        );
        assert_eq!(sent, 64, "every chunk once, on lanes");
        let out = src.path().join("copy");
        b.save_file(transfer, &out).await.unwrap();
        assert_eq!(std::fs::read(out).unwrap(), data);
        a.shutdown().await;
        b.shutdown().await;
    });
}
