//! `umbra group …` against two real `umbra up` daemons over direct TCP
//! (issue 17): create, invite, join, send both ways, history, members, a
//! proposal by a member, leave, and clear errors — the CLI, the control
//! API's group commands and events, and the node's groups end to end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support::{direct_pair, wait_event};
use umbra::control::proto::{Event, GroupEventView};

#[test]
fn two_daemons_run_a_group_through_the_cli() {
    let (_keep, rt, alice, bob) = direct_pair();
    let mut a_events = rt.block_on(alice.events());
    let mut b_events = rt.block_on(bob.events());

    let g = alice.json(&["group", "create", "Night shift", "--topic", "rota"]);
    let id = g["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 64);
    assert_eq!(g["role"], "owner");
    assert_eq!(g["members"], 1);

    alice.json(&["group", "invite", &id[..12], "@bob"]);
    rt.block_on(wait_event(
        &mut b_events,
        "the invite",
        |e| matches!(e, Event::Group(GroupEventView::Invited(i)) if i.username == "@alice"),
    ));
    let list = bob.json(&["group", "list"]);
    assert_eq!(list["invites"][0]["group"], id.as_str(), "{list}");
    assert_eq!(list["invites"][0]["name"], "Night shift");
    // Joining needs the full id (a prefix could name a group one was not invited to).
    let (code, err) = bob.fails(&["group", "join", &id[..12]]);
    assert_ne!(code, 0);
    assert!(err["error"].as_str().unwrap().contains("64"), "{err}");
    bob.json(&["group", "join", &id]);
    rt.block_on(wait_event(&mut b_events, "the group's log", |e| {
        matches!(e, Event::Group(GroupEventView::Changed(g)) if g.status == "active" && g.members == 2)
    }));

    bob.json(&["group", "send", "Night shift", "hello from bob"]);
    rt.block_on(wait_event(&mut a_events, "bob's group message", |e| {
        matches!(e, Event::Group(GroupEventView::Message { message, .. })
            if message.body.as_deref() == Some("hello from bob") && message.sender == "@bob")
    }));
    alice.json(&["group", "send", &id[..8], "hi bob"]);
    rt.block_on(wait_event(&mut b_events, "alice's group message", |e| {
        matches!(e, Event::Group(GroupEventView::Message { message, .. })
            if message.body.as_deref() == Some("hi bob"))
    }));
    let h = alice.json(&["group", "history", "Night shift"]);
    assert_eq!(h.as_array().unwrap().len(), 2, "{h}");
    assert_eq!(h[0]["sender"], "@bob");
    assert_eq!(h[1]["mine"], true);
    let m = alice.json(&["group", "members", "Night shift"]);
    assert_eq!(m.as_array().unwrap().len(), 2, "{m}");
    assert_eq!(m[0]["role"], "owner");
    assert_eq!(m[1]["username"], "@bob");
    assert_eq!(m[1]["contact"], true);

    // A member may not rename: refused locally, with the reason.
    let (_, err) = bob.fails(&["group", "rename", "Night shift", "Day shift"]);
    assert!(err["error"].as_str().unwrap().contains("may not"), "{err}");
    // Promoted to admin by the owner, bob's rename is a proposal the owner appends.
    alice.json(&["group", "promote", "Night shift", "@bob"]);
    rt.block_on(wait_event(&mut b_events, "the promotion", |e| {
        matches!(e, Event::Group(GroupEventView::Changed(g)) if g.role.as_deref() == Some("admin"))
    }));
    bob.json(&["group", "rename", "Night shift", "Day shift"]);
    rt.block_on(wait_event(
        &mut a_events,
        "the rename",
        |e| matches!(e, Event::Group(GroupEventView::Changed(g)) if g.name == "Day shift"),
    ));

    // The owner cannot leave; bob can.
    let (_, err) = alice.fails(&["group", "leave", "Day shift"]);
    assert!(err["error"].as_str().unwrap().contains("transfer"), "{err}");
    bob.json(&["group", "leave", "Day shift"]);
    rt.block_on(wait_event(
        &mut a_events,
        "bob leaving",
        |e| matches!(e, Event::Group(GroupEventView::Changed(g)) if g.members == 1),
    ));
    let (_, err) = alice.fails(&["group", "send", "no such group", "x"]);
    assert!(
        err["error"].as_str().unwrap().contains("no such group"),
        "{err}"
    );
    assert!(
        err["hint"].as_str().unwrap().contains("group list"),
        "{err}"
    );
}

/// A join by invite link through the CLI: the owner prints the link (only
/// it, on stdout), a stranger joins with it from stdin, the replay is
/// refused with a clear error, and the link appears in no file or log.
#[test]
fn a_stranger_joins_by_invite_link_through_the_cli() {
    use crate::support::{Handshaker, Net, User, assert_no_plaintext, rt};
    use std::io::Write;
    let hs = Handshaker::direct();
    let root = tempfile::tempdir().unwrap();
    let rt = rt();
    let mut alice = User::new(root.path(), "alice", &Net::Direct, &hs.address);
    let mut carol = User::new(root.path(), "carol", &Net::Direct, &hs.address);
    alice.up();
    carol.up();
    alice.json(&["register"]);
    carol.json(&["register"]);
    let mut a_events = rt.block_on(alice.events());
    let mut c_events = rt.block_on(carol.events());
    let g = alice.json(&["group", "create", "Open door"]);
    let id = g["id"].as_str().unwrap().to_owned();

    // Text mode: stdout is the link alone.
    let out = alice
        .cmd(&["group", "link", "create", "Open door", "--expires", "1h"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        link.starts_with("umbra:group#") && !link.contains('\n'),
        "{link}"
    );
    let links = alice.json(&["group", "link", "list", "Open door"]);
    assert_eq!(links[0]["state"], "usable", "{links}");
    assert_eq!(links[0]["max_uses"], 1);

    // carol pastes it on stdin (out of her shell history); progress on
    // stderr, the outcome on stdout.
    let mut join = carol.cmd(&["group", "join", "-"]);
    join.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = join.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{link}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("accepted you") && said.contains(&id[..12]),
        "{said}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("dialling"));
    rt.block_on(wait_event(
        &mut a_events,
        "carol in the group",
        |e| matches!(e, Event::Group(GroupEventView::Changed(g)) if g.members == 2),
    ));
    rt.block_on(wait_event(
        &mut c_events,
        "the group's log at carol",
        |e| matches!(e, Event::Group(GroupEventView::Changed(g)) if g.status == "active"),
    ));
    let m = alice.json(&["group", "members", "Open door"]);
    assert_eq!(m[1]["username"], "@carol", "{m}");
    assert_eq!(m[1]["role"], "member");

    // The one use is spent; carol is told she is in already.
    let (code, err) = carol.fails(&["group", "join", &link]);
    assert_ne!(code, 0);
    let msg = err["error"].as_str().unwrap();
    assert!(msg.contains("already a member"), "{err}");
    let links = alice.json(&["group", "link", "list", "Open door"]);
    assert_eq!(links[0]["state"], "used_up", "{links}");
    let (_, err) = carol.fails(&["group", "join", "umbra:group#AAAA"]);
    assert!(
        err["error"].as_str().unwrap().contains("invite link"),
        "{err}"
    );

    alice.down();
    carol.down();
    // Never written anywhere in clear (logs included).
    let secret_part = &link["umbra:group#".len()..];
    assert_no_plaintext(root.path(), &[secret_part]);
}
