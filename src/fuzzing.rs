//! Fuzzing entry points of the client crate (docs/FUZZING.md). **Not API.**
//!
//! Compiled only for this crate's tests and with the `fuzzing` feature (which
//! the `fuzz/` workspace enables). Each `pub fn <target>(data)` is the whole
//! body of the libFuzzer target of the same name in `fuzz/fuzz_targets/` and
//! panics only when an invariant of the code under test breaks. The fixtures
//! (the fixed session) are `umbra_proto::fuzzing`'s. Seeds: the ignored test
//! `seeds::write_fuzz_seeds` writes them, `seeds::seeds_pass` replays them.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::Path;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, LinesCodec};

use crate::control::proto::{ClientMessage, MAX_LINE, ServerMessage};
use crate::files::{Lane, sanitize};
use crate::limits::MAX_FILE_NAME;
use crate::node::peer::{Action, Effect, OutText, Peer, PeerParams, PeerState, Side};
use crate::session::Session;
use crate::store::{MessageId, StoreHeader};
use crate::wire::{
    FileAccept, FileChunk, FileOffer, Hello, LaneKey, Media, PeerMessage, PresenceState, Text,
};
pub use umbra_proto::fuzzing::{SEED_TIME, join_records, records, session_pair};

/// Id and key of the fixed file lane.
pub const LANE_ID: [u8; 16] = [0x1a; 16];
pub const LANE_KEY: [u8; 32] = [0x2b; 32];

/// Lane frames (records) read by the receiving end of the fixed lane, the
/// way `node/files/lanes.rs` reads a lane stream.
pub fn lane_open(data: &[u8]) {
    let mut lane = Lane::new(LANE_ID, &LANE_KEY);
    let mut opened = 0u64;
    for frame in records(data) {
        if let Ok(plaintext) = lane.open(frame) {
            let seq = u64::from_be_bytes(frame[18..26].try_into().unwrap());
            assert_eq!(seq, opened, "a lane opens exactly the next sequence");
            opened += 1;
            let _ = PeerMessage::decode(&plaintext);
        }
    }
}

/// Bytes on the control socket: lines (at most `MAX_LINE`), each a JSON
/// control message of either direction; what parses survives a round trip.
pub fn control_line(data: &[u8]) {
    let mut codec = LinesCodec::new_with_max_length(MAX_LINE);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(line)) = codec.decode_eof(&mut buf) {
        if let Ok(m) = serde_json::from_str::<ClientMessage>(&line) {
            let again = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<ClientMessage>(&again).unwrap(), m);
        }
        if let Ok(m) = serde_json::from_str::<ServerMessage>(&line) {
            let again = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<ServerMessage>(&again).unwrap(), m);
        }
    }
}

/// `store.header`: strict JSON, bounded parameters, round trip.
pub fn store_header(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("store.header");
    if let Ok(h) = StoreHeader::from_json(text, path) {
        h.params.validate().unwrap();
        let again = StoreHeader::from_json(&h.to_json().unwrap(), path).unwrap();
        assert_eq!(again, h);
    }
}

/// A backup file: the plain header (read before any key is derived), and
/// the same bytes as the decrypted contents (the JSON payload decoder).
pub fn backup(data: &[u8]) {
    let path = Path::new("umbra.backup");
    if let Ok(h) = crate::store::backup::parse_header(data, path) {
        h.params.validate().unwrap();
        assert!(h.salt.len() >= 16);
        assert!(h.body.len() >= 16, "room for the tag");
        assert_eq!(h.bytes.len() + h.body.len(), data.len());
    }
    let _ = crate::store::backup::decode_payload(data, path);
}

/// The configuration file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(cfg) = crate::config::Config::from_toml(text) {
        let node = cfg.node_config();
        assert!(node.max_inbound > 0);
        let _ = cfg.files.policy();
    }
}

/// A file name offered by a peer becomes one safe path component.
pub fn file_name(data: &[u8]) {
    let name = String::from_utf8_lossy(data);
    let out = sanitize(&name);
    assert!(!out.is_empty() && out.len() <= MAX_FILE_NAME, "{out:?}");
    assert!(out != "." && out != "..", "{out:?}");
    assert!(
        !out.chars()
            .any(|c| matches!(c, '/' | '\\' | '\0') || c.is_control()),
        "{out:?}"
    );
    assert!(
        !out.starts_with(['.', ' ']) && !out.ends_with(['.', ' ']),
        "{out:?}"
    );
    let mut parts = Path::new(&out).components();
    assert!(
        matches!(parts.next(), Some(std::path::Component::Normal(_))) && parts.next().is_none(),
        "{out:?}"
    );
    assert_eq!(sanitize(&out), out, "sanitising is idempotent");
}

