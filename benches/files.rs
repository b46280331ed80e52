//! File-transfer benchmark on the local Tor network, all in one run and each on
//! fresh circuits (new Tor clients):
//!
//! 1. baseline: one raw Arti onion stream, 50 MiB upload, timed from the first
//!    round trip on the stream (the circuit is up) to the server's last byte;
//! 2. as many raw Arti streams in parallel as Umbra's default uses lanes (one
//!    Tor client each, so one circuit each) to the same onion service, 50 MiB in
//!    total: the baseline for the default configuration;
//! 3. Umbra: two nodes with a session; `send_file` of the same 50 MiB file, from
//!    the receiver's accept to the sender learning it was verified and stored:
//!    on the session's one stream (`streams = 1`), in the default configuration
//!    (2 lanes for files of 8 MiB and more, PROTOCOL.md §14.3) and on 4 lanes;
//! 4. OnionShare (`onionshare-cli` over C tor, `/download` with curl over a second
//!    C tor client) serving the same file, timed from the first byte of the body
//!    to the last (curl's own timing).
//!
//! 1–3 run `UMBRA_BENCH_RUNS` times (default 5) in turn, 4 as many times; every
//! measurement is on fresh circuits. The table prints median and range, and
//! ratios of medians: one run on a small network is noise (two runs minutes apart
//! once measured OnionShare at 5.83 and 2.91 MiB/s; on 2 cores the eleven relays,
//! both Arti ends and Umbra share the CPU, and a path through a busy relay halves
//! a run). For one stream it also prints the median of the per-run ratios.
//! 5. the AES-256-GCM pipeline: sealing 64 KiB chunk frames (ratchet + AEAD) and
//!    encrypting part-file slots, against `openssl speed -evp aes-256-gcm` on this CPU.
//!
//! Ratios are printed against the baselines measured in the same run.
//!
//! ```text
//! cargo bench --bench files                      # release build
//! cargo bench --bench files --profile dev        # the build the README's quick start makes
//! UMBRA_BENCH_FILE_MIB=20 UMBRA_BENCH_RUNS=3 cargo bench --bench files
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "common/mod.rs"]
mod common;

#[path = "../tests/support/node.rs"]
mod support;

use common::env_num;
use std::path::Path;
use std::time::{Duration, Instant};

use support::{User, wait_event_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use umbra::files::{Layout, PartFile, new_part};
use umbra::node::{Event, MemoryMailbox, NodeConfig};
use umbra::store::FileKind;
use umbra::transport::arti::{ArtiNetwork, ArtiOptions, ArtiTransport};
use umbra::transport::{Listener, RetryPolicy, Transport};

const LONG: Duration = Duration::from_secs(600);
const CHUNK: usize = 64 * 1024;

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

fn pattern_file(path: &Path, len: usize) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(path, data).unwrap();
}

/// Uploads `bytes` over one fresh stream from `client` to `addr` (the server
/// swallows them and answers one byte at the end). Returns the duration.
async fn upload(
    client: &ArtiTransport,
    addr: &umbra::transport::PeerAddress,
    bytes: u64,
) -> Duration {
    let mut s = client.connect(addr).await.unwrap();
    // Circuit and stream are up once the first round trip completes.
    s.write_all(&[0]).await.unwrap();
    s.flush().await.unwrap();
    let mut one = [0u8; 1];
    s.read_exact(&mut one).await.unwrap();
    let t = Instant::now();
    s.write_u64(bytes).await.unwrap();
    let buf = vec![0xa5u8; CHUNK];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(CHUNK as u64) as usize;
        s.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    s.flush().await.unwrap();
    s.read_exact(&mut one).await.unwrap();
    t.elapsed()
}

async fn sink_server(server: &ArtiTransport) -> umbra::transport::PeerAddress {
    let mut listener = server.listen().await.unwrap();
    let addr = listener.address().clone();
    tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            tokio::spawn(async move {
                let mut one = [0u8; 1];
                s.read_exact(&mut one).await?;
                s.write_all(&[1]).await?;
                s.flush().await?;
                let mut left = s.read_u64().await?;
                let mut buf = vec![0u8; CHUNK];
                while left > 0 {
                    let want = left.min(CHUNK as u64) as usize;
                    let n = s.read(&mut buf[..want]).await?;
                    if n == 0 {
                        break;
                    }
                    left -= n as u64;
                }
                s.write_all(&[1]).await?;
                s.flush().await?;
                Ok::<_, std::io::Error>(())
            });
        }
    });
    addr
}

