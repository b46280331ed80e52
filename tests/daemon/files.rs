//! File transfer end to end through the real `umbra` daemons and CLI (#7):
//!
//! * over onion services of the local Tor network: a 16 MiB file arrives
//!   hash-identical after the receiver is killed with SIGKILL mid-transfer, and a
//!   second one after the *sender* is killed; each time the chunks sent again after
//!   the restart are bounded by the window (asserted), never the file again;
//! * over direct TCP: a 256 MiB file completes while both daemons' peak RSS stays
//!   under a fixed bound (flat memory whatever the file size).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use crate::support;

use std::io::{Read, Write};
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::{Net, User, connected_pair, direct_pair, onion_setup, peak_rss_kib, rt, wait_event};
use umbra::control::proto::Event;

const CHUNK: u64 = 65_536;

/// Writes `len` pseudo-random bytes to `path` (streamed); returns the SHA-256 hex.
fn make_file(path: &Path, len: u64, seed: u64) -> String {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut h = Sha256::new();
    let mut x = seed | 1;
    let mut buf = vec![0u8; 1 << 16];
    let mut left = len;
    while left > 0 {
        for b in buf.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = (x >> 24) as u8;
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n]).unwrap();
        h.update(&buf[..n]);
        left -= n as u64;
    }
    f.flush().unwrap();
    hex::encode(h.finalize())
}

fn sha256_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

fn transfer(u: &User, id: &str) -> Value {
    let list = u.json(&["files"]);
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("{} has no transfer {id}", u.name))
}

/// Offers `path` from `from` to `to` and has `to` accept it; returns the id.
fn offer_and_accept(from: &User, to: &User, path: &Path, rt: &tokio::runtime::Runtime) -> String {
    let mut to_events = rt.block_on(to.events());
    let t = from.json(&[
        "send-file",
        &to.name,
        path.to_str().unwrap(),
        "--as",
        "video",
        "--detach",
    ]);
    let id = t["id"].as_str().unwrap().to_owned();
    let want = id.clone();
    rt.block_on(wait_event(
        &mut to_events,
        "the offer",
        move |e| matches!(e, Event::FileOffered(t) if t.id == want),
    ));
    // A unique prefix is enough.
    let accepted = to.json(&["accept-file", &id[..8], "--detach"]);
    assert_eq!(accepted["state"], "active");
    id
}

/// Waits until `u` reports at least a quarter of transfer `id` stored.
fn quarter(u: &User, id: &str, rt: &tokio::runtime::Runtime) {
    let mut ev = rt.block_on(u.events());
    let want = id.to_owned();
    rt.block_on(wait_event(&mut ev, "a quarter of the file", move |e| {
        matches!(e, Event::FileProgress { id, done, size, .. } if *id == want && *done * 4 >= *size)
    }));
}

fn wait_completed(u: &User, id: &str, rt: &tokio::runtime::Runtime) {
    let mut ev = rt.block_on(u.events());
    if transfer(u, id)["state"] == "completed" {
        return;
    }
    let want = id.to_owned();
    rt.block_on(wait_event(
        &mut ev,
        "the completed transfer",
        move |e| matches!(e, Event::FileCompleted(t) if t.id == want),
    ));
}

/// Chunks the sender wrote beyond one per chunk, and the chunk count.
fn resent(sender: &User, id: &str, size: u64) -> (u64, u64) {
    let n = size.div_ceil(CHUNK);
    let sent = transfer(sender, id)["chunks_sent"].as_u64().unwrap();
    assert!(sent >= n, "sent {sent} < {n} chunks");
    (sent - n, n)
}

