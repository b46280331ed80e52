//! Every screen of the window against a scripted fake control socket
//! (`support`): widgets are found by their accessible labels, clicked and
//! typed into; the tests assert what the daemon received and what the
//! window shows. `accessibility` fails if an interactive widget has no
//! accessible name.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use eframe::egui::{self, Key};
use egui_kittest::kittest::{NodeT, Queryable};
use support::*;
use umbra_control::proto::{Event, Request};
use umbra_desktop::Screen;

#[test]
fn conversation_history_send_and_delivery() {
    let fake = FakeDaemon::standard();
    let mut h = connected(&fake);
    // Contacts with presence, unread count and verified mark, in words.
    assert!(shows(&h, "@bob, online, verified"));
    assert!(shows(&h, "@carol, offline, 2 unread"));
    assert!(
        shows(&h, "direct connection"),
        "human words for the network"
    );
    assert!(!shows(&h, "not_applicable"));

    h.get_by_label_contains("@bob, online").click();
    wait(&mut h, "bob's history", |h| shows(h, "Here."));
    assert!(fake.got(|r| matches!(r, Request::History { username, .. } if username == "@bob")));
    // Day separators, delivery states, neutralised peer text.
    for text in [
        "Yesterday",
        "Today",
        "· read",
        "· delivered",
        "· sent",
        "· queued",
    ] {
        assert!(shows(&h, text), "shows {text}");
    }
    assert!(shows(
        &h,
        "Evil \u{FFFD}gpj.exe\u{FFFD}[2J and\ttab\nsecond line"
    ));
    assert!(!shows(&h, "\u{202e}"));

    // Multi-line compose: Shift+Enter is a new line, Enter sends.
    h.get_by_label("Message").click();
    h.run_ok();
    h.get_by_label("Message").type_text("first line");
    h.key_press_modifiers(egui::Modifiers::SHIFT, Key::Enter);
    h.get_by_label("Message").type_text("second line");
    h.key_press(Key::Enter);
    wait_request(
        &mut h,
        &fake,
        "the send",
        |r| matches!(r, Request::Send { username, text } if username == "@bob" && text == "first line\nsecond line"),
    );
    wait(&mut h, "the queued message", |h| {
        shows(h, "first line\nsecond line")
    });
    assert_eq!(h.get_by_label("Message").value().unwrap_or_default(), "");

    // A delivery event moves every message up to `upto` forward.
    fake.push(Event::Delivery {
        username: "@bob".into(),
        upto: 5,
        state: "read".into(),
    });
    wait(&mut h, "the read receipt", |h| {
        !shows(h, "· queued") && !shows(h, "· sent")
    });

    // A message from bob while his conversation is open is marked read.
    fake.push(Event::Message {
        username: "@bob".into(),
        message: msg("m9", "in", 3, "Got it", "received", NOW),
    });
    wait(&mut h, "bob's answer", |h| shows(h, "Got it"));
    wait_request(
        &mut h,
        &fake,
        "mark read",
        |r| matches!(r, Request::MarkRead { username } if username == "@bob"),
    );

    // A message from carol: a notice naming her, not what she wrote.
    fake.push(Event::Message {
        username: "@carol".into(),
        message: msg("c1", "in", 1, "secret words", "received", NOW),
    });
    wait(&mut h, "carol's notice", |h| {
        shows(h, "New message from @carol")
    });
    assert!(!shows(&h, "secret words"));
    assert!(shows(&h, "@carol, offline, 3 unread"));
}

#[test]
fn requests_accept_with_key_change_and_reject() {
    let fake = FakeDaemon::standard();
    let mut h = connected(&fake);
    h.get_by_label("Requests (1)").click();
    wait(&mut h, "the requests dialog", |h| shows(h, "Accept @dave"));
    assert!(shows(
        &h,
        "FEDC BA98 7654 3210 FEDC  BA98 7654 3210 FEDC BA98"
    ));
    assert!(shows(&h, "The key of @dave changed"));
    assert!(shows(&h, "Note: It's Dave from the \u{FFFD}workshop"));
    // Accepting a changed key needs the explicit check first.
    h.get_by_label("Accept @dave").click();
    h.run_ok();
    assert!(!fake.got(|r| matches!(r, Request::Accept { .. })));
    h.get_by_label("I checked the new fingerprint").click();
    h.run_ok();
    h.get_by_label("Accept @dave").click();
    wait_request(
        &mut h,
        &fake,
        "the accept",
        |r| matches!(r, Request::Accept { username, allow_key_change: true } if username == "@dave"),
    );
    h.get_by_label("Reject @dave").click();
    wait_request(
        &mut h,
        &fake,
        "the reject",
        |r| matches!(r, Request::Reject { username, notify: false } if username == "@dave"),
    );
}

