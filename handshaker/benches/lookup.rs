//! Handshaker benchmark: lookups per second and latency percentiles over
//! loopback HTTP with 100,000 registered users, and registration throughput
//! at the default proof-of-work difficulty.
//!
//! Run: `cargo bench -p umbra-handshaker --bench lookup` (release) or with
//! `--profile dev` (dev profile, crypto crates optimized).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use umbra::handshaker_client::HandshakerClient;
use umbra::identity::{Fingerprint, Identity, Username};
use umbra::transport::Listener as _;
use umbra::transport::Transport;
use umbra::transport::tcp::TcpTransport;
use umbra_handshaker::store::UserRecord;
use umbra_handshaker::{AppState, Config, SqliteStore, Store};

const USERS: usize = 100_000;
const LOOKUPS: usize = 20_000;
const CLIENTS: usize = 4;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let profile = if cfg!(debug_assertions) {
        "dev (crypto crates optimized)"
    } else {
        "release"
    };
    println!(
        "umbra-handshaker lookup benchmark — profile: {profile}, {USERS} users, {CLIENTS} client threads"
    );
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&tmp.path().join("bench.db")).unwrap();
    let cert = Identity::generate(&Username::parse("template").unwrap())
        .unwrap()
        .public_cert()
        .unwrap()
        .to_armored()
        .unwrap();
    let t = Instant::now();
    for chunk in (0..USERS).collect::<Vec<_>>().chunks(10_000) {
        let recs: Vec<UserRecord> = chunk
            .iter()
            .map(|i| {
                let mut fpr = [0u8; 20];
                fpr[..8].copy_from_slice(&(*i as u64).to_be_bytes());
                UserRecord {
                    username: Username::parse(&format!("user{i}")).unwrap(),
                    fingerprint: Fingerprint::from_bytes(fpr),
                    cert: cert.clone(),
                    registered_at: 1_700_000_000,
                }
            })
            .collect();
        store.insert_users(&recs).unwrap();
    }
    println!(
        "inserted {USERS} users in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (port, address) = rt.block_on(async {
        let listener = TcpTransport::new("127.0.0.1:0".parse().unwrap())
            .listen()
            .await
            .unwrap();
        let addr = listener.address().as_str().to_owned();
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        let mut cfg = Config::default();
        // Measure the server, not the abuse limits.
        cfg.rate_limit.requests_per_connection_per_sec = 1_000_000;
        cfg.rate_limit.requests_per_connection_burst = 1_000_000;
        cfg.rate_limit.writes_per_sec = 1_000_000;
        cfg.rate_limit.writes_burst = 1_000_000;
        let address = format!("http://{addr}");
        let state =
            Arc::new(AppState::new(cfg, Arc::new(store), address.clone()).expect("token key"));
        tokio::spawn(umbra_handshaker::serve(
            listener,
            state,
            std::future::pending::<()>(),
        ));
        (port, address)
    });

    // Lookups from blocking client threads, one keep-alive connection each.
    let t = Instant::now();
    let handles: Vec<_> = (0..CLIENTS)
        .map(|c| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_nodelay(true).unwrap();
                let mut lat = Vec::with_capacity(LOOKUPS / CLIENTS);
                let mut buf = vec![0u8; 64 * 1024];
                for i in 0..LOOKUPS / CLIENTS {
                    let user = (i * 7919 + c * 104_729) % USERS;
                    let t = Instant::now();
                    write!(s, "GET /v1/users/user{user} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
                    // Read one response: headers, then Content-Length bytes.
                    let mut got = Vec::new();
                    let body_len = loop {
                        let n = s.read(&mut buf).unwrap();
                        assert!(n > 0, "server closed the connection");
                        got.extend_from_slice(&buf[..n]);
                        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&got[..end]).to_lowercase();
                            assert!(head.starts_with("http/1.1 200"), "{head}");
                            let len: usize = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .map(|v| v.trim().parse().unwrap())
                                .unwrap();
                            break end + 4 + len;
                        }
                    };
                    while got.len() < body_len {
                        let n = s.read(&mut buf).unwrap();
                        got.extend_from_slice(&buf[..n]);
                    }
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let elapsed = t.elapsed();
    lat.sort();
    println!(
        "lookups: {:.0}/s over {} requests; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        lat.len() as f64 / elapsed.as_secs_f64(),
        lat.len(),
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.9).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3
    );

    // Registrations at the default PoW difficulty (computed client-side).
    let difficulty = Config::default().pow.difficulty;
    let client = HandshakerClient::new(&address).unwrap();
    let ids: Vec<Identity> = (0..5)
        .map(|i| Identity::generate(&Username::parse(&format!("reg{i}")).unwrap()).unwrap())
        .collect();
    let t = Instant::now();
    rt.block_on(async {
        for id in &ids {
            client.register(id).await.unwrap();
        }
    });
    let per = t.elapsed().as_secs_f64() / ids.len() as f64;
    println!(
        "registration at PoW difficulty {difficulty} bits: {:.2} s each ({:.2}/s, PoW included), {} samples",
        per,
        1.0 / per,
        ids.len()
    );
}
