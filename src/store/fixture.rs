//! The checked-in data directory of the previous schema, `tests/fixtures/store-v6/`
//! (tests only): what a user upgrading from the release before the onion key moved
//! into the store (schema v7) has on disk. The test below opens a copy with this
//! build, which must migrate it and keep every record; `scripts/package-test.sh`
//! does the same with the installed package's `umbra`.
//!
//! The fixture was written by [`write_v6_fixture`] from the v1–v6 migration steps,
//! which never change once released (migrations.rs), with real OpenPGP identities.
//! Regenerate it only if the fixture itself must change:
//! `cargo test --lib store::fixture -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::{
    ContactState, DeliveryState, Direction, KdfParams, NewContact, NewMessage, OwnIdentity, Store,
    migrations,
};
use crate::identity::{Identity, Username};

/// Schema version of the fixture.
const FIXTURE_VERSION: u32 = 6;
/// The fixture's store passphrase (also in `tests/fixtures/store-v6.passphrase`).
const PASSPHRASE: &str = "umbra fixture v6";
/// The fixture's own user, its contact and the message between them.
const OWN_NAME: &str = "@carol";
const CONTACT_NAME: &str = "@dave";
const MESSAGE: &str = "written by schema v6, read after the upgrade";
const SETTING: (&str, &str) = ("fixture", "v6");

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v6")
}

fn passphrase() -> SecretString {
    SecretString::from(PASSPHRASE.to_owned())
}

/// Writes `tests/fixtures/store-v6/` (replacing it).
#[test]
#[ignore = "regenerates the checked-in fixture"]
fn write_v6_fixture() {
    let dir = fixture_dir();
    let _ = std::fs::remove_dir_all(&dir);
    let mut store = Store::create_at_version(
        &dir,
        &passphrase(),
        KdfParams::insecure_for_tests(),
        FIXTURE_VERSION,
    )
    .unwrap();
    let own = Identity::generate(&Username::parse(OWN_NAME).unwrap()).unwrap();
    store
        .set_identity(&OwnIdentity {
            username: own.username().to_string(),
            fingerprint: own.fingerprint().to_hex(),
            secret_cert: own.to_secret_bytes().unwrap(),
            created_at: 1_700_000_000,
        })
        .unwrap();
    let peer = Identity::generate(&Username::parse(CONTACT_NAME).unwrap()).unwrap();
    let contact = store
        .add_contact(&NewContact {
            username: CONTACT_NAME.into(),
            fingerprint: peer.fingerprint().to_hex(),
            public_cert: peer.public_cert().unwrap().to_bytes().unwrap(),
            onion_address: None,
            state: ContactState::Accepted,
            verified: true,
        })
        .unwrap();
    store
        .insert_message(&NewMessage {
            contact,
            direction: Direction::Incoming,
            seq: 1,
            msg_id: [6; 16],
            sent_at: 1_700_000_100,
            received_at: Some(1_700_000_101),
            body: MESSAGE.into(),
            state: DeliveryState::Read,
        })
        .unwrap();
    store.set_setting(SETTING.0, SETTING.1).unwrap();
    store.dir().hs_dir().unwrap();
    assert_eq!(store.schema_version().unwrap(), FIXTURE_VERSION);
    store.close().unwrap();
    // Nothing but the store itself: no WAL left behind, no empty directory
    // (git keeps neither).
    for f in std::fs::read_dir(&dir).unwrap() {
        let p = f.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir(&p).unwrap();
        }
    }
}

/// A private copy of the fixture (git does not keep the 0700/0600 modes the
/// store insists on).
fn copy_fixture(to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
    for f in std::fs::read_dir(fixture_dir()).unwrap() {
        let f = f.unwrap();
        let dest = to.join(f.file_name());
        std::fs::copy(f.path(), &dest).unwrap();
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

#[test]
fn the_previous_schema_opens_and_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("d");
    copy_fixture(&dir);
    let store = Store::open(&dir, &passphrase()).unwrap();
    assert_eq!(store.schema_version().unwrap(), migrations::LATEST_VERSION);
    const { assert!(migrations::LATEST_VERSION > FIXTURE_VERSION) };
    let id = store.identity().unwrap().unwrap();
    assert_eq!(id.username, OWN_NAME);
    let own = Identity::from_secret_bytes(&id.secret_cert).unwrap();
    assert_eq!(own.fingerprint().to_hex(), id.fingerprint);
    let c = store.contact_by_username(CONTACT_NAME).unwrap().unwrap();
    assert!(c.verified);
    let history = store.history(c.id, 10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].body, MESSAGE);
    assert_eq!(
        store.setting(SETTING.0).unwrap().as_deref(),
        Some(SETTING.1)
    );
    // The v7 table exists and is empty: the daemon fills it on its first start.
    assert!(store.onion_key().unwrap().is_none());
    store.close().unwrap();
    // Opening again is a no-op migration.
    let store = Store::open(&dir, &passphrase()).unwrap();
    assert_eq!(store.schema_version().unwrap(), migrations::LATEST_VERSION);
}
