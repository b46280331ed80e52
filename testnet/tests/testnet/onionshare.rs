//! OnionShare on the local Tor network: one C tor client hosts an
//! OnionShare share, another downloads it with curl, byte for byte.
//!
//! Needs Debian's `tor`, `onionshare-cli` and `curl`
//! (`scripts/install-deps.sh`).
//!
//! `onionshare_50mib_throughput` is ignored by default (it moves 50 MiB
//! through ~7 tor processes); it prints the setup times and the throughput:
//! `cargo test -p umbra-testnet --test onionshare -- --ignored --nocapture`.

use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use umbra_testnet::{CTorClient, OnionShare, TestNet, TestNetOptions};

/// Is `pid` a live (not zombie) process?
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .and_then(|(_, r)| r.trim_start().chars().next()),
            Some('Z') | Some('X') | None
        ),
        Err(_) => false,
    }
}

/// Write `len` random bytes into `path`; return their SHA-256.
fn random_file(path: &Path, len: u64) -> [u8; 32] {
    let mut rng = std::fs::File::open("/dev/urandom")
        .expect("open /dev/urandom")
        .take(len);
    let mut out = std::fs::File::create(path).expect("create file to share");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = rng.read(&mut buf).expect("read /dev/urandom");
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).expect("write file to share");
    }
    hasher.finalize().into()
}

fn sha256_of(path: &Path) -> [u8; 32] {
    let mut f = std::fs::File::open(path).expect("open downloaded file");
    let mut hasher = Sha256::new();
    std::io::copy(&mut f, &mut hasher).expect("hash downloaded file");
    hasher.finalize().into()
}

struct Setup {
    net: TestNet,
    host: CTorClient,
    fetcher: CTorClient,
    times: Vec<(&'static str, Duration)>,
}

fn setup() -> Setup {
    let t = Instant::now();
    let net = TestNet::start(TestNetOptions::default()).expect("start network");
    let mut times = vec![("network start", t.elapsed())];
    let t = Instant::now();
    // Clients bootstrap independently: start both at once.
    let (host, fetcher) = std::thread::scope(|s| {
        let host = s.spawn(|| net.c_client("host"));
        let fetcher = s.spawn(|| net.c_client("fetcher"));
        (
            host.join().expect("thread").expect("start host client"),
            fetcher
                .join()
                .expect("thread")
                .expect("start fetching client"),
        )
    });
    times.push(("two C clients bootstrapped (in parallel)", t.elapsed()));
    Setup {
        net,
        host,
        fetcher,
        times,
    }
}

#[test]
fn onionshare_download_matches() {
    let _one = crate::one_network_at_a_time();
    let Setup {
        net,
        host,
        fetcher,
        times: _,
    } = setup();
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("payload.bin");
    let len = 5 * 1024 * 1024;
    let want = random_file(&file, len);

    let share =
        OnionShare::start(&host, &file, &work.path().join("onionshare")).expect("start OnionShare");
    assert!(share.url().ends_with(".onion"), "{}", share.url());
    assert_eq!(share.download_url(), format!("{}/download", share.url()));

    let out = work.path().join("downloaded.bin");
    let fetch = fetcher
        .fetch(&share.download_url(), &out, "onionshare-test")
        .unwrap_or_else(|e| {
            panic!(
                "fetch failed: {e}\nOnionShare:\n{}\nhost:\n{}\nfetcher:\n{}",
                share.output_tail(20),
                host.log_tail(20),
                fetcher.log_tail(20)
            )
        });
    assert_eq!(fetch.bytes, len);
    assert_eq!(std::fs::metadata(&out).expect("downloaded").len(), len);
    assert_eq!(sha256_of(&out), want, "downloaded bytes differ");
    assert!(fetch.attempts >= 1 && fetch.first_byte <= fetch.elapsed);

    // Nothing outlives its handle.
    let share_pid = share.pid();
    let client_pids = [host.pid(), fetcher.pid()];
    drop(share);
    assert!(!alive(share_pid), "onionshare-cli must be gone after drop");
    drop(host);
    drop(fetcher);
    for pid in client_pids.into_iter().flatten() {
        assert!(!alive(pid), "tor client must be gone after drop");
    }
    drop(net);
}

#[test]
fn bad_client_names_are_refused() {
    let _one = crate::one_network_at_a_time();
    let mut o = TestNetOptions::default();
    o.authorities = 1;
    o.exits = 0;
    o.middles = 0;
    o.wait_ready = false;
    let net = TestNet::start(o).expect("start network");
    for name in ["", "../x", "a b"] {
        let err = net.c_client(name).expect_err("bad name");
        assert_eq!(err.kind(), umbra_testnet::ErrorKind::BadOptions, "{err}");
    }
}

/// The measurement of ONIONSHARE.md: 50 MiB from OnionShare to a C tor
/// client on a fresh circuit, with the setup times.
#[test]
#[ignore = "moves 50 MiB; run with --ignored --nocapture"]
fn onionshare_50mib_throughput() {
    let _one = crate::one_network_at_a_time();
    let Setup {
        net,
        host,
        fetcher,
        mut times,
    } = setup();
    let work = tempfile::tempdir().expect("tempdir");
    let file = work.path().join("payload.bin");
    let len = 50 * 1024 * 1024;
    let want = random_file(&file, len);

    let t = Instant::now();
    let share =
        OnionShare::start(&host, &file, &work.path().join("onionshare")).expect("start OnionShare");
    times.push(("onionshare start -> URL printed", t.elapsed()));
    // First successful fetch: a small GET of the share page, on its own
    // circuit, so that the bulk transfer below runs on a fresh one.
    let page = work.path().join("page.html");
    let first = fetcher
        .fetch(share.url(), &page, "warmup")
        .expect("fetch the share page");
    times.push(("onionshare start -> first successful fetch", t.elapsed()));

    let out = work.path().join("downloaded.bin");
    let fetch = fetcher
        .fetch(&share.download_url(), &out, "bulk-fresh-circuit")
        .expect("fetch 50 MiB");
    assert_eq!(fetch.bytes, len);
    assert_eq!(sha256_of(&out), want, "downloaded bytes differ");

    for (what, d) in &times {
        eprintln!("{what:<45} {:>7.2} s", d.as_secs_f64());
    }
    eprintln!(
        "first fetch (share page, {} B): {} attempt(s), {:.3} s",
        first.bytes,
        first.attempts,
        first.elapsed.as_secs_f64()
    );
    eprintln!(
        "50 MiB /download on a fresh circuit: {:.2} s total ({:.2} MiB/s), first byte after \
         {:.3} s, body {:.2} MiB/s, {} attempt(s)",
        fetch.elapsed.as_secs_f64(),
        fetch.mib_per_s(),
        fetch.first_byte.as_secs_f64(),
        fetch.body_mib_per_s(),
        fetch.attempts
    );
    drop(share);
    drop(host);
    drop(fetcher);
    drop(net);
}
