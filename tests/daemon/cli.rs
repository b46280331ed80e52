//! Tests of the `umbra` binary as a user (or a script) drives it: the stateful flows
//! with assert_cmd, and snapshots of user-visible errors with trycmd (`tests/cmd/`).
//!
//! There is no terminal in CI, so passphrases come from `--passphrase-file` and the
//! `UMBRA_*` variables. Every command runs with a cleared `UMBRA_*` environment and
//! `HOME` pointing into the test's own temporary directory.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use umbra::store::{ContactState, NewContact, Store};

/// A temporary home with a data directory path and passphrase files.
struct Env {
    tmp: TempDir,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let e = Env { tmp };
        e.write("pw", "correct horse battery\n");
        e.write("pw-wrong", "incorrect horse\n");
        e.write("pw-new", "a brand new passphrase\n");
        e.write("pw-backup", "backup passphrase\n");
        e
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn data(&self) -> PathBuf {
        self.path("data")
    }

    fn write(&self, name: &str, contents: &str) {
        std::fs::write(self.path(name), contents).unwrap();
    }

    /// `umbra --data-dir DATA ARGS…` with a clean environment.
    fn umbra(&self, args: &[&str]) -> Command {
        self.umbra_at(&self.data(), args)
    }

    /// `umbra --data-dir DIR ARGS…` with a clean environment.
    fn umbra_at(&self, dir: &Path, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("umbra").unwrap();
        for var in [
            "UMBRA_HOME",
            "UMBRA_PASSPHRASE",
            "UMBRA_NEW_PASSPHRASE",
            "UMBRA_BACKUP_PASSPHRASE",
            "UMBRA_LOG",
            "XDG_DATA_HOME",
        ] {
            c.env_remove(var);
        }
        c.env("HOME", self.tmp.path());
        c.arg("--data-dir").arg(dir);
        c.args(args);
        c
    }

    /// `umbra … --passphrase-file pw`.
    fn with_pw(&self, file: &str, args: &[&str]) -> Command {
        let mut c = self.umbra(&[]);
        c.arg("--passphrase-file").arg(self.path(file)).args(args);
        c
    }

