//! Integration tests of the encrypted store: what a device thief finds on disk,
//! wrong passphrases, crashes in the middle of writes, backup and restore.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use secrecy::SecretString;
use sha2::{Digest, Sha256};
use umbra::store::{
    ContactState, DeliveryState, Direction, ErrorKind, KdfParams, NewContact, NewMessage,
    OwnIdentity, Store, lifecycle,
};
use zeroize::Zeroizing;

fn pw(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

fn params() -> KdfParams {
    KdfParams::insecure_for_tests()
}

// Distinctive plaintext that must never appear on disk.
const MY_NAME: &str = "@zanzibar_quokka";
const MY_FPR: &str = "C0FFEE1234567890DEADBEEF0BADC0DE13371337";
const SECRET_CERT: &str = "-----BEGIN PGP PRIVATE KEY BLOCK----- xylophone-wombat";
const CONTACT_NAME: &str = "@marmalade_narwhal";
const CONTACT_FPR: &str = "FEEDFACE0123456789ABCDEF0011223344556677";
const ONION: &str = "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion";
const BODY: &str = "the eagle lands at midnight by the old lighthouse";

fn my_identity() -> OwnIdentity {
    OwnIdentity {
        username: MY_NAME.into(),
        fingerprint: MY_FPR.into(),
        secret_cert: Zeroizing::new(SECRET_CERT.as_bytes().to_vec()),
        created_at: 1_700_000_000,
    }
}

fn the_contact() -> NewContact {
    NewContact {
        username: CONTACT_NAME.into(),
        fingerprint: CONTACT_FPR.into(),
        public_cert: b"public cert of the narwhal".to_vec(),
        onion_address: Some(ONION.into()),
        state: ContactState::Accepted,
        verified: true,
    }
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The needles found in any file under `dir`, as (file name, needle) pairs.
fn scan(dir: &Path, needles: &[&str]) -> Vec<(String, String)> {
    let mut hits = std::collections::BTreeSet::new();
    for f in files_under(dir) {
        let bytes = std::fs::read(&f).unwrap();
        for n in needles {
            for variant in [n.to_string(), n.to_lowercase()] {
                if bytes
                    .windows(variant.len())
                    .any(|w| w == variant.as_bytes())
                {
                    hits.insert((f.display().to_string(), n.to_string()));
                }
            }
        }
    }
    hits.into_iter().collect()
}

const NEEDLES: &[&str] = &[
    MY_NAME,
    MY_FPR,
    SECRET_CERT,
    CONTACT_NAME,
    CONTACT_FPR,
    ONION,
    BODY,
];

#[test]
fn no_plaintext_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = lifecycle::init(&dir, &pw("pass"), params(), &my_identity()).unwrap();
    let mut store = store;
    let c = store.add_contact(&the_contact()).unwrap();
    let msgs: Vec<_> = (1..=200)
        .map(|i| NewMessage {
            contact: c,
            direction: Direction::Incoming,
            seq: i,
            msg_id: [i as u8; 16],
            sent_at: i,
            received_at: Some(i),
            body: format!("{BODY} #{i}"),
            state: DeliveryState::Received,
        })
        .collect();
    store.insert_messages(&msgs).unwrap();
    store.enqueue_message(c, [1; 16], 5, BODY).unwrap();
    store.set_setting("last_onion", ONION).unwrap();

    // While the store is open, the WAL holds the recent pages: scan it too.
    let wal = dir.join("umbra.db-wal");
    assert!(
        wal.exists() && std::fs::metadata(&wal).unwrap().len() > 0,
        "WAL present"
    );
    assert_eq!(
        scan(&dir, NEEDLES),
        vec![],
        "plaintext while open (WAL/SHM)"
    );
    store.close().unwrap();
    assert!(!files_under(&dir).is_empty());
    assert_eq!(scan(&dir, NEEDLES), vec![], "plaintext after close");
    // The onion service key directory exists; Arti state will live there (no Arti yet:
    // the network issue must extend this scan once Arti writes its state).
    assert!(dir.join("hs").is_dir());

    // Control 1: the scan does find the strings in a plain file.
    let control = tmp.path().join("control");
    std::fs::create_dir(&control).unwrap();
    std::fs::write(control.join("plain.txt"), NEEDLES.join("\n")).unwrap();
    assert_eq!(scan(&control, NEEDLES).len(), NEEDLES.len());
    // Control 2: an unencrypted SQLite database would leak them.
    let plain_db = tmp.path().join("plain-db");
    std::fs::create_dir(&plain_db).unwrap();
    let conn = rusqlite::Connection::open(plain_db.join("x.db")).unwrap();
    conn.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
    for n in NEEDLES {
        conn.execute("INSERT INTO t VALUES (?1)", [n]).unwrap();
    }
    drop(conn);
    assert_eq!(scan(&plain_db, NEEDLES).len(), NEEDLES.len());
}

/// (path → (sha256, mode)) of every file under `dir`.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, u32)> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(&f).unwrap();
            let mode = std::fs::metadata(&f).unwrap().permissions().mode();
            (f, (hex::encode(Sha256::digest(&bytes)), mode))
        })
        .collect()
}

