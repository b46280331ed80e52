//! Fuzzing entry points and their fixtures (docs/FUZZING.md). **Not API.**
//!
//! Compiled only for this crate's tests and with the `fuzzing` feature (which
//! the `fuzz/` workspace enables). Each `pub fn <target>(data)` is the whole
//! body of the libFuzzer target of the same name in `fuzz/fuzz_targets/`: it
//! feeds `data` to a decoder exactly as the network would and panics only
//! when an invariant of the code under test breaks (a panic inside the
//! decoder is a finding too).
//!
//! The fixtures are fixed so that checked-in seeds stay valid: two test
//! identities in `fuzz/fixtures/` (`@alice`, `@bob`: generated once by the
//! seed writer, test keys of nobody), a session with fixed chain keys, a fixed
//! clock. The seed writer is the ignored test `seeds::write_fuzz_seeds`; the
//! test `seeds::seeds_pass` replays every checked-in seed through its target.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::envelope::Freshness;
use crate::handshake::{
    HandshakeError, HandshakeMessage, MemorySeen, PendingRequest, TrustAnchor, open_answer,
    open_request,
};
use crate::handshaker_api::HandshakerAddress;
use crate::handshaker_api::pow::{self, Purpose};
use crate::handshaker_api::wire::{
    AckRequest, AckResponse, ChallengeResponse, DeleteRequest, DepositRequest, ErrorBody,
    FetchRequest, FetchResponse, InfoResponse, RegisterRequest, SearchResponse, UserResponse,
    delete_statement, fetch_statement, register_statement,
};
use crate::identity::{Fingerprint, Identity, PublicCert, Username};
use crate::limits::{ENVELOPE_MAX_AGE_SECS, MAX_ENVELOPE, MAX_FRAME, MAX_FUTURE_SKEW_SECS};
use crate::session::{KeyShare, Session};
use crate::time::from_unix_secs;
use crate::wire::{Frame, PeerMessage};

// ---------------------------------------------------------------------------
// Fixtures

/// "Now" of every target, and the signature time of the seed envelopes
/// (2026-01-01T00:00:00Z).
pub const SEED_TIME: u64 = 1_767_225_600;
/// The Handshaker address signed into the seed statements.
pub const HANDSHAKER: &str = "http://127.0.0.1:8080";
/// Proof-of-work difficulty of the fixed Handshaker (low, so seeds solve fast).
pub const POW_BITS: u32 = 4;
/// Id of the fixed session.
pub const SESSION_ID: [u8; 16] = [0x5e; 16];
/// The request the fixed pending request of `@alice` waits an answer for.
pub const REQUEST_ID: [u8; 16] = [0x77; 16];
const REQUESTER_TO_ACCEPTOR: [u8; 32] = [0x11; 32];
const ACCEPTOR_TO_REQUESTER: [u8; 32] = [0x22; 32];

/// Where the fixtures and seeds live: `fuzz/` of this repository.
pub fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The checked-in seeds of `target`: `fuzz/corpus/<target>/`.
pub fn corpus_dir(target: &str) -> PathBuf {
    fuzz_dir().join("corpus").join(target)
}

