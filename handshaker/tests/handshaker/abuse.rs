//! The Handshaker under attack (issue #16; SECURITY-2026-11 M3, M4, L7):
//! each test is one attack, made over loopback HTTP against the real binary,
//! and checks that honest users are still served and that the attacker
//! learns nothing it should not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use umbra::handshaker_client::HandshakerClient;
use umbra::handshaker_client::pow::{PowStamp, Purpose, solve};
use umbra::handshaker_client::wire::{
    DeleteRequest, DepositRequest, RegisterRequest, delete_statement, register_statement,
};

use crate::support::{Backend, Opts, Server, ident, rt};

/// A stamp at the test servers' difficulty (8 bits).
fn stamp(purpose: Purpose, resource: &str) -> PowStamp {
    solve(purpose, resource, 8, umbra::time::now_secs(), &mut |_| {})
}

/// An armored "message" the server accepts (it cannot read more of it).
fn message(tag: &str) -> String {
    format!("-----BEGIN PGP MESSAGE-----\n\n{tag}\n-----END PGP MESSAGE-----\n")
}

fn deposit(server: &Server, to: &str, msg: &str, pow: &PowStamp) -> (u16, String) {
    let body = DepositRequest {
        message: msg.to_owned(),
        pow: Some(pow.clone()),
    };
    server.raw(
        "POST",
        &format!("/v1/mailbox/{to}"),
        serde_json::to_string(&body).unwrap().as_bytes(),
    )
}

fn error_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// M3: bodies that fail before the proof of work (not JSON, wrong shape, no
/// stamp, a bad stamp) take no write token: after 800 of them an honest
/// deposit is accepted (was: 429 `rate_limited`).
fn junk_bodies_do_not_starve_honest_writes(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let client = HandshakerClient::new(&server.url()).unwrap();
    let bob = ident("bob");
    rt().block_on(client.register(&bob)).unwrap();
    let no_pow = serde_json::json!({"message": message("x")}).to_string();
    let bad_pow = serde_json::json!({
        "message": message("x"),
        "pow": {"ts": umbra::time::now_secs(), "nonce": "0123456789abcdef0123456789abcdef"},
    })
    .to_string();
    for _ in 0..200 {
        server.raw("POST", "/v1/register", b"{}");
        server.raw("POST", "/v1/register", b"not json");
        server.raw("POST", "/v1/mailbox/bob", no_pow.as_bytes());
        server.raw("POST", "/v1/mailbox/bob", bad_pow.as_bytes());
    }
    let got = rt().block_on(client.deposit(bob.username(), &message("honest")));
    assert!(got.is_ok(), "honest deposit after junk: {got:?}");
}

/// M3 / §17.4: the stamp is checked before any OpenPGP parsing: a
/// registration with an unparsable certificate and no stamp is refused for
/// the stamp (was: 400 `bad_cert`, i.e. the certificate was parsed first).
fn certificates_are_parsed_only_after_the_proof_of_work(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let body = serde_json::json!({
        "username": "gina",
        "cert": "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\ngarbage\n-----END PGP PUBLIC KEY BLOCK-----\n",
        "proof": "x",
        "timestamp": umbra::time::now_secs(),
    });
    let (status, body) = server.raw("POST", "/v1/register", body.to_string().as_bytes());
    assert_eq!(
        (status, error_code(&body).as_str()),
        (422, "pow_required"),
        "{body}"
    );
}

/// M3: anonymous challenge requests for someone else's mailbox cannot make
/// the owner's fetch fail (was: 503 `busy` once 10,000 challenges, here
/// 50, were outstanding).
fn anonymous_challenges_do_not_block_fetches(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let client = HandshakerClient::new(&server.url()).unwrap();
    let (bob, carol) = (ident("bob"), ident("carol"));
    rt().block_on(async {
        client.register(&bob).await.unwrap();
        client.register(&carol).await.unwrap();
    });
    for _ in 0..100 {
        let (status, body) = server.raw("POST", "/v1/mailbox/carol/challenge", b"");
        assert_eq!(status, 200, "{body}");
    }
    let got = rt().block_on(client.fetch(&bob));
    assert!(got.is_ok(), "fetch after a challenge flood: {got:?}");
}