#[test]
fn wrong_passphrase_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut store = lifecycle::init(&dir, &pw("right"), params(), &my_identity()).unwrap();
    let c = store.add_contact(&the_contact()).unwrap();
    store.enqueue_message(c, [1; 16], 5, BODY).unwrap();
    store.close().unwrap();

    let before = snapshot(&dir);
    assert!(before.keys().any(|p| p.ends_with("umbra.db")));
    assert!(before.keys().any(|p| p.ends_with("store.header")));
    for wrong in ["wrong", "Right", "right "] {
        let e = Store::open(&dir, &pw(wrong)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WrongPassphrase, "{e}");
        assert!(e.to_string().contains("wrong passphrase"), "{e}");
        assert!(e.recommendation().is_some());
        assert_eq!(snapshot(&dir), before, "files changed after {wrong:?}");
    }
    let e = lifecycle::change_passphrase(&dir, &pw("wrong"), &pw("new")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongPassphrase);
    assert_eq!(snapshot(&dir), before);

    // Files are owner-only.
    for (p, (_, mode)) in &before {
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", p.display());
    }
    // And the right passphrase still works.
    let s = Store::open(&dir, &pw("right")).unwrap();
    assert_eq!(s.identity().unwrap().unwrap().fingerprint, MY_FPR);
}

#[test]
fn wrong_passphrase_while_open_elsewhere() {
    // With another connection open, the WAL and SHM files exist; a wrong passphrase
    // must not touch them either.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let mut store = lifecycle::init(&dir, &pw("right"), params(), &my_identity()).unwrap();
    let c = store.add_contact(&the_contact()).unwrap();
    store.enqueue_message(c, [1; 16], 5, BODY).unwrap();
    let before = snapshot(&dir);
    assert!(before.keys().any(|p| p.ends_with("umbra.db-wal")));
    let e = Store::open(&dir, &pw("wrong")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongPassphrase);
    assert_eq!(snapshot(&dir), before);
    // The WAL and its index inherit the database's owner-only mode.
    for (p, (_, mode)) in &before {
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", p.display());
    }
    drop(store);
}

#[test]
fn unsafe_data_dir_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let e = Store::create(&dir, &pw("p"), params()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnsafePermissions);
    assert!(e.to_string().contains("group or others can write"), "{e}");
    assert!(
        std::fs::read_dir(&dir).unwrap().next().is_none(),
        "nothing created"
    );

    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    Store::create(&dir, &pw("p"), params())
        .unwrap()
        .close()
        .unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
    assert_eq!(
        Store::open(&dir, &pw("p")).unwrap_err().kind(),
        ErrorKind::UnsafePermissions
    );
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    if rustix::process::geteuid().is_root() {
        // Owned by someone else.
        std::os::unix::fs::chown(&dir, Some(4242), None).unwrap();
        let e = Store::open(&dir, &pw("p")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnsafePermissions);
        assert!(e.to_string().contains("not by you"), "{e}");
        std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
    }
    Store::open(&dir, &pw("p")).unwrap();
}

