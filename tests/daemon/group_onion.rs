//! Five users run a group over onion services of the local Tor network
//! (issue 17): five real `umbra up` daemons, a real onion Handshaker, every
//! step through the CLI or the control socket. The owner invites two contacts
//! directly and two strangers by an invite link (a join stream to the
//! owner's onion service); everyone posts; a member who is away for a burst
//! gets every message
//! exactly once in per-sender order when it returns; an admin removes a
//! member, who then receives nothing new; ownership moves; a member's
//! daemon killed with SIGKILL in the middle of a burst loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;
use umbra::control::Client;
use umbra::control::proto::{Event, GroupEventView, GroupRequest, Request};

use crate::support::{Net, User, WAIT, onion_setup, rt, wait_event};

/// `(sender, seq, body)` of every message in `u`'s copy of group `g`.
fn history(u: &User, g: &str) -> Vec<(String, u64, String)> {
    let h = u.json(&["group", "history", g, "--limit", "1000"]);
    h.as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["sender"].as_str().unwrap().to_owned(),
                m["seq"].as_u64().unwrap(),
                m["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Waits until `u`'s history of `g` satisfies `cond`, re-checking after
/// every group event of `u`'s daemon (bounded by `WAIT`).
fn until_history(
    rt: &tokio::runtime::Runtime,
    u: &User,
    g: &str,
    what: &str,
    cond: impl Fn(&[(String, u64, String)]) -> bool,
) -> Vec<(String, u64, String)> {
    let mut ev = rt.block_on(u.events());
    let deadline = Instant::now() + WAIT;
    loop {
        let h = history(u, g);
        if cond(&h) {
            return h;
        }
        assert!(
            Instant::now() < deadline,
            "{}: no {what} within {WAIT:?} ({} messages)",
            u.name,
            h.len()
        );
        // Any group event (or a quiet second) triggers a re-check.
        rt.block_on(async {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ev.next_event()).await;
        });
    }
}

/// Waits until `u`'s view of group `g` (from `group list`) satisfies `cond`.
fn until_group(
    rt: &tokio::runtime::Runtime,
    u: &User,
    g: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) {
    let mut ev = rt.block_on(u.events());
    let deadline = Instant::now() + WAIT;
    loop {
        let list = u.json(&["group", "list"]);
        let found = list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == g)
            .cloned();
        if found.as_ref().is_some_and(&cond) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: not {what} within {WAIT:?}: {found:?}",
            u.name
        );
        rt.block_on(async {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), ev.next_event()).await;
        });
    }
}

/// Messages per sender, in stored order: `sender → [(seq, body)]`.
fn by_sender(h: &[(String, u64, String)]) -> BTreeMap<String, Vec<(u64, String)>> {
    let mut out: BTreeMap<String, Vec<(u64, String)>> = BTreeMap::new();
    for (s, seq, body) in h {
        out.entry(s.clone()).or_default().push((*seq, body.clone()));
    }
    out
}

/// Asserts that `u` holds `sender`'s messages whose bodies start with
/// `prefix` exactly once each, numbered 1..=n in the body, in order.
fn assert_burst(u: &User, h: &[(String, u64, String)], sender: &str, prefix: &str, n: usize) {
    let all = by_sender(h);
    let got: Vec<&(u64, String)> = all
        .get(sender)
        .map(|v| v.iter().filter(|(_, b)| b.starts_with(prefix)).collect())
        .unwrap_or_default();
    let bodies: Vec<String> = got.iter().map(|(_, b)| b.clone()).collect();
    let want: Vec<String> = (1..=n).map(|i| format!("{prefix}{i:03}")).collect();
    assert_eq!(
        bodies, want,
        "{}: {sender}'s burst exactly once, in order",
        u.name
    );
    let seqs: Vec<u64> = by_sender(h)[sender].iter().map(|(s, _)| *s).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "{}: {sender}'s seqs {seqs:?}",
        u.name
    );
}