/// Writes seed `name` of `target` (the seed writers of each crate).
pub fn write_seed(target: &str, name: &str, bytes: &[u8]) {
    let dir = corpus_dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A fuzz target's name and entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Runs every checked-in seed of each target through its entry point;
/// each target must have at least one (the crates' `seeds_pass` tests).
pub fn replay_seeds(targets: &[Target]) {
    for (target, run) in targets {
        let mut n = 0;
        for entry in std::fs::read_dir(corpus_dir(target)).unwrap() {
            run(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n > 0, "no seeds for {target}");
    }
}

/// The freshness window of every envelope target: a week, "now" a minute
/// after [`SEED_TIME`].
pub fn freshness() -> Freshness {
    Freshness {
        now: from_unix_secs(SEED_TIME + 60),
        max_age: Duration::from_secs(ENVELOPE_MAX_AGE_SECS),
        max_future_skew: Duration::from_secs(MAX_FUTURE_SKEW_SECS),
    }
}

/// Both ends of the fixed session: (requester, acceptor), both chains at 0.
pub fn session_pair() -> (Session, Session) {
    let requester = Session::from_chains(
        SESSION_ID,
        (&REQUESTER_TO_ACCEPTOR[..], 0),
        (&ACCEPTOR_TO_REQUESTER[..], 0),
    );
    let acceptor = Session::from_chains(
        SESSION_ID,
        (&ACCEPTOR_TO_REQUESTER[..], 0),
        (&REQUESTER_TO_ACCEPTOR[..], 0),
    );
    (requester.unwrap(), acceptor.unwrap())
}

/// The key share `@alice` kept for [`REQUEST_ID`].
pub fn key_share() -> KeyShare {
    let mut bytes = [0x33u8; 64];
    bytes[32..].fill(0x44);
    KeyShare::from_secret_bytes(&bytes).unwrap()
}

/// The Handshaker key that signs the fixtures' bindings (fixed seed).
pub fn binding_signer() -> crate::handshaker_api::binding::BindingSigner {
    crate::handshaker_api::binding::BindingSigner::from_seed(&[7; 32]).unwrap()
}

/// What `@bob` pinned for [`HANDSHAKER`].
pub fn anchor() -> TrustAnchor {
    TrustAnchor {
        address: HANDSHAKER.into(),
        key: binding_signer().public(),
    }
}

/// The two test identities and their public certificates.
pub struct Fixtures {
    pub alice: Identity,
    pub bob: Identity,
    pub alice_cert: PublicCert,
    pub bob_cert: PublicCert,
}

/// Loads (once) the identities from `fuzz/fixtures/{alice,bob}.tsk`.
pub fn fixtures() -> &'static Fixtures {
    static F: OnceLock<Fixtures> = OnceLock::new();
    F.get_or_init(|| {
        let load = |name: &str| {
            let path = fuzz_dir().join("fixtures").join(format!("{name}.tsk"));
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("fuzz fixture {}: {e}", path.display()));
            Identity::from_secret_bytes(&bytes).unwrap()
        };
        let (alice, bob) = (load("alice"), load("bob"));
        let (alice_cert, bob_cert) = (alice.public_cert().unwrap(), bob.public_cert().unwrap());
        Fixtures {
            alice,
            bob,
            alice_cert,
            bob_cert,
        }
    })
}

/// Lets the panics that the code under test catches on purpose unwind to
/// their `catch_unwind` instead of aborting the fuzzer: sequoia-openpgp
/// 2.4.2 panics on some malformed messages, and `envelope::open` and
/// `identity` run it behind a panic barrier that turns a panic into an
/// error. Every other panic still reaches libFuzzer's hook (a finding).
pub fn tolerate_caught_sequoia_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let fuzzer_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_sequoia = info
                .location()
                .is_some_and(|l| l.file().contains("sequoia-openpgp"));
            if !in_sequoia {
                fuzzer_hook(info);
            }
        }));
    });
}

/// Splits fuzz input into records: `BE16(len) || bytes`, the last one cut
/// short if the input ends early.
pub fn records(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    std::iter::from_fn(move || {
        let [a, b, tail @ ..] = rest else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([*a, *b])).min(tail.len());
        let (record, next) = tail.split_at(len);
        rest = next;
        Some(record)
    })
}

/// The inverse of [`records`] (for seeds).
pub fn join_records<B: AsRef<[u8]>>(parts: &[B]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        let p = p.as_ref();
        out.extend_from_slice(&u16::try_from(p.len()).unwrap().to_be_bytes());
        out.extend_from_slice(p);
    }
    out
}

// ---------------------------------------------------------------------------
// Targets

/// Bytes from a peer stream: the length-delimited codec, then each frame
/// body classified by [`Frame::decode`].
pub fn wire_frame(data: &[u8]) {
    use tokio_util::codec::Decoder;
    let mut codec = crate::wire::codec();
    let mut buf = bytes::BytesMut::from(data);
    while let Ok(Some(body)) = codec.decode(&mut buf) {
        assert!(body.len() <= MAX_FRAME);
        check_frame(&body);
    }
    check_frame(data);
}

