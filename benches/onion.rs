//! Baseline benchmark of the Arti transport on the local Tor network.
//!
//! ```text
//! cargo bench --bench onion            # release build (the baseline)
//! cargo test --bench onion             # quick run in the dev profile
//! UMBRA_BENCH_MIB=20 UMBRA_BENCH_RTTS=100 cargo bench --bench onion
//! ```
//!
//! Prints: test network start time, Arti bootstrap time, onion service
//! launch → first successful connection, 64-byte round trips (median, p90),
//! bulk throughput of one raw onion stream in each direction, and the peak
//! RSS of this process (two Tor clients and one onion service).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "common/mod.rs"]
mod common;

use common::{env_num, percentile};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use umbra::transport::arti::{ArtiNetwork, ArtiOptions, ArtiTransport};
use umbra::transport::{BoxedStream, Listener, RetryPolicy, Transport};

const CHUNK: usize = 64 * 1024;

/// One connection of the benchmark server: the first byte selects the mode.
async fn serve(mut s: BoxedStream) -> std::io::Result<()> {
    let mut mode = [0u8; 1];
    s.read_exact(&mut mode).await?;
    match mode[0] {
        // Echo 64-byte messages until EOF.
        b'e' => {
            let mut buf = [0u8; 64];
            while s.read_exact(&mut buf).await.is_ok() {
                s.write_all(&buf).await?;
                s.flush().await?;
            }
        }
        // Upload: read a length, swallow that many bytes, acknowledge.
        b'u' => {
            let len = s.read_u64().await?;
            let mut left = len;
            let mut buf = vec![0u8; CHUNK];
            while left > 0 {
                let want = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
                let n = s.read(&mut buf[..want]).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                left -= n as u64;
            }
            s.write_u8(1).await?;
            s.flush().await?;
        }
        // Download: read a length, send that many bytes.
        b'd' => {
            let len = s.read_u64().await?;
            let buf = vec![0x5au8; CHUNK];
            let mut left = len;
            while left > 0 {
                let n = usize::try_from(left.min(CHUNK as u64)).unwrap_or(CHUNK);
                s.write_all(&buf[..n]).await?;
                left -= n as u64;
            }
            s.flush().await?;
            s.shutdown().await?;
        }
        _ => {}
    }
    Ok(())
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --bench onion` passes
    // nothing special. Either way, run once.
    let mib = env_num("UMBRA_BENCH_MIB", 20);
    let rtts = env_num("UMBRA_BENCH_RTTS", 100).max(50);

    let t = Instant::now();
    let net = umbra_testnet::TestNet::start(umbra_testnet::TestNetOptions::default())
        .unwrap_or_else(|e| panic!("cannot start the test network: {e}"));
    let net_start = t.elapsed();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let opts = |dir: &std::path::Path| {
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
            o
        };
        let a = ArtiTransport::bootstrap(opts(da.path())).await.unwrap();
        let b = ArtiTransport::bootstrap(opts(db.path())).await.unwrap();

        let launched = Instant::now();
        let mut listener = a.listen().await.unwrap();
        let addr = listener.address().clone();
        tokio::spawn(async move {
            while let Ok(s) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = serve(s).await;
                });
            }
        });

        // Launch -> first successful connection (and first echoed byte).
        let mut echo = b.connect(&addr).await.unwrap();
        echo.write_all(b"e").await.unwrap();
        let launch_to_connect = launched.elapsed();

        // 64-byte round trips.
        let mut samples = Vec::with_capacity(rtts);
        let msg = [7u8; 64];
        let mut back = [0u8; 64];
        for i in 0..rtts + 5 {
            let t = Instant::now();
            echo.write_all(&msg).await.unwrap();
            echo.flush().await.unwrap();
            echo.read_exact(&mut back).await.unwrap();
            if i >= 5 {
                samples.push(t.elapsed());
            }
        }
        drop(echo);
        samples.sort();

        let bytes = (mib * 1024 * 1024) as u64;
        // Upload: client -> service.
        let mut up = b.connect(&addr).await.unwrap();
        let t = Instant::now();
        up.write_all(b"u").await.unwrap();
        up.write_u64(bytes).await.unwrap();
        let buf = vec![0xa5u8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            up.write_all(&buf[..n]).await.unwrap();
            left -= n as u64;
        }
        up.flush().await.unwrap();
        assert_eq!(up.read_u8().await.unwrap(), 1);
        let up_time = t.elapsed();
        drop(up);

        // Download: service -> client.
        let mut down = b.connect(&addr).await.unwrap();
        let t = Instant::now();
        down.write_all(b"d").await.unwrap();
        down.write_u64(bytes).await.unwrap();
        down.flush().await.unwrap();
        let mut got = 0u64;
        let mut rbuf = vec![0u8; CHUNK];
        while got < bytes {
            let n = down.read(&mut rbuf).await.unwrap();
            assert!(n > 0, "stream ended early");
            got += n as u64;
        }
        let down_time = t.elapsed();

        let mibs = |d: Duration| mib as f64 / d.as_secs_f64();
        println!("umbra onion transport baseline (local Tor network, 11 relays)");
        println!(
            "  test network start (keys + consensus) {:>8.1} s",
            net_start.as_secs_f64()
        );
        println!(
            "  Arti bootstrap (client A)             {:>8.2} s",
            a.bootstrap_time().as_secs_f64()
        );
        println!(
            "  Arti bootstrap (client B)             {:>8.2} s",
            b.bootstrap_time().as_secs_f64()
        );
        println!(
            "  launch -> first connection            {:>8.2} s",
            launch_to_connect.as_secs_f64()
        );
        println!(
            "  64-byte RTT over {} round trips      median {:.1} ms, p90 {:.1} ms",
            samples.len(),
            percentile(&samples, 0.5).as_secs_f64() * 1e3,
            percentile(&samples, 0.9).as_secs_f64() * 1e3
        );
        println!(
            "  bulk, one stream, {mib} MiB up          {:>8.2} MiB/s ({:.1} s)",
            mibs(up_time),
            up_time.as_secs_f64()
        );
        println!(
            "  bulk, one stream, {mib} MiB down        {:>8.2} MiB/s ({:.1} s)",
            mibs(down_time),
            down_time.as_secs_f64()
        );
        match peak_rss_kib() {
            Some(k) => println!(
                "  peak RSS (VmHWM, this process)        {:>8.1} MiB",
                k as f64 / 1024.0
            ),
            None => println!("  peak RSS: unavailable"),
        }
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    drop(net);
}
