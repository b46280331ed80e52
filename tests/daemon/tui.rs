//! The real `umbra tui` in tmux against two local daemons (direct TCP and a
//! real Handshaker): a message typed in the TUI reaches the other user, and
//! one sent by the other user is rendered live; files; a group invite
//! accepted in the TUI, the group's messages both ways and its members.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{Handshaker, Net, WAIT, connected_pair, wait_event};
use umbra::control::proto::{Event, GroupEventView};

/// A detached tmux session, killed on drop.
struct Tmux(String);

impl Tmux {
    fn start(name: &str, argv: &[String]) -> Tmux {
        let ok = Command::new("tmux")
            .args(["new-session", "-d", "-s", name, "-x", "100", "-y", "30"])
            .args(argv)
            .env("NO_COLOR", "1")
            .status()
            .expect("tmux is installed (scripts/install-deps.sh)");
        assert!(ok.success());
        Tmux(name.to_owned())
    }

    fn keys(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["send-keys", "-t", &self.0])
            .args(keys)
            .status()
            .unwrap();
        assert!(ok.success());
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["has-session", "-t", &self.0])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Polls the pane (bounded) until `text` shows.
    fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(
                start.elapsed() < WAIT,
                "the TUI never showed {text:?}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

#[test]
fn tui_sends_and_shows_messages() {
    let hs = Handshaker::direct();
    let root = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (mut alice, mut bob) = connected_pair(root.path(), &Net::Direct, &hs.address, &rt);
    let mut b_events = rt.block_on(bob.events());

    let name = format!("umbra-tui-{}", std::process::id());
    let tui = Tmux::start(&name, &alice.argv(&["tui"]));
    let screen = tui.wait_for("message to @bob");
    assert!(screen.contains("umbra @alice"), "{screen}");

    // Type a message in the TUI: it reaches bob.
    tui.keys(&["-l", "typed in the tui"]);
    tui.keys(&["Enter"]);
    rt.block_on(wait_event(
        &mut b_events,
        "the TUI's message",
        |e| matches!(e, Event::Message { message, .. } if message.body == "typed in the tui"),
    ));
    tui.wait_for("me: typed in the tui");

    // bob answers: rendered live.
    bob.json(&["send", "@alice", "shown live in the tui"]);
    tui.wait_for("@bob: shown live in the tui");

    // Ctrl-O: a file to bob through the path prompt; bob accepts; the TUI
    // reports the delivery.
    let src = root.path().join("from-the-tui.txt");
    std::fs::write(&src, "a file sent from the TUI\n".repeat(5000)).unwrap();
    tui.keys(&["C-o"]);
    tui.wait_for("send a file to @bob");
    tui.keys(&["-l", src.to_str().unwrap()]);
    tui.keys(&["Enter"]);
    let Event::FileOffered(offer) = rt.block_on(wait_event(
        &mut b_events,
        "the TUI's file",
        |e| matches!(e, Event::FileOffered(t) if t.name == "from-the-tui.txt"),
    )) else {
        unreachable!()
    };
    bob.json(&["accept-file", &offer.id, "--detach"]);
    tui.wait_for("from-the-tui.txt delivered to @bob");

    // bob offers one: Ctrl-T lists it, `a` accepts, `s` saves it via the prompt.
    let from_bob = root.path().join("from-bob.txt");
    std::fs::write(&from_bob, "bob's file for the TUI\n".repeat(3000)).unwrap();
    bob.json(&[
        "send-file",
        "@alice",
        from_bob.to_str().unwrap(),
        "--detach",
    ]);
    tui.wait_for("@bob offers from-bob.txt");
    tui.keys(&["C-t"]);
    tui.wait_for("waiting for you");
    tui.keys(&["a"]);
    tui.wait_for("received (s to save)");
    tui.keys(&["s"]);
    tui.wait_for("save the file to");
    tui.keys(&["C-u"]);
    let dest = root.path().join("saved-by-tui.txt");
    tui.keys(&["-l", dest.to_str().unwrap()]);
    tui.keys(&["Enter"]);
    tui.wait_for("saved to");
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&from_bob).unwrap()
    );

    // Groups (issue 17): bob invites alice; the TUI lists the invite,
    // Ctrl-G then `a` joins; the group is listed after the contacts, shows
    // bob's message with his name, sends what is typed, and Ctrl-P shows
    // the members with their roles.
    let g = bob.json(&["group", "create", "Night shift"]);
    let gid = g["id"].as_str().unwrap().to_owned();
    bob.json(&["group", "invite", &gid, "@alice"]);
    tui.wait_for("1 invite(s) ^G");
    tui.keys(&["C-g"]);
    tui.wait_for("from @bob as member");
    tui.keys(&["a"]);
    tui.wait_for("2 members");
    tui.keys(&["Tab"]);
    tui.wait_for("message to # Night shift");
    bob.json(&["group", "send", &gid, "evening, group"]);
    tui.wait_for("@bob: evening, group");
    tui.keys(&["-l", "typed into the group"]);
    tui.keys(&["Enter"]);
    rt.block_on(wait_event(&mut b_events, "the TUI's group message", |e| {
        matches!(e, Event::Group(GroupEventView::Message { message, .. })
            if message.body.as_deref() == Some("typed into the group") && message.sender == "@alice")
    }));
    tui.keys(&["C-p"]);
    let screen = tui.wait_for("members (2)");
    assert!(screen.contains("owner"), "{screen}");
    assert!(screen.contains("@alice (me)"), "{screen}");
    tui.keys(&["Escape"]);

    // Help overlay, then quit; the terminal is given back.
    tui.keys(&["F1"]);
    tui.wait_for("Ctrl-E");
    tui.keys(&["Escape"]);
    tui.keys(&["C-q"]);
    let start = Instant::now();
    while tui.alive() {
        assert!(start.elapsed() < WAIT, "the TUI did not quit");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(b_events);
    alice.down();
    bob.down();
}