// ---------------------------------------------------------------------------
// peer_sequence: the connection state machine under arbitrary sequences

/// Operations of [`peer_sequence`], one byte each, then their arguments.
pub mod op {
    /// The peer seals a message built from the next bytes and we read it.
    pub const SEND: u8 = 0;
    /// The peer seals arbitrary plaintext (`len`, bytes).
    pub const SEND_RAW: u8 = 1;
    /// An unsealed frame body (`len`, bytes).
    pub const RAW_FRAME: u8 = 2;
    /// A frame the peer sent before, again.
    pub const REPLAY: u8 = 3;
    /// The peer's next frame with one byte flipped (`index`).
    pub const TAMPER: u8 = 4;
    /// Texts join our outbox (`count`, then a seq byte each).
    pub const QUEUE: u8 = 5;
    /// The coalesced Ack for what we stored.
    pub const TAKE_ACK: u8 = 6;
    /// A read receipt (`upto`).
    pub const RECEIPT: u8 = 7;
    /// Heartbeat, a file message, or re-sending the unacknowledged.
    pub const LOCAL: u8 = 8;
    /// Local `end` or `close`.
    pub const FINISH: u8 = 9;
    pub const COUNT: u8 = 10;
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn next(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }
    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }
    fn u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_be_bytes(b)
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

/// A message of the peer, built from input bytes near the interesting values.
fn peer_message(inp: &mut Input<'_>, stored: u64) -> Option<PeerMessage> {
    let id = [inp.byte() % 2; 16];
    let small = |inp: &mut Input<'_>| u64::from(inp.byte() % 24);
    Some(match inp.byte() % 15 {
        1 => PeerMessage::Text(Text {
            id,
            seq: match inp.byte() % 4 {
                0 => stored + 1,
                1 => stored,
                2 => stored + 2,
                _ => inp.u64(),
            },
            sent_at: SEED_TIME,
            body: String::from_utf8_lossy(inp.bytes(8)).into_owned(),
        }),
        2 => PeerMessage::Ack { upto: small(inp) },
        3 => PeerMessage::Receipt { upto: small(inp) },
        4 => PeerMessage::Presence(match inp.byte() % 3 {
            0 => PresenceState::Online,
            1 => PresenceState::Away,
            _ => PresenceState::GoingOffline,
        }),
        5 => PeerMessage::FileOffer(FileOffer {
            transfer_id: id,
            name: String::from_utf8_lossy(inp.bytes(8)).into_owned(),
            size: inp.u64(),
            media: Media::File,
            sha256: [0; 32],
            chunk_size: 65_536,
        }),
        6 => PeerMessage::FileAccept(FileAccept {
            transfer_id: id,
            have: vec![(0, small(inp) + 1)],
        }),
        7 => PeerMessage::FileChunk(FileChunk {
            transfer_id: id,
            index: small(inp),
            data: vec![inp.byte(); 4],
        }),
        8 => PeerMessage::FileDone { transfer_id: id },
        9 => PeerMessage::FileCancel {
            transfer_id: id,
            reason: inp.byte(),
        },
        10 => PeerMessage::EndSession,
        11 => PeerMessage::Hello(Hello {
            protocol: u16::from(inp.byte() % 3),
            last_received: small(inp),
        }),
        12 => PeerMessage::FileAck {
            transfer_id: id,
            next: small(inp),
        },
        13 => PeerMessage::FileLane {
            lane_id: id,
            key: LaneKey::new([7; 32]),
        },
        14 => PeerMessage::FileLaneAck {
            lane_id: id,
            count: small(inp),
        },
        _ => return None,
    })
}

fn rank(s: PeerState) -> u8 {
    match s {
        PeerState::AwaitingHello => 0,
        PeerState::Ready => 1,
        PeerState::Closed | PeerState::Failed => 2,
    }
}

/// What the harness knows independently of [`Peer`].
struct Model {
    /// The peer's end of the session: opens what we write, seals what we read.
    remote: Session,
    /// Frames the peer sent (for replays).
    sent: Vec<Vec<u8>>,
    /// Highest incoming Text seq stored (from Records).
    stored: u64,
    /// Highest outgoing Text seq ever queued.
    highest_out: u64,
    /// Next receive-chain seq recorded; next send-chain seq persisted.
    recv_next: u64,
    send_next: u64,
    window: u64,
    became_ready: bool,
}

