//! The Handshaker API over TCP loopback, against the real `umbra-handshaker`
//! binary (`--listen 127.0.0.1:0 --no-onion`), driven by the library's
//! `HandshakerClient` and, for hostile input, by raw HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use umbra::envelope::Freshness;
use umbra::handshake::{self, MemorySeen};
use umbra::handshaker_api::binding::{BindingKey, SignedBinding};
use umbra::handshaker_client::{
    ConnectFuture, Connector, DirectoryEntry, HandshakerAddress, HandshakerClient,
    HandshakerClientError, Isolation,
};
use umbra::identity::{Identity, Username};

use crate::support::{Backend, Opts, Server, ident, rt};

fn refused_status(e: &HandshakerClientError) -> u16 {
    match e {
        HandshakerClientError::Refused { status, .. } => *status,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The binding in a registration answer.
fn binding(entry: &DirectoryEntry) -> SignedBinding {
    let hex_text = entry
        .binding
        .as_deref()
        .expect("the answer carries a binding");
    SignedBinding::decode(&hex::decode(hex_text).unwrap()).unwrap()
}

fn register_lookup_search_and_mailbox_round_trip(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let client = HandshakerClient::new(&server.url()).unwrap();
    let (alice, bob) = (ident("alice"), ident("bobby"));
    rt().block_on(async {
        assert!(client.health().await.is_ok());
        let alice_binding = binding(&client.register(&alice).await.unwrap());
        client.register(&bob).await.unwrap();

        let found = client
            .lookup(bob.username())
            .await
            .unwrap()
            .expect("bob is registered");
        assert_eq!(found.fingerprint, bob.fingerprint());
        assert!(
            client
                .lookup(&Username::parse("nobody").unwrap())
                .await
                .unwrap()
                .is_none()
        );
        let by_fpr = client
            .lookup_fingerprint(&alice.fingerprint())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(by_fpr.username, *alice.username());
        let hits = client.search("bob", 10).await.unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].username, "bobby");

        // The same name again, with another key: first come, first served.
        let err = client.register(&ident("bobby")).await.unwrap_err();
        assert_eq!(refused_status(&err), 409);
        let still = client.lookup(bob.username()).await.unwrap().unwrap();
        assert_eq!(still.fingerprint, bob.fingerprint());

        // Alice deposits a real connection request for Bob.
        let (request, _pending) = handshake::make_request(
            &alice,
            &found.cert,
            bob.username(),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.onion",
            "hello",
            &alice_binding,
        )
        .unwrap();
        client.deposit(bob.username(), &request).await.unwrap();

        // Bob fetches it; without an ack it stays (a crash loses nothing).
        let first = client.fetch(&bob).await.unwrap();
        assert_eq!(first.items.len(), 1);
        let again = client.fetch(&bob).await.unwrap();
        assert_eq!(again.items.len(), 1);
        assert_eq!(again.items[0].id, first.items[0].id);
        // Bob checks it offline, against the key he pinned from /v1/info.
        let key = client.info().await.unwrap().binding_key.unwrap();
        let anchor = handshake::TrustAnchor {
            address: client.address().as_str().to_owned(),
            key: BindingKey::from_hex(&key).unwrap(),
        };
        let (req, signer) = handshake::open_request(
            again.items[0].message.as_bytes(),
            &bob,
            &anchor,
            &mut MemorySeen::default(),
            Freshness::default(),
        )
        .unwrap();
        assert_eq!(signer.fingerprint(), alice.fingerprint());
        assert_eq!(req.note, "hello");

        // Alice cannot read Bob's mailbox, and a challenge works only once.
        let fetch_with = |who: &Identity, challenge: &str| {
            let statement = format!(
                "umbra-fetch-v1\nusername=bobby\nhandshaker={}\nchallenge={challenge}\n",
                server.url()
            );
            let body = serde_json::json!({
                "challenge": challenge,
                "signature": who.sign_detached(statement.as_bytes()).unwrap(),
            });
            server.raw(
                "POST",
                "/v1/mailbox/bobby/fetch",
                body.to_string().as_bytes(),
            )
        };
        let challenge = || {
            let (status, body) = server.raw("POST", "/v1/mailbox/bobby/challenge", b"");
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            v["challenge"].as_str().unwrap().to_owned()
        };
        let c = challenge();
        let (status, body) = fetch_with(&alice, &c);
        assert!(
            matches!(status, 401 | 403),
            "non-owner fetch: {status} {body}"
        );
        let c = challenge();
        assert_eq!(fetch_with(&bob, &c).0, 200);
        let (status, body) = fetch_with(&bob, &c);
        assert!(
            matches!(status, 401 | 403 | 410),
            "replayed challenge: {status} {body}"
        );

        // After the ack the item is gone.
        let ids: Vec<String> = again.items.iter().map(|i| i.id.clone()).collect();
        assert_eq!(
            client
                .ack(bob.username(), &again.ack_token, &ids)
                .await
                .unwrap(),
            1
        );
        assert!(client.fetch(&bob).await.unwrap().items.is_empty());
    });
}