#[test]
fn search_and_request_with_note() {
    let fake = FakeDaemon::standard();
    let mut h = connected(&fake);
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::F);
    wait(&mut h, "the search dialog", |h| {
        shows(h, "Search the directory")
    });
    h.get_by_label("Username").click();
    h.run_ok();
    h.get_by_label("Username").type_text("ca");
    h.get_by_label("Search").click();
    wait_request(
        &mut h,
        &fake,
        "the search",
        |r| matches!(r, Request::Search { prefix, .. } if prefix == "ca"),
    );
    wait(&mut h, "the result", |h| shows(h, "Request @carol…"));
    assert!(shows(
        &h,
        "89AB CDEF 0123 4567 89AB  CDEF 0123 4567 89AB CDEF"
    ));
    h.get_by_label("Request @carol…").click();
    h.run_ok();
    h.get_by_label("Note").click();
    h.run_ok();
    h.get_by_label("Note")
        .type_text("Hi Carol, it's Alice from the garden");
    h.get_by_label("Send request to @carol").click();
    wait_request(&mut h, &fake, "the request", |r| {
        matches!(r, Request::Request { username, note, allow_key_change: false, rekey: false }
            if username == "@carol" && note == "Hi Carol, it's Alice from the garden")
    });
    wait(&mut h, "the confirmation", |h| {
        shows(h, "Request sent to @carol")
    });
}

#[test]
fn details_verify_and_end_session() {
    // A daemon that remembers the verification.
    let verified = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let v = verified.clone();
    let fake = FakeDaemon::start(Box::new(move |r| {
        use std::sync::atomic::Ordering::SeqCst;
        match r {
            Request::Verify { .. } => v.store(true, SeqCst),
            Request::Contacts if v.load(SeqCst) => {
                return Ok(umbra_control::proto::Reply::Contacts(vec![
                    contact("@bob", FP_BOB, true, true, 0),
                    contact("@carol", FP_CAROL, false, true, 0),
                ]));
            }
            _ => {}
        }
        standard(r)
    }));
    let mut h = connected(&fake);
    h.get_by_label_contains("@carol, offline").click();
    h.run_ok();
    h.get_by_label("Details").click();
    wait(&mut h, "the details", |h| shows(h, "Mark as verified"));
    assert!(shows(
        &h,
        "89AB CDEF 0123 4567 89AB  CDEF 0123 4567 89AB CDEF"
    ));
    h.get_by_label("Mark as verified").click();
    wait_request(
        &mut h,
        &fake,
        "the verify",
        |r| matches!(r, Request::Verify { username, fingerprint: Some(f) } if username == "@carol" && f == FP_CAROL),
    );
    wait(&mut h, "the verified mark", |h| {
        shows(h, "@carol, offline, verified")
    });
    h.key_press(Key::Escape);
    h.run_ok();
    // Ending a session asks first; Cancel sends nothing.
    h.get_by_label("End session…").click();
    wait(&mut h, "the confirmation", |h| {
        shows(h, "are erased on both sides")
    });
    h.get_by_label("Cancel").click();
    h.run_ok();
    assert!(!fake.got(|r| matches!(r, Request::End { .. })));
    h.key_press_modifiers(egui::Modifiers::COMMAND | egui::Modifiers::SHIFT, Key::E);
    wait(&mut h, "the confirmation", |h| {
        shows(h, "are erased on both sides")
    });
    h.get_by_label("End session").click();
    wait_request(
        &mut h,
        &fake,
        "the end",
        |r| matches!(r, Request::End { username } if username == "@carol"),
    );
}