#[test]
fn files_over_onion_services_resume_after_the_receiver_or_the_sender_is_killed() {
    const SIZE: u64 = 16 << 20;
    let (root, cfg, hs) = onion_setup();
    let rt = rt();
    let (mut alice, mut bob) = connected_pair(root.path(), &Net::Local(cfg), &hs.address, &rt);
    let src = root.path().join("movie.mp4");
    let sha = make_file(&src, SIZE, 11);

    // 1. The receiver is killed with SIGKILL mid-transfer.
    let started = std::time::Instant::now();
    let id = offer_and_accept(&alice, &bob, &src, &rt);
    quarter(&bob, &id, &rt);
    bob.kill();
    bob.up();
    wait_completed(&alice, &id, &rt);
    let (again, n) = resent(&alice, &id, SIZE);
    eprintln!(
        "receiver killed: {again} of {n} chunks sent twice; 16 MiB in {:.1} s incl. restart",
        started.elapsed().as_secs_f64()
    );
    // Bounded by what was in flight (the adaptive window, 32 chunks on this
    // network unless the path carries more, and one queued group of 4 on each
    // side of the writer); a restart from zero would re-send the quarter
    // already stored and more.
    assert!(again < n / 4, "{again} chunks re-sent");
    let out = root.path().join("saved");
    std::fs::create_dir(&out).unwrap();
    let saved = bob.json(&["save-file", &id, out.to_str().unwrap()]);
    assert_eq!(saved["path"], out.join("movie.mp4").to_str().unwrap());
    assert_eq!(sha256_file(&out.join("movie.mp4")), sha);
    assert_eq!(saved["sha256"], sha);

    // 2. The sender is killed with SIGKILL mid-transfer.
    let src2 = root.path().join("second.bin");
    let sha2 = make_file(&src2, SIZE, 12);
    let started = std::time::Instant::now();
    let id2 = offer_and_accept(&alice, &bob, &src2, &rt);
    quarter(&bob, &id2, &rt);
    alice.kill();
    alice.up();
    wait_completed(&bob, &id2, &rt);
    wait_completed(&alice, &id2, &rt);
    let (again, n) = resent(&alice, &id2, SIZE);
    eprintln!(
        "sender killed: {again} of {n} chunks sent twice; 16 MiB in {:.1} s incl. restart",
        started.elapsed().as_secs_f64()
    );
    assert!(again < n / 4, "{again} chunks re-sent");
    let dest = root.path().join("second-copy.bin");
    bob.json(&["save-file", &id2, dest.to_str().unwrap()]);
    assert_eq!(sha256_file(&dest), sha2);
    // The file never appears in clear in bob's data dir.
    let mut needle = vec![0u8; 48];
    std::fs::File::open(&src2)
        .unwrap()
        .read_exact(&mut needle)
        .unwrap();
    for f in support::files(&bob.dir) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
            "{} holds file content in clear",
            f.display()
        );
    }
}

#[test]
fn large_file_over_direct_tcp_keeps_memory_flat() {
    const SMALL: u64 = 16 << 20;
    const SIZE: u64 = 256 << 20;
    /// Peak RSS bound for each daemon, whatever the file size.
    const BOUND_KIB: u64 = 128 * 1024;
    /// Most the peak may grow from a 16 MiB to a 256 MiB transfer.
    const GROWTH_KIB: u64 = 16 * 1024;
    let (keep, rt, alice, bob) = direct_pair();

    // Warm-up: a 16 MiB transfer sets each daemon's high-water mark.
    let small = keep.root.path().join("small.bin");
    make_file(&small, SMALL, 4);
    let id = offer_and_accept(&alice, &bob, &small, &rt);
    wait_completed(&alice, &id, &rt);
    bob.json(&[
        "save-file",
        &id,
        keep.root.path().join("small-copy").to_str().unwrap(),
    ]);
    let (a0, b0) = (peak_rss_kib(alice.pid()), peak_rss_kib(bob.pid()));

    let src = keep.root.path().join("big.bin");
    let sha = make_file(&src, SIZE, 5);
    let started = std::time::Instant::now();
    let id = offer_and_accept(&alice, &bob, &src, &rt);
    wait_completed(&alice, &id, &rt);
    let secs = started.elapsed().as_secs_f64();
    let dest = keep.root.path().join("copy.bin");
    bob.json(&["save-file", &id, dest.to_str().unwrap()]);
    let (a_rss, b_rss) = (peak_rss_kib(alice.pid()), peak_rss_kib(bob.pid()));
    eprintln!(
        "256 MiB over direct TCP in {secs:.1} s ({:.1} MiB/s); peak RSS sender {} -> {} MiB, \
         receiver {} -> {} MiB (after 16 MiB -> after 256 MiB + save)",
        256.0 / secs,
        a0 / 1024,
        a_rss / 1024,
        b0 / 1024,
        b_rss / 1024
    );
    assert_eq!(sha256_file(&dest), sha);
    assert!(a_rss < BOUND_KIB, "sender peak RSS {a_rss} KiB");
    assert!(b_rss < BOUND_KIB, "receiver peak RSS {b_rss} KiB");
    assert!(a_rss - a0 < GROWTH_KIB, "sender grew {a0} -> {a_rss} KiB");
    assert!(b_rss - b0 < GROWTH_KIB, "receiver grew {b0} -> {b_rss} KiB");
    let (again, _) = resent(&alice, &id, SIZE);
    assert_eq!(again, 0, "no chunk sent twice without interruptions");
}