/// `who` asks `owner` to be a contact over the Handshaker; `owner` accepts.
fn befriend(rt: &tokio::runtime::Runtime, owner: &User, who: &User) {
    let mut ev = rt.block_on(who.events());
    who.json(&["request", &owner.name]);
    owner.json(&["requests"]);
    owner.json(&["accept", &who.name]);
    rt.block_on(wait_event(&mut ev, "the accept", |e| {
        matches!(e, Event::RequestAnswered { accepted: true, .. })
    }));
}

/// `owner` invites `who` directly; `who` accepts; returns when `who` is an
/// active member.
fn invite_and_join(rt: &tokio::runtime::Runtime, owner: &User, who: &User, g: &str) {
    let mut ev = rt.block_on(who.events());
    owner.json(&["group", "invite", g, &who.name]);
    rt.block_on(wait_event(
        &mut ev,
        "the invite",
        |e| matches!(e, Event::Group(GroupEventView::Invited(i)) if i.group == g),
    ));
    who.json(&["group", "join", g]);
    until_group(rt, who, g, "an active member", |x| x["status"] == "active");
}

/// Sends `n` group messages `prefix001…` from `u` through its control socket.
async fn burst(dir: std::path::PathBuf, g: String, prefix: &'static str, n: usize) {
    let mut c = Client::connect(&dir).await.unwrap();
    for i in 1..=n {
        c.call(Request::Group(GroupRequest::Send {
            group: g.clone(),
            text: format!("{prefix}{i:03}"),
        }))
        .await
        .unwrap();
    }
}