    fn init(&self, name: &str) -> serde_json::Value {
        let out = self
            .with_pw("pw", &["init", "--name", name, "--json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    }

    fn status_json(&self, pw: &str) -> serde_json::Value {
        let out = self
            .with_pw(pw, &["status", "--json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    }
}

/// SHA-256 of every file under `dir`, by relative path (directories listed too).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert(rel, "dir".into());
                stack.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.insert(rel, hex::encode(Sha256::digest(&bytes)));
            }
        }
    }
    out
}

/// Exactly one `error:` line, then exactly one `hint:` line containing `hint`.
fn error_with_hint(error: &'static str, hint: &'static str) -> impl Predicate<str> {
    predicate::function(move |s: &str| {
        let lines: Vec<&str> = s.lines().collect();
        lines.len() == 2
            && lines[0].starts_with("error: ")
            && lines[0].contains(error)
            && lines[1].starts_with("hint: ")
            && lines[1].contains(hint)
    })
}

#[test]
fn init_then_status_human_and_json() {
    let env = Env::new();
    let out = env
        .with_pw("pw", &["init", "--name", "@Alice_1"])
        .assert()
        .success()
        .stderr("")
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("@alice_1"), "{text}");
    let canonical = std::fs::canonicalize(env.data()).unwrap();
    assert!(text.contains(&canonical.display().to_string()), "{text}");
    // The grouped fingerprint: 10 groups of 4 hex digits.
    let fpr_line = text.lines().find(|l| l.contains("fingerprint")).unwrap();
    let grouped = fpr_line
        .trim_start()
        .trim_start_matches("fingerprint")
        .trim();
    assert_eq!(grouped.split_whitespace().count(), 10, "{grouped}");
    let hex: String = grouped.split_whitespace().collect();

    // Owner-only layout, onion service key directory prepared.
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&env.data()), 0o700);
    assert_eq!(mode(&env.data().join("hs")), 0o700);
    assert_eq!(mode(&env.data().join("umbra.db")), 0o600);

    let status = env
        .with_pw("pw", &["status"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let status = String::from_utf8(status).unwrap();
    assert!(status.contains("@alice_1"), "{status}");
    assert!(status.contains(grouped), "{status}");
    assert!(status.contains("Argon2id"), "{status}");

    let j = env.status_json("pw");
    assert_eq!(j["username"], "@alice_1");
    assert_eq!(j["fingerprint"], hex.as_str());
    assert_eq!(j["fingerprint_grouped"], grouped);
    assert_eq!(j["contacts"], 0);
    assert_eq!(j["data_dir"], canonical.display().to_string());
    assert!(j["schema_version"].as_u64().unwrap() >= 1);
    assert_eq!(j["kdf"]["m_cost_kib"], 65536);

    // The passphrase from the environment works the same.
    env.umbra(&["status", "--json"])
        .env("UMBRA_PASSPHRASE", "correct horse battery")
        .assert()
        .success();
}

#[test]
fn init_json_matches_status() {
    let env = Env::new();
    let init = env.init("bob");
    let fpr = init["fingerprint"].as_str().unwrap();
    assert_eq!(fpr.len(), 40);
    assert_eq!(init["username"], "@bob");
    assert_eq!(env.status_json("pw")["fingerprint"], fpr);
}

#[test]
fn init_twice_is_refused_with_exit_4() {
    let env = Env::new();
    let first = env.init("carol");
    let before = snapshot(&env.data());
    env.with_pw("pw", &["init", "--name", "carol"])
        .assert()
        .code(4)
        .stdout("")
        .stderr(error_with_hint("already exists", "--data-dir"));
    // Also with another passphrase: still refused, and the identity is untouched.
    env.with_pw("pw-wrong", &["init", "--name", "mallory"])
        .assert()
        .code(4);
    assert_eq!(before, snapshot(&env.data()));
    assert_eq!(env.status_json("pw")["fingerprint"], first["fingerprint"]);
}

#[test]
fn wrong_passphrase_exits_3_and_changes_nothing() {
    let env = Env::new();
    env.init("dave");
    let before = snapshot(&env.data());
    assert!(before.keys().any(|p| p.ends_with("umbra.db")));

    env.with_pw("pw-wrong", &["status"])
        .assert()
        .code(3)
        .stdout("")
        .stderr(error_with_hint(
            "wrong passphrase",
            "UMBRA_PASSPHRASE and --passphrase-file are read before prompting",
        ));
    env.umbra(&["status"])
        .env("UMBRA_PASSPHRASE", "nope")
        .assert()
        .code(3);
    // passwd and export with the wrong current passphrase fail the same way.
    let mut passwd = env.with_pw("pw-wrong", &["passwd"]);
    passwd
        .env("UMBRA_NEW_PASSPHRASE", "whatever")
        .assert()
        .code(3);
    let backup = env.path("dave.backup");
    env.with_pw("pw-wrong", &["export-identity"])
        .arg(&backup)
        .env("UMBRA_BACKUP_PASSPHRASE", "b")
        .assert()
        .code(3);
    assert!(!backup.exists());
    // --json: one JSON object on stderr with the same facts.
    let out = env
        .with_pw("pw-wrong", &["status", "--json"])
        .assert()
        .code(3)
        .stdout("")
        .get_output()
        .stderr
        .clone();
    let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(j["exit_code"], 3);
    assert!(j["error"].as_str().unwrap().contains("wrong passphrase"));
    assert!(j["hint"].as_str().unwrap().contains("check the passphrase"));

    assert_eq!(before, snapshot(&env.data()), "a file changed on disk");
    env.status_json("pw");
}

#[test]
fn missing_store_and_missing_passphrase() {
    let env = Env::new();
    env.with_pw("pw", &["status"])
        .assert()
        .code(4)
        .stderr(error_with_hint("no Umbra store", "umbra init --name NAME"));
    assert!(!env.data().exists(), "status must not create the data dir");
    env.init("erin");
    // No passphrase file, no variable, and no terminal to prompt on.
    env.umbra(&["status"])
        .write_stdin("")
        .assert()
        .code(3)
        .stderr(error_with_hint(
            "cannot read the store passphrase",
            "set UMBRA_PASSPHRASE, pass --passphrase-file FILE, or run in a terminal",
        ));
    // An empty passphrase is refused at init.
    let env2 = Env::new();
    env2.write("empty", "\n");
    env2.with_pw("empty", &["init", "--name", "frank"])
        .assert()
        .code(3)
        .stderr(error_with_hint("passphrase is empty", "non-empty"));
    assert!(!env2.data().join("umbra.db").exists());
}

#[test]
fn export_wipe_import_restores_identity_and_contacts() {
    let env = Env::new();
    let init = env.init("grace");
    // A contact, written through the library (the CLI cannot add contacts yet).
    {
        let s = Store::open(
            &env.data(),
            &SecretString::from("correct horse battery".to_owned()),
        )
        .unwrap();
        s.add_contact(&NewContact {
            username: "@heidi".into(),
            fingerprint: "FEEDFACE0123456789ABCDEF0011223344556677".into(),
            public_cert: b"heidi's public cert".to_vec(),
            onion_address: None,
            state: ContactState::Accepted,
            verified: true,
        })
        .unwrap();
        s.close().unwrap();
    }
    let backup = env.path("grace.umbra-backup");
    let out = env
        .with_pw(
            "pw",
            &["export-identity", "--json", "--backup-passphrase-file"],
        )
        .arg(env.path("pw-backup"))
        .arg(&backup)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(j["contacts"], 1);
    assert_eq!(j["fingerprint"], init["fingerprint"]);
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Exporting again never overwrites.
    env.with_pw("pw", &["export-identity"])
        .arg(&backup)
        .env("UMBRA_BACKUP_PASSPHRASE", "backup passphrase")
        .assert()
        .code(1)
        .stderr(error_with_hint("already exists", "never overwrite"));

    std::fs::remove_dir_all(env.data()).unwrap();

    // A wrong backup passphrase: exit 3 and no store is left behind.
    env.with_pw("pw-new", &["import-identity"])
        .arg(&backup)
        .env("UMBRA_BACKUP_PASSPHRASE", "not the backup passphrase")
        .assert()
        .code(3)
        .stderr(error_with_hint(
            "wrong passphrase or modified file",
            "UMBRA_BACKUP_PASSPHRASE",
        ));
    assert!(!env.data().join("umbra.db").exists());

    // Into a new data dir, with a new store passphrase.
    let out = env
        .with_pw("pw-new", &["import-identity", "--json"])
        .arg(&backup)
        .env("UMBRA_BACKUP_PASSPHRASE", "backup passphrase")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(j["fingerprint"], init["fingerprint"]);
    assert_eq!(j["contacts_added"], 1);
    assert_eq!(j["new_store"], true);

    let st = env.status_json("pw-new");
    assert_eq!(st["fingerprint"], init["fingerprint"]);
    assert_eq!(st["username"], "@grace");
    assert_eq!(st["contacts"], 1);
    env.with_pw("pw", &["status"]).assert().code(3);
}

#[test]
fn passwd_switches_passphrase() {
    let env = Env::new();
    env.init("ivan");
    env.with_pw("pw", &["passwd", "--new-passphrase-file"])
        .arg(env.path("pw-new"))
        .assert()
        .success()
        .stdout(predicate::str::contains("Changed the passphrase"));
    env.with_pw("pw", &["status"]).assert().code(3);
    env.status_json("pw-new");
    assert!(!env.data().join("store.header.new").exists());

    // Again, from the environment, with --json.
    let out = env
        .with_pw("pw-new", &["passwd", "--json"])
        .env("UMBRA_NEW_PASSPHRASE", "third passphrase")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let j: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(j["changed"], true);
    env.with_pw("pw-new", &["status"]).assert().code(3);
    env.umbra(&["status"])
        .env("UMBRA_PASSPHRASE", "third passphrase")
        .assert()
        .success();

    // UX-2026-11 P9: the same passphrase again is refused (exit 2, nothing
    // changes); a short one is taken, with a warning.
    env.umbra(&["passwd"])
        .env("UMBRA_PASSPHRASE", "third passphrase")
        .env("UMBRA_NEW_PASSPHRASE", "third passphrase")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "the new passphrase is the same as the current one",
        ));
    env.umbra(&["passwd"])
        .env("UMBRA_PASSPHRASE", "third passphrase")
        .env("UMBRA_NEW_PASSPHRASE", "x")
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "warning: this passphrase is only 1 character(s) long",
        ));
    env.umbra(&["status"])
        .env("UMBRA_PASSPHRASE", "x")
        .assert()
        .success();
}

