//! Fuzzing entry point of the Handshaker (docs/FUZZING.md). **Not API.**
//!
//! Compiled only for tests and with the `fuzzing` feature (which the `fuzz/`
//! workspace enables). [`hkp_query`] is the whole body of the libFuzzer
//! target of the same name; the seeds in `fuzz/corpus/hkp_query/` are plain
//! query strings, replayed by `seeds_pass`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::Uri;

use crate::api::hkp::{Search, parse_search};
use crate::api::{SearchQuery, search_prefix};

/// A query string of `GET /pks/lookup` (HKP) or `GET /v1/search`, extracted
/// the way axum extracts it for the handlers, then the `search` or `prefix`
/// parameter parsed as they parse it. A name that passes is a folded
/// prefix: at most 32 of `a–z`, `0–9`, `_`.
pub fn hkp_query(data: &[u8]) {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(uri) = format!("/pks/lookup?{query}").parse::<Uri>() else {
        return;
    };
    let valid = |n: &str| {
        n.len() <= 32
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    if let Ok(Query(q)) = Query::<HashMap<String, String>>::try_from_uri(&uri) {
        let search = q.get("search").map(String::as_str).unwrap_or("");
        match parse_search(search) {
            Ok(Search::Name(n)) => assert!(valid(&n), "{n:?}"),
            Ok(Search::Fingerprint(f)) => assert_eq!(f.to_hex().len(), 40),
            Err(_) => {}
        }
    }
    if let Ok(Query(q)) = Query::<SearchQuery>::try_from_uri(&uri)
        && let Ok(p) = search_prefix(&q.prefix)
    {
        assert!(valid(&p), "{p:?}");
        let _ = q.limit;
    }
}

#[cfg(test)]
mod test {
    use super::*;

    fn corpus() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/hkp_query")
    }

    /// Writes `fuzz/corpus/hkp_query/`. Run: `cargo test -p umbra-handshaker
    /// --lib write_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore = "writes fuzz/corpus; run by hand when a format changes"]
    fn write_fuzz_seeds() {
        std::fs::create_dir_all(corpus()).unwrap();
        for (name, q) in [
            (
                "get_fingerprint",
                "op=get&search=0x00112233445566778899AABBCCDDEEFF00112233",
            ),
            ("index_name", "op=index&options=mr&search=%40alice"),
            ("vindex_angle", "op=vindex&search=%3Calice%3E"),
            ("search_prefix", "prefix=al&limit=5"),
        ] {
            std::fs::write(corpus().join(name), q).unwrap();
        }
    }

    #[test]
    fn seeds_pass() {
        let mut n = 0;
        for entry in std::fs::read_dir(corpus()).unwrap() {
            hkp_query(&std::fs::read(entry.unwrap().path()).unwrap());
            n += 1;
        }
        assert!(n > 0);
    }
}
