//! End to end over the local Tor network: `umbra-handshaker` serves its API
//! as a real Arti onion service; a client registers and looks up a user
//! through it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use umbra::handshaker_client::{
    ConnectFuture, Connector, HandshakerAddress, HandshakerClient, Isolation,
};
use umbra::identity::{Identity, Username};
use umbra::transport::arti::{ArtiOptions, ArtiTransport};
use umbra::transport::{PeerAddress, Transport};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reaches a Handshaker's onion service through an Arti client.
struct ArtiConnector(ArtiTransport);

impl Connector for ArtiConnector {
    fn connect<'a>(&'a self, addr: &'a HandshakerAddress, _: Isolation) -> ConnectFuture<'a> {
        Box::pin(async move {
            self.0
                .connect(&PeerAddress::new(addr.host()))
                .await
                .map_err(std::io::Error::other)
        })
    }
}

fn options(net: &umbra_testnet::TestNet, dir: &Path) -> ArtiOptions {
    ArtiOptions::for_test_network(net.arti_config_toml(), dir)
}

#[test]
fn register_and_lookup_through_the_onion_service() {
    let net = umbra_testnet::shared();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("arti-network.toml");
    net.write_arti_config(&cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_umbra-handshaker"))
        .arg("--data-dir")
        .arg(tmp.path().join("server"))
        .arg("--arti-network-config")
        .arg(&cfg)
        .args(["--pow-difficulty", "8"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _server = Kill(child);
    // Block on the server's own announcement; it bootstraps Arti first.
    let onion = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("onion service: ").map(str::to_owned))
        .expect("the server announces its onion address");
    assert!(onion.ends_with(".onion"), "{onion}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let transport = ArtiTransport::bootstrap(options(net, &tmp.path().join("client")))
            .await
            .unwrap_or_else(|e| panic!("bootstrap: {e}\n{}", net.log_tail(3)));
        let client =
            HandshakerClient::with_connector(&onion, Arc::new(ArtiConnector(transport))).unwrap();
        let dave = Identity::generate(&Username::parse("dave").unwrap()).unwrap();
        client
            .register(&dave)
            .await
            .expect("register over the onion service");
        let found = client
            .lookup(dave.username())
            .await
            .unwrap()
            .expect("dave is registered");
        assert_eq!(found.fingerprint, dave.fingerprint());
    });
    rt.shutdown_timeout(Duration::from_secs(10));
}