#[test]
fn export_wipe_import() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let backup = tmp.path().join("identity.umbra-backup");
    let store = lifecycle::init(&dir, &pw("store pass"), params(), &my_identity()).unwrap();
    store.add_contact(&the_contact()).unwrap();
    let mut second = the_contact();
    second.username = "@second".into();
    second.fingerprint = "1".repeat(40);
    second.onion_address = None;
    second.state = ContactState::Requested;
    second.verified = false;
    let id2 = store.add_contact(&second).unwrap();
    store.set_contact_last_seen(id2, 77).unwrap();
    let contacts_before = store.contacts().unwrap();
    lifecycle::export_identity(&store, &backup, &pw("backup pass"), params()).unwrap();
    store.close().unwrap();
    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(scan(tmp.path(), &[SECRET_CERT, MY_NAME, ONION]), vec![]);

    // Exporting again to the same file refuses to overwrite it.
    let s = Store::open(&dir, &pw("store pass")).unwrap();
    assert!(lifecycle::export_identity(&s, &backup, &pw("x"), params()).is_err());
    drop(s);

    std::fs::remove_dir_all(&dir).unwrap();

    // A wrong backup passphrase fails and creates nothing.
    let e = lifecycle::import_identity(&dir, &pw("new store pass"), params(), &backup, &pw("nope"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongPassphrase);
    assert!(!dir.exists());

    let (store, fpr, added) = lifecycle::import_identity(
        &dir,
        &pw("new store pass"),
        params(),
        &backup,
        &pw("backup pass"),
    )
    .unwrap();
    assert_eq!(fpr, MY_FPR);
    assert_eq!(added, 2);
    let id = store.identity().unwrap().unwrap();
    assert_eq!(id.fingerprint, MY_FPR);
    assert_eq!(id.username, MY_NAME);
    assert_eq!(&id.secret_cert[..], SECRET_CERT.as_bytes());
    let strip = |cs: Vec<umbra::store::Contact>| {
        cs.into_iter()
            .map(|c| {
                (
                    c.username,
                    c.fingerprint,
                    c.public_cert,
                    c.onion_address,
                    c.state,
                    c.verified,
                    c.last_seen,
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(strip(store.contacts().unwrap()), strip(contacts_before));
    let status = lifecycle::status(&store).unwrap();
    assert_eq!(status.fingerprint.as_deref(), Some(MY_FPR));
    assert_eq!(status.contacts, 2);
    store.close().unwrap();

    // Importing into a store holding a different identity is refused.
    let other = tmp.path().join("other");
    let mut me2 = my_identity();
    me2.fingerprint = "2".repeat(40);
    lifecycle::init(&other, &pw("p"), params(), &me2)
        .unwrap()
        .close()
        .unwrap();
    let e = lifecycle::import_identity(&other, &pw("p"), params(), &backup, &pw("backup pass"))
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists);
}

#[test]
fn passwd_then_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    lifecycle::init(&dir, &pw("old"), params(), &my_identity())
        .unwrap()
        .close()
        .unwrap();
    lifecycle::change_passphrase(&dir, &pw("old"), &pw("new")).unwrap();
    assert_eq!(
        Store::open(&dir, &pw("old")).unwrap_err().kind(),
        ErrorKind::WrongPassphrase
    );
    let s = Store::open(&dir, &pw("new")).unwrap();
    assert_eq!(s.identity().unwrap().unwrap().fingerprint, MY_FPR);
    assert_eq!(scan(&dir, NEEDLES), vec![]);
}

// ------------------------------------------------------------------ kill -9 mid-write

const CHILD_DIR: &str = "UMBRA_STORE_TEST_CHILD_DIR";
const CHILD_BATCH: &str = "UMBRA_STORE_TEST_CHILD_BATCH";

/// Not a test on its own: when re-executed by `killed_mid_write_*` with the
/// environment set, inserts messages forever, printing the highest committed seq.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let batch: u64 = std::env::var(CHILD_BATCH).unwrap().parse().unwrap();
    let mut store = Store::open(Path::new(&dir), &pw("pass")).unwrap();
    let c = store.contact_by_username(CONTACT_NAME).unwrap().unwrap().id;
    let mut out = std::io::stdout().lock();
    let mut next = 1u64;
    loop {
        let msgs: Vec<_> = (next..next + batch)
            .map(|seq| NewMessage {
                contact: c,
                direction: Direction::Incoming,
                seq,
                msg_id: [0; 16],
                sent_at: seq,
                received_at: Some(seq),
                body: format!("{BODY} {seq}"),
                state: DeliveryState::Received,
            })
            .collect();
        if batch == 1 {
            store.insert_message(&msgs[0]).unwrap();
        } else {
            store.insert_messages(&msgs).unwrap();
        }
        next += batch;
        writeln!(out, "committed {}", next - 1).unwrap();
        out.flush().unwrap();
    }
}

fn killed_mid_write(batch: u64, kill_after: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let store = lifecycle::init(&dir, &pw("pass"), params(), &my_identity()).unwrap();
    let c = store.add_contact(&the_contact()).unwrap();
    store.close().unwrap();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "store::crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, &dir)
        .env(CHILD_BATCH, batch.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut committed = 0;
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("committed ") {
            committed = n.parse().unwrap();
            if committed >= kill_after {
                break;
            }
        }
    }
    assert!(
        committed >= kill_after,
        "child stopped early at {committed}"
    );
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());

    // The crash left a WAL (and its index) behind; a wrong passphrase touches nothing.
    let before = snapshot(&dir);
    assert!(before.keys().any(|p| p.ends_with("umbra.db-wal")));
    let e = Store::open(&dir, &pw("wrong")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::WrongPassphrase);
    assert_eq!(snapshot(&dir), before);

    let store = Store::open(&dir, &pw("pass")).unwrap();
    let seqs: Vec<u64> = store
        .history(c, u32::MAX)
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    let n = seqs.len() as u64;
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "a contiguous prefix");
    assert!(n >= committed, "lost committed rows: {n} < {committed}");
    assert_eq!(n % batch, 0, "batches are all-or-nothing");
    assert_eq!(store.highest_seq(c, Direction::Incoming).unwrap(), n);
    println!("batch {batch}: reported {committed}, found {n} after kill -9");
}