#[test]
fn five_users_run_a_group_over_onion_services() {
    let t0 = Instant::now();
    let (root, cfg, hs) = onion_setup();
    let rt = rt();
    let onion = Net::Local(cfg.clone());
    let names = ["alice", "bob", "carol", "dave", "erin"];
    let mut users: Vec<User> = names
        .iter()
        .map(|n| User::new(root.path(), n, &onion, &hs.address))
        .collect();
    for u in &mut users {
        u.up();
        u.json(&["register"]);
    }
    let [alice, bob, carol, dave, erin] = &mut users[..] else {
        unreachable!()
    };
    for u in [&*bob, &*carol] {
        befriend(&rt, alice, u);
    }
    eprintln!(
        "five daemons up, two contacts of alice: {:.0} s",
        t0.elapsed().as_secs_f64()
    );

    // alice creates the group, invites her two contacts directly, and
    // gives dave and erin (strangers to everyone) a two-use invite link.
    let g = alice.json(&["group", "create", "Onion circle"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for u in [&*bob, &*carol] {
        invite_and_join(&rt, alice, u, &g);
    }
    let link = alice.json(&[
        "group",
        "link",
        "create",
        &g,
        "--uses",
        "2",
        "--expires",
        "1h",
    ])["link"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(link.starts_with("umbra:group#"));
    for u in [&*dave, &*erin] {
        let t = Instant::now();
        let j = u.json(&["group", "join", &link]);
        assert_eq!(j["group"], g.as_str(), "{j}");
        until_group(&rt, u, &g, "an active member (by link)", |x| {
            x["status"] == "active"
        });
        eprintln!(
            "{} joined by link: {:.1} s",
            u.name,
            t.elapsed().as_secs_f64()
        );
    }
    for u in [&*alice, &*bob, &*carol, &*dave, &*erin] {
        until_group(&rt, u, &g, "five members", |x| x["members"] == 5);
    }
    eprintln!("group of five formed: {:.0} s", t0.elapsed().as_secs_f64());

    // Everyone posts once; everyone ends up with the five messages (members
    // who are not contacts of each other get them through alice's relay).
    let t = Instant::now();
    for u in [&*alice, &*bob, &*carol, &*dave, &*erin] {
        u.json(&["group", "send", &g, &format!("hello from {}", u.name)]);
    }
    for u in [&*alice, &*bob, &*carol, &*dave, &*erin] {
        let h = until_history(&rt, u, &g, "five greetings", |h| h.len() >= 5);
        assert_eq!(h.len(), 5, "{}: {h:?}", u.name);
        for v in by_sender(&h).values() {
            assert_eq!(v.len(), 1, "{}: one greeting per sender: {h:?}", u.name);
        }
    }
    eprintln!(
        "five greetings everywhere: {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // carol is away while bob and alice post a burst.
    carol.down();
    rt.block_on(burst(bob.dir.clone(), g.clone(), "away ", 15));
    rt.block_on(burst(alice.dir.clone(), g.clone(), "owner away ", 5));
    until_history(&rt, dave, &g, "the burst", |h| h.len() >= 25);
    carol.up();
    let t = Instant::now();
    let h = until_history(&rt, carol, &g, "the burst after her return", |h| {
        h.len() >= 25
    });
    assert_eq!(h.len(), 25, "carol: nothing twice");
    assert_burst(carol, &h, &bob.name, "away ", 15);
    assert_burst(carol, &h, &alice.name, "owner away ", 5);
    eprintln!(
        "carol caught up 20 messages: {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // alice makes bob an admin; bob removes dave; dave sees it and gets
    // nothing new.
    alice.json(&["group", "promote", &g, &bob.name]);
    until_group(&rt, bob, &g, "an admin", |x| x["role"] == "admin");
    bob.json(&["group", "remove", &g, &dave.name]);
    until_group(&rt, dave, &g, "removed", |x| x["status"] == "removed");
    for u in [&*alice, &*bob, &*carol, &*erin] {
        until_group(&rt, u, &g, "four members", |x| x["members"] == 4);
    }
    let dave_before = history(dave, &g).len();
    erin.json(&["group", "send", &g, "after dave"]);
    for u in [&*alice, &*bob, &*carol] {
        until_history(&rt, u, &g, "erin's message", |h| {
            h.iter().any(|(_, _, b)| b == "after dave")
        });
    }
    until_history(&rt, erin, &g, "erin's message delivered to all", |_| {
        let h = erin.json(&["group", "history", &g, "--limit", "1"]);
        h[0]["state"] == "delivered"
    });
    let dave_after = history(dave, &g);
    assert_eq!(
        dave_after.len(),
        dave_before,
        "a removed member receives nothing new"
    );
    assert!(!dave_after.iter().any(|(_, _, b)| b == "after dave"));
    let (_, err) = dave.fails(&["group", "send", &g, "let me in"]);
    assert!(err["error"].as_str().is_some(), "{err}");

    // Ownership moves to bob; bob renames; everyone sees the new name.
    alice.json(&["group", "transfer", &g, &bob.name]);
    until_group(&rt, bob, &g, "the owner", |x| x["role"] == "owner");
    bob.json(&["group", "rename", &g, "Bob's circle"]);
    for u in [&*alice, &*carol, &*erin] {
        until_group(&rt, u, &g, "renamed", |x| x["name"] == "Bob's circle");
    }

    // erin's daemon is killed (SIGKILL) in the middle of a burst from bob,
    // then restarted: every message arrives exactly once, in order.
    const N: usize = 40;
    let mut ev = rt.block_on(erin.events());
    let sender = rt.spawn(burst(bob.dir.clone(), g.clone(), "crash ", N));
    rt.block_on(wait_event(&mut ev, "part of the burst", |e| {
        matches!(e, Event::Group(GroupEventView::Message { message, .. })
            if message.body.as_deref().is_some_and(|b| b.starts_with("crash ")))
    }));
    erin.kill();
    drop(ev);
    rt.block_on(sender).unwrap();
    erin.up();
    let t = Instant::now();
    let h = until_history(&rt, erin, &g, "the whole burst after the crash", |h| {
        h.iter().filter(|(_, _, b)| b.starts_with("crash ")).count() >= N
    });
    assert_burst(erin, &h, &bob.name, "crash ", N);
    eprintln!(
        "erin recovered after SIGKILL: {:.1} s",
        t.elapsed().as_secs_f64()
    );
    for u in [&*alice, &*carol] {
        let h = until_history(&rt, u, &g, "the crash burst", |h| {
            h.iter().filter(|(_, _, b)| b.starts_with("crash ")).count() >= N
        });
        assert_burst(u, &h, &bob.name, "crash ", N);
    }
    eprintln!(
        "five-user group test: {:.0} s in all",
        t0.elapsed().as_secs_f64()
    );
    for u in users.iter_mut() {
        u.down();
    }
}