impl Model {
    /// Checks the actions of one call. `frame_seq`: the seq of the frame
    /// read, if the call read one.
    fn check(&mut self, peer: &Peer, actions: &[Action], frame_seq: Option<u64>) {
        for a in actions {
            match a {
                Action::Write { frame, send, sent } => {
                    assert!(send.seq > self.send_next || self.send_next == 0);
                    self.send_next = send.seq;
                    let plaintext = self.remote.open(frame).expect("our frames open in order");
                    let msg = PeerMessage::decode(&plaintext).expect("our frames decode");
                    assert_eq!(self.remote.next_recv_seq(), send.seq);
                    if let PeerMessage::Text(t) = &msg {
                        assert_eq!(sent.map(MessageId::as_i64), Some(t.seq as i64));
                        assert!(t.seq <= peer.acked_out() + self.window, "window exceeded");
                        assert!(t.seq <= self.highest_out);
                    } else {
                        assert!(sent.is_none());
                    }
                    if let PeerMessage::Ack { upto } = msg {
                        assert_eq!(upto, self.stored, "the Ack covers exactly what is stored");
                    }
                }
                Action::Record { recv, effect } => {
                    let seq = frame_seq.expect("a Record only for a frame read");
                    assert_eq!(
                        recv.seq,
                        seq + 1,
                        "the Record holds the chain after this frame"
                    );
                    assert!(recv.seq > self.recv_next);
                    self.recv_next = recv.seq;
                    match effect {
                        Effect::Text(t) => {
                            assert_eq!(t.seq, self.stored + 1, "only the next Text is stored");
                            self.stored = t.seq;
                        }
                        Effect::Ack(u) | Effect::Receipt(u) => {
                            assert!(*u <= self.highest_out, "an Ack beyond what we sent applied");
                        }
                        Effect::Nothing => {}
                    }
                }
                Action::Ready { .. } => {
                    assert!(!self.became_ready, "Ready twice");
                    self.became_ready = true;
                }
                Action::Presence(_) | Action::PeerEnded | Action::File(_) | Action::Group(_) => {
                    assert!(frame_seq.is_some());
                }
            }
        }
    }
}

