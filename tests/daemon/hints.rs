//! The CLI between two real daemons says what is going on (UX-2026-11 A1–A6,
//! P2, P4, P5): refused input is a usage error with a hint, a typo gets
//! "did you mean", verification makes you look, `status --json` has one
//! shape, history shows dates and lines, and file commands print the
//! transfer id at once and say what Ctrl-C leaves behind.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use support::{Net, User, direct_pair, wait_event};
use umbra::control::proto::Event;

const WAIT: Duration = Duration::from_secs(60);

fn text(u: &User, args: &[&str]) -> (i32, String, String) {
    let out = u.cmd(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// The first line `child` writes to stdout (bounded wait); the rest of
/// stdout is collected by the returned receiver when the child exits.
fn first_line(child: &mut Child) -> (String, mpsc::Receiver<String>) {
    let stdout = child.stdout.take().unwrap();
    let (first_tx, first_rx) = mpsc::channel();
    let (rest_tx, rest_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        let _ = r.read_line(&mut line);
        let _ = first_tx.send(line);
        let mut rest = String::new();
        for l in r.lines() {
            let Ok(l) = l else { break };
            rest.push_str(&l);
            rest.push('\n');
        }
        let _ = rest_tx.send(rest);
    });
    (first_rx.recv_timeout(WAIT).expect("a first line"), rest_rx)
}

fn wait_exit(child: &mut Child) -> i32 {
    let start = std::time::Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        assert!(start.elapsed() < WAIT, "the command did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn messages_and_verification_say_what_is_wrong() {
    let (_keep, _rt, mut alice, mut bob) = direct_pair();

    // A6: empty and blank messages are refused (exit 2) and not stored.
    for blank in ["", "   ", "\n"] {
        let (code, err) = alice.fails(&["send", "@bob", blank]);
        assert_eq!(code, 2, "{err}");
        assert!(err["error"].as_str().unwrap().contains("empty"), "{err}");
    }
    // P5: an over-long message is a usage error that suggests send-file.
    let long = "x".repeat(17 * 1024);
    let (code, err) = alice.fails(&["send", "@bob", &long]);
    assert_eq!(code, 2, "{err}");
    assert!(err["hint"].as_str().unwrap().contains("send-file"), "{err}");
    assert_eq!(alice.json(&["history", "@bob"]), Value::Array(vec![]));
    let (_, out, _) = text(&alice, &["history", "@bob"]);
    assert_eq!(out, "no messages yet\n");

    // A4: a typo gets "did you mean", not a request for the typo.
    let (code, err) = alice.fails(&["send", "@bbo", "hi"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err["hint"].as_str().unwrap().contains("did you mean @bob?"),
        "{err}"
    );
    assert!(!err["hint"].as_str().unwrap().contains("  "), "{err}");

    // P2, P4: multi-line messages keep their lines; the send line reads well.
    let (code, out, err) = text(&alice, &["send", "@bob", "line one\nline two"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("message #1 "), "{out}");
    assert!(!out.contains("(queued)"), "{out}");
    let (_, out, _) = text(&alice, &["history", "@bob"]);
    assert!(out.contains("me: line one"), "{out}");
    assert!(out.contains("\n    line two"), "{out}");
    assert!(!out.contains("\\n"), "{out}");
    let (_, out, _) = text(&alice, &["history", "@bob", "--search", "nowhere"]);
    assert_eq!(out, "no messages match\n");

    // A2: verification makes you look.
    let fpr = bob.json(&["status"])["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in ["54A8", "zzzz"] {
        let (code, err) = alice.fails(&["verify", "@bob", "--fingerprint", bad]);
        assert_eq!(code, 2, "{err}");
        assert!(
            err["error"].as_str().unwrap().contains("not a fingerprint"),
            "{err}"
        );
    }
    // Without a terminal and without --fingerprint or --yes: refused.
    let (code, err) = alice.fails(&["verify", "@bob"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err["hint"].as_str().unwrap().contains("--fingerprint"),
        "{err}"
    );
    let contact = |u: &User, name: &str| {
        u.json(&["contacts"])
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["username"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(contact(&alice, "@bob")["verified"], false);
    // gpg's 0x form, in lower case, is accepted.
    let v = alice.json(&[
        "verify",
        "@bob",
        "--fingerprint",
        &format!("0x{}", fpr.to_lowercase()),
    ]);
    assert_eq!(v["verified"], true);
    let (code, out, _) = text(&alice, &["verify", "@bob"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Already verified: @bob"), "{out}");
    let (code, out, _) = text(&bob, &["verify", "@alice", "--yes"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("Marked as verified: @alice"), "{out}");

    // A3: one status shape, with `running`, whether or not the daemon runs.
    let up = alice.json(&["status"]);
    assert_eq!(up["running"], true);
    assert_eq!(up["daemon"]["username"], "@alice");
    assert!(up["data_dir"].as_str().is_some(), "{up}");
    alice.down();
    let down = alice.json(&["status"]);
    assert_eq!(down["running"], false);
    assert!(down["daemon"].is_null(), "{down}");
    assert_eq!(keys(&up), keys(&down));
    assert_eq!(up["fingerprint"], down["fingerprint"]);
    assert_eq!(up["data_dir"], down["data_dir"]);
    bob.down();
}

#[test]
fn a_pending_request_and_file_commands_say_what_happens() {
    let (keep, rt, mut alice, mut bob) = direct_pair();

    // A5: sending while our request waits explains it, without a placeholder.
    let mut carol = User::new(keep.root.path(), "carol", &Net::Direct, &keep.hs.address);
    carol.up();
    carol.json(&["register"]);
    alice.json(&["request", "@carol"]);
    let (code, err) = alice.fails(&["send", "@carol", "hello?"]);
    assert_ne!(code, 0);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("@carol has not accepted your connection request yet"),
        "{err}"
    );
    let hint = err["hint"].as_str().unwrap();
    assert!(hint.contains("no need to request again"), "{hint}");
    assert!(!hint.contains("@NAME") && !hint.contains("@USER"), "{hint}");
    assert!(!hint.contains("  "), "{hint}");
    carol.down();

    // A1: send-file without a terminal prints the transfer id at once...
    let file = keep.root.path().join("photo.jpg");
    std::fs::write(&file, vec![7u8; 100_000]).unwrap();
    let mut b_events = rt.block_on(bob.events());
    let mut send = alice
        .cmd(&["send-file", "@bob", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (first, rest) = first_line(&mut send);
    let id = first.split_whitespace().next().unwrap().to_owned();
    assert!(
        id.len() == 8 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{first}"
    );
    assert!(first.contains("photo.jpg to @bob"), "{first}");
    // ...and a final line when the receiver has it.
    let want = id.clone();
    rt.block_on(wait_event(
        &mut b_events,
        "the offer",
        move |e| matches!(e, Event::FileOffered(t) if t.id.starts_with(&want)),
    ));
    let accepted = bob.json(&["accept-file", &id, "--detach"]);
    assert_eq!(accepted["state"], "active");
    assert_eq!(wait_exit(&mut send), 0);
    let rest = rest.recv_timeout(WAIT).unwrap();
    assert!(rest.contains(&id) && rest.contains("delivered"), "{rest}");

    // Ctrl-C while waiting: exit 130, the offer stays, and stderr says how
    // to cancel it.
    let mut send = alice
        .cmd(&["send-file", "@bob", file.to_str().unwrap(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (first, _rest) = first_line(&mut send);
    let offered: Value = serde_json::from_str(&first).unwrap();
    let id = offered["id"].as_str().unwrap().to_owned();
    assert_eq!(offered["state"], "offered");
    let pid = send.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(wait_exit(&mut send), 130);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut send.stderr.take().unwrap(), &mut err).unwrap();
    let err: Value = serde_json::from_str(&err).unwrap();
    assert!(
        err["hint"]
            .as_str()
            .unwrap()
            .contains(&format!("umbra cancel-file {}", &id[..8])),
        "{err}"
    );
    let still = alice.json(&["files"]);
    let t = still
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .unwrap();
    assert_eq!(t["state"], "offered");
    // "cancelled", not "cancelled: cancelled".
    let (code, out, _) = text(&alice, &["cancel-file", &id[..8]]);
    assert_eq!(code, 0);
    assert!(out.trim_end().ends_with("— cancelled"), "{out}");
    alice.down();
    bob.down();
}

/// A Handshaker that answers every request with 400 and an error text full
/// of terminal escapes: a window title (OSC 0), a clipboard write (OSC 52),
/// a carriage return and a bidi override. Returns its address.
fn hostile_handshaker() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut buf = [0u8; 4096];
            let mut got = Vec::new();
            while !got.windows(4).any(|w| w == b"\r\n\r\n") && got.len() < 65536 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let body = r#"{"error":"x\u001b[2J","message":"\u001b]0;pwned\u0007\u001b]52;c;ZWNobyBoaQ==\u0007\rgone \u202etxt.exe"}"#;
            let _ = write!(
                s,
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// SECURITY-2026-11 L5: a Handshaker's error text reaches the terminal with
/// every escape, carriage return and bidi override neutralised.
#[test]
fn a_hostile_handshaker_error_reaches_the_terminal_neutralised() {
    let root = tempfile::tempdir().unwrap();
    let mut u = User::new(root.path(), "alice", &Net::Direct, &hostile_handshaker());
    u.up();
    let (code, stdout, stderr) = text(&u, &["lookup", "@somebody"]);
    assert_ne!(code, 0, "{stdout}{stderr}");
    let shown = format!("{stdout}{stderr}");
    for bad in ['\u{1b}', '\u{7}', '\r', '\u{202e}'] {
        assert!(
            !shown.contains(bad),
            "{bad:?} reached the terminal: {shown:?}"
        );
    }
    assert!(
        shown.contains("pwned"),
        "the text itself is still shown: {shown:?}"
    );
    u.down();
}