/// M4: a deposit the Handshaker does not keep (the mailbox is full) still
/// spends its stamp: re-sending the same stamp after the owner made room is
/// `pow_reused` (was: 429, then 202 — an oracle of the owner's fetches).
fn a_refused_deposit_spends_its_stamp(backend: Backend) {
    let server = Server::with(Opts::on(backend).config("[mailbox]\ncapacity = 3\n"));
    let client = HandshakerClient::new(&server.url()).unwrap();
    let hank = ident("hank");
    rt().block_on(client.register(&hank)).unwrap();
    for i in 0..3 {
        let (status, body) = deposit(
            &server,
            "hank",
            &message(&i.to_string()),
            &stamp(Purpose::Deposit, "hank"),
        );
        assert_eq!(status, 202, "{body}");
    }
    let s = stamp(Purpose::Deposit, "hank");
    let first = deposit(&server, "hank", &message("probe"), &s);
    rt().block_on(async {
        let got = client.fetch(&hank).await.unwrap();
        let ids = [got.items[0].id.clone()];
        client
            .ack(hank.username(), &got.ack_token, &ids)
            .await
            .unwrap();
    });
    let (status, body) = deposit(&server, "hank", &message("probe"), &s);
    assert_eq!(
        (status, error_code(&body).as_str()),
        (422, "pow_reused"),
        "first answer {first:?}, second {status} {body}"
    );
}

/// M4: a stranger cannot tell a full mailbox from one with room: a deposit
/// into a full mailbox is answered exactly like an accepted one (was: 429
/// `mailbox_full`), and the owner's fetch counts what was dropped.
fn mailbox_fullness_is_invisible_to_strangers(backend: Backend) {
    let server = Server::with(Opts::on(backend).config("[mailbox]\ncapacity = 2\n"));
    let client = HandshakerClient::new(&server.url()).unwrap();
    let hank = ident("hank");
    rt().block_on(client.register(&hank)).unwrap();
    let mut answers = Vec::new();
    for i in 0..4 {
        let (status, body) = deposit(
            &server,
            "hank",
            &message(&i.to_string()),
            &stamp(Purpose::Deposit, "hank"),
        );
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let keys: Vec<String> = v
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        answers.push((status, keys));
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]) && answers[0].0 == 202,
        "answers differ: {answers:?}"
    );
    let got = rt().block_on(client.fetch(&hank)).unwrap();
    assert_eq!(got.items.len(), 2);
    assert_eq!(got.dropped, 2, "the owner learns that 2 were dropped");
}

/// M4: spent stamps are persisted: a restart does not make them usable
/// again (was: 202 after a restart).
fn spent_stamps_survive_a_restart(backend: Backend) {
    let mut server = Server::with(Opts::on(backend));
    let client = HandshakerClient::new(&server.url()).unwrap();
    rt().block_on(client.register(&ident("ivy"))).unwrap();
    let s = stamp(Purpose::Deposit, "ivy");
    assert_eq!(deposit(&server, "ivy", &message("1"), &s).0, 202);
    server.restart();
    let (status, body) = deposit(&server, "ivy", &message("2"), &s);
    assert_eq!(
        (status, error_code(&body).as_str()),
        (422, "pow_reused"),
        "{body}"
    );
}

