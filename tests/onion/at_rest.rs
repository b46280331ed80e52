//! At rest, with Arti's state included: after a real onion service has run
//! from a user's data directory (local Tor network), no file under that
//! directory contains the user's identifiers, their onion address, or the
//! onion service's identity key — neither its secret nor its public half —
//! in readable form (raw, hex, base64 at every alignment, base32).
//!
//! The identity key lives in the encrypted store (`onion_key`, store v7) and
//! reaches Arti only in memory (`ServiceKey::InMemory`: an in-memory
//! keystore, `launch_onion_service_with_hsid`), so `arti/state/keystore/`
//! never exists. A data directory of an earlier version, whose key Arti kept
//! there as a plain file, has it moved into the store on the first start and
//! the keystore deleted; the address stays the same.
//!
//! What Arti still writes under `arti/state/` for the service, and why the
//! scan finds nothing in it: `hss/umbra/` holds the introduction points' local
//! ids, the relays chosen as introduction points and when to retire them
//! (`ipts`, `iptpub`), and the replay filters of introduction requests
//! (`iptreplay/`, hashes of INTRODUCE2 cells); `state/` holds guards and
//! circuit-timeout data of the client. None of it is key material or the
//! address, and `hss/umbra/` is deleted before each launch (its
//! introduction point keys died with the previous process). What a thief
//! can do with the introduction point relays while the last descriptor is
//! still valid (a few hours): confirm a *guessed* address by comparing them
//! with that address's descriptor — docs/THREAT_MODEL.md, "Thief of the
//! device".

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use umbra::daemon::{OnionKeySource, use_stored_onion_key};
use umbra::identity::{Identity, Username};
use umbra::store::{KdfParams, OwnIdentity, Store, lifecycle};
use umbra::transport::arti::{ArtiOptions, ArtiTransport, OnionServiceKey, ServiceKey};
use umbra::transport::{Listener, PeerAddress, Transport};

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

/// `bytes` as they could appear in a file: raw, hex (both cases), and base64
/// (standard and URL-safe) at each of the three alignments inside a larger
/// blob (as in an OpenSSH key file), keeping only the characters that depend
/// on `bytes` alone.
fn encodings(what: &str, bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = vec![
        (format!("{what} (raw)"), bytes.to_vec()),
        (format!("{what} (hex)"), hex::encode(bytes).into_bytes()),
        (
            format!("{what} (HEX)"),
            hex::encode_upper(bytes).into_bytes(),
        ),
    ];
    for (name, engine) in [
        ("base64", &base64::engine::general_purpose::STANDARD_NO_PAD),
        (
            "base64url",
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ),
    ] {
        for pad in 0..3usize {
            let mut buf = vec![0u8; pad];
            buf.extend_from_slice(bytes);
            let s = engine.encode(&buf);
            // Characters mixing prefix bits, and the last two (which mix in
            // whatever follows), are left out.
            let start = (pad * 8).div_ceil(6);
            let inner = &s[start..s.len() - 2];
            out.push((
                format!("{what} ({name}, offset {pad})"),
                inner.as_bytes().to_vec(),
            ));
        }
    }
    out
}

/// Every form of the key and the address the scan looks for.
fn key_needles(key: &OnionServiceKey) -> Vec<(String, Vec<u8>)> {
    let onion = key.onion_address();
    let base = onion.as_str().trim_end_matches(".onion").to_owned();
    assert_eq!(base.len(), 56);
    let mut n = vec![
        ("onion address".to_owned(), base.as_bytes().to_vec()),
        (
            "onion address (upper case)".to_owned(),
            base.to_uppercase().into_bytes(),
        ),
        // base32 of the public key alone: the address's first 51 characters.
        (
            "public key (base32)".to_owned(),
            base.as_bytes()[..51].to_vec(),
        ),
        (
            "public key (BASE32)".to_owned(),
            base[..51].to_uppercase().into_bytes(),
        ),
    ];
    let secret = key.secret_bytes();
    n.extend(encodings("secret key", secret));
    n.extend(encodings("secret scalar", &secret[..32]));
    n.extend(encodings("secret hash prefix", &secret[32..]));
    n.extend(encodings("public key", &key.public_bytes()));
    n
}

/// Scan every file under `dir` for `needles`; the findings.
fn scan(dir: &Path, needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut leaks = Vec::new();
    for f in files_under(dir) {
        let bytes = std::fs::read(&f).unwrap();
        for (what, n) in needles {
            if contains(&bytes, n) {
                leaks.push(format!("{what} in {}", f.display()));
            }
        }
    }
    leaks
}

