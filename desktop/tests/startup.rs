//! Start-up: first run (`umbra init` with a name and a passphrase, the new
//! fingerprint shown), starting the daemon with Tor bootstrap progress, and
//! a refused passphrase. `umbra` is a script here that records its argv and
//! standard input, so the tests see exactly how the passphrase travels.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use eframe::egui::{self, Key};
use egui_kittest::kittest::Queryable;
use support::*;
use umbra_desktop::Screen;

/// A fake `umbra` in `dir`: `init` prints a fingerprint; `up` reports 42%,
/// waits for the file `go`, then reports ready (or, with the passphrase
/// "wrong", fails like the real one).
fn fake_umbra(dir: &Path) -> PathBuf {
    let bin = dir.join("umbra");
    std::fs::write(
        &bin,
        r#"#!/bin/sh
d="$(dirname "$0")"
printf '%s\n' "$@" >> "$d/argv"
IFS= read -r pw
printf '%s\n' "$pw" >> "$d/stdin"
case " $* " in
  *" init "*)
    echo '{"username":"@alice","fingerprint":"x","fingerprint_grouped":"AAAA BBBB CCCC DDDD EEEE  FFFF 0000 1111 2222 3333"}' ;;
  *" up "*)
    if [ "$pw" = "wrong" ]; then echo "error: the passphrase does not open the store" >&2; exit 1; fi
    echo "joining the Tor network: 42%" >&2
    while [ ! -e "$d/go" ]; do sleep 0.02; done
    echo "Tor is up; launching the onion service" >&2
    echo "Umbra is up as @alice. Control socket: $d/control.sock" ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    bin
}

fn type_into(h: &mut egui_kittest::Harness<'_, umbra_desktop::App>, label: &str, text: &str) {
    h.get_by_label(label).click();
    h.run_ok();
    h.get_by_label(label).type_text(text);
    h.run_ok();
}

#[test]
fn first_run_creates_identity_then_starts_with_progress() {
    let fake = FakeDaemon::idle();
    let bins = tempfile::tempdir().unwrap();
    let bin = fake_umbra(bins.path());
    let mut h = harness_with(&fake.data_dir(), &bin, egui::vec2(900.0, 640.0));
    wait(&mut h, "the first-run screen", |h| {
        h.state().screen() == &Screen::FirstRun
    });
    type_into(&mut h, "Username", "alice");
    type_into(&mut h, "Passphrase", "correct horse");
    type_into(&mut h, "Passphrase again", "correct hose");
    h.get_by_label("Create identity").click();
    wait(&mut h, "the mismatch", |h| {
        shows(h, "The two passphrases differ")
    });
    h.get_by_label("Passphrase again").click();
    h.run_ok();
    h.key_press_modifiers(egui::Modifiers::COMMAND, Key::A);
    h.get_by_label("Passphrase again")
        .type_text("correct horse");
    h.get_by_label("Create identity").click();
    wait(&mut h, "the fingerprint", |h| {
        shows(h, "AAAA BBBB CCCC DDDD EEEE  FFFF 0000 1111 2222 3333")
    });
    h.get_by_label("Start Umbra").click();
    wait(&mut h, "the bootstrap progress", |h| {
        shows(h, "Joining the Tor network: 42%")
    });
    fake.listen(std::sync::Arc::new(standard));
    std::fs::write(bins.path().join("go"), b"").unwrap();
    wait(&mut h, "the main window", |h| shows(h, "@bob, online"));

    // The passphrase went through standard input, twice (init, up), never argv.
    let stdin = std::fs::read_to_string(bins.path().join("stdin")).unwrap();
    assert_eq!(stdin, "correct horse\ncorrect horse\n");
    let argv = std::fs::read_to_string(bins.path().join("argv")).unwrap();
    assert!(!argv.contains("horse"), "{argv}");
    assert!(argv.contains("--passphrase-file\n/dev/stdin\n"), "{argv}");
    assert!(
        argv.contains("init\n--name\nalice\n") && argv.contains("\nup\n"),
        "{argv}"
    );
    assert!(argv.contains(&format!("--data-dir\n{}\n", fake.data_dir().display())));
}

#[test]
fn unlock_refused_passphrase_shows_why() {
    let fake = FakeDaemon::idle();
    std::fs::write(fake.dir.path().join(umbra_control::STORE_FILE), b"").unwrap();
    let bins = tempfile::tempdir().unwrap();
    let bin = fake_umbra(bins.path());
    let mut h = harness_with(&fake.data_dir(), &bin, egui::vec2(900.0, 640.0));
    wait(&mut h, "the unlock screen", |h| {
        h.state().screen() == &Screen::Unlock
    });
    assert!(shows(&h, "Umbra is not running for"));
    type_into(&mut h, "Passphrase", "wrong");
    h.key_press(Key::Enter);
    wait(&mut h, "the refusal", |h| {
        shows(h, "the passphrase does not open the store")
    });
    assert_eq!(h.state().screen(), &Screen::Unlock);
    // The field is empty again: the window kept no copy.
    assert_eq!(h.get_by_label("Passphrase").value().unwrap_or_default(), "");
}