fn hostile_requests_get_specific_statuses(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    assert_eq!(server.raw("POST", "/v1/register", b"{not json").0, 400);
    assert_eq!(server.raw("POST", "/v1/register", b"{}").0, 400);
    let big = vec![b'a'; 200 * 1024];
    assert_eq!(server.raw("POST", "/v1/mailbox/alice", &big).0, 413);
    let (status, body) = server.raw("GET", "/v1/users/@@bad", b"");
    assert!(matches!(status, 400 | 422), "{status} {body}");
    assert!(body.contains("\"error\""), "JSON error body: {body}");
    // Deposits need a proof of work.
    let (status, body) = server.raw(
        "POST",
        "/v1/mailbox/alice",
        br#"{"message":"-----BEGIN PGP MESSAGE-----\n-----END PGP MESSAGE-----","pow":{"ts":0,"nonce":"00"}}"#,
    );
    assert!(matches!(status, 400 | 404 | 422), "{status} {body}");
    assert_eq!(server.raw("GET", "/v1/health", b"").0, 200);
}

fn gpg_receives_a_registered_key_over_hkp(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let client = HandshakerClient::new(&server.url()).unwrap();
    let carol = ident("carol");
    rt().block_on(async { client.register(&carol).await.unwrap() });

    let home = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let keyserver = format!("hkp://127.0.0.1:{}", server.port);
    std::fs::write(
        home.path().join("dirmngr.conf"),
        format!("keyserver {keyserver}\ndisable-ipv6\n"),
    )
    .unwrap();
    let fpr = carol.fingerprint().to_hex();
    let out = Command::new("gpg")
        .arg("--homedir")
        .arg(home.path())
        .args([
            "--batch",
            "--no-tty",
            "--keyserver",
            &keyserver,
            "--recv-keys",
            &fpr,
        ])
        .output()
        .expect("gpg must be installed");
    assert!(
        out.status.success(),
        "gpg --recv-keys failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = Command::new("gpg")
        .arg("--homedir")
        .arg(home.path())
        .args(["--batch", "--with-colons", "--list-keys"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains(&format!("fpr:::::::::{fpr}:")), "{listed}");
    let _ = Command::new("gpgconf")
        .arg("--homedir")
        .arg(home.path())
        .args(["--kill", "all"])
        .status();
}

fn the_log_names_nobody(backend: Backend) {
    let logdir = tempfile::tempdir().unwrap();
    let log = logdir.path().join("server.log");
    let server = Server::with(Opts::on(backend).log(&log));
    let client = HandshakerClient::new(&server.url()).unwrap();
    let (erin, frank) = (ident("erin_logtest"), ident("frank_logtest"));
    let onion = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.onion";
    rt().block_on(async {
        let erin_binding = binding(&client.register(&erin).await.unwrap());
        client.register(&frank).await.unwrap();
        for _ in 0..20 {
            client.lookup(frank.username()).await.unwrap();
            client
                .lookup_fingerprint(&erin.fingerprint())
                .await
                .unwrap();
            client.search("frank", 5).await.unwrap();
        }
        let cert = client.lookup(frank.username()).await.unwrap().unwrap().cert;
        let (req, _) =
            handshake::make_request(&erin, &cert, frank.username(), onion, "hi", &erin_binding)
                .unwrap();
        client.deposit(frank.username(), &req).await.unwrap();
        let got = client.fetch(&frank).await.unwrap();
        let ids: Vec<String> = got.items.iter().map(|i| i.id.clone()).collect();
        client
            .ack(frank.username(), &got.ack_token, &ids)
            .await
            .unwrap();
        // Failures are logged too: make some.
        let _ = client.register(&ident("erin_logtest")).await;
        let _ = client
            .lookup(&Username::parse("nobody_here").unwrap())
            .await;
    });
    drop(server); // flushes and ends the log
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.is_empty(),
        "the server logs something at the default level"
    );
    // A log file gets no colour codes (UX-2026-11 A7).
    assert!(
        !text.contains('\x1b'),
        "ANSI escapes in a log file:\n{text}"
    );
    for needle in [
        "erin_logtest".to_string(),
        "frank_logtest".to_string(),
        "nobody_here".to_string(),
        erin.fingerprint().to_hex(),
        frank.fingerprint().to_hex(),
        erin.fingerprint().to_hex().to_lowercase(),
        onion.trim_end_matches(".onion").to_string(),
    ] {
        assert!(
            !text.contains(&needle),
            "the log contains an identifier: {needle}\n{text}"
        );
    }
}

/// A registration body for `who` as `name`, with every field overridable.
struct Reg<'a> {
    who: &'a Identity,
    name: &'a str,
    handshaker: String,
    timestamp: u64,
    signer: &'a Identity,
    difficulty: u32,
    pow: bool,
    /// Use a stamp whose hash has no leading zero bit at all.
    weak_pow: bool,
    /// Send this armored certificate instead of `who`'s.
    cert: Option<String>,
}

