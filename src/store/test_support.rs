//! Helpers for the store's unit tests (tests only).

#![allow(clippy::unwrap_used)]

use super::{GroupRecord, GroupStatus, KdfParams, Store};

/// A new store in a temporary directory (cheap KDF); keep the directory.
pub(super) fn temp_store() -> (tempfile::TempDir, Store) {
    let t = tempfile::tempdir().unwrap();
    let pw = secrecy::SecretString::from("p".to_owned());
    let s = Store::create(&t.path().join("d"), &pw, KdfParams::insecure_for_tests()).unwrap();
    (t, s)
}

/// An active group `[id; 32]` we own, with nothing in its log yet.
pub(super) fn group_record(id: u8) -> GroupRecord {
    GroupRecord {
        group_id: [id; 32],
        name: "g".into(),
        topic: String::new(),
        flags: 0,
        my_role: Some("owner".into()),
        status: GroupStatus::Active,
        head_seq: 0,
        head: [1; 32],
        my_seq: 0,
        warning: None,
        created_at: 1,
    }
}
