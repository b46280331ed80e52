//! Vanguards on the local Tor network: onion-service circuits are built
//! with the configured mode (Arti reports it in its "selecting HS circuit
//! stem" trace event, the only place a running `TorClient` exposes it), and
//! a round trip between two onion services' clients works with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing_subscriber::layer::SubscriberExt;
use umbra::transport::arti::{ArtiOptions, ArtiTransport, VanguardsMode, configured_vanguards};
use umbra::transport::{Listener, Transport};

/// A `tracing` writer collecting everything into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn options(net: &umbra_testnet::TestNet, dir: &Path, mode: VanguardsMode) -> ArtiOptions {
    let mut o = ArtiOptions::for_test_network(net.arti_config_toml(), dir);
    o.vanguards = mode;
    o
}

/// Two clients with vanguards `mode`, one onion service, an 8-byte echo;
/// returns Arti's trace lines about onion-service circuit stems.
fn round_trip_with(mode: VanguardsMode) -> String {
    let net = umbra_testnet::shared();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::EnvFilter::new(
            "tor_circmgr::hspool=trace",
        ))
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
    // Thread-local: on a current-thread runtime every Arti task runs here.
    let _guard = tracing::subscriber::set_default(subscriber);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let oa = options(net, da.path(), mode);
        assert_eq!(
            configured_vanguards(&oa.client_config().unwrap()).unwrap(),
            mode
        );
        let a = ArtiTransport::bootstrap(oa).await.expect("bootstrap a");
        let b = ArtiTransport::bootstrap(options(net, db.path(), mode))
            .await
            .expect("bootstrap b");
        assert_eq!(a.vanguards(), mode);
        let mut listener = a.listen().await.expect("launch");
        let addr = listener.address().clone();
        let server = tokio::spawn(async move {
            let mut s = listener.accept().await.expect("accept");
            let mut buf = [0u8; 8];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            s.flush().await.unwrap();
            listener
        });
        let mut c = b.connect(&addr).await.expect("connect");
        c.write_all(b"vanguard").await.unwrap();
        c.flush().await.unwrap();
        let mut buf = [0u8; 8];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"vanguard");
        drop(server.await.unwrap());
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    captured
        .text()
        .lines()
        .filter(|l| l.contains("selecting HS circuit stem"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn onion_circuits_use_lite_vanguards_by_default() {
    assert_eq!(
        ArtiOptions::new(umbra::transport::arti::ArtiNetwork::Tor, "/nonexistent").vanguards,
        VanguardsMode::Lite
    );
    let stems = round_trip_with(VanguardsMode::default());
    assert!(stems.contains("vanguards=lite"), "{stems}");
    assert!(!stems.contains("vanguards=disabled"), "{stems}");
    assert!(!stems.contains("vanguards=full"), "{stems}");
}

#[test]
fn onion_circuits_use_full_vanguards_when_configured() {
    let stems = round_trip_with(VanguardsMode::Full);
    assert!(stems.contains("vanguards=full"), "{stems}");
    assert!(!stems.contains("vanguards=lite"), "{stems}");
}