/// `who`'s public certificate with more `@` user IDs: self-signed by `who`'s
/// primary key if `bound`, else bare user ID packets (SECURITY-2026-11 H1).
fn with_user_ids(who: &Identity, extra: &[&str], bound: bool) -> String {
    use sequoia_openpgp::packet::{UserID, signature::SignatureBuilder};
    use sequoia_openpgp::parse::Parse;
    use sequoia_openpgp::serialize::SerializeInto;
    use sequoia_openpgp::types::SignatureType;
    let tsk = sequoia_openpgp::Cert::from_bytes(&who.to_secret_bytes().unwrap()[..]).unwrap();
    let mut signer = tsk
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .unwrap()
        .into_keypair()
        .unwrap();
    let mut packets: Vec<sequoia_openpgp::Packet> = Vec::new();
    for name in extra {
        let uid = UserID::from(*name);
        let sig = bound.then(|| {
            uid.bind(
                &mut signer,
                &tsk,
                SignatureBuilder::new(SignatureType::PositiveCertification),
            )
            .unwrap()
        });
        packets.push(uid.into());
        packets.extend(sig.map(Into::into));
    }
    let (cert, _) = tsk.insert_packets(packets).unwrap();
    String::from_utf8(cert.strip_secret_key_material().armored().to_vec().unwrap()).unwrap()
}

impl Reg<'_> {
    fn body(&self) -> String {
        use umbra::handshaker_client::pow::{Purpose, leading_zero_bits, solve, stamp_hash};
        use umbra::handshaker_client::wire::{RegisterRequest, register_statement};
        let folded = Username::parse(self.name)
            .map(|u| u.as_str().to_owned())
            .unwrap_or_else(|_| self.name.to_owned());
        let statement = match Username::parse(self.name) {
            Ok(u) => register_statement(
                &u,
                &self.handshaker,
                &self.who.fingerprint(),
                self.timestamp,
            ),
            Err(_) => format!("umbra-register-v1\nusername={}\n", self.name),
        };
        let req = RegisterRequest {
            username: self.name.to_owned(),
            cert: self
                .cert
                .clone()
                .unwrap_or_else(|| self.who.public_cert().unwrap().to_armored().unwrap()),
            proof: self.signer.sign_detached(statement.as_bytes()).unwrap(),
            timestamp: self.timestamp,
            current_proof: None,
            pow: self.pow.then(|| {
                loop {
                    let ts = umbra::time::now_secs();
                    let stamp = solve(Purpose::Register, &folded, self.difficulty, ts, &mut |_| {});
                    let bits = leading_zero_bits(&stamp_hash(Purpose::Register, &folded, &stamp));
                    if !self.weak_pow || bits == 0 {
                        break stamp;
                    }
                }
            }),
        };
        serde_json::to_string(&req).unwrap()
    }
}