/// MiB/s of `bytes` in `d`.
fn mibs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / d.as_secs_f64()
}

/// Umbra: `send_file` between two nodes with a fresh session; returns the
/// time from the receiver's accept to the sender's "completed" event.
async fn umbra_transfer(net: &umbra_testnet::TestNet, file: &Path, streams: usize) -> Duration {
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let (ta, tb) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mailbox = MemoryMailbox::new();
    let config = NodeConfig {
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(5),
        files: umbra::files::FilePolicy {
            streams,
            lanes_from: 0,
            ..Default::default()
        },
        ..NodeConfig::default()
    };
    let a = alice
        .start_with(config.clone(), bootstrap(net, ta.path()).await, &mailbox)
        .await;
    let b = bob
        .start_with(config, bootstrap(net, tb.path()).await, &mailbox)
        .await;
    let (mut a_events, mut b_events) = (a.events(), b.events());
    let (ab, _) = support::connect_pair(&a, &b, &bob.cert).await;
    let t = a.send_file(ab, file, FileKind::File).await.unwrap();
    let Event::FileOffered { transfer, .. } = wait_event_for(&mut b_events, LONG, |e| {
        matches!(e, Event::FileOffered { .. })
    })
    .await
    else {
        unreachable!()
    };
    let started = Instant::now();
    b.accept_file(transfer).await.unwrap();
    wait_event_for(
        &mut a_events,
        LONG,
        |e| matches!(e, Event::FileCompleted { transfer, .. } if *transfer == t.transfer_id),
    )
    .await;
    let took = started.elapsed();
    a.shutdown().await;
    b.shutdown().await;
    took
}

/// OnionShare over C tor serving `file`, fetched `runs` times by a second C
/// tor client, each time on fresh circuits (a new SOCKS isolation token).
/// Returns the body's MiB/s of each download (from the first byte to the
/// last, like the other measurements, which start once the stream is up),
/// or why not.
fn onionshare(net: &umbra_testnet::TestNet, file: &Path, runs: usize) -> Result<Vec<f64>, String> {
    let host = net.c_client("oshost").map_err(|e| e.to_string())?;
    let client = net.c_client("osclient").map_err(|e| e.to_string())?;
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let share =
        umbra_testnet::OnionShare::start(&host, file, scratch.path()).map_err(|e| e.to_string())?;
    // A first fetch of the page waits for the descriptor.
    client
        .fetch(share.url(), &scratch.path().join("page"), "warmup")
        .map_err(|e| e.to_string())?;
    let expected = std::fs::read(file).map_err(|e| e.to_string())?;
    let out = scratch.path().join("download");
    let mut rates = Vec::new();
    for run in 0..runs {
        let f = client
            .fetch(&share.download_url(), &out, &format!("bench{run}"))
            .map_err(|e| e.to_string())?;
        if std::fs::read(&out).map_err(|e| e.to_string())? != expected {
            return Err("the OnionShare download differs from the file".into());
        }
        rates.push(f.body_mib_per_s());
        eprintln!("onionshare run {} measured", run + 1);
    }
    Ok(rates)
}

/// MB/s (10^6) that `openssl speed` reports for AES-256-GCM on 64 KiB blocks.
fn openssl_speed() -> Option<f64> {
    let out = std::process::Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "aes-256-gcm",
            "-bytes",
            "65536",
            "-seconds",
            "2",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    // Last line: "AES-256-GCM   123456.78k" (kB/s of 1000 bytes).
    let line = text
        .lines()
        .rev()
        .find(|l| l.to_lowercase().contains("gcm"))?;
    let k = line.split_whitespace().last()?.trim_end_matches('k');
    k.parse::<f64>().ok().map(|kbs| kbs / 1000.0)
}