/// Drives one [`Peer`] (our end of the fixed session) with an arbitrary
/// sequence of frames from the peer and local calls, checking: no panic;
/// the state only moves forward; a frame that fails yields no action (so
/// nothing is stored) and fails the connection; Records carry the chain of
/// exactly the frame read and store only the next Text; what we write opens
/// and decodes at the peer, in order, inside the send window.
pub fn peer_sequence(data: &[u8]) {
    let mut inp = Input(data);
    let side = if inp.byte() % 2 == 0 {
        Side::Connector
    } else {
        Side::Listener
    };
    let params = PeerParams {
        side,
        highest_in: u64::from(inp.byte() % 4),
        highest_out: u64::from(inp.byte() % 8),
        window: u64::from(inp.byte() % 6) + 1,
    };
    let (remote, ours) = session_pair();
    let mut peer = Peer::new(ours, params);
    let mut m = Model {
        remote,
        sent: Vec::new(),
        stored: params.highest_in,
        highest_out: params.highest_out,
        recv_next: 0,
        send_next: 0,
        window: params.window,
        became_ready: false,
    };
    let actions = peer.start().unwrap();
    m.check(&peer, &actions, None);

    while let Some(code) = inp.next() {
        let before = peer.state();
        let done = matches!(before, PeerState::Closed | PeerState::Failed);
        // A frame for `on_frame`, and its seq if it is a sealed frame of the peer.
        let mut frame: Option<(Vec<u8>, Option<u64>)> = None;
        match code % op::COUNT {
            op::SEND | op::SEND_RAW | op::TAMPER => {
                let skip = if inp.byte() % 4 == 3 {
                    inp.byte() % 4
                } else {
                    0
                };
                for _ in 0..skip {
                    let _ = m.remote.seal(&[10]);
                }
                let plaintext = match code % op::COUNT {
                    op::SEND_RAW => {
                        let n = usize::from(inp.byte());
                        Some(inp.bytes(n).to_vec())
                    }
                    _ => peer_message(&mut inp, m.stored).and_then(|msg| msg.encode().ok()),
                };
                if let Some(p) = plaintext {
                    let seq = m.remote.next_send_seq();
                    let Ok(mut f) = m.remote.seal(&p) else {
                        continue;
                    };
                    if code % op::COUNT == op::TAMPER {
                        let i = usize::from(inp.byte()) % f.len();
                        f[i] ^= 1 << (inp.byte() % 8);
                        m.sent.push(f.clone());
                        frame = Some((f, None));
                    } else {
                        m.sent.push(f.clone());
                        frame = Some((f, Some(seq)));
                    }
                }
            }
            op::RAW_FRAME => {
                let n = usize::from(inp.byte());
                frame = Some((inp.bytes(n).to_vec(), None));
            }
            op::REPLAY => {
                if !m.sent.is_empty() {
                    let i = usize::from(inp.byte()) % m.sent.len();
                    frame = Some((m.sent[i].clone(), None));
                }
            }
            op::QUEUE => {
                let texts = (0..inp.byte() % 4)
                    .map(|_| {
                        let seq = u64::from(inp.byte() % 16) + 1;
                        OutText {
                            message: MessageId(seq as i64),
                            text: Text {
                                id: [seq as u8; 16],
                                seq,
                                sent_at: SEED_TIME,
                                body: "out".into(),
                            },
                        }
                    })
                    .collect::<Vec<_>>();
                let queued: Vec<u64> = texts.iter().map(|t| t.text.seq).collect();
                match peer.queue(texts) {
                    Ok(actions) => {
                        let acked = peer.acked_out();
                        for s in queued.into_iter().filter(|s| *s > acked) {
                            m.highest_out = m.highest_out.max(s);
                        }
                        m.check(&peer, &actions, None);
                    }
                    Err(_) => assert!(done),
                }
            }
            op::TAKE_ACK => {
                if let Some(a) = peer.take_ack().unwrap() {
                    m.check(&peer, &[a], None);
                }
            }
            op::RECEIPT => {
                let upto = u64::from(inp.byte() % 24);
                if let Some(a) = peer.receipt(upto).unwrap() {
                    m.check(&peer, &[a], None);
                }
            }
            op::LOCAL => {
                let actions = match inp.byte() % 3 {
                    0 => peer
                        .presence(PresenceState::Away)
                        .unwrap()
                        .into_iter()
                        .collect(),
                    1 => peer
                        .file(&PeerMessage::FileDone {
                            transfer_id: [1; 16],
                        })
                        .unwrap()
                        .into_iter()
                        .collect(),
                    _ => peer.resend_unacked().unwrap(),
                };
                m.check(&peer, &actions, None);
            }
            _ => {
                let a = if inp.byte() % 2 == 0 {
                    peer.end().unwrap()
                } else {
                    peer.close().unwrap()
                };
                m.check(&peer, &a.into_iter().collect::<Vec<_>>(), None);
                assert_eq!(peer.state(), PeerState::Closed);
            }
        }
        if let Some((body, seq)) = frame {
            match peer.on_frame(&body) {
                Ok(actions) => {
                    assert!(!done, "a closed connection accepted a frame");
                    let seq = seq.expect("only authentic frames of the peer are accepted");
                    assert!(seq >= m.recv_next || m.recv_next == 0);
                    m.check(&peer, &actions, Some(seq));
                }
                Err(_) => assert!(matches!(
                    peer.state(),
                    PeerState::Failed | PeerState::Closed
                )),
            }
        }
        let after = peer.state();
        assert!(rank(after) >= rank(before), "{before:?} -> {after:?}");
        if before == PeerState::Failed {
            assert!(matches!(after, PeerState::Failed | PeerState::Closed));
        }
        if after == PeerState::Ready {
            assert!(m.became_ready, "Ready without the Ready action");
        }
    }
}

// ---------------------------------------------------------------------------
// Seeds

#[cfg(test)]
mod seeds {
    use super::*;
    use crate::control::proto::{Reply, Request, VERSION};
    use crate::store::KdfParams;
    use crate::store::backup::{Backup, BackupContact};
    use crate::store::{ContactState, NewContact, OwnIdentity};
    use secrecy::SecretString;

    use umbra_proto::fuzzing::Target;

    const TARGETS: [Target; 7] = [
        ("lane_open", lane_open),
        ("control_line", control_line),
        ("store_header", store_header),
        ("backup", backup),
        ("config", config),
        ("file_name", file_name),
        ("peer_sequence", peer_sequence),
    ];

    use umbra_proto::fuzzing::{corpus_dir as corpus, write_seed as write};