#[test]
fn files_offer_accept_progress_save_and_inline_image() {
    let fake = FakeDaemon::standard();
    let mut h = connected(&fake);
    h.get_by_label_contains("@bob, online").click();
    wait(&mut h, "bob's history", |h| shows(h, "Here."));
    // An offer in the timeline.
    fake.push(Event::FileOffered(transfer(
        "t1",
        "photo.png",
        "offered",
        "image",
    )));
    wait(&mut h, "the offer", |h| shows(h, "Accept photo.png"));
    assert!(shows(&h, "photo.png (2.0 MiB, image) · offered to you"));
    h.get_by_label("Accept photo.png").click();
    wait_request(
        &mut h,
        &fake,
        "the accept",
        |r| matches!(r, Request::AcceptFile { id } if id == "t1"),
    );
    fake.push(Event::FileProgress {
        id: "t1".into(),
        username: "@bob".into(),
        done: 1 << 20,
        size: 2 << 20,
    });
    wait(&mut h, "the progress bar", |h| {
        shows(h, "photo.png: 1.0 MiB of 2.0 MiB (50%)")
    });
    fake.push(Event::FileCompleted(transfer(
        "t1",
        "photo.png",
        "completed",
        "image",
    )));
    wait(&mut h, "the save button", |h| shows(h, "Save photo.png…"));
    assert!(shows(&h, "received, not saved yet"));

    // Save into a folder chosen in the dialog; the image then shows inline.
    let folder = tempfile::tempdir().unwrap();
    let png = folder.path().join("photo.png");
    image::RgbaImage::from_pixel(40, 30, image::Rgba([200, 30, 30, 255]))
        .save(&png)
        .unwrap();
    h.get_by_label("Save photo.png…").click();
    wait(&mut h, "the save dialog", |h| shows(h, "Save in folder"));
    let field = h.get_by_label("Save in folder");
    field.click();
    h.run_ok();
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::A);
    h.get_by_label("Save in folder")
        .type_text(&folder.path().display().to_string());
    h.run_ok();
    // The script answers with `path` = the folder; point it at the file.
    h.get_by_label("Save here").click();
    wait_request(
        &mut h,
        &fake,
        "the save",
        |r| matches!(r, Request::SaveFile { id, path } if id == "t1" && path == &folder.path().display().to_string()),
    );
    let mut done = transfer("t1", "photo.png", "completed", "image");
    done.path = Some(png.display().to_string());
    fake.push(Event::FileCompleted(done));
    wait(&mut h, "the inline image", |h| shows(h, "Image photo.png"));
    assert!(shows(&h, "· saved"));

    // Dropping a file on the window offers it to the open conversation.
    let doc = folder.path().join("notes.txt");
    std::fs::write(&doc, b"hello").unwrap();
    h.input_mut().dropped_files.push(egui::DroppedFile {
        path: Some(doc.clone()),
        ..Default::default()
    });
    wait_request(&mut h, &fake, "the dropped file", |r| {
        matches!(r, Request::SendFile { username, path, media: Some(m) }
            if username == "@bob" && path == &doc.display().to_string() && m == "file")
    });
}

#[test]
fn send_file_dialog_browses_folders() {
    let fake = FakeDaemon::standard();
    let mut h = connected(&fake);
    h.get_by_label_contains("@bob, online").click();
    h.run_ok();
    let folder = tempfile::tempdir().unwrap();
    std::fs::create_dir(folder.path().join("sub")).unwrap();
    let file = folder.path().join("sub").join("report.pdf");
    std::fs::write(&file, b"%PDF").unwrap();
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::O);
    wait(&mut h, "the file dialog", |h| shows(h, "Choose a file"));
    h.get_by_label("File path").click();
    h.run_ok();
    h.get_by_label("File path")
        .type_text(&folder.path().join("sub").display().to_string());
    // Not a file: a clear error, nothing sent.
    h.get_by_label("Send to @bob").click();
    wait(&mut h, "the error", |h| shows(h, "is not a file"));
    assert!(!fake.got(|r| matches!(r, Request::SendFile { .. })));
    h.get_by_label("File path").click();
    h.run_ok();
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::A);
    h.get_by_label("File path")
        .type_text(&file.display().to_string());
    h.get_by_label("Send to @bob").click();
    wait_request(
        &mut h,
        &fake,
        "the file",
        |r| matches!(r, Request::SendFile { path, .. } if path == &file.display().to_string()),
    );
}

