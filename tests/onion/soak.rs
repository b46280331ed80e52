//! Soak test, outside the default test run:
//!
//! ```text
//! cargo test --test onion soak -- --ignored --nocapture
//! ```
//!
//! Keeps one onion service up on the local Tor network and makes a fresh,
//! circuit-isolated connection to it every 20 s for 15 minutes (override
//! with `UMBRA_SOAK_SECS` and `UMBRA_SOAK_INTERVAL_SECS`). That crosses the
//! point (~100 circuits, ~9 minutes) where Arti would switch to a learned
//! circuit-build timeout without `cbtdisabled=1` (TESTNET.md), and — with
//! Arti's `hsdir_interval` set to C tor's 8 minutes on this network — at
//! least one onion-service time-period boundary. Every attempt must succeed
//! within its bounded retry budget (60 s).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use umbra::transport::arti::{ArtiNetwork, ArtiOptions, ArtiTransport};
use umbra::transport::{Listener, RetryPolicy, Transport};

fn env_secs(name: &str, default: u64) -> Duration {
    Duration::from_secs(
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default),
    )
}

#[test]
#[ignore = "takes 15 minutes; run explicitly"]
fn soak_fresh_connection_every_interval() {
    let total = env_secs("UMBRA_SOAK_SECS", 15 * 60);
    let interval = env_secs("UMBRA_SOAK_INTERVAL_SECS", 20);
    let net = umbra_testnet::shared();
    eprintln!("network ready after {:?}", net.startup_time());
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // Match C tor's time period on this network (24 × 20 s voting = 8 min)
    // so that the run crosses time-period boundaries, where a fresh client
    // may briefly fail to fetch the descriptor (TESTNET.md). Override with
    // UMBRA_SOAK_HSDIR_INTERVAL (minutes; 1440 = no boundary).
    let hsdir_interval = env_secs("UMBRA_SOAK_HSDIR_INTERVAL", 8).as_secs() as i32;
    let mut arti = net.arti_config().clone();
    for (k, v) in arti.override_net_params.iter_mut() {
        if k == "hsdir_interval" {
            *v = hsdir_interval;
        }
    }
    let arti_toml = arti.to_toml();
    eprintln!("hsdir_interval = {hsdir_interval} min");
    let (ok, failed) = rt.block_on(async {
        let opts = |dir: &std::path::Path| {
            let mut o = ArtiOptions::new(
                ArtiNetwork::Custom {
                    arti_toml: arti_toml.clone(),
                },
                dir,
            );
            o.dangerously_trust_everyone = true;
            o.isolate_every_connection = true;
            o.retry = RetryPolicy {
                total: Duration::from_secs(60),
                ..RetryPolicy::default()
            };
            o
        };
        let a = ArtiTransport::bootstrap(opts(da.path())).await.unwrap();
        let b = ArtiTransport::bootstrap(opts(db.path())).await.unwrap();
        let mut listener = a.listen().await.unwrap();
        let addr = listener.address().clone();
        tokio::spawn(async move {
            loop {
                let Ok(mut s) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while s.read_exact(&mut buf).await.is_ok() {
                        if s.write_all(&buf).await.is_err() || s.flush().await.is_err() {
                            return;
                        }
                    }
                });
            }
        });

        let started = Instant::now();
        let mut ticker = tokio::time::interval(interval);
        let (mut ok, mut failed) = (0u32, 0u32);
        let mut attempt = 0u32;
        while started.elapsed() < total {
            ticker.tick().await;
            attempt += 1;
            let t = Instant::now();
            let result = async {
                let mut c = b.connect(&addr).await?;
                let msg = [attempt as u8; 64];
                c.write_all(&msg).await.map_err(io)?;
                c.flush().await.map_err(io)?;
                let mut back = [0u8; 64];
                c.read_exact(&mut back).await.map_err(io)?;
                assert_eq!(back, msg);
                Ok::<(), umbra::transport::Error>(())
            }
            .await;
            match result {
                Ok(()) => {
                    ok += 1;
                    eprintln!(
                        "[{:>6.1}s] attempt {attempt}: ok in {:?}",
                        started.elapsed().as_secs_f64(),
                        t.elapsed()
                    );
                }
                Err(e) => {
                    failed += 1;
                    eprintln!(
                        "[{:>6.1}s] attempt {attempt}: FAILED after {:?}: {e}",
                        started.elapsed().as_secs_f64(),
                        t.elapsed()
                    );
                }
            }
        }
        (ok, failed)
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    eprintln!("soak result: {ok} ok, {failed} failed over {total:?}");
    assert_eq!(failed, 0, "every soak attempt must succeed");
}

fn io(source: std::io::Error) -> umbra::transport::Error {
    umbra::transport::Error::Io {
        action: "exchange data",
        source,
    }
}