    /// Writes `fuzz/corpus/<target>/` of this crate's targets. Run:
    /// `cargo test -p umbra --lib write_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore = "writes fuzz/corpus; run by hand when a format changes"]
    fn write_fuzz_seeds() {
        let mut lane = Lane::new(LANE_ID, &LANE_KEY);
        let chunk = |index| {
            PeerMessage::FileChunk(FileChunk {
                transfer_id: [3; 16],
                index,
                data: b"chunk".to_vec(),
            })
            .encode()
            .unwrap()
        };
        let (f0, f1) = (lane.seal(&chunk(0)).unwrap(), lane.seal(&chunk(1)).unwrap());
        write("lane_open", "one", &join_records(&[&f0]));
        write("lane_open", "two", &join_records(&[&f0, &f1]));

        let lines = |msgs: &[String]| msgs.iter().map(|m| format!("{m}\n")).collect::<String>();
        let client = |id, cmd| {
            serde_json::to_string(&ClientMessage {
                v: VERSION,
                id,
                cmd,
            })
            .unwrap()
        };
        write(
            "control_line",
            "client",
            lines(&[
                client(1, Request::Status),
                client(2, Request::Subscribe),
                r#"{"v":3,"id":3,"cmd":"send","to":"@bob","text":"hi"}"#.into(),
            ])
            .as_bytes(),
        );
        let reply = ServerMessage::Reply {
            id: 1,
            ok: Some(Reply::Done),
            error: None,
        };
        write(
            "control_line",
            "server",
            lines(&[serde_json::to_string(&reply).unwrap()]).as_bytes(),
        );

        let pw = SecretString::from("fuzz".to_owned());
        let (header, _) = StoreHeader::generate(KdfParams::insecure_for_tests(), &pw).unwrap();
        write(
            "store_header",
            "header",
            header.to_json().unwrap().as_bytes(),
        );

        let b = Backup {
            identity: OwnIdentity {
                username: "alice".into(),
                fingerprint: "00".repeat(20),
                secret_cert: zeroize::Zeroizing::new(vec![1, 2, 3]),
                created_at: SEED_TIME,
            },
            contacts: vec![BackupContact {
                contact: NewContact {
                    username: "bob".into(),
                    fingerprint: "11".repeat(20),
                    public_cert: vec![4, 5, 6],
                    onion_address: Some("127.0.0.1:7400".into()),
                    state: ContactState::parse("accepted").unwrap(),
                    verified: false,
                },
                last_seen: None,
            }],
        };
        let sealed = crate::store::backup::seal(&b, &pw, KdfParams::insecure_for_tests()).unwrap();
        write("backup", "file", &sealed);
        write(
            "backup",
            "payload",
            &crate::store::backup::encode_payload(&b).unwrap(),
        );

        let example =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/umbra.example.toml"))
                .unwrap();
        write("config", "example", &example);
        write(
            "config",
            "direct",
            b"[network]\nkind = \"direct\"\ndirect_listen = \"127.0.0.1:7400\"\n[limits]\nmax_connections = 3\n",
        );

        for (name, text) in [
            ("plain", "photo.jpg"),
            ("dots", "../../etc/passwd"),
            ("bidi", "photo\u{202e}gpj.exe"),
            ("long", &format!("{}.tar.gz", "a".repeat(300))),
        ] {
            write("file_name", name, text.as_bytes());
        }

        // Hello exchange, a Text stored, an Ack, our Text written and acked.
        // SEND: skip byte, id byte, kind byte, fields.
        let hello = [op::SEND, 0, 0, 11, 1, 0];
        let text = [op::SEND, 0, 0, 1, 0, b'h', b'i', 0, 0, 0, 0, 0, 0];
        let queue = [op::QUEUE, 1, 0];
        let ack = [op::SEND, 0, 0, 2, 1];
        let seqs = [
            (
                "listener",
                vec![
                    vec![1, 0, 0, 4],
                    hello.to_vec(),
                    text.to_vec(),
                    vec![op::TAKE_ACK],
                ],
            ),
            (
                "connector",
                vec![
                    vec![0, 0, 0, 4],
                    hello.to_vec(),
                    queue.to_vec(),
                    ack.to_vec(),
                    vec![op::FINISH, 0],
                ],
            ),
            (
                "hostile",
                vec![vec![1, 0, 0, 4], hello.to_vec(), vec![op::REPLAY, 0]],
            ),
        ];
        for (name, parts) in seqs {
            write("peer_sequence", name, &parts.concat());
        }
    }

    /// Every checked-in seed runs through its target without a finding, and
    /// the structured seeds reach what they were written for.
    #[test]
    fn seeds_pass() {
        umbra_proto::fuzzing::replay_seeds(&TARGETS);
        let path = corpus("store_header").join("header");
        StoreHeader::from_json(&std::fs::read_to_string(&path).unwrap(), &path)
            .expect("the header seed parses");
        crate::config::Config::from_toml(
            &std::fs::read_to_string(corpus("config").join("example")).unwrap(),
        )
        .expect("the example configuration parses");
    }
}