#[test]
fn help_theme_and_font_size() {
    let fake = FakeDaemon::standard();
    let mut h = connected(&fake);
    h.key_press(Key::F1);
    wait(&mut h, "the help", |h| {
        shows(h, "next / previous conversation")
    });
    h.key_press(Key::Escape);
    h.run_ok();
    assert!(!shows(&h, "next / previous conversation"));
    let dark = h.ctx.theme() == egui::Theme::Dark;
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::D);
    h.run_ok();
    assert_ne!(h.ctx.theme() == egui::Theme::Dark, dark);
    let z = h.ctx.zoom_factor();
    h.get_by_label("Larger text").click();
    h.run_ok();
    assert!(h.ctx.zoom_factor() > z);
    // Alt+Down opens the first conversation, then the next.
    h.key_press_modifiers(egui::Modifiers::ALT, Key::ArrowDown);
    wait(&mut h, "bob's history", |h| shows(h, "Here."));
    h.key_press_modifiers(egui::Modifiers::ALT, Key::ArrowDown);
    wait_request(
        &mut h,
        &fake,
        "carol's history",
        |r| matches!(r, Request::History { username, .. } if username == "@carol"),
    );
    // Opening carol's conversation marks her messages read.
    assert!(fake.got(|r| matches!(r, Request::MarkRead { username } if username == "@carol")));
}

#[test]
fn lagged_rereads_everything() {
    let fake = FakeDaemon::standard();
    let mut h = connected(&fake);
    // A Lagged event re-reads everything.
    let before = fake.received().len();
    fake.push(Event::Lagged { missed: 3 });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while fake.received()[before..]
        .iter()
        .filter(|r| matches!(r, Request::Contacts | Request::Status))
        .count()
        < 2
    {
        assert!(
            std::time::Instant::now() < deadline,
            "no refresh after Lagged"
        );
        h.step();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(h.state().screen(), &Screen::Main);
}

/// Interactive AccessKit roles: each must carry a name.
fn interactive(role: egui::accesskit::Role) -> bool {
    use egui::accesskit::Role;
    matches!(
        role,
        Role::Button
            | Role::CheckBox
            | Role::TextInput
            | Role::MultilineTextInput
            | Role::PasswordInput
            | Role::ListBoxOption
            | Role::Link
            | Role::Slider
            | Role::ComboBox
            | Role::RadioButton
            | Role::Tab
            | Role::MenuItem
            | Role::SpinButton
            | Role::Switch
    )
}

fn unnamed(h: &egui_kittest::Harness<'_, umbra_desktop::App>) -> Vec<String> {
    h.query_all_by(|n| interactive(n.role()))
        .filter(|n| {
            n.accesskit_node()
                .label()
                .is_none_or(|l| l.trim().is_empty())
        })
        .map(|n| format!("{:?} at {:?}", n.accesskit_node().role(), n.rect()))
        .collect()
}

#[test]
fn accessibility_every_interactive_widget_is_named() {
    let fake = FakeDaemon::standard();
    let mut h = connected(&fake);
    let mut screens = vec![("contacts", unnamed(&h))];
    h.get_by_label_contains("@bob, online").click();
    wait(&mut h, "bob's history", |h| shows(h, "Here."));
    fake.push(Event::FileOffered(transfer(
        "t1",
        "photo.png",
        "offered",
        "image",
    )));
    wait(&mut h, "the offer", |h| shows(h, "Accept photo.png"));
    screens.push(("conversation", unnamed(&h)));
    for (key, name, mods) in [
        (Key::R, "requests", egui::Modifiers::COMMAND),
        (Key::F, "search", egui::Modifiers::COMMAND),
        (Key::I, "details", egui::Modifiers::COMMAND),
        (Key::O, "send file", egui::Modifiers::COMMAND),
        (
            Key::E,
            "end session",
            egui::Modifiers::COMMAND | egui::Modifiers::SHIFT,
        ),
        (Key::F1, "help", egui::Modifiers::NONE),
    ] {
        h.key_press_modifiers(mods, key);
        h.run_ok();
        screens.push((name, unnamed(&h)));
        h.key_press(Key::Escape);
        h.run_ok();
    }
    let total: usize = screens.iter().map(|(_, v)| v.len()).sum();
    assert!(
        h.query_all_by(|n| interactive(n.role())).count() > 5,
        "the walk sees widgets"
    );
    assert_eq!(total, 0, "widgets without an accessible name: {screens:#?}");
}
