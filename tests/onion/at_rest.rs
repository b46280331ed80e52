//! At rest, with Arti's state included: after a real onion service has run
//! from a user's data directory (local Tor network), no file under that
//! directory contains the user's identifiers or their onion address in
//! readable form.
//!
//! What Arti necessarily keeps there, and this test states: the onion
//! service's secret identity key (Arti's keystore, an OpenSSH-format file
//! not encrypted by our store). The onion address is *derivable* from that
//! key, so a device thief who knows where to look learns the user's onion
//! address — see docs/THREAT_MODEL.md, "Thief of the device". The address
//! string itself must not appear anywhere.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use umbra::identity::{Identity, Username};
use umbra::store::{KdfParams, OwnIdentity, lifecycle};
use umbra::transport::arti::{ArtiOptions, ArtiTransport};
use umbra::transport::{Listener, Transport};

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn options(net: &umbra_testnet::TestNet, dir: &Path) -> ArtiOptions {
    ArtiOptions::for_test_network(net.arti_config_toml(), dir)
}

#[test]
fn no_identifier_in_the_data_dir_after_an_onion_service_ran() {
    let net = umbra_testnet::shared();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("alice");
    let other = tmp.path().join("bob");
    std::fs::create_dir(&other).unwrap();

    let name = Username::parse("quokka_zanzibar").unwrap();
    let identity = Identity::generate(&name).unwrap();
    let fpr = identity.fingerprint().to_hex();
    let own = OwnIdentity {
        username: name.as_str().to_owned(),
        fingerprint: fpr.clone(),
        secret_cert: identity.to_secret_bytes().unwrap(),
        created_at: 1_700_000_000,
    };
    let pass = SecretString::from("correct horse");
    let params = KdfParams::default();
    let store = lifecycle::init(&dir, &pass, params, &own).unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let onion = rt.block_on(async {
        let alice = ArtiTransport::bootstrap(options(net, &dir))
            .await
            .expect("bootstrap alice");
        let mut listener = alice.listen().await.expect("launch onion service");
        let addr = listener.address().clone();
        let bob = ArtiTransport::bootstrap(options(net, &other))
            .await
            .expect("bootstrap bob");
        let server = tokio::spawn(async move {
            let mut s = listener.accept().await.expect("accept");
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            s.flush().await.unwrap();
            listener
        });
        let mut c = bob
            .connect(&addr)
            .await
            .expect("connect to the onion service");
        c.write_all(b"ping").await.unwrap();
        c.flush().await.unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        drop(server.await.unwrap());
        addr.as_str().to_owned()
    });
    rt.shutdown_timeout(Duration::from_secs(10));

    // The store holds the own onion address too, encrypted.
    store.set_setting("own_onion", &onion).unwrap();
    store.close().unwrap();

    let base = onion.trim_end_matches(".onion").to_owned();
    assert_eq!(base.len(), 56);
    let needles: Vec<(&str, Vec<u8>)> = vec![
        ("onion address", base.as_bytes().to_vec()),
        (
            "onion address (upper case)",
            base.to_uppercase().into_bytes(),
        ),
        ("username", name.as_str().as_bytes().to_vec()),
        ("fingerprint", fpr.as_bytes().to_vec()),
        ("fingerprint (lower case)", fpr.to_lowercase().into_bytes()),
    ];
    let files = files_under(&dir);
    assert!(
        files.iter().any(|f| f.starts_with(dir.join("arti"))),
        "Arti state is in the data dir"
    );
    let mut leaks = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for (what, n) in &needles {
            if contains(&bytes, n) {
                leaks.push(format!("{what} in {}", f.display()));
            }
        }
    }
    assert!(leaks.is_empty(), "identifiers readable at rest: {leaks:#?}");

    // Control: the scan does find the address where it is written in clear.
    let control = tmp.path().join("control.txt");
    std::fs::write(&control, &onion).unwrap();
    assert!(contains(&std::fs::read(&control).unwrap(), base.as_bytes()));
}