fn every_registration_rejection_has_its_status_and_changes_nothing(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let gina = ident("gina");
    let mallory = ident("mallory");
    let now = umbra::time::now_secs();
    let good = || Reg {
        who: &gina,
        name: "gina",
        handshaker: server.url(),
        timestamp: now,
        signer: &gina,
        difficulty: 8,
        pow: true,
        weak_pow: false,
        cert: None,
    };
    let cases: Vec<(&str, Reg, &[u16])> = vec![
        (
            "a second, self-signed @ user ID (@alice)",
            Reg {
                cert: Some(with_user_ids(&gina, &["@alice"], true)),
                ..good()
            },
            &[400],
        ),
        (
            "a reserved @ user ID beside the name (@admin)",
            Reg {
                cert: Some(with_user_ids(&gina, &["@admin"], true)),
                ..good()
            },
            &[400],
        ),
        (
            "an unbound @ user ID (@admin, no self-signature)",
            Reg {
                cert: Some(with_user_ids(&gina, &["@admin"], false)),
                ..good()
            },
            &[400],
        ),
        (
            "bad signature (another key signed)",
            Reg {
                signer: &mallory,
                ..good()
            },
            &[401],
        ),
        (
            "stale timestamp",
            Reg {
                timestamp: now - 3600,
                ..good()
            },
            &[401, 422],
        ),
        (
            "wrong handshaker address in the proof",
            Reg {
                handshaker: "http://127.0.0.1:1".into(),
                ..good()
            },
            &[401],
        ),
        (
            "invalid username",
            Reg {
                name: "g!na",
                ..good()
            },
            &[422, 400],
        ),
        (
            "reserved username",
            Reg {
                name: "admin",
                ..good()
            },
            &[422, 409, 403],
        ),
        (
            "missing proof of work",
            Reg {
                pow: false,
                ..good()
            },
            &[422, 400],
        ),
    ];
    let search_before = server.raw("GET", "/v1/search?prefix=gin&limit=20", b"");
    for (what, reg, expected) in cases {
        let (status, body) = server.raw("POST", "/v1/register", reg.body().as_bytes());
        assert!(expected.contains(&status), "{what}: got {status} {body}");
        assert!(
            body.contains("\"error\""),
            "{what}: JSON error body: {body}"
        );
        assert_eq!(
            server.raw("GET", "/v1/users/gina", b"").0,
            404,
            "{what} registered gina"
        );
    }
    assert_eq!(
        server.raw("GET", "/v1/search?prefix=gin&limit=20", b""),
        search_before
    );
    // Insufficient proof of work: a stamp with no leading zero bit.
    let weak = Reg {
        difficulty: 0,
        weak_pow: true,
        ..good()
    };
    let (status, body) = server.raw("POST", "/v1/register", weak.body().as_bytes());
    assert!(
        matches!(status, 422 | 400),
        "insufficient PoW: {status} {body}"
    );
    // And the good one still works, once.
    let (status, body) = server.raw("POST", "/v1/register", good().body().as_bytes());
    assert!(matches!(status, 200 | 201), "{status} {body}");
    assert_eq!(server.raw("GET", "/v1/users/gina", b"").0, 200);
}

fn a_full_mailbox_drops_silently_and_keeps_what_it_has(backend: Backend) {
    let server = Server::with(Opts::on(backend).config("[mailbox]\ncapacity = 5\n"));
    let client = HandshakerClient::new(&server.url()).unwrap();
    let (hank, ivy) = (ident("hank"), ident("ivy"));
    rt().block_on(async {
        let hanks = binding(&client.register(&hank).await.unwrap());
        client.register(&ivy).await.unwrap();
        let cert = client.lookup(ivy.username()).await.unwrap().unwrap().cert;
        let capacity = 5; // below the per-mailbox write burst (20)
        for i in 0..capacity {
            let (req, _) = handshake::make_request(
                &hank,
                &cert,
                ivy.username(),
                "h.example:1",
                &format!("n{i}"),
                &hanks,
            )
            .unwrap();
            client.deposit(ivy.username(), &req).await.unwrap();
        }
        let (req, _) = handshake::make_request(
            &hank,
            &cert,
            ivy.username(),
            "h.example:1",
            "one too many",
            &hanks,
        )
        .unwrap();
        // Answered like any deposit (a stranger cannot see that the
        // mailbox is full: PROTOCOL.md §17.9), but not stored.
        client.deposit(ivy.username(), &req).await.unwrap();
        let got = client.fetch(&ivy).await.unwrap();
        assert_eq!(got.items.len() as u64 + got.remaining, capacity as u64);
        assert_eq!(got.dropped, 1, "the owner learns of the dropped deposit");
    });
}

