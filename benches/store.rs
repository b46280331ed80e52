//! Store benchmark: open/unlock time and message insert throughput.
//!
//! Run with `cargo bench --bench store` (or `--profile dev` for a quick number: the
//! dev profile optimizes argon2 and SQLCipher, which dominate). The data directory is
//! created under `UMBRA_BENCH_DIR` or the system temp dir; put it on the disk you care
//! about, since one-transaction-per-row throughput is bounded by fsync latency.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use umbra::store::{
    ContactId, ContactState, DeliveryState, Direction, KdfParams, NewContact, NewMessage,
    OwnIdentity, Store, Synchronous, kdf,
};
use zeroize::Zeroizing;

const N: u64 = 10_000;

fn messages(contact: ContactId, first_seq: u64) -> Vec<NewMessage> {
    (first_seq..first_seq + N)
        .map(|seq| NewMessage {
            contact,
            direction: Direction::Incoming,
            seq,
            msg_id: [(seq % 251) as u8; 16],
            sent_at: 1_700_000_000 + seq,
            received_at: Some(1_700_000_001 + seq),
            body: format!("benchmark message number {seq}, about sixty bytes of text"),
            state: DeliveryState::Received,
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn main() {
    let base = std::env::var_os("UMBRA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base).unwrap();
    let dir = tmp.path().join("data");
    let pass = SecretString::from("correct horse battery staple".to_owned());
    let params = KdfParams::default();
    println!(
        "store benchmark (data dir {}, Argon2id m={} KiB t={} p={})",
        tmp.path().display(),
        params.m_cost_kib,
        params.t_cost,
        params.p_cost
    );

    let t = Instant::now();
    let store = Store::create(&dir, &pass, params).unwrap();
    println!("create (Argon2id + schema):          {}", ms(t.elapsed()));
    store
        .set_identity(&OwnIdentity {
            username: "@bench".into(),
            fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567".into(),
            secret_cert: Zeroizing::new(vec![7; 2048]),
            created_at: 0,
        })
        .unwrap();
    let contact = store
        .add_contact(&NewContact {
            username: "@peer".into(),
            fingerprint: "89ABCDEF0123456789ABCDEF0123456789ABCDEF".into(),
            public_cert: vec![1; 1800],
            onion_address: Some(format!("{}.onion", "a".repeat(56))),
            state: ContactState::Accepted,
            verified: true,
        })
        .unwrap();
    store.close().unwrap();

    let argon: Vec<_> = (0..5)
        .map(|_| {
            let t = Instant::now();
            kdf::derive_key(&pass, &[0; 16], &params).unwrap();
            t.elapsed()
        })
        .collect();
    println!("Argon2id alone (median of 5):        {}", ms(median(argon)));
    let unlock: Vec<_> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let s = Store::open(&dir, &pass).unwrap();
            assert!(s.identity().unwrap().is_some());
            let d = t.elapsed();
            s.close().unwrap();
            d
        })
        .collect();
    println!(
        "open/unlock + first query (median):  {}",
        ms(median(unlock))
    );
    let wrong = SecretString::from("wrong".to_owned());
    let t = Instant::now();
    assert!(Store::open(&dir, &wrong).is_err());
    println!("wrong passphrase rejected in:        {}", ms(t.elapsed()));

    let mut store = Store::open(&dir, &pass).unwrap();
    let mut seq = 1;
    for mode in [Synchronous::Full, Synchronous::Normal] {
        store.set_synchronous(mode).unwrap();
        let label = if mode == Synchronous::Full {
            "FULL (Umbra's setting)"
        } else {
            "NORMAL (comparison)"
        };
        let batch = messages(contact, seq);
        seq += N;
        let t = Instant::now();
        store.insert_messages(&batch).unwrap();
        let d = t.elapsed();
        println!(
            "synchronous={label}: {N} messages in one transaction:  {} ({:.0} msg/s)",
            ms(d),
            N as f64 / d.as_secs_f64()
        );
        let single = messages(contact, seq);
        seq += N;
        let t = Instant::now();
        for m in &single {
            store.insert_message(m).unwrap();
        }
        let d = t.elapsed();
        println!(
            "synchronous={label}: {N} messages, one transaction each: {} ({:.0} msg/s)",
            ms(d),
            N as f64 / d.as_secs_f64()
        );
    }
    let t = Instant::now();
    let hits = store
        .search_messages(Some(contact), "number 4242,", 10)
        .unwrap();
    println!(
        "search over {} messages: {} ({} hit)",
        seq - 1,
        ms(t.elapsed()),
        hits.len()
    );
    store.close().unwrap();
}
