//! A hostile peer in a file transfer (PROTOCOL.md §14): the peer holds a real session
//! (alice's keys, driven by hand) and sends a traversal name, a chunk out of range, a
//! chunk longer than offered, a chunk for an unknown transfer, content that does not
//! match the offered SHA-256, and a chunk frame with a bad tag. Each is refused with
//! the right FileCancel (or the connection is closed), nothing claims to be complete,
//! and no partial data is left behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use support::{Raw, User, wait_event};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use umbra::files::reason;
use umbra::node::{Event, MemoryMailbox, NodeHandle};
use umbra::store::{ContactId, TransferState};
use umbra::transport::memory::{MemoryNetwork, MemoryTransport};
use umbra::transport::{BoxedStream, PeerAddress, Transport};
use umbra::wire::{FileChunk, FileOffer, Media, PeerMessage};

/// The protocol's one chunk size (PROTOCOL.md §14.1).
const CH: usize = umbra::files::CHUNK_SIZE as usize;

fn offer(id: u8, name: &str, data: &[u8]) -> PeerMessage {
    PeerMessage::FileOffer(FileOffer {
        transfer_id: [id; 16],
        name: name.into(),
        size: data.len() as u64,
        media: Media::File,
        sha256: Sha256::digest(data).into(),
        chunk_size: CH as u32,
    })
}

fn chunk(id: u8, index: u64, data: &[u8]) -> PeerMessage {
    PeerMessage::FileChunk(FileChunk {
        transfer_id: [id; 16],
        index,
        data: data.to_vec(),
    })
}

async fn state(b: &NodeHandle, id: u8) -> (TransferState, Option<u8>, Option<String>) {
    let t = b
        .store()
        .run(move |s| s.transfer(&[id; 16]).unwrap().unwrap())
        .await
        .unwrap();
    (t.state, t.reason, t.part_file)
}

/// Offers `data` as transfer `id`, has bob accept it, and expects the FileAccept.
async fn offered_and_accepted(raw: &mut Raw, b: &NodeHandle, id: u8, name: &str, data: &[u8]) {
    let mut ev = b.events();
    raw.send(&offer(id, name, data)).await;
    wait_event(
        &mut ev,
        |e| matches!(e, Event::FileOffered { transfer, .. } if *transfer == [id; 16]),
    )
    .await;
    b.accept_file([id; 16]).await.unwrap();
    match raw.answer().await {
        Some(PeerMessage::FileAccept(a)) => {
            assert_eq!(a.transfer_id, [id; 16]);
            assert!(a.have.is_empty());
        }
        other => panic!("expected FileAccept, got {other:?}"),
    }
}

async fn cancelled_with(raw: &mut Raw, id: u8, want: u8) {
    match raw.answer().await {
        Some(PeerMessage::FileCancel {
            transfer_id,
            reason,
        }) => assert_eq!((transfer_id, reason), ([id; 16], want)),
        other => panic!("expected FileCancel({want}), got {other:?}"),
    }
}

/// Whether the node closed the stream without sending anything.
async fn closed(s: &mut Framed<BoxedStream, LengthDelimitedCodec>) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(20), s.next()).await,
        Ok(None | Some(Err(_)))
    )
}

