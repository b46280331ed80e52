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

fn offer(id: u8, name: &str, data: &[u8]) -> PeerMessage {
    PeerMessage::FileOffer(FileOffer {
        transfer_id: [id; 16],
        name: name.into(),
        size: data.len() as u64,
        media: Media::File,
        sha256: Sha256::digest(data).into(),
        chunk_size: 1000,
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
    let data: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
    offered_and_accepted(&mut raw, &b, 1, "../../etc/passwd", &data).await;
    let t = b.transfers().await.unwrap();
    assert_eq!(t[0].name, "_.._etc_passwd");
    // ... and then a chunk out of range: protocol error, partial data dropped.
    raw.send(&chunk(1, 0, &data[..1000])).await;
    raw.send(&chunk(1, 7, &data[..1000])).await;
    cancelled_with(&mut raw, 1, reason::PROTOCOL).await;
    assert_eq!(state(&b, 1).await, (TransferState::Failed, Some(3), None));

    // 2. The last chunk longer than offered (the file "grows").
    offered_and_accepted(&mut raw, &b, 2, "grows.bin", &data).await;
    raw.send(&chunk(2, 0, &data[..1000])).await;
    raw.send(&chunk(2, 1, &data[1000..2000])).await;
    raw.send(&chunk(2, 2, &[7; 1000])).await; // 500 bytes were offered
    cancelled_with(&mut raw, 2, reason::PROTOCOL).await;
    assert_eq!(state(&b, 2).await, (TransferState::Failed, Some(3), None));

    // 3. A chunk for a transfer bob never heard of.
    raw.send(&chunk(9, 0, &data[..1000])).await;
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
    raw.send(&chunk(4, 0, &data[..1000])).await;
    raw.send(&chunk(4, 1, &[0; 1000])).await;
    raw.send(&chunk(4, 2, &data[2000..])).await;
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
        ("bad tag", chunk(6, 0, &data[..1000])),
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
    assert!(t6.have.is_empty());

    // 5. A chunk frame with a bad tag: the connection is closed, the chunk
    //    is not recorded.
    offered_and_accepted(&mut raw, &b, 5, "tag.bin", &data).await;
    let mut f = raw.seal(&chunk(5, 0, &data[..1000]));
    let last = f.len() - 1;
    f[last] ^= 1;
    raw.io.send(Bytes::from(f)).await.unwrap();
    assert!(raw.recv().await.is_none(), "bob closes the connection");
    let t5 = b
        .store()
        .run(|s| s.transfer(&[5; 16]).unwrap().unwrap())
        .await
        .unwrap();
    assert!(t5.have.is_empty());
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