/// Launch `a`'s onion service, have `b` connect and echo 4 bytes; the
/// service's address.
async fn round_trip(a: &ArtiTransport, b: &ArtiTransport) -> PeerAddress {
    let mut listener = a.listen().await.expect("launch onion service");
    let addr = listener.address().clone();
    let server = tokio::spawn(async move {
        let mut s = listener.accept().await.expect("accept");
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(&buf).await.unwrap();
        s.flush().await.unwrap();
        listener
    });
    let mut c = b
        .connect(&addr)
        .await
        .expect("connect to the onion service");
    c.write_all(b"ping").await.unwrap();
    c.flush().await.unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping");
    drop(server.await.unwrap());
    addr
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn new_store(dir: &Path, name: &Username) -> (Store, String) {
    let identity = Identity::generate(name).unwrap();
    let fpr = identity.fingerprint().to_hex();
    let own = OwnIdentity {
        username: name.as_str().to_owned(),
        fingerprint: fpr.clone(),
        secret_cert: identity.to_secret_bytes().unwrap(),
        created_at: 1_700_000_000,
    };
    let pass = SecretString::from("correct horse");
    let store = lifecycle::init(dir, &pass, KdfParams::default(), &own).unwrap();
    (store, fpr)
}

#[test]
fn no_identifier_in_the_data_dir_after_an_onion_service_ran() {
    let net = umbra_testnet::shared();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("alice");
    let other = tmp.path().join("bob");
    std::fs::create_dir(&other).unwrap();

    let name = Username::parse("quokka_zanzibar").unwrap();
    let (store, fpr) = new_store(&dir, &name);

    // What the daemon does: the key comes from the store (generated there).
    let mut opts = options(net, &dir);
    let source = use_stored_onion_key(&store, &mut opts).unwrap();
    assert_eq!(source, OnionKeySource::Generated);
    let ServiceKey::InMemory(key) = opts.service_key.clone() else {
        panic!("the daemon hands the key over in memory");
    };

    let rt = runtime();
    let onion = rt.block_on(async {
        let alice = ArtiTransport::bootstrap(opts)
            .await
            .expect("bootstrap alice");
        let bob = ArtiTransport::bootstrap(options(net, &other))
            .await
            .expect("bootstrap bob");
        round_trip(&alice, &bob).await
    });
    rt.shutdown_timeout(Duration::from_secs(10));
    assert_eq!(
        onion,
        key.onion_address(),
        "the service runs the stored key"
    );

    // The store holds the own onion address too, encrypted.
    store.set_setting("own_onion", onion.as_str()).unwrap();
    store.close().unwrap();

    let mut needles = key_needles(&key);
    needles.push(("username".into(), name.as_str().as_bytes().to_vec()));
    needles.push(("fingerprint".into(), fpr.as_bytes().to_vec()));
    needles.push((
        "fingerprint (lower case)".into(),
        fpr.to_lowercase().into_bytes(),
    ));
    let files = files_under(&dir);
    assert!(
        files.iter().any(|f| f.starts_with(dir.join("arti"))),
        "Arti state is in the data dir"
    );
    assert!(
        !dir.join("arti/state/keystore").exists(),
        "Arti's on-disk keystore was never created"
    );
    let leaks = scan(&dir, &needles);
    assert!(leaks.is_empty(), "identifiers readable at rest: {leaks:#?}");

    // Control: the scan does find the address and the key where they are
    // written in clear (an OpenSSH-style base64 blob at an odd offset too).
    let control = tmp.path().join("control");
    std::fs::create_dir(&control).unwrap();
    std::fs::write(control.join("addr.txt"), onion.as_str()).unwrap();
    let mut blob = b"x".to_vec();
    blob.extend_from_slice(&key.public_bytes());
    std::fs::write(
        control.join("pub.b64"),
        base64::engine::general_purpose::STANDARD.encode(&blob),
    )
    .unwrap();
    std::fs::write(control.join("secret.bin"), key.secret_bytes()).unwrap();
    let found = scan(&control, &needles);
    for what in [
        "onion address in",
        "public key (base64, offset 1) in",
        "secret key (raw) in",
    ] {
        assert!(
            found.iter().any(|f| f.starts_with(what)),
            "{what}: {found:#?}"
        );
    }
}

#[test]
fn an_old_keystore_key_moves_into_the_store_and_the_address_stays() {
    let net = umbra_testnet::shared();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("alice");
    let other = tmp.path().join("bob");
    std::fs::create_dir(&other).unwrap();
    let name = Username::parse("wombat_quito").unwrap();
    let (store, _) = new_store(&dir, &name);

    let rt = runtime();
    let bob = rt.block_on(async {
        ArtiTransport::bootstrap(options(net, &other))
            .await
            .expect("bootstrap bob")
    });
    // An earlier version (same store, no `onion_key` row): Arti generates
    // the key in its on-disk keystore.
    // It stops (its own runtime, shut down: no Arti task still writes to the
    // keystore) before this version starts.
    let old_rt = runtime();
    let old_address = old_rt.block_on(async {
        let mut o = options(net, &dir);
        o.service_key = ServiceKey::Keystore;
        let alice = ArtiTransport::bootstrap(o).await.expect("bootstrap alice");
        let listener = alice.listen().await.expect("launch");
        listener.address().clone()
    });
    old_rt.shutdown_timeout(Duration::from_secs(10));
    let keystore = dir.join("arti/state/keystore");
    assert!(keystore.exists(), "the old version keeps a keystore");

    // This version: the first start moves the key into the store.
    let mut opts = options(net, &dir);
    assert_eq!(
        use_stored_onion_key(&store, &mut opts).unwrap(),
        OnionKeySource::Migrated
    );
    assert!(!keystore.exists(), "the plain keystore is deleted");
    let ServiceKey::InMemory(key) = opts.service_key.clone() else {
        panic!("in memory");
    };
    assert_eq!(key.onion_address(), old_address, "same address");
    // Later starts read it from the store.
    let mut again = options(net, &dir);
    assert_eq!(
        use_stored_onion_key(&store, &mut again).unwrap(),
        OnionKeySource::Stored
    );

    let addr = rt.block_on(async {
        let alice = ArtiTransport::bootstrap(opts)
            .await
            .expect("bootstrap alice");
        round_trip(&alice, &bob).await
    });
    assert_eq!(addr, old_address, "reachable at the old address");
    drop(bob);
    rt.shutdown_timeout(Duration::from_secs(10));
    store.close().unwrap();
    assert!(!keystore.exists());
    let leaks = scan(&dir, &key_needles(&key));
    assert!(
        leaks.is_empty(),
        "key or address readable at rest: {leaks:#?}"
    );
}