fn check_frame(body: &[u8]) {
    match Frame::decode(body) {
        Ok(Frame::Envelope(e)) => {
            assert!(!e.is_empty() && e.len() <= MAX_ENVELOPE);
            assert_eq!(Frame::envelope(e).unwrap(), body);
        }
        Ok(Frame::Sealed(b) | Frame::Lane(b)) => {
            assert_eq!(b, body);
            assert!(body.len() >= 2 && body.len() <= MAX_FRAME);
        }
        Ok(Frame::GroupJoin(m)) => {
            assert!(!m.is_empty() && m.len() <= crate::group::MAX_JOIN_MESSAGE);
            assert_eq!(Frame::group_join(m).unwrap(), body);
            let _ = crate::group::JoinMessage::decode(m);
        }
        Err(_) => {}
    }
}

/// A sealed frame's plaintext: strict, canonical, within limits.
pub fn peer_message(data: &[u8]) {
    match PeerMessage::decode(data) {
        Ok(PeerMessage::Unknown { kind }) => {
            assert_eq!(Some(&kind), data.first());
            assert!(!(1..=14).contains(&kind));
        }
        Ok(msg) => {
            msg.validate().unwrap();
            assert_eq!(
                msg.encode().unwrap(),
                data,
                "only canonical encodings decode"
            );
        }
        Err(_) => {}
    }
}

/// Sealed frames (records) opened by the acceptor end of the fixed session.
/// The first byte picks where the receive chain starts (0, or near the end
/// of the sequence space, as a stored session could be).
pub fn sealed_open(data: &[u8]) {
    let [start, frames @ ..] = data else {
        return;
    };
    let (_, rx) = session_pair();
    let (ck, _) = rx.recv_chain();
    let (sk, sn) = rx.send_chain();
    let next = match *start {
        0..=127 => 0,
        s => u64::MAX - u64::from(s - 127) * 9,
    };
    let mut rx = Session::from_chains(SESSION_ID, (&sk[..], sn), (&ck[..], next)).unwrap();
    for frame in records(frames) {
        let before = rx.next_recv_seq();
        let (key_before, _) = rx.recv_chain();
        match rx.open(frame) {
            Ok(plaintext) => {
                let seq = u64::from_be_bytes(frame[18..26].try_into().unwrap());
                assert!(seq >= before && seq - before <= crate::limits::MAX_SKIP);
                assert_eq!(rx.next_recv_seq(), seq + 1);
                let _ = PeerMessage::decode(&plaintext);
            }
            Err(_) => {
                assert_eq!(
                    rx.next_recv_seq(),
                    before,
                    "a refused frame moved the chain"
                );
                assert_eq!(*rx.recv_chain().0, *key_before);
            }
        }
    }
}

/// A handshake payload (the plaintext of an envelope): strict and canonical.
pub fn handshake_payload(data: &[u8]) {
    if let Ok(msg) = HandshakeMessage::decode(data) {
        assert_eq!(msg.encode().unwrap(), data);
    }
}

/// An envelope as `@bob` receives a request from `@alice` (mailbox), and as
/// `@alice` receives an answer from `@bob` (first frame of a connection).
pub fn envelope_open(data: &[u8]) {
    tolerate_caught_sequoia_panics();
    let f = fixtures();
    let mut seen = MemorySeen::default();
    let anchor = anchor();
    if let Ok((req, cert)) = open_request(data, &f.bob, &anchor, &mut seen, freshness()) {
        assert!(cert.fingerprint().ct_eq(&f.alice.fingerprint()));
        assert_eq!(req.to_username, "bob");
        assert_eq!(req.from_username, "alice");
        let again = open_request(data, &f.bob, &anchor, &mut seen, freshness());
        assert!(matches!(again, Err(HandshakeError::Replay)));
    }
    let mut find = |id: &[u8; 16]| {
        (*id == REQUEST_ID).then(|| PendingRequest {
            request_id: REQUEST_ID,
            to_fingerprint: f.bob.fingerprint(),
            share: key_share(),
        })
    };
    let _ = open_answer(data, &f.alice, &f.bob_cert, &mut find, freshness());
}

