//! Requests through the real daemons and CLI (UX-2026-11 B1, B2;
//! PROTOCOL.md §12.2): a repeated request, contacts re-keying, requests
//! crossing — each ends with one session and messages flowing both ways —
//! and `passwd` is refused while the daemon holds the store.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use support::{Handshaker, Net, User, direct_pair, rt, wait_event};
use umbra::control::proto::Event;

/// A message each way between alice and bob arrives (`tag` makes the texts unique).
fn messages_flow(rt: &tokio::runtime::Runtime, alice: &User, bob: &User, tag: &str) {
    let mut a_events = rt.block_on(alice.events());
    let mut b_events = rt.block_on(bob.events());
    let to_bob = format!("to bob {tag}");
    let to_alice = format!("to alice {tag}");
    alice.json(&["send", "@bob", &to_bob]);
    bob.json(&["send", "@alice", &to_alice]);
    rt.block_on(wait_event(
        &mut b_events,
        "alice's message",
        |e| matches!(e, Event::Message { message, .. } if message.body == to_bob),
    ));
    rt.block_on(wait_event(
        &mut a_events,
        "bob's message",
        |e| matches!(e, Event::Message { message, .. } if message.body == to_alice),
    ));
}

fn requests_from(user: &User, name: &str) -> Vec<serde_json::Value> {
    let list = user.json(&["requests"]);
    list.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["username"] == name)
        .cloned()
        .collect()
}

#[test]
fn a_repeated_request_then_accept_twice_keeps_the_conversation() {
    let hs = Handshaker::direct();
    let root = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut alice = User::new(root.path(), "alice", &Net::Direct, &hs.address);
    let mut bob = User::new(root.path(), "bob", &Net::Direct, &hs.address);
    alice.up();
    bob.up();
    alice.json(&["register"]);
    bob.json(&["register"]);
    alice.json(&["request", "@bob", "--note", "hi bob"]);
    alice.json(&["request", "@bob", "--note", "again"]);
    assert_eq!(requests_from(&bob, "@alice").len(), 1, "listed once");
    bob.json(&["accept", "@alice"]);
    // The leftover is gone: a second accept has nothing to accept.
    let (code, err) = bob.fails(&["accept", "@alice"]);
    assert_ne!(code, 0, "{err}");
    messages_flow(&rt, &alice, &bob, "after a repeated request");
    alice.down();
    bob.down();
}

#[test]
fn contacts_re_key_on_request_and_keep_talking() {
    let (_keep, rt, mut alice, mut bob) = direct_pair();
    messages_flow(&rt, &alice, &bob, "before");
    // A request to a contact with a session needs --rekey.
    let (code, err) = bob.fails(&["request", "@alice"]);
    assert_ne!(code, 0);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("already have a conversation"),
        "{err}"
    );
    assert!(err["hint"].as_str().unwrap().contains("--rekey"), "{err}");
    bob.json(&["request", "@alice", "--rekey"]);
    let listed = requests_from(&alice, "@bob");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["rekey"], true, "{listed:?}");
    alice.json(&["accept", "@bob"]);
    messages_flow(&rt, &alice, &bob, "after the re-key");
    alice.down();
    bob.down();
}

#[test]
fn crossing_requests_end_in_one_session() {
    let hs = Handshaker::direct();
    let root = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut alice = User::new(root.path(), "alice", &Net::Direct, &hs.address);
    let mut bob = User::new(root.path(), "bob", &Net::Direct, &hs.address);
    alice.up();
    bob.up();
    alice.json(&["register"]);
    bob.json(&["register"]);
    alice.json(&["request", "@bob"]);
    bob.json(&["request", "@alice"]);
    assert_eq!(requests_from(&alice, "@bob").len(), 1);
    assert_eq!(requests_from(&bob, "@alice").len(), 1);
    alice.json(&["accept", "@bob"]);
    // alice's Accept may reach bob first: then his own request is answered,
    // alice's crossing request is a leftover and is gone (nothing to accept).
    let out = bob.cmd(&["accept", "@alice", "--json"]).output().unwrap();
    if !out.status.success() {
        let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
        assert!(
            err["error"]
                .as_str()
                .unwrap()
                .contains("no pending connection request"),
            "{err}"
        );
    }
    messages_flow(&rt, &alice, &bob, "after crossing");
    alice.down();
    bob.down();
}

/// UX-2026-11 B2: `passwd` under a running daemon is refused (exit 5) and
/// changes nothing; the daemon keeps working.
#[test]
fn passwd_is_refused_while_the_daemon_runs() {
    let (_keep, rt, mut alice, mut bob) = direct_pair();
    let out = alice
        .cmd(&["passwd", "--json"])
        .env("UMBRA_NEW_PASSPHRASE", "a brand new passphrase")
        .output()
        .unwrap();
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("daemon is running"),
        "{err}"
    );
    assert!(err["hint"].as_str().unwrap().contains("umbra up"), "{err}");
    messages_flow(&rt, &alice, &bob, "after the refused passwd");
    // The old passphrase still opens the store after the daemon stops.
    alice.down();
    alice.up();
    messages_flow(&rt, &alice, &bob, "after a restart");
    alice.down();
    bob.down();
}

/// PROTOCOL.md §17.11: `register` pins the Handshaker's binding key. A
/// Handshaker at the same address with another key (a new server, or one
/// impersonating it) is refused until the user confirms the change; after
/// that, requests flow with bindings under the new key.
#[test]
fn register_pins_the_handshakers_key_and_a_change_needs_consent() {
    let port = support::free_port();
    let hs = Handshaker::direct_on(port);
    let root = tempfile::tempdir().unwrap();
    let mut carol = User::new(root.path(), "carol", &Net::Direct, &hs.address);
    carol.up();
    carol.json(&["register"]);
    carol.json(&["register"]); // the same key: nothing to confirm
    drop(hs);

    let hs = Handshaker::direct_on(port);
    let (code, err) = carol.fails(&["register"]);
    assert_eq!(code, 1, "{err}");
    let text = err["error"].as_str().unwrap();
    assert!(text.contains("signing key changed"), "{err}");
    assert!(text.contains("--trust-new-handshaker-key"), "{err}");
    // Nothing was registered at the new server.
    let mut dave = User::new(root.path(), "dave", &Net::Direct, &hs.address);
    dave.up();
    dave.json(&["register"]);
    let (_, err) = dave.fails(&["request", "@carol"]);
    assert!(
        err["error"].as_str().unwrap().contains("not registered"),
        "{err}"
    );

    carol.json(&["register", "--trust-new-handshaker-key"]);
    carol.json(&["register"]);
    dave.json(&["request", "@carol", "--note", "hi carol"]);
    assert_eq!(
        requests_from(&carol, "@dave").len(),
        1,
        "checked and listed"
    );
}