#[test]
fn data_dir_writable_by_others_is_refused() {
    let env = Env::new();
    env.init("judy");
    std::fs::set_permissions(env.data(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let canonical = std::fs::canonicalize(env.data()).unwrap();
    let hint = format!("chmod 700 {}", canonical.display());
    let out = env
        .with_pw("pw", &["status"])
        .assert()
        .code(1)
        .stdout("")
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).unwrap();
    assert!(
        err.starts_with("error: refusing to use") && err.contains("others can write"),
        "{err}"
    );
    assert!(err.lines().nth(1).unwrap().contains(&hint), "{err}");
    // init into such a directory is refused as well.
    let other = env.path("shared");
    std::fs::create_dir(&other).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o777)).unwrap();
    env.umbra_at(&other, &["init", "--name", "judy", "--passphrase-file"])
        .arg(env.path("pw"))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("chmod 700"));
    assert!(!other.join("umbra.db").exists());

    std::fs::set_permissions(env.data(), std::fs::Permissions::from_mode(0o700)).unwrap();
    env.status_json("pw");
}

#[test]
fn help_documents_exit_codes_and_hidden_generators_work() {
    let env = Env::new();
    env.umbra(&["--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("EXIT CODES:").and(predicate::str::contains(
                "3  wrong, missing or mismatched passphrase",
            )),
        );
    env.umbra(&["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("export-identity"));
    env.umbra(&["man"])
        .assert()
        .success()
        .stdout(predicate::str::contains(".TH umbra"));
    // UX-2026-11 P8: every page the main page refers to exists.
    let pages = env.path("man");
    std::fs::create_dir(&pages).unwrap();
    env.umbra(&["man", "--out-dir", pages.to_str().unwrap()])
        .assert()
        .success();
    let main = std::fs::read_to_string(pages.join("umbra.1")).unwrap();
    let mut referred = 0;
    for word in main.split(|c: char| c.is_whitespace() || c == ',') {
        let word = word
            .replace("\\-", "-")
            .replace("\\fB", "")
            .replace("\\fR", "");
        if let Some(name) = word.strip_suffix("(1)")
            && name.starts_with("umbra-")
        {
            referred += 1;
            assert!(
                pages.join(format!("{name}.1")).is_file(),
                "{name}(1) missing"
            );
        }
    }
    assert!(
        referred >= 20,
        "only {referred} command pages referred to:\n{main}"
    );
    assert!(
        std::fs::read_to_string(pages.join("umbra-send.1"))
            .unwrap()
            .contains(".TH umbra-send")
    );
    // P1: an installed user can get the documented example configuration.
    let example = env.umbra(&["config-example"]).assert().success();
    let text = String::from_utf8(example.get_output().stdout.clone()).unwrap();
    assert_eq!(text, umbra::config::EXAMPLE_CONFIG);
    env.umbra(&["init"]).assert().code(2);
}

#[test]
fn error_snapshots() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}