fn rotation_and_deletion_need_the_registered_key(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let client = HandshakerClient::new(&server.url()).unwrap();
    let old = ident("jules");
    let new = ident("jules");
    let mallory = ident("jules");
    rt().block_on(async {
        client.register(&old).await.unwrap();
        // Rotation signed by someone who is not the registered key: refused.
        let err = client.rotate(&mallory, &new).await.unwrap_err();
        assert!(matches!(refused_status(&err), 401 | 403 | 409), "{err:?}");
        assert_eq!(
            client
                .lookup(old.username())
                .await
                .unwrap()
                .unwrap()
                .fingerprint,
            old.fingerprint()
        );
        // Rotation signed by the registered key: the new key takes over.
        client.rotate(&old, &new).await.unwrap();
        assert_eq!(
            client
                .lookup(old.username())
                .await
                .unwrap()
                .unwrap()
                .fingerprint,
            new.fingerprint()
        );
        // The old key can no longer delete the name; the current one can.
        let err = client.delete(&old).await.unwrap_err();
        assert!(matches!(refused_status(&err), 401 | 403 | 409), "{err:?}");
        assert!(client.lookup(old.username()).await.unwrap().is_some());
        client.delete(&new).await.unwrap();
        assert!(client.lookup(old.username()).await.unwrap().is_none());
    });
}