/// The chunk pipeline's crypto: seal 64 KiB frames, encrypt part-file slots.
fn crypto_pipeline() -> (f64, f64) {
    let mib = 256usize;
    let data = vec![0x42u8; CHUNK];
    let binding = umbra::session::Binding {
        request_id: [1; 16],
        requester: umbra::identity::Fingerprint::from_bytes([1; 20]),
        acceptor: umbra::identity::Fingerprint::from_bytes([2; 20]),
    };
    let (ka, kb) = (
        umbra::session::KeyShare::generate(),
        umbra::session::KeyShare::generate(),
    );
    let pb = umbra::session::PeerShare {
        half: kb.half(),
        ephemeral_public: kb.ephemeral_public(),
    };
    let mut s = umbra::session::Session::derive(umbra::session::Role::Requester, ka, &pb, &binding)
        .unwrap();
    let msg = umbra::wire::PeerMessage::FileChunk(umbra::wire::FileChunk {
        transfer_id: [3; 16],
        index: 0,
        data: data.clone(),
    });
    let t = Instant::now();
    for _ in 0..mib * 16 {
        let pt = msg.encode().unwrap();
        std::hint::black_box(s.seal(&pt).unwrap());
    }
    let seal = (mib as f64) / t.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().unwrap();
    let (name, key) = new_part();
    let layout = Layout {
        size: (16 * CHUNK) as u64,
        chunk_size: CHUNK as u32,
    };
    let part = PartFile::open(dir.path(), &name, &key, [4; 16], layout).unwrap();
    let t = Instant::now();
    for i in 0..mib * 16 {
        part.write_chunk((i % 16) as u64, &data).unwrap();
    }
    let slots = (mib as f64) / t.elapsed().as_secs_f64();
    (seal, slots)
}

/// Median, lowest and highest of a series of measurements.
#[derive(Debug, Clone, Copy)]
struct Stats {
    median: f64,
    min: f64,
    max: f64,
}

fn stats(values: &[f64]) -> Stats {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    let median = if v.len().is_multiple_of(2) {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    };
    Stats {
        median,
        min: v[0],
        max: v[v.len() - 1],
    }
}

/// Median of the per-run ratios `a[i] / b[i]` (both measured in the same run).
fn median_ratio(a: &[f64], b: &[f64]) -> f64 {
    let r: Vec<f64> = a.iter().zip(b).map(|(x, y)| x / y).collect();
    stats(&r).median
}

/// One row: median and range in MiB/s, then what it is compared with.
fn row(name: &str, s: Stats, note: &str) {
    println!(
        "  {name:<40} {:>6.2}  ({:>5.2}–{:<5.2})  {note}",
        s.median, s.min, s.max
    );
}

/// The measurements of one run, in MiB/s (None: skipped).
#[derive(Default)]
struct Series {
    raw1: Vec<f64>,
    raw_n: Vec<f64>,
    umbra1: Vec<f64>,
    umbra_default: Vec<f64>,
    umbra4: Vec<f64>,
}

/// Uploads `bytes` split over `n` raw streams, each from its own Tor client
/// (so its own circuit); MiB/s.
async fn raw_parallel(
    net: &umbra_testnet::TestNet,
    addr: &umbra::transport::PeerAddress,
    bytes: u64,
    n: usize,
) -> f64 {
    let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut clients = Vec::new();
    for d in &dirs {
        clients.push(bootstrap(net, d.path()).await);
    }
    let t = Instant::now();
    let each = bytes / n as u64;
    let jobs = clients.iter().map(|c| upload(c, addr, each));
    tokio::time::timeout(LONG, futures::future::join_all(jobs))
        .await
        .expect("parallel uploads");
    mibs(each * n as u64, t.elapsed())
}

