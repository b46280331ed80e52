//! GnuPG compatibility: an HKP subset (`/pks/lookup` with `op=get` and
//! `op=index&options=mr`) and VKS `by-fingerprint`, so that
//! `gpg --keyserver hkp://… --search-keys/--recv-keys` work.
//!
//! `search` is either a fingerprint (`0x` + 40 hex digits, or 40 hex digits)
//! or a username (`@name` or `name`); `op=index` returns the exact user and
//! the users whose names start with it (at most 20).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use openpgp::parse::Parse;
use sequoia_openpgp as openpgp;
use umbra_proto::identity::Fingerprint;

use super::{ApiError, AppState, db, search_prefix};
use crate::store::UserRecord;

/// What a `search` parameter denotes.
pub(crate) enum Search {
    Fingerprint(Fingerprint),
    Name(String),
}

pub(crate) fn parse_search(s: &str) -> Result<Search, ApiError> {
    let s = s.trim().trim_start_matches('<').trim_end_matches('>');
    let hexpart = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    if hexpart.len() == 40 && hexpart.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Fingerprint::from_hex(hexpart)
            .map(Search::Fingerprint)
            .map_err(|_| ApiError::Malformed {
                reason: "bad fingerprint".into(),
            });
    }
    search_prefix(s).map(Search::Name)
}

fn armored(rec: &UserRecord) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/pgp-keys")],
        rec.cert.clone(),
    )
        .into_response()
}

/// `GET /pks/lookup?op=get|index&search=..[&options=mr]`.
pub(crate) async fn lookup(
    State(st): State<Arc<AppState>>,
    q: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|_| ApiError::Malformed {
        reason: "bad query".into(),
    })?;
    let op = q.get("op").map(String::as_str).unwrap_or("");
    if !matches!(op, "get" | "index" | "vindex") {
        return Err(ApiError::Malformed {
            reason: "op must be get or index".into(),
        });
    }
    let search = parse_search(q.get("search").map(String::as_str).unwrap_or(""))?;
    // Exact, for `get` and `index` alike (PROTOCOL.md §17.10): no
    // enumeration through HKP.
    let rec = match search {
        Search::Fingerprint(f) => db(&st, move |s| s.user_by_fingerprint(&f)).await?,
        Search::Name(n) => match umbra_proto::identity::Username::parse(&n) {
            Ok(u) => db(&st, move |s| s.user_by_name(&u)).await?,
            Err(_) => None,
        },
    };
    match op {
        "get" => rec.map(|r| armored(&r)).ok_or(ApiError::NotFound),
        _ => {
            let recs: Vec<UserRecord> = rec.into_iter().collect();
            if recs.is_empty() {
                return Err(ApiError::NotFound);
            }
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                machine_readable_index(&recs),
            )
                .into_response())
        }
    }
}

/// The HKP machine-readable index (draft-shaw-openpgp-hkp §5.2).
fn machine_readable_index(recs: &[UserRecord]) -> String {
    let mut out = format!("info:1:{}\n", recs.len());
    for rec in recs {
        let (algo, bits, created) = match openpgp::Cert::from_bytes(rec.cert.as_bytes()) {
            Ok(c) => {
                let k = c.primary_key().key();
                (
                    u8::from(k.pk_algo()).to_string(),
                    k.mpis().bits().map(|b| b.to_string()).unwrap_or_default(),
                    umbra_proto::time::unix_secs(k.creation_time()).to_string(),
                )
            }
            Err(_) => (String::new(), String::new(), String::new()),
        };
        out.push_str(&format!(
            "pub:{}:{algo}:{bits}:{created}::\n",
            rec.fingerprint.to_hex()
        ));
        out.push_str(&format!("uid:%40{}:{created}::\n", rec.username.as_str()));
    }
    out
}

/// `GET /vks/v1/by-fingerprint/<FPR>`.
pub(crate) async fn vks_by_fingerprint(
    State(st): State<Arc<AppState>>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(fpr) = path.map_err(|_| ApiError::Malformed {
        reason: "bad path".into(),
    })?;
    let fpr = Fingerprint::from_hex(&fpr).map_err(|_| ApiError::Malformed {
        reason: "a fingerprint is 40 hex digits".into(),
    })?;
    let rec = db(&st, move |s| s.user_by_fingerprint(&fpr))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(armored(&rec))
}
