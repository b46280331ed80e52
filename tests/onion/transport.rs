//! The Arti transport over a private Tor network on 127.0.0.1
//! (`umbra-testnet`), shared by every test of this binary.
//!
//! No fixed sleeps: readiness is a successful `connect`, which retries with
//! backoff inside a bounded budget.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use umbra::transport::arti::{ArtiNetwork, ArtiOptions, ArtiTransport};
use umbra::transport::{ErrorKind, Listener, PeerAddress, RetryPolicy, Transport};

/// Run `f` on a fresh multi-threaded runtime and shut the runtime down
/// before returning, so that every Arti task (and its state files) is gone
/// before the caller's temporary directories are deleted.
fn run<F: std::future::Future<Output = ()>>(f: F) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(f);
    rt.shutdown_timeout(Duration::from_secs(10));
}

fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Options for a client of the test network with its data in `dir`.
fn options(net: &umbra_testnet::TestNet, dir: &Path, connect_budget: Duration) -> ArtiOptions {
    let mut o = ArtiOptions::new(
        ArtiNetwork::Custom {
            arti_toml: net.arti_config_toml(),
        },
        dir,
    );
    // Temporary directories fail Arti's permission checks.
    o.dangerously_trust_everyone = true;
    o.bootstrap_timeout = Duration::from_secs(60);
    o.retry = RetryPolicy {
        total: connect_budget,
        initial: Duration::from_millis(200),
        max: Duration::from_secs(2),
    };
    o
}

async fn bootstrap(net: &umbra_testnet::TestNet, dir: &Path) -> ArtiTransport {
    ArtiTransport::bootstrap(options(net, dir, Duration::from_secs(90)))
        .await
        .unwrap_or_else(|e| panic!("bootstrap failed: {e:?}\n{}", net.log_tail(3)))
}

/// Serve one connection: echo each 8-byte request reversed, until EOF.
async fn serve_one(listener: &mut impl Listener) -> usize {
    let mut s = listener.accept().await.expect("accept");
    let mut n = 0;
    let mut buf = [0u8; 8];
    while s.read_exact(&mut buf).await.is_ok() {
        buf.reverse();
        s.write_all(&buf).await.unwrap();
        s.flush().await.unwrap();
        n += 1;
    }
    n
}

/// Connect, exchange `rounds` messages both ways, close.
async fn exchange(client: &ArtiTransport, addr: &PeerAddress, rounds: u8) {
    let mut c = client.connect(addr).await.expect("connect");
    for i in 0..rounds {
        let msg = [i, 1, 2, 3, 4, 5, 6, 7];
        c.write_all(&msg).await.unwrap();
        c.flush().await.unwrap();
        let mut back = [0u8; 8];
        c.read_exact(&mut back).await.unwrap();
        let mut want = msg;
        want.reverse();
        assert_eq!(back, want);
    }
    c.shutdown().await.unwrap();
}

#[test]
fn a_launches_b_connects_both_ways() {
    init_tracing();
    let net = umbra_testnet::shared();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(async {
        let (a, b) = tokio::join!(bootstrap(net, da.path()), bootstrap(net, db.path()));
        let mut status = a.status();
        assert!(status.borrow_and_update().ready_for_traffic);

        let launched = Instant::now();
        let mut listener = a.listen().await.expect("launch onion service");
        let addr = listener.address().clone();
        assert!(addr.is_onion());
        assert_eq!(addr.to_string(), "[scrubbed]");

        let server = tokio::spawn(async move { serve_one(&mut listener).await });
        exchange(&b, &addr, 5).await;
        eprintln!("launch -> first exchange: {:?}", launched.elapsed());
        assert_eq!(server.await.unwrap(), 5);
        // The service state was published (its value flips on a fast test
        // network, so only check that it left NotLaunched).
        assert_ne!(
            status.borrow_and_update().service,
            umbra::transport::arti::ServiceState::NotLaunched
        );
    });
}

#[test]
fn onion_address_survives_restart() {
    init_tracing();
    let net = umbra_testnet::shared();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(async {
        let (a, b) = tokio::join!(bootstrap(net, da.path()), bootstrap(net, db.path()));
        let first = {
            let listener = a.listen().await.expect("launch");
            listener.address().clone()
        };
        drop(a);

        let a = bootstrap(net, da.path()).await;
        let mut listener = a.listen().await.expect("relaunch");
        assert_eq!(listener.address(), &first, "address changed across restart");

        // And the restarted service is reachable at that address.
        let server = tokio::spawn(async move { serve_one(&mut listener).await });
        exchange(&b, &first, 2).await;
        assert_eq!(server.await.unwrap(), 2);
    });
}

#[test]
fn unknown_onion_address_fails_in_bounded_time() {
    init_tracing();
    let net = umbra_testnet::shared();
    let db = tempfile::tempdir().unwrap();
    run(async {
        let budget = Duration::from_secs(20);
        let b = ArtiTransport::bootstrap(options(net, db.path(), budget))
            .await
            .expect("bootstrap");
        // A well-formed v3 address that no service on this network publishes.
        let nobody =
            PeerAddress::new("2gzyxa5ihm7nsggfxnu52rck2vv4rvmdlkiu3zzui5du4xyclen53wid.onion");
        let started = Instant::now();
        let err = b.connect(&nobody).await.err().expect("must fail");
        let took = started.elapsed();
        eprintln!("unknown address failed after {took:?}: {err}");
        assert!(took < budget + Duration::from_secs(10), "took {took:?}");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
        let msg = err.to_string();
        assert!(msg.contains("check the address"), "{msg}");
        assert!(!msg.contains("2gzyxa5"), "the address must not leak: {msg}");

        // Malformed addresses fail at once, without touching the network.
        for bad in ["not-an-onion.onion", "127.0.0.1:7400"] {
            let err = b.connect(&PeerAddress::new(bad)).await.err().unwrap();
            assert_eq!(err.kind(), ErrorKind::BadAddress, "{bad}");
        }
    });
}
