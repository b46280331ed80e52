//! Conformance with docs/PROTOCOL.md, computed independently of the library:
//! the session key schedule, the ratchet and the sealed-frame layout are
//! rebuilt here from the spec's labels with the raw primitives, and the
//! library's output must match byte for byte. Plus fixed encodings of peer
//! messages (test vectors), so an accidental format change fails loudly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use umbra::identity::Fingerprint;
use umbra::session::{Binding, KeyShare, PeerShare, Role, Session};
use umbra::wire::{Hello, PeerMessage, Text};
use x25519_dalek::{PublicKey, StaticSecret};

fn share(half: u8, eph: u8) -> (KeyShare, [u8; 32], [u8; 32]) {
    let mut bytes = vec![half; 32];
    bytes.extend_from_slice(&[eph; 32]);
    let ks = KeyShare::from_secret_bytes(&bytes).unwrap();
    (ks, [half; 32], [eph; 32])
}

fn hmac(key: &[u8], byte: u8) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    m.update(&[byte]);
    m.finalize().into_bytes().into()
}

#[test]
fn key_schedule_ratchet_and_frame_match_the_spec() {
    let request_id = [0x11u8; 16];
    let fpr_req = [0x22u8; 20];
    let fpr_acc = [0x33u8; 20];
    let (a, r_a, e_a) = share(0x44, 0x55);
    let (b, r_b, e_b) = share(0x66, 0x77);
    let (pa, pb) = (
        PeerShare {
            half: a.half(),
            ephemeral_public: a.ephemeral_public(),
        },
        PeerShare {
            half: b.half(),
            ephemeral_public: b.ephemeral_public(),
        },
    );
    let binding = Binding {
        request_id,
        requester: Fingerprint::from_bytes(fpr_req),
        acceptor: Fingerprint::from_bytes(fpr_acc),
    };
    let mut requester = Session::derive(Role::Requester, a, &pb, &binding).unwrap();
    let mut acceptor = Session::derive(Role::Acceptor, b, &pa, &binding).unwrap();

    // --- The spec, by hand ---
    let e_b_pub = PublicKey::from(&StaticSecret::from(e_b));
    let dh = StaticSecret::from(e_a).diffie_hellman(&e_b_pub).to_bytes();
    let mut ikm = Vec::new();
    ikm.extend_from_slice(&r_a);
    ikm.extend_from_slice(&r_b);
    ikm.extend_from_slice(&dh);
    let mut salt = b"umbra/v1/session-salt".to_vec();
    salt.extend_from_slice(&request_id);
    let hk = Hkdf::<Sha256>::new(Some(&salt), &ikm);
    let mut ctx = Vec::new();
    ctx.extend_from_slice(&fpr_req);
    ctx.extend_from_slice(&fpr_acc);
    ctx.extend_from_slice(&request_id);
    let expand = |label: &[u8], len: usize| {
        let mut info = label.to_vec();
        info.extend_from_slice(&ctx);
        let mut out = vec![0u8; len];
        hk.expand(&info, &mut out).unwrap();
        out
    };
    let ck_req = expand(b"umbra/v1/chain/requester->acceptor", 32);
    let ck_acc = expand(b"umbra/v1/chain/acceptor->requester", 32);
    let session_id = expand(b"umbra/v1/session-id", 16);
    assert_eq!(requester.id().to_vec(), session_id);
    assert_eq!(acceptor.id().to_vec(), session_id);

    // Frame n under mk_n = HMAC(ck_n, 0x01), ck_{n+1} = HMAC(ck_n, 0x02).
    let seal_by_spec = |ck0: &[u8], n: u64, plaintext: &[u8]| {
        let mut ck = ck0.to_vec();
        for _ in 0..n {
            ck = hmac(&ck, 0x02).to_vec();
        }
        let mk = hmac(&ck, 0x01);
        let mut header = vec![1u8, 2u8];
        header.extend_from_slice(&session_id);
        header.extend_from_slice(&n.to_be_bytes());
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&n.to_be_bytes());
        let ct = Aes256Gcm::new_from_slice(&mk)
            .unwrap()
            .encrypt(
                &nonce.into(),
                Payload {
                    msg: plaintext,
                    aad: &header,
                },
            )
            .unwrap();
        let mut frame = header;
        frame.extend_from_slice(&ct);
        frame
    };
    for n in 0..3u64 {
        let msg = format!("frame {n}");
        assert_eq!(
            requester.seal(msg.as_bytes()).unwrap(),
            seal_by_spec(&ck_req, n, msg.as_bytes())
        );
        assert_eq!(
            acceptor.seal(msg.as_bytes()).unwrap(),
            seal_by_spec(&ck_acc, n, msg.as_bytes())
        );
    }
}

#[test]
fn peer_message_vectors() {
    // kind || postcard(body); varints are LEB128, fixed arrays raw.
    let cases: Vec<(PeerMessage, Vec<u8>)> = vec![
        (PeerMessage::Ack { upto: 300 }, vec![2, 0xac, 0x02]),
        (PeerMessage::Receipt { upto: 1 }, vec![3, 1]),
        (PeerMessage::EndSession, vec![10]),
        (
            PeerMessage::Hello(Hello {
                protocol: 1,
                last_received: 128,
            }),
            vec![11, 1, 0x80, 0x01],
        ),
        (
            PeerMessage::Text(Text {
                id: [9; 16],
                seq: 1,
                sent_at: 2,
                body: "hi".into(),
            }),
            [vec![1], vec![9; 16], vec![1, 2, 2, b'h', b'i']].concat(),
        ),
        // PROTOCOL.md §14.1: FileAck (kind 12) = transfer_id raw || next varint.
        (
            PeerMessage::FileAck {
                transfer_id: [5; 16],
                next: 300,
            },
            [vec![12], vec![5; 16], vec![0xac, 0x02]].concat(),
        ),
        (
            PeerMessage::FileAccept(umbra::wire::FileAccept {
                transfer_id: [6; 16],
                have: vec![(0, 2), (5, 7)],
            }),
            [vec![6], vec![6; 16], vec![2, 0, 2, 5, 7]].concat(),
        ),
    ];
    for (msg, bytes) in cases {
        assert_eq!(msg.encode().unwrap(), bytes, "{msg:?}");
        assert_eq!(PeerMessage::decode(&bytes).unwrap(), msg);
    }
    // FileAccept ranges must be sorted and disjoint (§14.2): overlapping is Malformed.
    let overlapping = [vec![6], vec![6; 16], vec![2, 0, 3, 2, 7]].concat();
    assert!(PeerMessage::decode(&overlapping).is_err());
}