/// L7 / §17.5: register and delete proofs are single use: a captured delete proof cannot delete a re-registration, a
/// captured registration proof cannot register again with a new stamp
/// (was: 200 and 201).
fn register_and_delete_proofs_are_single_use(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let jo = ident("jo_proofs");
    let addr = server.url();
    // Not the current second: the owner's own later proofs differ.
    let now = umbra::time::now_secs() - 5;
    let register_body = || {
        let statement = register_statement(jo.username(), &addr, &jo.fingerprint(), now);
        let req = RegisterRequest {
            username: "jo_proofs".into(),
            cert: jo.public_cert().unwrap().to_armored().unwrap(),
            proof: jo.sign_detached(statement.as_bytes()).unwrap(),
            timestamp: now,
            current_proof: None,
            pow: Some(stamp(Purpose::Register, "jo_proofs")),
        };
        serde_json::to_string(&req).unwrap()
    };
    let proof_body = register_body();
    let (status, body) = server.raw("POST", "/v1/register", proof_body.as_bytes());
    assert_eq!(status, 201, "{body}");
    let statement = delete_statement(jo.username(), &addr, &jo.fingerprint(), now);
    let delete = serde_json::to_string(&DeleteRequest {
        proof: jo.sign_detached(statement.as_bytes()).unwrap(),
        timestamp: now,
    })
    .unwrap();
    let (status, body) = server.raw("DELETE", "/v1/users/jo_proofs", delete.as_bytes());
    assert_eq!(status, 200, "{body}");
    // The same registration proof, with a fresh stamp.
    let mut again: serde_json::Value = serde_json::from_str(&proof_body).unwrap();
    again["pow"] = serde_json::to_value(stamp(Purpose::Register, "jo_proofs")).unwrap();
    let (status, body) = server.raw("POST", "/v1/register", again.to_string().as_bytes());
    assert_eq!(
        (status, error_code(&body).as_str()),
        (401, "proof_reused"),
        "{body}"
    );
    // Registered again by its owner (new proof), the name cannot be deleted
    // with the captured delete proof.
    let client = HandshakerClient::new(&server.url()).unwrap();
    rt().block_on(client.register(&jo)).unwrap();
    // Registering exactly what is registered is a no-op, not a reuse, even
    // within the same second (`umbra register` twice).
    rt().block_on(client.register(&jo)).unwrap();
    let (status, body) = server.raw("DELETE", "/v1/users/jo_proofs", delete.as_bytes());
    assert_eq!(
        (status, error_code(&body).as_str()),
        (401, "proof_reused"),
        "{body}"
    );
    assert_eq!(server.raw("GET", "/v1/users/jo_proofs", b"").0, 200);
}

/// L7 / §17.8: search prefixes are 3–32 characters (was: 200 for an empty
/// or 1-character prefix, enumerating the directory).
fn search_prefixes_are_three_to_32_characters(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let client = HandshakerClient::new(&server.url()).unwrap();
    rt().block_on(client.register(&ident("kim_search")))
        .unwrap();
    for p in ["", "k", "ki", &"k".repeat(33)] {
        let (status, body) = server.raw("GET", &format!("/v1/search?prefix={p}"), b"");
        assert_eq!(
            (status, error_code(&body).as_str()),
            (400, "bad_search"),
            "prefix {p:?}: {body}"
        );
    }
    let (status, body) = server.raw("GET", "/v1/search?prefix=kim", b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("kim_search"), "{body}");
}

/// M3 (issue #16 item 1): 300 connections that send one header line and
/// then nothing do not hold every slot: a lookup made after them is
/// answered within 2 s (was: 7.3 s, until the 10 s header timeout freed
/// slots).
fn slow_clients_cannot_hold_the_connection_slots(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.write_all(b"GET /v1/health HTTP/1.1\r\n").unwrap();
        slow.push(s);
    }
    let start = Instant::now();
    let (status, body) = server.raw("GET", "/v1/users/nobody_slow", b"");
    let took = start.elapsed();
    eprintln!("a lookup behind 300 slow clients: {took:?}");
    assert_eq!(status, 404, "{body}");
    assert!(
        took < Duration::from_secs(2),
        "a lookup behind 300 slow clients took {took:?}"
    );
    drop(slow);
}

