//! File transfer between two nodes over the in-memory transport (PROTOCOL.md §14):
//! a transfer arrives hash-identical and stays encrypted at rest until saved; an
//! offer made while the receiver is offline waits; a receiver crash mid-transfer
//! resumes without starting over; two files cross in both directions at once.
//! The same flows run over real onion services in tests/daemon/files.rs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::path::Path;

use sha2::{Digest, Sha256};
use support::{fast_config, memory_pair, memory_pair_with, wait_event};
use umbra::files::CHUNK_SIZE;
use umbra::node::{Event, NodeConfig};
use umbra::store::{FileKind, TransferState};
use umbra::transport::memory::MemoryTransport;

/// Deterministic pseudo-random bytes (not compressible, not repetitive).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Every file under `dir`, and whether any holds `needle`.
fn holds(dir: &Path, needle: &[u8]) -> bool {
    walk(dir).iter().any(|p| {
        std::fs::read(p)
            .map(|b| b.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Waits for the offer of transfer `id`.
async fn offered(ev: &mut tokio::sync::broadcast::Receiver<Event>, id: [u8; 16]) {
    wait_event(
        ev,
        |e| matches!(e, Event::FileOffered { transfer, .. } if *transfer == id),
    )
    .await;
}

/// Waits for transfer `id` to complete; returns the event.
async fn completed(ev: &mut tokio::sync::broadcast::Receiver<Event>, id: [u8; 16]) -> Event {
    wait_event(
        ev,
        |e| matches!(e, Event::FileCompleted { transfer, .. } if *transfer == id),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_arrives_verified_and_encrypted_at_rest_then_saved() {
    let p = memory_pair(fast_config()).await;
    let (a, b, ab, bob) = (p.a.clone(), p.b.clone(), p.ab, &p.bob);
    let mut a_ev = a.events();
    let mut b_ev = b.events();

    let src = tempfile::tempdir().unwrap();
    let data = pattern(3 * CHUNK_SIZE as usize + 12_345, 7);
    let path = write(src.path(), "../../etc/passwd", &data);
    let t = a.send_file(ab, &path, FileKind::Image).await.unwrap();
    assert_eq!(t.name, "passwd");
    assert_eq!(t.sha256, <[u8; 32]>::from(Sha256::digest(&data)));

    // Not verified: bob is asked.
    let Event::FileOffered {
        transfer,
        auto_accepted,
        ..
    } = wait_event(&mut b_ev, |e| matches!(e, Event::FileOffered { .. })).await
    else {
        unreachable!()
    };
    assert!(!auto_accepted);
    assert_eq!(transfer, t.transfer_id);
    let offered = b.transfers().await.unwrap();
    assert_eq!(offered[0].state, TransferState::Offered);
    assert_eq!(offered[0].media, FileKind::Image);
    b.accept_file(transfer).await.unwrap();

    wait_event(&mut b_ev, |e| matches!(e, Event::FileCompleted { .. })).await;
    completed(&mut a_ev, transfer).await;
    let sent = a.transfers().await.unwrap();
    assert_eq!(sent[0].state, TransferState::Completed);
    assert_eq!(sent[0].chunks_sent, 4, "each chunk once");

    // Encrypted at rest: no 64-byte run of the file anywhere in bob's data dir.
    assert!(!holds(&bob.path(), &data[70_000..70_064]));

    // Saving: into a directory under the sanitised name; never overwrites.
    let out = tempfile::tempdir().unwrap();
    let saved = b.save_file(transfer, out.path()).await.unwrap();
    assert_eq!(saved, out.path().join("passwd"));
    assert_eq!(std::fs::read(&saved).unwrap(), data);
    // The encrypted copy is gone after saving; saving again is refused.
    assert!(b.save_file(transfer, out.path()).await.is_err());
    let got = b.transfers().await.unwrap();
    assert_eq!(got[0].part_file, None);
    assert_eq!(
        got[0].local_path.as_deref(),
        Some(&*saved.to_string_lossy())
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_waits_for_an_offline_receiver_and_crossing_transfers_complete() {
    let p = memory_pair(fast_config()).await;
    let (a, b, ab, ba) = (p.a.clone(), p.b.clone(), p.ab, p.ba);
    let (net, mailbox, bob) = (&p.net, &p.mailbox, &p.bob);
    // Bob verified alice: her files up to the auto-accept size need no click.
    b.store()
        .run(move |s| s.set_contact_verified(ba, true))
        .await
        .unwrap()
        .unwrap();
    b.shutdown().await;

    let src = tempfile::tempdir().unwrap();
    let to_bob = pattern(2 * CHUNK_SIZE as usize + 1, 1);
    let to_alice = pattern(5 * CHUNK_SIZE as usize, 2);
    let p1 = write(src.path(), "for-bob.bin", &to_bob);
    let p2 = write(src.path(), "for-alice.bin", &to_alice);
    let t1 = a.send_file(ab, &p1, FileKind::File).await.unwrap();

    // Bob comes back: the offer is made on connect and auto-accepted.
    let b = bob
        .start(MemoryTransport::new(net, "bob-hs"), mailbox)
        .await;
    let mut b_ev = b.events();
    let mut a_ev = a.events();
    // And bob sends one to alice at the same time (alice must accept).
    let t2 = b.send_file(ba, &p2, FileKind::Video).await.unwrap();
    let Event::FileOffered { transfer, .. } = wait_event(
        &mut a_ev,
        |e| matches!(e, Event::FileOffered { transfer, .. } if *transfer == t2.transfer_id),
    )
    .await
    else {
        unreachable!()
    };
    a.accept_file(transfer).await.unwrap();
    completed(&mut b_ev, t1.transfer_id).await;
    completed(&mut a_ev, t2.transfer_id).await;
    let out = tempfile::tempdir().unwrap();
    let f1 = b
        .save_file(t1.transfer_id, &out.path().join("1"))
        .await
        .unwrap();
    let f2 = a
        .save_file(t2.transfer_id, &out.path().join("2"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(f1).unwrap(), to_bob);
    assert_eq!(std::fs::read(f2).unwrap(), to_alice);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_crash_mid_transfer_resumes_without_starting_over() {
    let p = memory_pair(fast_config()).await;
    let (a, b, ab) = (p.a.clone(), p.b.clone(), p.ab);
    let (net, mailbox, bob) = (&p.net, &p.mailbox, &p.bob);
    let mut b_ev = b.events();

    let chunks = 400u64; // 25 MiB
    let src = tempfile::tempdir().unwrap();
    let data = pattern((chunks * u64::from(CHUNK_SIZE)) as usize - 3, 9);
    let path = write(src.path(), "big.bin", &data);
    let t = a.send_file(ab, &path, FileKind::File).await.unwrap();
    let Event::FileOffered { transfer, .. } =
        wait_event(&mut b_ev, |e| matches!(e, Event::FileOffered { .. })).await
    else {
        unreachable!()
    };
    b.accept_file(transfer).await.unwrap();
    // Crash bob once a quarter is stored.
    wait_event(
        &mut b_ev,
        |e| matches!(e, Event::FileProgress { done, size, .. } if *done * 4 >= *size),
    )
    .await;
    b.abort().await;
    let held = bob.open().transfer(&transfer).unwrap().unwrap().have_count;
    assert!(held > 0 && held < chunks, "held {held} of {chunks}");

    let b = bob
        .start(MemoryTransport::new(net, "bob-hs"), mailbox)
        .await;
    let mut a_ev = a.events();
    completed(&mut a_ev, t.transfer_id).await;
    let sent = a.transfers().await.unwrap()[0].chunks_sent;
    let resent = sent - chunks;
    // Only what was in flight when bob crashed is sent twice: at most the
    // window (32) plus one read-ahead group, never the file again.
    assert!(resent <= 40, "re-sent {resent} chunks of {chunks}");
    let out = tempfile::tempdir().unwrap().keep();
    let f = b.save_file(transfer, &out.join("big")).await.unwrap();
    assert_eq!(
        <[u8; 32]>::from(Sha256::digest(std::fs::read(&f).unwrap())),
        t.sha256
    );
    std::fs::remove_dir_all(out).unwrap();
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_policy_refuses_large_offers_and_cancel_reaches_the_sender() {
    let small = NodeConfig {
        files: umbra::files::FilePolicy {
            max_size: 100_000,
            ..Default::default()
        },
        ..fast_config()
    };
    let p = memory_pair(small).await;
    let (a, b, ab) = (p.a.clone(), p.b.clone(), p.ab);
    let mut a_ev = a.events();
    let mut b_ev = b.events();
    let src = tempfile::tempdir().unwrap();
    let big = write(src.path(), "big", &pattern(200_000, 3));
    let t = a.send_file(ab, &big, FileKind::File).await.unwrap();
    let Event::FileCancelled {
        reason, by_peer, ..
    } = wait_event(&mut a_ev, |e| matches!(e, Event::FileCancelled { .. })).await
    else {
        unreachable!()
    };
    assert_eq!((reason, by_peer), (umbra::files::reason::TOO_LARGE, true));
    assert_eq!(
        a.transfers().await.unwrap()[0].state,
        TransferState::Cancelled
    );
    assert_eq!(
        a.transfers().await.unwrap()[0].chunks_sent,
        0,
        "refused before any byte"
    );
    // Declining an offer reaches the sender too.
    let ok = write(src.path(), "ok", &pattern(50_000, 4));
    let t2 = a.send_file(ab, &ok, FileKind::File).await.unwrap();
    offered(&mut b_ev, t2.transfer_id).await;
    b.cancel_file(t2.transfer_id).await.unwrap();
    let Event::FileCancelled { reason, .. } = wait_event(
        &mut a_ev,
        |e| matches!(e, Event::FileCancelled { transfer, .. } if *transfer == t2.transfer_id),
    )
    .await
    else {
        unreachable!()
    };
    assert_eq!(reason, umbra::files::reason::DECLINED);
    assert_ne!(t.transfer_id, t2.transfer_id);
    a.shutdown().await;
    b.shutdown().await;
}

/// alice sends over 3 lane streams (PROTOCOL.md §14.3).
fn lanes(n: usize) -> NodeConfig {
    NodeConfig {
        files: umbra::files::FilePolicy {
            streams: n,
            lanes_from: 0,
            ..Default::default()
        },
        ..fast_config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_carry_a_file_and_resume_after_a_receiver_crash() {
    let p = memory_pair_with(lanes(3), fast_config()).await;
    let (a, b, ab) = (p.a.clone(), p.b.clone(), p.ab);
    let (net, mailbox, bob) = (&p.net, &p.mailbox, &p.bob);
    let mut a_ev = a.events();
    let mut b_ev = b.events();
    let src = tempfile::tempdir().unwrap();

    // A whole file over lanes: each chunk sent once.
    let data = pattern(40 * CHUNK_SIZE as usize + 99, 21);
    let path = write(src.path(), "lanes.bin", &data);
    let t = a.send_file(ab, &path, FileKind::File).await.unwrap();
    let Event::FileOffered { transfer, .. } =
        wait_event(&mut b_ev, |e| matches!(e, Event::FileOffered { .. })).await
    else {
        unreachable!()
    };
    b.accept_file(transfer).await.unwrap();
    completed(&mut a_ev, t.transfer_id).await;
    assert_eq!(a.transfers().await.unwrap()[0].chunks_sent, 41);
    let out = tempfile::tempdir().unwrap();
    let f = b.save_file(transfer, out.path()).await.unwrap();
    assert_eq!(std::fs::read(f).unwrap(), data);

    // Lanes and a receiver crash: it resumes and completes.
    let chunks = 300u64;
    let data = pattern((chunks * u64::from(CHUNK_SIZE)) as usize, 22);
    let path = write(src.path(), "lanes2.bin", &data);
    let t = a.send_file(ab, &path, FileKind::File).await.unwrap();
    let Event::FileOffered { transfer, .. } = wait_event(
        &mut b_ev,
        |e| matches!(e, Event::FileOffered { transfer, .. } if *transfer == t.transfer_id),
    )
    .await
    else {
        unreachable!()
    };
    b.accept_file(transfer).await.unwrap();
    wait_event(
        &mut b_ev,
        |e| matches!(e, Event::FileProgress { done, size, .. } if *done * 4 >= *size),
    )
    .await;
    b.abort().await;
    let b = bob
        .start(MemoryTransport::new(net, "bob-hs"), mailbox)
        .await;
    completed(&mut a_ev, t.transfer_id).await;
    let sent = a
        .transfers()
        .await
        .unwrap()
        .into_iter()
        .find(|x| x.transfer_id == t.transfer_id)
        .unwrap()
        .chunks_sent;
    // In flight at the crash: at most a window per lane.
    assert!(sent - chunks <= 3 * 32 + 8, "re-sent {}", sent - chunks);
    let f = b.save_file(transfer, &out.path().join("2")).await.unwrap();
    assert_eq!(std::fs::read(f).unwrap(), data);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_transfer_from_either_side_drops_partial_data() {
    let p = memory_pair(fast_config()).await;
    let (a, b, ab) = (p.a.clone(), p.b.clone(), p.ab);
    let mut a_ev = a.events();
    let mut b_ev = b.events();
    let src = tempfile::tempdir().unwrap();
    let files_dir = p.bob.path().join("files");
    for (n, receiver_cancels) in [(1u64, true), (2, false)] {
        let data = pattern(200 * CHUNK_SIZE as usize, 30 + n);
        let path = write(src.path(), &format!("c{n}.bin"), &data);
        let t = a.send_file(ab, &path, FileKind::File).await.unwrap();
        let id = t.transfer_id;
        offered(&mut b_ev, id).await;
        b.accept_file(id).await.unwrap();
        wait_event(&mut b_ev, |e| {
            matches!(e, Event::FileProgress { transfer, done, .. } if *transfer == id && *done > 0)
        })
        .await;
        let (canceller, other_ev) = if receiver_cancels {
            (&b, &mut a_ev)
        } else {
            (&a, &mut b_ev)
        };
        canceller.cancel_file(id).await.unwrap();
        let Event::FileCancelled { by_peer, .. } = wait_event(
            other_ev,
            |e| matches!(e, Event::FileCancelled { transfer, .. } if *transfer == id),
        )
        .await
        else {
            unreachable!()
        };
        assert!(by_peer);
        for node in [&a, &b] {
            let t = node
                .transfers()
                .await
                .unwrap()
                .into_iter()
                .find(|x| x.transfer_id == id)
                .unwrap();
            assert_eq!(t.state, TransferState::Cancelled);
            assert_eq!(t.part_file, None);
        }
        let left = std::fs::read_dir(&files_dir)
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(left, 0, "partial data left after cancel {n}");
        // Cancelling twice is refused, and nothing can be saved.
        assert!(canceller.cancel_file(id).await.is_err());
        assert!(b.save_file(id, src.path()).await.is_err());
    }
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downloads_folder_receives_completed_files() {
    let downloads = tempfile::tempdir().unwrap();
    let cfg = NodeConfig {
        files: umbra::files::FilePolicy {
            downloads_dir: Some(downloads.path().to_path_buf()),
            ..Default::default()
        },
        ..fast_config()
    };
    let p = memory_pair(cfg).await;
    let (a, b, ab) = (p.a.clone(), p.b.clone(), p.ab);
    let mut b_ev = b.events();
    let src = tempfile::tempdir().unwrap();
    // Same name twice: the second is saved as "note (1).txt".
    for i in 0..2u64 {
        let data = pattern(70_000, 40 + i);
        let path = write(src.path(), "note.txt", &data);
        let t = a.send_file(ab, &path, FileKind::File).await.unwrap();
        offered(&mut b_ev, t.transfer_id).await;
        b.accept_file(t.transfer_id).await.unwrap();
        let Event::FileCompleted { saved, .. } = completed(&mut b_ev, t.transfer_id).await else {
            unreachable!()
        };
        let want = if i == 0 { "note.txt" } else { "note (1).txt" };
        assert_eq!(saved.as_deref(), Some(&*downloads.path().join(want)));
        assert_eq!(std::fs::read(downloads.path().join(want)).unwrap(), data);
    }
    let left = std::fs::read_dir(p.bob.path().join("files"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "no encrypted copy kept once saved");
    a.shutdown().await;
    b.shutdown().await;
}
