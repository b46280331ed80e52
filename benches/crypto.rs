//! Crypto benchmark: envelope seal+open for a 1 KiB request, and AES-256-GCM
//! session-frame sealing of 64 KiB chunks next to `openssl speed -evp
//! aes-256-gcm` measured in the same run (ratio printed).
//!
//! Run: `cargo bench --bench crypto` (release) or
//! `cargo bench --profile dev --bench crypto` (dev profile with the crypto
//! crates optimized, as the tests use it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::process::Command;
use std::time::{Duration, Instant};

use umbra::envelope::{self, Freshness};
use umbra::identity::{Identity, Username};
use umbra::session::{Binding, KeyShare, PeerShare, Role, Session};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn openssl_gcm_64k() -> Option<f64> {
    let out = Command::new("openssl")
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
    // Last line: "AES-256-GCM   1234567.89k"
    let line = text
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with("aes-256-gcm"))?;
    let field = line.split_whitespace().last()?;
    let kb: f64 = field.trim_end_matches('k').parse().ok()?;
    Some(kb * 1000.0)
}

fn main() {
    let profile = if cfg!(debug_assertions) {
        "dev (crypto crates optimized)"
    } else {
        "release"
    };
    println!("umbra crypto benchmark — profile: {profile}");

    // --- Envelope seal + open of a 1 KiB request payload ---
    let a = Identity::generate(&Username::parse("alice").unwrap()).unwrap();
    let b = Identity::generate(&Username::parse("bob").unwrap()).unwrap();
    let (pa, pb) = (a.public_cert().unwrap(), b.public_cert().unwrap());
    let payload = vec![0x5a; 1024];
    let (mut seal_t, mut open_t) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        let t = Instant::now();
        let sealed = envelope::seal(&payload, &a, &pb).unwrap();
        seal_t.push(t.elapsed());
        let t = Instant::now();
        let opened = envelope::open(sealed.as_bytes(), &b, &pa, Freshness::default()).unwrap();
        open_t.push(t.elapsed());
        assert_eq!(opened.payload.len(), 1024);
    }
    let (s, o) = (median(seal_t), median(open_t));
    println!(
        "envelope 1 KiB: seal {:.2} ms, open {:.2} ms, seal+open {:.2} ms (median of 200)",
        s.as_secs_f64() * 1e3,
        o.as_secs_f64() * 1e3,
        (s + o).as_secs_f64() * 1e3
    );

    // --- AES-256-GCM frames of 64 KiB through the session ratchet ---
    let binding = Binding {
        request_id: [1; 16],
        requester: a.fingerprint(),
        acceptor: b.fingerprint(),
    };
    let pair = || {
        let (x, y) = (KeyShare::generate(), KeyShare::generate());
        let py = PeerShare {
            half: y.half(),
            ephemeral_public: y.ephemeral_public(),
        };
        let px = PeerShare {
            half: x.half(),
            ephemeral_public: x.ephemeral_public(),
        };
        (
            Session::derive(Role::Requester, x, &py, &binding).unwrap(),
            Session::derive(Role::Acceptor, y, &px, &binding).unwrap(),
        )
    };
    let (mut sender, _) = pair();
    let (mut sender2, mut receiver) = pair();
    let chunk = vec![0xa5; 64 * 1024];
    let n = 2000; // 125 MiB
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(sender.seal(&chunk).unwrap());
    }
    let seal_rate = (n * chunk.len()) as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..n {
        let f = sender2.seal(&chunk).unwrap();
        receiver.open(&f).unwrap();
    }
    let roundtrip_rate = (n * chunk.len()) as f64 / t.elapsed().as_secs_f64();
    println!(
        "session frames 64 KiB: seal {:.0} MB/s, seal+open {:.0} MB/s",
        seal_rate / 1e6,
        roundtrip_rate / 1e6
    );
    match openssl_gcm_64k() {
        Some(ossl) => println!(
            "openssl speed -evp aes-256-gcm (64 KiB): {:.0} MB/s; umbra seal / openssl = {:.2}",
            ossl / 1e6,
            seal_rate / ossl
        ),
        None => println!("openssl speed: not available (install openssl) — no ratio"),
    }
}