/// Slow bodies: 300 connections that send their headers and then trickle
/// the body hold their slots only for the header timeout (5 s) once all
/// slots are taken: a lookup (retried while refused) is answered within
/// 10 s (before: the 30 s request timeout).
fn slow_bodies_hold_slots_only_briefly(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.write_all(
            b"POST /v1/mailbox/nobody_slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"mes",
        )
        .unwrap();
        slow.push(s);
    }
    let start = Instant::now();
    let status = loop {
        let (status, _) = server.raw("GET", "/v1/users/nobody_slow", b"");
        if status != 0 || start.elapsed() > Duration::from_secs(20) {
            break status;
        }
        // Refused (all slots busy, none stale yet): retry, as a client would.
        std::thread::sleep(Duration::from_millis(100));
    };
    let took = start.elapsed();
    eprintln!("a lookup behind 300 slow bodies: {took:?}");
    assert_eq!(status, 404);
    assert!(
        took < Duration::from_secs(10),
        "a lookup behind 300 slow bodies took {took:?}"
    );
    drop(slow);
}

/// §17.1: deposits are limited per target before the global write limit, so
/// a flood of valid deposits at one mailbox does not refuse deposits to
/// others (was: 429 `rate_limited` after the global burst of 100).
fn a_deposit_flood_at_one_target_leaves_others_served(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let client = HandshakerClient::new(&server.url()).unwrap();
    let (victim, other) = (ident("victim"), ident("other"));
    rt().block_on(async {
        client.register(&victim).await.unwrap();
        client.register(&other).await.unwrap();
    });
    for i in 0..150 {
        deposit(
            &server,
            "victim",
            &message(&format!("flood {i}")),
            &stamp(Purpose::Deposit, "victim"),
        );
    }
    let got = rt().block_on(client.deposit(other.username(), &message("honest")));
    assert!(
        got.is_ok(),
        "honest deposit after a flood at another mailbox: {got:?}"
    );
    // The victim's own fetch still works.
    let got = rt().block_on(client.fetch(&victim));
    assert!(got.is_ok(), "{got:?}");
}

/// Issue #16 (flood benchmark): request budgets are per connection, so a
/// flood of cheap requests (here 200 lookups pipelined on one connection)
/// is refused on its own connection and takes nothing from others (was: one
/// global bucket of 2,000/s, which a challenge or search flood emptied:
/// 46 % and 44 % honest success in the flood benchmark).
fn a_request_flood_is_refused_on_its_own_connection_only(backend: Backend) {
    let server = Server::with(Opts::on(backend));
    let mut flood = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    flood
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let one = "GET /v1/users/nobody_flood HTTP/1.1\r\nHost: x\r\n\r\n";
    flood.write_all(one.repeat(200).as_bytes()).unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 65536];
    while seen.matches("HTTP/1.1 ").count() < 200 {
        let n = std::io::Read::read(&mut flood, &mut buf).unwrap();
        assert!(n > 0, "the server closed the flood connection");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let refused = seen.matches("HTTP/1.1 429").count();
    assert!(refused >= 100, "only {refused} of 200 refused");
    // Meanwhile, on another connection: served.
    let (status, body) = server.raw("GET", "/v1/users/nobody_flood", b"");
    assert_eq!(status, 404, "{body}");
}

crate::on_both_backends!(
    a_request_flood_is_refused_on_its_own_connection_only,
    junk_bodies_do_not_starve_honest_writes,
    certificates_are_parsed_only_after_the_proof_of_work,
    anonymous_challenges_do_not_block_fetches,
    a_refused_deposit_spends_its_stamp,
    mailbox_fullness_is_invisible_to_strangers,
    spent_stamps_survive_a_restart,
    register_and_delete_proofs_are_single_use,
    search_prefixes_are_three_to_32_characters,
    slow_clients_cannot_hold_the_connection_slots,
    slow_bodies_hold_slots_only_briefly,
    a_deposit_flood_at_one_target_leaves_others_served,
);