fn stored_certs_are_stripped_and_vks_serves_them(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let client = HandshakerClient::new(&server.url()).unwrap();
    let kim = ident("kim");
    rt().block_on(async { client.register(&kim).await.unwrap() });
    let (status, body) = server.raw(
        "GET",
        &format!("/vks/v1/by-fingerprint/{}", kim.fingerprint().to_hex()),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let served = umbra::identity::PublicCert::from_bytes(body.as_bytes()).unwrap();
    assert_eq!(served.fingerprint(), kim.fingerprint());
    assert_eq!(served.username().unwrap(), *kim.username());
    assert!(!body.contains("PRIVATE KEY"));
}

#[test]
fn sigterm_and_sigint_shut_down_gracefully() {
    for sig in ["-TERM", "-INT"] {
        let logdir = tempfile::tempdir().unwrap();
        let log = logdir.path().join("server.log");
        let mut server = Server::with(Opts::sqlite().log(&log));
        // One served request first, so the server is fully up.
        assert_eq!(server.raw("GET", "/v1/health", b"").0, 200);
        let pid = server.child.id().to_string();
        assert!(
            Command::new("kill")
                .args([sig, &pid])
                .status()
                .unwrap()
                .success()
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(40);
        let status = loop {
            if let Some(s) = server.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{sig}: still running after 40 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{sig}: exit status {status:?}");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("shutting down"), "{sig}: {text}");
        assert!(text.contains("stopped"), "{sig}: {text}");
    }
}

/// Records the isolation of every stream a client opens (plain TCP below).
#[derive(Default)]
struct Recording(std::sync::Mutex<Vec<Isolation>>);

impl Connector for Recording {
    fn connect<'a>(
        &'a self,
        addr: &'a HandshakerAddress,
        isolation: Isolation,
    ) -> ConnectFuture<'a> {
        self.0.lock().unwrap().push(isolation);
        umbra::handshaker_client::TcpConnector.connect(addr, isolation)
    }
}

/// SECURITY-2026-11 H2: the calls made as the user (register, the signed
/// mailbox challenge, fetch and ack) never share an isolation group with
/// anonymous ones (lookup, info, deposit, search), and each anonymous call
/// gets a group of its own.
fn account_calls_and_anonymous_calls_never_share_circuits(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let rec = std::sync::Arc::new(Recording::default());
    let client = HandshakerClient::with_connector(&server.url(), rec.clone()).unwrap();
    let (alice, bob) = (ident("alice"), ident("bobby"));
    let calls = |rec: &Recording| std::mem::take(&mut *rec.0.lock().unwrap());
    rt().block_on(async {
        client.register(&bob).await.unwrap();
        assert_eq!(
            calls(&rec),
            [Isolation::Fresh, Isolation::Account],
            "info, register"
        );
        let alices = binding(&client.register(&alice).await.unwrap());
        calls(&rec);
        let found = client.lookup(bob.username()).await.unwrap().unwrap();
        client.search("bob", 5).await.unwrap();
        client.lookup_fingerprint(&bob.fingerprint()).await.unwrap();
        let (env, _) = handshake::make_request(
            &alice,
            &found.cert,
            bob.username(),
            "a.onion",
            "hi",
            &alices,
        )
        .unwrap();
        client.deposit(bob.username(), &env).await.unwrap();
        assert_eq!(
            calls(&rec),
            [Isolation::Fresh; 5],
            "lookup, search, by-fingerprint, info, deposit"
        );
        let fetched = client.fetch(&bob).await.unwrap();
        let ids: Vec<String> = fetched.items.iter().map(|i| i.id.clone()).collect();
        client
            .ack(bob.username(), &fetched.ack_token, &ids)
            .await
            .unwrap();
        assert_eq!(
            calls(&rec),
            [Isolation::Account; 3],
            "challenge, fetch, ack"
        );
    });
}

/// The binding key in `/v1/info` signs every binding the server hands out
/// (registration, lookups, the owner's fetch), each for exactly the name,
/// key and address it serves; the key is the data dir's and survives a
/// restart (clients pin it: PROTOCOL.md §17.11).
fn bindings_are_signed_by_the_published_key_which_survives_a_restart(backend: Backend) {
    use umbra_proto::handshaker_api::binding::{BindingKey, SignedBinding};
    use umbra_proto::handshaker_api::wire::{InfoResponse, UserResponse};

    let mut server = Server::with(Opts::on(backend));
    let rt = rt();
    let alice = ident("alice");
    let client = HandshakerClient::new(&server.url()).unwrap();
    let info: InfoResponse = rt.block_on(client.info()).unwrap();
    let key = BindingKey::from_hex(info.binding_key.as_deref().expect("binding_key")).unwrap();
    rt.block_on(client.register(&alice)).unwrap();
    let now = umbra::time::now_secs();
    let check = |hex_binding: Option<&str>, addr: &str| {
        let bytes = hex::decode(hex_binding.expect("a binding")).unwrap();
        let b = SignedBinding::decode(&bytes).unwrap();
        b.check(&key, alice.username(), &alice.fingerprint(), addr, now)
            .unwrap();
        assert!(b.binding.expires_at > now + 6 * 24 * 3600, "valid for days");
    };
    let addr = client.address().as_str().to_owned();
    let (status, body) = server.raw("GET", "/v1/users/alice", b"");
    assert_eq!(status, 200, "{body}");
    let entry: UserResponse = serde_json::from_str(&body).unwrap();
    check(entry.binding.as_deref(), &addr);
    let fpr = alice.fingerprint().to_hex();
    let (_, body) = server.raw("GET", &format!("/v1/by-fingerprint/{fpr}"), b"");
    let entry: UserResponse = serde_json::from_str(&body).unwrap();
    check(entry.binding.as_deref(), &addr);
    let fetched = rt.block_on(client.fetch(&alice)).unwrap();
    check(fetched.binding.as_deref(), &addr);

    server.restart();
    let client = HandshakerClient::new(&server.url()).unwrap();
    let info: InfoResponse = rt.block_on(client.info()).unwrap();
    assert_eq!(
        info.binding_key.as_deref(),
        Some(key.to_hex().as_str()),
        "the key survives a restart"
    );
}

crate::on_both_backends!(
    register_lookup_search_and_mailbox_round_trip,
    hostile_requests_get_specific_statuses,
    gpg_receives_a_registered_key_over_hkp,
    the_log_names_nobody,
    every_registration_rejection_has_its_status_and_changes_nothing,
    a_full_mailbox_drops_silently_and_keeps_what_it_has,
    rotation_and_deletion_need_the_registered_key,
    stored_certs_are_stripped_and_vks_serves_them,
    account_calls_and_anonymous_calls_never_share_circuits,
    bindings_are_signed_by_the_published_key_which_survives_a_restart,
);