fn part_files(user: &User) -> usize {
    std::fs::read_dir(user.path().join("files"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_file_peer_is_refused_and_nothing_claims_completion() {
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let support::AliceLeft { b, a_store, ab, .. } =
        support::pair_then_alice_leaves(&net, &mailbox, &alice, &bob).await;
    let a = NodeHandleStore(a_store);
    let mut raw = a.connect(&net, ab).await;

    // 1. A traversal name is stored sanitised, never as a path.
    let data: Vec<u8> = (0..(2 * CH + CH / 2) as u32)
        .map(|i| (i % 251) as u8)
        .collect();
    offered_and_accepted(&mut raw, &b, 1, "../../etc/passwd", &data).await;
    let t = b.transfers().await.unwrap();
    assert_eq!(t[0].name, "_.._etc_passwd");
    // ... and then a chunk out of range: protocol error, partial data dropped.
    raw.send(&chunk(1, 0, &data[..CH])).await;
    raw.send(&chunk(1, 7, &data[..CH])).await;
    cancelled_with(&mut raw, 1, reason::PROTOCOL).await;
    assert_eq!(state(&b, 1).await, (TransferState::Failed, Some(3), None));

    // 2. The last chunk longer than offered (the file "grows").
    offered_and_accepted(&mut raw, &b, 2, "grows.bin", &data).await;
    raw.send(&chunk(2, 0, &data[..CH])).await;
    raw.send(&chunk(2, 1, &data[CH..2 * CH])).await;
    raw.send(&chunk(2, 2, &[7; CH])).await; // CH / 2 bytes were offered
    cancelled_with(&mut raw, 2, reason::PROTOCOL).await;
    assert_eq!(state(&b, 2).await, (TransferState::Failed, Some(3), None));

    // 3. A chunk for a transfer bob never heard of.
    raw.send(&chunk(9, 0, &data[..CH])).await;
    cancelled_with(&mut raw, 9, reason::UNKNOWN).await;
    assert!(
        b.store()
            .run(|s| s.transfer(&[9; 16]).unwrap())
            .await
            .unwrap()
            .is_none()
    );

    // 4. Every chunk well-formed, but not the offered content: hash mismatch.
    offered_and_accepted(&mut raw, &b, 4, "lies.bin", &data).await;
    raw.send(&chunk(4, 0, &data[..CH])).await;
    raw.send(&chunk(4, 1, &[0; CH])).await;
    raw.send(&chunk(4, 2, &data[2 * CH..])).await;
    cancelled_with(&mut raw, 4, reason::HASH_MISMATCH).await;
    assert_eq!(state(&b, 4).await, (TransferState::Failed, Some(4), None));

    // Transfers 1, 2 and 4 had chunks written: their part files are gone.
    assert_eq!(part_files(&bob), 0, "partial data left behind");

    // 6. Lanes (PROTOCOL.md §14.3): a lane stream nobody announced, a lane
    //    frame with a bad tag, and a lane carrying something else than chunks
    //    are all closed without a byte back; nothing is recorded.
    let mallory = MemoryTransport::new(&net, "mallory-lane");
    offered_and_accepted(&mut raw, &b, 6, "lane.bin", &data).await;
    for (n, body) in [
        ("bad tag", chunk(6, 0, &data[..CH])),
        ("not a chunk", PeerMessage::EndSession),
    ] {
        let (mut lane, key) = umbra::files::Lane::generate();
        raw.send(&PeerMessage::FileLane {
            lane_id: lane.id(),
            key: umbra::wire::LaneKey::new(*key),
        })
        .await;
        let mut s = Framed::new(
            mallory.connect(&PeerAddress::new("b")).await.unwrap(),
            LengthDelimitedCodec::new(),
        );
        let mut f = lane.seal(&body.encode().unwrap()).unwrap();
        if n == "bad tag" {
            let last = f.len() - 1;
            f[last] ^= 1;
        }
        s.send(Bytes::from(f)).await.unwrap();
        assert!(closed(&mut s).await, "{n}: lane closed");
    }
    let t6 = b
        .store()
        .run(|s| s.transfer(&[6; 16]).unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!(t6.have_count, 0);

    // 5. A chunk frame with a bad tag: the connection is closed, the chunk
    //    is not recorded.
    offered_and_accepted(&mut raw, &b, 5, "tag.bin", &data).await;
    let mut f = raw.seal(&chunk(5, 0, &data[..CH]));
    let last = f.len() - 1;
    f[last] ^= 1;
    raw.io.send(Bytes::from(f)).await.unwrap();
    assert!(raw.recv().await.is_none(), "bob closes the connection");
    let t5 = b
        .store()
        .run(|s| s.transfer(&[5; 16]).unwrap().unwrap())
        .await
        .unwrap();
    assert_eq!(t5.have_count, 0);
    assert_eq!(t5.state, TransferState::Active);

    // A lane stream nobody announced (bob waits a moment for the
    // announcement, then closes it).
    let (mut stray, _) = umbra::files::Lane::generate();
    let mut s = Framed::new(
        mallory.connect(&PeerAddress::new("b")).await.unwrap(),
        LengthDelimitedCodec::new(),
    );
    s.send(Bytes::from(stray.seal(b"\x07hello").unwrap()))
        .await
        .unwrap();
    assert!(closed(&mut s).await, "unknown lane refused");

    // Nothing claims to be complete; at most transfers 5 and 6 (still active)
    // have a part file.
    for t in b.transfers().await.unwrap() {
        assert_ne!(t.state, TransferState::Completed);
    }
    assert!(part_files(&bob) <= 2);
    b.shutdown().await;
}

/// Alice's store after her node stopped (the handle keeps it open).
struct NodeHandleStore(umbra::node::store_handle::StoreHandle);

impl NodeHandleStore {
    async fn connect(&self, net: &MemoryNetwork, ab: ContactId) -> Raw {
        let mallory = MemoryTransport::new(net, "mallory");
        let stream = mallory.connect(&PeerAddress::new("b")).await.unwrap();
        let mut raw = Raw::from_store(&self.0, ab, stream).await;
        raw.hello().await;
        raw
    }
}

/// A contact acknowledges absurdly many lane frames (SECURITY-2026-11 L2:
/// `FileLaneAck { count: u64::MAX }` overflowed the lane's semaphore and
/// panicked bob's connection task, which also killed his dial loop). It is
/// a protocol error now: the connection closes, and bob reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_lane_ack_is_a_protocol_error_not_a_panic() {
    use umbra::transport::Listener;
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let mut config = support::fast_config();
    config.files.streams = 2;
    config.files.lanes_from = 0;
    let support::AliceLeft {
        b, a_store, ab, ba, ..
    } = support::pair_then_alice_leaves_with(&net, &mailbox, &alice, &bob, config).await;

    // alice's address answers by hand: bob's session connection and lanes.
    let mut listener = MemoryTransport::new(&net, "a").listen().await.unwrap();
    let stream = tokio::time::timeout(support::WAIT, listener.accept())
        .await
        .expect("bob redials alice")
        .unwrap();
    let mut raw = Raw::from_store(&a_store, ab, stream).await;
    assert!(matches!(raw.next_any().await, Some(PeerMessage::Hello(_))));
    raw.hello().await;

    let file = bob.dir.path().join("big.bin");
    std::fs::write(&file, vec![7u8; 4 << 20]).unwrap();
    let t = b
        .send_file(ba, &file, umbra::store::FileKind::File)
        .await
        .unwrap();
    let Some(PeerMessage::FileOffer(o)) = raw.answer().await else {
        panic!("expected the offer")
    };
    assert_eq!(o.transfer_id, t.transfer_id);
    raw.send(&PeerMessage::FileAccept(umbra::wire::FileAccept {
        transfer_id: o.transfer_id,
        have: Vec::new(),
    }))
    .await;
    let lane_id = loop {
        match raw.answer().await {
            Some(PeerMessage::FileLane { lane_id, .. }) => break lane_id,
            Some(_) => continue,
            None => panic!("bob closed before announcing a lane"),
        }
    };
    // The lane's stream arrives and is never read: the lane stays busy.
    let _lane = tokio::time::timeout(support::WAIT, listener.accept())
        .await
        .expect("bob opens the lane")
        .unwrap();

    raw.send(&PeerMessage::FileLaneAck {
        lane_id,
        count: u64::MAX,
    })
    .await;
    let closed = tokio::time::timeout(support::WAIT, async {
        while raw.io.next().await.is_some_and(|f| f.is_ok()) {}
    })
    .await;
    assert!(closed.is_ok(), "bob closes the connection");

    // bob is still alive and dials alice again (his dial loop survived).
    let again = tokio::time::timeout(support::WAIT, async {
        loop {
            let s = listener.accept().await.unwrap();
            let mut framed = Framed::new(s, LengthDelimitedCodec::new());
            if let Some(Ok(f)) = framed.next().await
                && matches!(
                    umbra::wire::Frame::decode(&f),
                    Ok(umbra::wire::Frame::Sealed(_))
                )
            {
                return;
            }
        }
    })
    .await;
    assert!(again.is_ok(), "bob reconnects after the protocol error");
    b.shutdown().await;
}

/// An offer with a chunk size other than the protocol's is refused before
/// anything is stored (SECURITY-2026-11 M5: one-byte chunks made the part
/// file 29 times the offered size and the bookkeeping quadratic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_with_another_chunk_size_is_refused() {
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let support::AliceLeft {
        b, a_store, ab, ba, ..
    } = support::pair_then_alice_leaves(&net, &mailbox, &alice, &bob).await;
    // bob verified alice: a small offer would be accepted without asking.
    b.store()
        .run(move |s| s.set_contact_verified(ba, true).unwrap())
        .await
        .unwrap();
    let mut raw = NodeHandleStore(a_store).connect(&net, ab).await;
    let data = vec![1u8; 2 << 20];
    for chunk_size in [1u32, 4096, CH as u32 - 1] {
        let PeerMessage::FileOffer(mut o) = offer(chunk_size as u8, "tiny.bin", &data) else {
            unreachable!()
        };
        o.chunk_size = chunk_size;
        raw.send(&PeerMessage::FileOffer(o)).await;
        cancelled_with(&mut raw, chunk_size as u8, reason::PROTOCOL).await;
        let stored = b
            .store()
            .run(move |s| s.transfer(&[chunk_size as u8; 16]).unwrap())
            .await
            .unwrap();
        assert!(stored.is_none(), "chunk size {chunk_size}: nothing stored");
    }
    assert_eq!(part_files(&bob), 0);
    // The protocol's chunk size is still welcome.
    let mut ev = b.events();
    raw.send(&offer(0x55, "fine.bin", &data)).await;
    wait_event(
        &mut ev,
        |e| matches!(e, Event::FileOffered { transfer, .. } if *transfer == [0x55; 16]),
    )
    .await;
    b.shutdown().await;
}

/// A contact floods frames that each cause a reply and never reads
/// (SECURITY-2026-11 L3). bob's queue of unsent replies is bounded: he
/// closes the connection once `MAX_WRITE_BACKLOG` frames wait, instead of
/// buffering replies for as long as the flood lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_floods_and_never_reads_is_cut_off() {
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let support::AliceLeft { b, a_store, ab, .. } =
        support::pair_then_alice_leaves(&net, &mailbox, &alice, &bob).await;
    let mut raw = NodeHandleStore(a_store).connect(&net, ab).await;
    let limit = umbra::node::conn::MAX_WRITE_BACKLOG;
    let mut sent = 0usize;
    let cut_off = tokio::time::timeout(support::WAIT, async {
        for i in 0..(20 * limit) as u64 {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&i.to_be_bytes());
            let f = raw.seal(&PeerMessage::FileAccept(umbra::wire::FileAccept {
                transfer_id: id,
                have: Vec::new(),
            }));
            if raw.io.send(Bytes::from(f)).await.is_err() {
                return true;
            }
            sent += 1;
        }
        false
    })
    .await
    .expect("the flood neither ends nor is cut off");
    assert!(
        cut_off,
        "bob kept reading {sent} frames he could not answer"
    );
    assert!(
        sent > limit,
        "cut off after {sent}, before the backlog could fill"
    );
    b.shutdown().await;
}
