//! Handshaker scale benchmark (issue #16): lookups and searches per second
//! and latency percentiles over loopback HTTP with N keep-alive clients and
//! 1,000,000 registered users, on SQLite or PostgreSQL (one or two front
//! ends on one database), and registration throughput at the default
//! proof-of-work difficulty.
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
use umbra_handshaker::{AppState, Config, PgStore, SqliteStore, Store};

/// Environment: `UMBRA_BENCH_USERS` (default 1,000,000),
/// `UMBRA_BENCH_CLIENTS` (keep-alive client threads, default 8),
/// `UMBRA_BENCH_DATABASE` (`postgres://…`; default SQLite in a temp dir),
/// `UMBRA_BENCH_FRONT_ENDS` (with PostgreSQL: 1 or 2 servers on the one
/// database, clients spread over them; default 1).
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const LOOKUPS: usize = 40_000;
const SEARCHES: usize = 10_000;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// One GET on a keep-alive connection; checks for 200, returns the latency.
fn get(s: &mut TcpStream, buf: &mut [u8], path: &str) -> Duration {
    let t = Instant::now();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    // Read one response: headers, then Content-Length bytes.
    let mut got = Vec::new();
    let body_len = loop {
        let n = s.read(buf).unwrap();
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
        let n = s.read(buf).unwrap();
        got.extend_from_slice(&buf[..n]);
    }
    t.elapsed()
}

/// `total` requests from `clients` threads over keep-alive connections to
/// `ports` (round robin); prints throughput and percentiles.
fn run(what: &str, ports: &[u16], clients: usize, total: usize, path: fn(usize) -> String) {
    let t = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|c| {
            let port = ports[c % ports.len()];
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
                s.set_nodelay(true).unwrap();
                let mut buf = vec![0u8; 64 * 1024];
                (0..total / clients)
                    .map(|i| get(&mut s, &mut buf, &path(i * 7919 + c * 104_729)))
                    .collect::<Vec<_>>()
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
        "{what}: {:.0}/s over {} requests; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms",
        lat.len() as f64 / elapsed.as_secs_f64(),
        lat.len(),
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.9).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3
    );
}

fn main() {
    let users = env_or("UMBRA_BENCH_USERS", 1_000_000);
    let clients = env_or("UMBRA_BENCH_CLIENTS", 8);
    let database = std::env::var("UMBRA_BENCH_DATABASE").ok();
    let front_ends = if database.is_some() {
        env_or("UMBRA_BENCH_FRONT_ENDS", 1).clamp(1, 2)
    } else {
        1
    };
    let profile = if cfg!(debug_assertions) {
        "dev (crypto crates optimized)"
    } else {
        "release"
    };
    println!(
        "umbra-handshaker lookup benchmark — profile: {profile}, {users} users, {} ({front_ends} front end(s)), {clients} keep-alive client threads",
        if database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
    );
    let tmp = tempfile::tempdir().unwrap();
    let open = || -> Arc<dyn Store> {
        match &database {
            Some(url) => Arc::new(PgStore::open(url).unwrap()),
            None => Arc::new(SqliteStore::open(&tmp.path().join("bench.db")).unwrap()),
        }
    };
    let store = open();
    let cert = Identity::generate(&Username::parse("template").unwrap())
        .unwrap()
        .public_cert()
        .unwrap()
        .to_armored()
        .unwrap();
    let t = Instant::now();
    if store.counts().unwrap().users < users as u64 {
        for chunk in (0..users).collect::<Vec<_>>().chunks(10_000) {
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
    }
    println!(
        "{} users in the store after {:.1} s",
        store.counts().unwrap().users,
        t.elapsed().as_secs_f64()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut ports = Vec::new();
    let mut address = String::new();
    for n in 0..front_ends {
        let store = if n == 0 { store.clone() } else { open() };
        let listener = rt.block_on(async {
            TcpTransport::new("127.0.0.1:0".parse().unwrap())
                .listen()
                .await
                .unwrap()
        });
        let addr = listener.address().as_str().to_owned();
        ports.push(addr.rsplit(':').next().unwrap().parse::<u16>().unwrap());
        let mut cfg = Config::default();
        // Measure the server, not the abuse limits.
        cfg.rate_limit.requests_per_connection_per_sec = 1_000_000;
        cfg.rate_limit.requests_per_connection_burst = 1_000_000;
        cfg.rate_limit.writes_per_sec = 1_000_000;
        cfg.rate_limit.writes_burst = 1_000_000;
        if n == 0 {
            address = format!("http://{addr}");
        }
        let state = Arc::new(AppState::new(cfg, store, address.clone()).expect("token key"));
        rt.spawn(umbra_handshaker::serve(
            listener,
            state,
            std::future::pending::<()>(),
        ));
    }

    run("lookups", &ports, clients, LOOKUPS, |i| {
        format!(
            "/v1/users/user{}",
            i % env_or("UMBRA_BENCH_USERS", 1_000_000)
        )
    });
    run(
        "searches (5-6 character prefixes, up to 20 hits)",
        &ports,
        clients,
        SEARCHES,
        |i| format!("/v1/search?prefix=user{}&limit=20", i % 100),
    );

    // Registrations at the default PoW difficulty (computed client-side).
    let difficulty = Config::default().pow.difficulty;
    let client = HandshakerClient::new(&address).unwrap();
    let ids: Vec<Identity> = (0..5)
        .map(|i| {
            Identity::generate(&Username::parse(&format!("reg{}n{i}", std::process::id())).unwrap())
                .unwrap()
        })
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