/// Selector bytes of [`handshaker_bodies`]: which JSON body follows.
pub mod body {
    pub const REGISTER: u8 = 0;
    pub const DELETE: u8 = 1;
    pub const DEPOSIT: u8 = 2;
    pub const FETCH: u8 = 3;
    pub const ACK: u8 = 4;
    pub const USER: u8 = 5;
    pub const SEARCH: u8 = 6;
    pub const FETCH_RESPONSE: u8 = 7;
    pub const INFO: u8 = 8;
    pub const ERROR: u8 = 9;
    pub const CHALLENGE: u8 = 10;
    pub const ACK_RESPONSE: u8 = 11;
    pub const COUNT: u8 = 12;
}

/// A registration binding as a client reads it (hex, then the strict
/// decoder; PROTOCOL.md §17.11); a decoded one re-encodes to the same bytes.
fn binding(hex_text: Option<&str>) {
    use crate::handshaker_api::binding::SignedBinding;
    let Some(bytes) = hex_text.and_then(|h| hex::decode(h).ok()) else {
        return;
    };
    if let Ok(b) = SignedBinding::decode(&bytes) {
        assert_eq!(b.encode().ok().as_deref(), Some(&bytes[..]), "canonical");
        let _ = b.is_valid_at(SEED_TIME);
    }
}

/// A Handshaker API body (selector byte, then JSON), parsed and checked the
/// way the Handshaker checks requests and the client checks answers: JSON,
/// username, certificate (stripped), proof-of-work stamp, detached proofs.
pub fn handshaker_bodies(data: &[u8]) {
    let [selector, json @ ..] = data else {
        return;
    };
    tolerate_caught_sequoia_panics();
    let f = fixtures();
    let now = SEED_TIME;
    let alice = Username::parse("alice").unwrap();
    let alice_fpr = f.alice.fingerprint();
    match selector % body::COUNT {
        body::REGISTER => {
            let Ok(req) = serde_json::from_slice::<RegisterRequest>(json) else {
                return;
            };
            let Ok(name) = Username::parse(&req.username) else {
                return;
            };
            let _ = name.is_reserved();
            let Ok(cert) = PublicCert::from_bytes(req.cert.as_bytes()).and_then(|c| c.stripped())
            else {
                return;
            };
            let _ = cert.username();
            if let Some(stamp) = &req.pow {
                let _ = pow::check(stamp, Purpose::Register, name.as_str(), POW_BITS, now);
            }
            let statement =
                register_statement(&name, HANDSHAKER, &cert.fingerprint(), req.timestamp);
            let _ = cert.verify_detached(statement.as_bytes(), req.proof.as_bytes());
            if let Some(cp) = &req.current_proof {
                let _ = f
                    .alice_cert
                    .verify_detached(statement.as_bytes(), cp.as_bytes());
            }
            let _ = cert.to_armored();
        }
        body::DELETE => {
            if let Ok(req) = serde_json::from_slice::<DeleteRequest>(json) {
                let statement = delete_statement(&alice, HANDSHAKER, &alice_fpr, req.timestamp);
                let _ = f
                    .alice_cert
                    .verify_detached(statement.as_bytes(), req.proof.as_bytes());
            }
        }
        body::DEPOSIT => {
            if let Ok(req) = serde_json::from_slice::<DepositRequest>(json) {
                let _ = req
                    .message
                    .trim_start()
                    .starts_with("-----BEGIN PGP MESSAGE-----");
                if let Some(stamp) = &req.pow {
                    let _ = pow::check(stamp, Purpose::Deposit, "bob", POW_BITS, now);
                }
            }
        }
        body::FETCH => {
            if let Ok(req) = serde_json::from_slice::<FetchRequest>(json) {
                let statement = fetch_statement(&alice, HANDSHAKER, &req.challenge);
                let _ = f
                    .alice_cert
                    .verify_detached(statement.as_bytes(), req.signature.as_bytes());
            }
        }
        body::ACK => {
            if let Ok(req) = serde_json::from_slice::<AckRequest>(json) {
                for id in &req.ids {
                    let _ = hex::decode(id);
                }
            }
        }
        body::USER => {
            if let Ok(resp) = serde_json::from_slice::<UserResponse>(json) {
                let _ = Username::parse(&resp.username);
                let fpr = Fingerprint::from_hex(&resp.fingerprint);
                if let Ok(cert) = PublicCert::from_bytes(resp.cert.as_bytes()) {
                    let _ = cert.username();
                    if let Ok(fpr) = fpr {
                        let _ = cert.fingerprint().ct_eq(&fpr);
                    }
                }
                binding(resp.binding.as_deref());
            }
        }
        body::SEARCH => {
            if let Ok(resp) = serde_json::from_slice::<SearchResponse>(json) {
                for hit in &resp.users {
                    let _ = Username::parse(&hit.username);
                    let _ = Fingerprint::from_hex(&hit.fingerprint);
                }
            }
        }
        body::FETCH_RESPONSE => {
            if let Ok(resp) = serde_json::from_slice::<FetchResponse>(json) {
                binding(resp.binding.as_deref());
            }
        }
        body::INFO => {
            if let Ok(info) = serde_json::from_slice::<InfoResponse>(json)
                && let Ok(addr) = HandshakerAddress::parse(&info.onion_address)
            {
                let again = HandshakerAddress::parse(addr.as_str()).unwrap();
                assert_eq!(again.as_str(), addr.as_str(), "canonical form is stable");
            }
        }
        body::ERROR => {
            let _ = serde_json::from_slice::<ErrorBody>(json);
        }
        body::CHALLENGE => {
            let _ = serde_json::from_slice::<ChallengeResponse>(json);
        }
        _ => {
            let _ = serde_json::from_slice::<AckResponse>(json);
        }
    }
}

