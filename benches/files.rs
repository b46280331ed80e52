//! File-transfer benchmark on the local Tor network, all in one run and each on
//! fresh circuits (new Tor clients):
//!
//! 1. baseline: one raw Arti onion stream, 50 MiB upload;
//! 2. four raw Arti streams in parallel (four clients, so four circuits) to the
//!    same onion service, 50 MiB in total: would parallel streams pay off?
//! 3. Umbra: two nodes with a session; `send_file` of the same 50 MiB file, from
//!    the receiver's accept to the sender learning it was verified and stored, on
//!    the session's stream and on 4 lanes (PROTOCOL.md §14.3);
//! 4. OnionShare (`onionshare-cli` over C tor, `/download` with curl over a second
//!    C tor client) serving the same file;
//! 5. the AES-256-GCM pipeline: sealing 64 KiB chunk frames (ratchet + AEAD) and
//!    encrypting part-file slots, against `openssl speed -evp aes-256-gcm` on this CPU.
//!
//! Ratios are printed against the baselines measured in the same run.
//!
//! ```text
//! cargo bench --bench files                 # release build
//! UMBRA_BENCH_FILE_MIB=20 cargo bench --bench files
//! cargo bench --bench files --features hs-congestion-control   # Arti's experimental HS extensions
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/support/node.rs"]
mod support;

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

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
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

/// OnionShare over C tor serving `file`, fetched by a second C tor client.
/// Returns (seconds, bytes) of the download on a fresh circuit, or why not.
fn onionshare(net: &umbra_testnet::TestNet, file: &Path) -> Result<(Duration, u64), String> {
    let host = net.c_client("oshost").map_err(|e| e.to_string())?;
    let client = net.c_client("osclient").map_err(|e| e.to_string())?;
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let share =
        umbra_testnet::OnionShare::start(&host, file, scratch.path()).map_err(|e| e.to_string())?;
    // A first fetch of the page waits for the descriptor; the measured
    // download then runs on a fresh circuit (another SOCKS isolation token).
    client
        .fetch(share.url(), &scratch.path().join("page"), "warmup")
        .map_err(|e| e.to_string())?;
    let out = scratch.path().join("download");
    let f = client
        .fetch(&share.download_url(), &out, "bench")
        .map_err(|e| e.to_string())?;
    let same = std::fs::read(&out).map_err(|e| e.to_string())? == std::fs::read(file).unwrap();
    if !same {
        return Err("the OnionShare download differs from the file".into());
    }
    Ok((f.elapsed, f.bytes))
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

fn main() {
    let file_mib = env_num("UMBRA_BENCH_FILE_MIB", 50);
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
    let (raw1, raw4, umbra_t, umbra4) = rt.block_on(async {
        let ds = tempfile::tempdir().unwrap();
        let server = bootstrap(&net, ds.path()).await;
        let addr = sink_server(&server).await;

        let dc = tempfile::tempdir().unwrap();
        let c1 = bootstrap(&net, dc.path()).await;
        let raw1 = tokio::time::timeout(LONG, upload(&c1, &addr, bytes))
            .await
            .expect("raw upload");
        eprintln!("raw single stream measured");

        let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
        let mut clients = Vec::new();
        for d in &dirs {
            clients.push(bootstrap(&net, d.path()).await);
        }
        let t = Instant::now();
        let each = bytes / 4;
        let jobs = clients.iter().map(|c| upload(c, &addr, each));
        tokio::time::timeout(LONG, futures::future::join_all(jobs))
            .await
            .expect("parallel uploads");
        let raw4 = t.elapsed();
        eprintln!("raw parallel streams measured");

        let umbra_t = tokio::time::timeout(LONG, umbra_transfer(&net, &file, 1))
            .await
            .expect("umbra transfer");
        eprintln!("umbra transfer measured");
        let umbra4 = tokio::time::timeout(LONG, umbra_transfer(&net, &file, 4))
            .await
            .expect("umbra transfer over lanes");
        eprintln!("umbra transfer over 4 lanes measured");
        (raw1, raw4, umbra_t, umbra4)
    });
    let os = onionshare(&net, &file);
    let (seal, slots) = crypto_pipeline();
    let ossl = openssl_speed();

    let r1 = mibs(bytes, raw1);
    let r4 = mibs(bytes, raw4);
    let u = mibs(bytes, umbra_t);
    let u4 = mibs(bytes, umbra4);
    println!(
        "file-transfer benchmark, {file_mib} MiB, local Tor network ({} profile), fresh circuits",
        if cfg!(debug_assertions) {
            "dev"
        } else {
            "release"
        }
    );
    println!("  raw Arti, 1 onion stream            {r1:>7.2} MiB/s   (baseline)");
    println!(
        "  raw Arti, 4 streams / 4 circuits    {r4:>7.2} MiB/s   ×{:.2} of one stream",
        r4 / r1
    );
    println!(
        "  Umbra send_file, 1 stream           {u:>7.2} MiB/s   ×{:.2} of the raw stream",
        u / r1
    );
    println!(
        "  Umbra send_file, 4 lanes / circuits {u4:>7.2} MiB/s   ×{:.2} of the raw stream, ×{:.2} of Umbra on 1",
        u4 / r1,
        u4 / u
    );
    match &os {
        Ok((d, n)) => {
            let o = mibs(*n, *d);
            println!(
                "  OnionShare (C tor) /download        {o:>7.2} MiB/s   Umbra 1 stream ×{:.2}, 4 lanes ×{:.2} of OnionShare; raw Arti ×{:.2}",
                u / o,
                u4 / o,
                r1 / o
            );
        }
        Err(e) => println!("  OnionShare: not measured: {e}"),
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