fn main() {
    let file_mib = env_num("UMBRA_BENCH_FILE_MIB", 50);
    let runs = env_num("UMBRA_BENCH_RUNS", 5).max(1);
    let bytes = (file_mib as u64) << 20;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bench.bin");
    pattern_file(&file, bytes as usize);

    let net = umbra_testnet::TestNet::start(umbra_testnet::TestNetOptions::default())
        .unwrap_or_else(|e| panic!("cannot start the test network: {e}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let default = umbra::files::FilePolicy::default();
    let lanes_by_default = default.streams > 1 && bytes >= default.lanes_from;
    let n = if lanes_by_default { default.streams } else { 4 };
    // The default configuration is the 4-lane one: measure it once.
    let default_is_4_lanes = lanes_by_default && default.streams == 4;
    let mut m = Series::default();
    rt.block_on(async {
        let ds = tempfile::tempdir().unwrap();
        let server = bootstrap(&net, ds.path()).await;
        let addr = sink_server(&server).await;
        // Each run: every measurement on fresh circuits (new Tor clients),
        // interleaved so that a slow period of the network hits them all.
        for run in 1..=runs {
            let dc = tempfile::tempdir().unwrap();
            let c1 = bootstrap(&net, dc.path()).await;
            let d = tokio::time::timeout(LONG, upload(&c1, &addr, bytes))
                .await
                .expect("raw upload");
            m.raw1.push(mibs(bytes, d));
            m.raw_n.push(raw_parallel(&net, &addr, bytes, n).await);
            let d = tokio::time::timeout(LONG, umbra_transfer(&net, &file, 1))
                .await
                .expect("umbra transfer on one stream");
            m.umbra1.push(mibs(bytes, d));
            if lanes_by_default {
                let d = tokio::time::timeout(LONG, umbra_transfer(&net, &file, default.streams))
                    .await
                    .expect("umbra transfer, default configuration");
                m.umbra_default.push(mibs(bytes, d));
            }
            if !default_is_4_lanes {
                let d = tokio::time::timeout(LONG, umbra_transfer(&net, &file, 4))
                    .await
                    .expect("umbra transfer over 4 lanes");
                m.umbra4.push(mibs(bytes, d));
            }
            eprintln!(
                "run {run} of {runs}: raw {:.2}, Umbra one stream {:.2} MiB/s",
                m.raw1[run - 1],
                m.umbra1[run - 1]
            );
        }
    });
    if !lanes_by_default {
        m.umbra_default = m.umbra1.clone();
    }
    if default_is_4_lanes {
        m.umbra4 = m.umbra_default.clone();
    }
    let os = onionshare(&net, &file, runs);
    let (seal, slots) = crypto_pipeline();
    let ossl = openssl_speed();

    let (r1, rn, u1, ud, u4) = (
        stats(&m.raw1),
        stats(&m.raw_n),
        stats(&m.umbra1),
        stats(&m.umbra_default),
        stats(&m.umbra4),
    );
    println!(
        "file-transfer benchmark, {file_mib} MiB, {runs} runs, local Tor network ({} profile), \
         fresh circuits for every measurement; onion-service congestion control {}",
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        },
        if umbra::transport::arti::HS_CONGESTION_CONTROL {
            "negotiated"
        } else {
            "off"
        }
    );
    println!(
        "  {:<40} {:>6}  {:^13}  ratios of medians",
        "", "median", "(range) MiB/s"
    );
    let osm = os.as_ref().ok().map(|v| stats(v));
    let of_os = |x: f64| {
        osm.map_or(String::new(), |o| {
            format!(", ×{:.2} of OnionShare", x / o.median)
        })
    };
    row(
        "raw Arti, 1 onion stream",
        r1,
        &format!("baseline{}", of_os(r1.median)),
    );
    row(
        &format!("raw Arti, {n} streams / {n} circuits"),
        rn,
        &format!(
            "×{:.2} of one stream{}",
            rn.median / r1.median,
            of_os(rn.median)
        ),
    );
    row(
        "Umbra send_file, 1 stream (streams = 1)",
        u1,
        &format!(
            "×{:.2} of the raw stream (per run: median ×{:.2}){}",
            u1.median / r1.median,
            median_ratio(&m.umbra1, &m.raw1),
            of_os(u1.median)
        ),
    );
    let default_name = if lanes_by_default {
        format!("Umbra send_file, default ({} lanes)", default.streams)
    } else {
        "Umbra send_file, default (1 stream)".to_string()
    };
    row(
        &default_name,
        ud,
        &format!(
            "×{:.2} of {n} raw streams{}",
            ud.median / rn.median,
            of_os(ud.median)
        ),
    );
    row(
        "Umbra send_file, 4 lanes (streams = 4)",
        u4,
        &format!(
            "×{:.2} of the raw stream{}",
            u4.median / r1.median,
            of_os(u4.median)
        ),
    );
    match (&os, osm) {
        (Ok(_), Some(o)) => row(
            "OnionShare (C tor) /download",
            o,
            "curl over a C tor client",
        ),
        (Err(e), _) => println!("  OnionShare: not measured: {e}"),
        (Ok(_), None) => println!("  OnionShare: not measured"),
    }
    println!("  AES-GCM chunk sealing (ratchet+AEAD) {seal:>7.0} MiB/s");
    println!("  AES-GCM part-file slots (+pwrite)    {slots:>7.0} MiB/s");
    match ossl {
        Some(m) => {
            let m_mib = m * 1e6 / (1 << 20) as f64;
            println!(
                "  openssl speed -evp aes-256-gcm 64KiB {m_mib:>7.0} MiB/s   sealing ×{:.2}, slots ×{:.2}",
                seal / m_mib,
                slots / m_mib
            );
        }
        None => println!("  openssl speed: not available"),
    }
}
