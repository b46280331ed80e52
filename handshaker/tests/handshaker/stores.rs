//! The store conformance suite (`umbra_handshaker::store::conformance`,
//! also run on SQLite by the unit tests) on a real PostgreSQL server, and
//! PostgreSQL's migrations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use umbra_handshaker::PgStore;
use umbra_handshaker::store::conformance;

use crate::support::pg;

fn fresh() -> PgStore {
    PgStore::open(&pg().new_database()).unwrap()
}

#[test]
fn postgres_users() {
    conformance::users(&fresh());
}

#[test]
fn postgres_mailbox() {
    conformance::mailbox(&fresh());
}

#[test]
fn postgres_spent_and_secrets() {
    conformance::spent_and_secrets(&fresh());
}

/// Front ends starting together migrate once (advisory lock); a reopen
/// migrates nothing; a database from a newer version is refused.
#[test]
fn postgres_migrations_are_versioned_and_concurrent_safe() {
    let url = pg().new_database();
    let opened: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::open(&url).map(|s| s.schema_version().unwrap()))
        })
        .collect();
    let versions: Vec<u32> = opened
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert!(
        versions.iter().all(|v| *v == versions[0] && *v >= 1),
        "{versions:?}"
    );
    let s = PgStore::open(&url).unwrap();
    assert_eq!(s.schema_version().unwrap(), versions[0]);
    drop(s);
    let out = std::process::Command::new(pg().bin("psql"))
        .args(pg().psql_args(&url))
        .args(["-c", "UPDATE schema_version SET version = 99"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        PgStore::open(&url).is_err(),
        "a newer schema must be refused"
    );
}