#[test]
fn killed_mid_write_single_inserts() {
    killed_mid_write(1, 200);
}

#[test]
fn killed_mid_write_batches() {
    killed_mid_write(50, 2000);
}

/// Replay records are durable: a connection request opened once is refused as a
/// replay after the store is closed and reopened (the store is the client's
/// `SeenRequests`). Moved here from `handshake.rs` when that module moved to
/// `umbra-proto`, which has no store.
#[test]
fn durable_replay_cache_in_the_store() {
    use umbra::envelope::Freshness;
    use umbra::handshake::{HandshakeError, TrustAnchor, make_request, open_request};
    use umbra::handshaker_api::binding::BindingSigner;
    use umbra::identity::{Identity, Username};

    let ident = |name: &str| Identity::generate(&Username::parse(name).unwrap()).unwrap();
    let (alice, bob) = (ident("alice"), ident("bob"));
    let pb = bob.public_cert().unwrap();
    let addr = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.onion";
    let hs = "http://handshaker.test:1";
    let signer = BindingSigner::generate();
    let pa = TrustAnchor {
        address: hs.into(),
        key: signer.public(),
    };
    let now = umbra::time::now_secs();
    let binding = signer
        .issue(alice.username(), &alice.fingerprint(), hs, now)
        .unwrap();
    let (env, _) = make_request(&alice, &pb, bob.username(), addr, "", &binding).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    let pass = pw("p");
    let mut store = Store::create(&dir, &pass, params()).unwrap();
    open_request(env.as_bytes(), &bob, &pa, &mut store, Freshness::default()).unwrap();
    store.close().unwrap();
    // Still refused after reopening.
    let mut store = Store::open(&dir, &pass).unwrap();
    assert!(matches!(
        open_request(env.as_bytes(), &bob, &pa, &mut store, Freshness::default()),
        Err(HandshakeError::Replay)
    ));
}