/// A group peer message (kinds 32–41), a join-stream message, or an invite
/// link: strict, canonical, within limits (PROTOCOL.md §20).
pub fn group_wire(data: &[u8]) {
    use crate::group::{GroupWire, InviteLink, JoinMessage};
    use secrecy::ExposeSecret;
    if let Ok(msg) = GroupWire::decode(data) {
        assert!(crate::group::wire::KINDS.contains(&msg.kind()));
        assert_eq!(msg.encode().unwrap(), data, "canonical");
    }
    if let Ok(msg) = JoinMessage::decode(data) {
        assert_eq!(msg.encode().unwrap(), data, "canonical");
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(link) = InviteLink::parse(text)
    {
        assert_eq!(link.to_uri().unwrap().expose_secret(), text.trim());
    }
}

// ---------------------------------------------------------------------------
// Seeds

#[cfg(test)]
mod seeds {
    use super::*;
    use crate::envelope;
    use crate::handshake::{Accept, ConnectionRequest, Reject};
    use crate::handshaker_api::pow::PowStamp;
    use crate::wire::{
        FileAccept, FileChunk, FileOffer, Hello, LaneKey, Media, PresenceState, Text,
    };

    use super::Target;

    const TARGETS: [Target; 7] = [
        ("wire_frame", wire_frame),
        ("group_wire", group_wire),
        ("peer_message", peer_message),
        ("sealed_open", sealed_open),
        ("handshake_payload", handshake_payload),
        ("envelope_open", envelope_open),
        ("handshaker_bodies", handshaker_bodies),
    ];

    use super::write_seed as write;

    fn ensure_identity(name: &str) {
        let path = fuzz_dir().join("fixtures").join(format!("{name}.tsk"));
        if path.exists() {
            return;
        }
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let id = Identity::generate_at(
            &Username::parse(name).unwrap(),
            from_unix_secs(SEED_TIME - 86_400),
        )
        .unwrap();
        std::fs::write(&path, &*id.to_secret_bytes().unwrap()).unwrap();
    }

    fn messages() -> Vec<(&'static str, PeerMessage)> {
        let id = [9u8; 16];
        vec![
            (
                "text",
                PeerMessage::Text(Text {
                    id,
                    seq: 1,
                    sent_at: SEED_TIME,
                    body: "hi".into(),
                }),
            ),
            ("ack", PeerMessage::Ack { upto: 300 }),
            ("receipt", PeerMessage::Receipt { upto: 1 }),
            ("presence", PeerMessage::Presence(PresenceState::Away)),
            (
                "file_offer",
                PeerMessage::FileOffer(FileOffer {
                    transfer_id: id,
                    name: "photo.jpg".into(),
                    size: 70_000,
                    media: Media::Image,
                    sha256: [3; 32],
                    chunk_size: 65_536,
                }),
            ),
            (
                "file_accept",
                PeerMessage::FileAccept(FileAccept {
                    transfer_id: id,
                    have: vec![(0, 1), (3, 5)],
                }),
            ),
            (
                "file_chunk",
                PeerMessage::FileChunk(FileChunk {
                    transfer_id: id,
                    index: 1,
                    data: b"chunk".to_vec(),
                }),
            ),
            ("file_done", PeerMessage::FileDone { transfer_id: id }),
            (
                "file_cancel",
                PeerMessage::FileCancel {
                    transfer_id: id,
                    reason: 0,
                },
            ),
            ("end_session", PeerMessage::EndSession),
            (
                "hello",
                PeerMessage::Hello(Hello {
                    protocol: 1,
                    last_received: 0,
                }),
            ),
            (
                "file_ack",
                PeerMessage::FileAck {
                    transfer_id: id,
                    next: 2,
                },
            ),
            (
                "file_lane",
                PeerMessage::FileLane {
                    lane_id: [4; 16],
                    key: LaneKey::new([5; 32]),
                },
            ),
            (
                "file_lane_ack",
                PeerMessage::FileLaneAck {
                    lane_id: [4; 16],
                    count: 3,
                },
            ),
        ]
    }

    /// Writes `fuzz/fixtures/` (if missing) and `fuzz/corpus/<target>/` of
    /// this crate's targets. Run: `cargo test -p umbra-proto --lib
    /// write_fuzz_seeds -- --ignored`.
    /// Seeds of `group_wire` only (signed by the fixture `@alice`): run
    /// `cargo test -p umbra-proto --lib write_group_seeds -- --ignored`.
    #[test]
    #[ignore = "writes fuzz/corpus/group_wire"]
    fn write_group_seeds() {
        use crate::group::op::{Action, GroupId, Op, OpBody};
        use crate::group::{Content, GROUP_VERSION, GroupState, GroupWire, InviteLink};
        use secrecy::ExposeSecret;
        let alice = &fixtures().alice;
        let cert = alice.public_cert().unwrap().to_bytes().unwrap();
        let genesis = Op::sign(
            OpBody {
                version: GROUP_VERSION,
                group: GroupId([0x61; 32]),
                seq: 0,
                prev: [0; 32],
                at: SEED_TIME,
                author: *alice.fingerprint().as_bytes(),
                action: Action::Create {
                    name: "seed".into(),
                    topic: "topic".into(),
                    flags: crate::group::FLAG_ROOM,
                    cert,
                },
            },
            alice,
        )
        .unwrap();
        let state = GroupState::genesis(&genesis).unwrap();
        let msg = crate::group::GroupMessage::sign(
            state.message_body(
                &alice.fingerprint(),
                1,
                vec![[1; 32]],
                SEED_TIME,
                Content::Text { body: "hi".into() },
            ),
            alice,
        )
        .unwrap();
        let ack = GroupWire::Ack(crate::group::GroupAck {
            group: state.id(),
            log_seq: 0,
            cursors: vec![([2; 20], 3)],
        });
        for (name, w) in [
            ("op", GroupWire::Op(genesis)),
            ("message", GroupWire::Message(msg)),
            ("ack", ack),
        ] {
            write("group_wire", name, &w.encode().unwrap());
        }
        let link = InviteLink::create(alice, state.id(), SEED_TIME, "127.0.0.1:7400").unwrap();
        write(
            "group_wire",
            "link",
            link.to_uri().unwrap().expose_secret().as_bytes(),
        );
    }

    #[test]
    #[ignore = "writes fuzz/corpus; run by hand when a format changes"]
    fn write_fuzz_seeds() {
        ensure_identity("alice");
        ensure_identity("bob");
        let f = fixtures();
        let t0 = from_unix_secs(SEED_TIME);

        for (name, msg) in messages() {
            write("peer_message", name, &msg.encode().unwrap());
        }
        write("peer_message", "unknown_kind", &[200, 1, 2]);

        let (mut tx, _) = session_pair();
        let enc = |m: PeerMessage| m.encode().unwrap();
        let hello = tx
            .seal(&enc(PeerMessage::Hello(Hello {
                protocol: 1,
                last_received: 0,
            })))
            .unwrap();
        let text = tx.seal(&enc(messages()[0].1.clone())).unwrap();
        let ack = tx.seal(&enc(PeerMessage::Ack { upto: 0 })).unwrap();
        write(
            "sealed_open",
            "hello",
            &[&[0u8][..], &join_records(&[&hello])].concat(),
        );
        write(
            "sealed_open",
            "hello_text_ack",
            &[&[0u8][..], &join_records(&[&hello, &text, &ack])].concat(),
        );
        write(
            "sealed_open",
            "skipped",
            &[&[0u8][..], &join_records(&[&ack])].concat(),
        );

        let frame = |body: &[u8]| [&(body.len() as u32).to_be_bytes()[..], body].concat();
        let envelope_frame = Frame::envelope(b"-----BEGIN PGP MESSAGE-----\n").unwrap();
        let lane = [&[1u8, 3][..], &[4; 16], &[0; 8], &[0; 20]].concat();
        write("wire_frame", "sealed", &frame(&hello));
        write("wire_frame", "envelope", &frame(&envelope_frame));
        write("wire_frame", "lane", &frame(&lane));
        write("wire_frame", "two", &[frame(&hello), frame(&text)].concat());

        let request = HandshakeMessage::Request(ConnectionRequest {
            request_id: REQUEST_ID,
            from_username: "alice".into(),
            from_fingerprint: *f.alice.fingerprint().as_bytes(),
            from_cert: f.alice_cert.stripped().unwrap().to_bytes().unwrap(),
            binding: binding_signer()
                .issue(
                    &Username::parse("alice").unwrap(),
                    &f.alice.fingerprint(),
                    HANDSHAKER,
                    SEED_TIME,
                )
                .unwrap()
                .encode()
                .unwrap(),
            to_username: "bob".into(),
            onion_address: "127.0.0.1:7400".into(),
            session_half: [1; 32],
            ephemeral_public: key_share().ephemeral_public(),
            note: "hello bob".into(),
            created_at: SEED_TIME,
        });
        let accept = HandshakeMessage::Accept(Accept {
            request_id: REQUEST_ID,
            from_username: "bob".into(),
            from_fingerprint: *f.bob.fingerprint().as_bytes(),
            onion_address: "127.0.0.1:7401".into(),
            session_half: [2; 32],
            ephemeral_public: [9; 32],
            created_at: SEED_TIME,
        });
        let reject = HandshakeMessage::Reject(Reject {
            request_id: REQUEST_ID,
            from_fingerprint: *f.bob.fingerprint().as_bytes(),
            created_at: SEED_TIME,
        });
        for (name, msg) in [
            ("request", &request),
            ("accept", &accept),
            ("reject", &reject),
        ] {
            let payload = msg.encode().unwrap();
            write("handshake_payload", name, &payload);
            let (from, to) = if name == "request" {
                (&f.alice, &f.bob_cert)
            } else {
                (&f.bob, &f.alice_cert)
            };
            let sealed = envelope::seal_at(&payload, from, to, t0).unwrap();
            write("envelope_open", name, sealed.as_bytes());
        }

        let json = |selector: u8, v: &dyn erased::Json| [vec![selector], v.to_vec()].concat();
        let statement = register_statement(
            &Username::parse("alice").unwrap(),
            HANDSHAKER,
            &f.alice.fingerprint(),
            SEED_TIME,
        );
        let stamp = pow::solve(Purpose::Register, "alice", POW_BITS, SEED_TIME, &mut |_| {});
        let register = RegisterRequest {
            username: "@Alice".into(),
            cert: f.alice_cert.to_armored().unwrap(),
            proof: f.alice.sign_detached(statement.as_bytes()).unwrap(),
            timestamp: SEED_TIME,
            current_proof: None,
            pow: Some(stamp),
        };
        write(
            "handshaker_bodies",
            "register",
            &json(body::REGISTER, &register),
        );
        let alice = Username::parse("alice").unwrap();
        let delete = DeleteRequest {
            proof: f
                .alice
                .sign_detached(
                    delete_statement(&alice, HANDSHAKER, &f.alice.fingerprint(), SEED_TIME)
                        .as_bytes(),
                )
                .unwrap(),
            timestamp: SEED_TIME,
        };
        write("handshaker_bodies", "delete", &json(body::DELETE, &delete));
        let deposit = DepositRequest {
            message: String::from_utf8(
                std::fs::read(fuzz_dir().join("corpus/envelope_open/request")).unwrap(),
            )
            .unwrap(),
            pow: Some(PowStamp {
                ts: SEED_TIME,
                nonce: "0123456789abcdef0123456789abcdef".into(),
            }),
        };
        write(
            "handshaker_bodies",
            "deposit",
            &json(body::DEPOSIT, &deposit),
        );
        let challenge = "ab".repeat(32);
        let fetch = FetchRequest {
            signature: f
                .alice
                .sign_detached(fetch_statement(&alice, HANDSHAKER, &challenge).as_bytes())
                .unwrap(),
            challenge,
        };
        write("handshaker_bodies", "fetch", &json(body::FETCH, &fetch));
        let ack = AckRequest {
            ack_token: "cd".repeat(16),
            ids: vec!["00".repeat(16)],
        };
        write("handshaker_bodies", "ack", &json(body::ACK, &ack));
        let user = UserResponse {
            username: "alice".into(),
            fingerprint: f.alice.fingerprint().to_hex(),
            cert: f.alice_cert.to_armored().unwrap(),
            binding: Some(hex::encode(
                binding_signer()
                    .issue(&alice, &f.alice.fingerprint(), HANDSHAKER, SEED_TIME)
                    .unwrap()
                    .encode()
                    .unwrap(),
            )),
        };
        write("handshaker_bodies", "user", &json(body::USER, &user));
        let raw = |selector: u8, s: &str| [&[selector][..], s.as_bytes()].concat();
        write(
            "handshaker_bodies",
            "search",
            &raw(
                body::SEARCH,
                r#"{"users":[{"username":"alice","fingerprint":"00112233445566778899AABBCCDDEEFF00112233"}]}"#,
            ),
        );
        write(
            "handshaker_bodies",
            "fetch_response",
            &raw(
                body::FETCH_RESPONSE,
                r#"{"items":[{"id":"00","message":"m","deposited_at":1}],"ack_token":"t","remaining":0}"#,
            ),
        );
        write(
            "handshaker_bodies",
            "info",
            &raw(
                body::INFO,
                r#"{"onion_address":"http://127.0.0.1:8080","pow_difficulty":18,"limits":{"max_body":65536,"max_message":32768,"max_cert":16384,"mailbox_capacity":100,"mailbox_retention_secs":604800,"max_search_limit":20}}"#,
            ),
        );
        write(
            "handshaker_bodies",
            "error",
            &raw(
                body::ERROR,
                r#"{"error":"username_taken","message":"taken"}"#,
            ),
        );
        write(
            "handshaker_bodies",
            "challenge",
            &raw(body::CHALLENGE, r#"{"challenge":"abcd","expires_at":1}"#),
        );
        write(
            "handshaker_bodies",
            "ack_response",
            &raw(body::ACK_RESPONSE, r#"{"deleted":1}"#),
        );
    }

    mod erased {
        /// A JSON-serialisable value behind a trait object.
        pub trait Json {
            fn to_vec(&self) -> Vec<u8>;
        }
        impl<T: serde::Serialize> Json for T {
            fn to_vec(&self) -> Vec<u8> {
                serde_json::to_vec(self).unwrap()
            }
        }
    }

    /// Every checked-in seed runs through its target without a finding, and
    /// the seeds that should open do (so a format change that makes them
    /// stale is noticed).
    #[test]
    fn seeds_pass() {
        super::replay_seeds(&TARGETS);
        let f = fixtures();
        let read =
            |target: &str, name: &str| std::fs::read(super::corpus_dir(target).join(name)).unwrap();
        let mut seen = MemorySeen::default();
        open_request(
            &read("envelope_open", "request"),
            &f.bob,
            &anchor(),
            &mut seen,
            freshness(),
        )
        .expect("the request seed opens");
        let (_, mut rx) = session_pair();
        for frame in records(&read("sealed_open", "hello_text_ack")[1..]) {
            rx.open(frame).expect("the sealed seeds open");
        }
    }
}
