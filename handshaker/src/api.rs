//! The HTTP API v1 (design-v1 "Handshaker HTTP API v1"; docs/PROTOCOL.md).
//!
//! Handlers validate everything that is cheap and local first (JSON,
//! username, sizes, certificate, proof of work, timestamp, signatures) and
//! write to the store last, so every rejection leaves the store unchanged.
//!
//! No handler logs a username, fingerprint, address or id: the only record
//! of traffic is the aggregate [`Counters`].

pub mod hkp;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use umbra_proto::handshaker_api::binding::{BindingKey, BindingSigner};
use umbra_proto::handshaker_api::pow::{self, PowError, PowStamp, Purpose};
use umbra_proto::handshaker_api::wire::*;
use umbra_proto::identity::{Fingerprint, IdentityError, PublicCert, Username};
use umbra_proto::{ErrorKind, HasKind};

use crate::config::Config;
use crate::ephemeral::ExpiringMap;
use crate::ratelimit::TokenBucket;
use crate::store::{Store, StoreError, StoredItem, UserRecord};

/// An API error: a status, a stable code and a message telling the client
/// what to do. Rendered as `{"error": code, "message": text}`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request body or query is not what the endpoint expects.
    #[error("malformed request: {reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The certificate is unusable.
    #[error("unusable certificate: {reason}")]
    BadCert {
        /// What is wrong.
        reason: String,
    },
    /// A proof signature does not verify with the certificate.
    #[error(
        "the proof signature does not verify: sign the statement for this Handshaker's address with the registered key"
    )]
    BadProof,
    /// The proof timestamp is outside ±10 minutes.
    #[error("the proof timestamp is too old or in the future: check the clock and retry")]
    StaleTimestamp,
    /// The fetch challenge is unknown, expired or already used.
    #[error("the challenge is unknown, expired or already used: request a new one")]
    ChallengeInvalid,
    /// The ack token is unknown or expired.
    #[error("the ack token is unknown or expired: fetch again")]
    AckTokenInvalid,
    /// The signature is not by the registered key.
    #[error("not signed by the registered key of this username")]
    NotOwner,
    /// Nothing there.
    #[error("not found")]
    NotFound,
    /// Username registered to another key.
    #[error(
        "this username is taken (to rotate your key, add current_proof signed by the registered key)"
    )]
    UsernameTaken,
    /// Key registered under another username.
    #[error("this key is already registered under another username")]
    FingerprintTaken,
    /// Concurrent change.
    #[error("the registration changed concurrently: retry")]
    Conflict,
    /// Something is larger than allowed.
    #[error("{what} too large (limit {limit} bytes)")]
    TooLarge {
        /// What.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// The username does not follow the rules.
    #[error(
        "invalid username: {reason} (3–32 characters a–z, 0–9 or _, starting with a letter; not reserved)"
    )]
    InvalidUsername {
        /// What is wrong.
        reason: &'static str,
    },
    /// No proof-of-work stamp.
    #[error("this request needs a proof-of-work stamp (see GET /v1/info for the difficulty)")]
    PowRequired,
    /// The stamp is not acceptable.
    #[error("{0}")]
    Pow(PowError),
    /// The stamp was already used.
    #[error("this proof-of-work stamp was already used: compute a new one")]
    PowReused,
    /// Global rate limit.
    #[error("rate limited: the Handshaker is busy, retry in a few seconds")]
    RateLimited,
    /// Recipient's mailbox is full.
    #[error("the recipient's mailbox is full: retry later")]
    MailboxFull,
    /// Too many outstanding challenges/tokens/stamps.
    #[error("the Handshaker is busy: retry in a minute")]
    Busy,
    /// The request took too long.
    #[error("the request took too long")]
    Timeout,
    /// A bug or a storage failure.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            Malformed { .. } | BadCert { .. } => StatusCode::BAD_REQUEST,
            BadProof | StaleTimestamp | ChallengeInvalid | AckTokenInvalid => {
                StatusCode::UNAUTHORIZED
            }
            NotOwner => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            UsernameTaken | FingerprintTaken | Conflict => StatusCode::CONFLICT,
            TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            InvalidUsername { .. } | PowRequired | Pow(_) | PowReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            RateLimited | MailboxFull => StatusCode::TOO_MANY_REQUESTS,
            Busy => StatusCode::SERVICE_UNAVAILABLE,
            Timeout => StatusCode::REQUEST_TIMEOUT,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            Malformed { .. } => "malformed",
            BadCert { .. } => "bad_cert",
            BadProof => "bad_proof",
            StaleTimestamp => "stale_timestamp",
            ChallengeInvalid => "challenge_invalid",
            AckTokenInvalid => "ack_token_invalid",
            NotOwner => "not_owner",
            NotFound => "not_found",
            UsernameTaken => "username_taken",
            FingerprintTaken => "fingerprint_taken",
            Conflict => "conflict",
            TooLarge { .. } => "too_large",
            InvalidUsername { .. } => "invalid_username",
            PowRequired => "pow_required",
            Pow(PowError::Insufficient { .. }) => "pow_insufficient",
            Pow(PowError::Stale) => "pow_stale",
            Pow(_) => "pow_invalid",
            PowReused => "pow_reused",
            RateLimited => "rate_limited",
            MailboxFull => "mailbox_full",
            Busy => "busy",
            Timeout => "timeout",
            Internal => "internal",
        }
    }
}

impl HasKind for ApiError {
    fn kind(&self) -> ErrorKind {
        use ApiError::*;
        match self {
            BadProof | NotOwner => ErrorKind::BadSignature,
            StaleTimestamp => ErrorKind::Stale,
            ChallengeInvalid | PowReused => ErrorKind::Replay,
            TooLarge { .. } | MailboxFull => ErrorKind::TooLarge,
            Internal => ErrorKind::Internal,
            Timeout => ErrorKind::Io,
            _ => ErrorKind::InvalidInput,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code().to_string(),
            message: self.to_string(),
        };
        let mut resp = (self.status(), axum::Json(body)).into_response();
        if matches!(
            self,
            ApiError::RateLimited | ApiError::MailboxFull | ApiError::Busy
        ) {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UsernameTaken => ApiError::UsernameTaken,
            StoreError::FingerprintTaken => ApiError::FingerprintTaken,
            StoreError::Conflict => ApiError::Conflict,
            StoreError::NoSuchUser => ApiError::NotFound,
            StoreError::MailboxFull => ApiError::MailboxFull,
            other => {
                // Store errors never carry identifiers.
                tracing::warn!(error = %error_chain(&other), "storage failure");
                ApiError::Internal
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn cert_err(e: IdentityError) -> ApiError {
    match e {
        IdentityError::CertTooLarge { limit, .. } => ApiError::TooLarge {
            what: "certificate",
            limit,
        },
        IdentityError::BadCert { reason } => ApiError::BadCert { reason },
        _ => ApiError::BadCert {
            reason: "cannot be parsed".into(),
        },
    }
}

/// Aggregate request counters: the only record of traffic.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests received.
    pub requests: AtomicU64,
    /// Answered 2xx.
    pub ok: AtomicU64,
    /// Answered 4xx.
    pub client_errors: AtomicU64,
    /// Answered 5xx.
    pub server_errors: AtomicU64,
    /// Successful registrations (including rotations).
    pub registrations: AtomicU64,
    /// Successful deposits.
    pub deposits: AtomicU64,
    /// Successful fetches.
    pub fetches: AtomicU64,
}

impl Counters {
    /// A one-line summary for the log.
    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "requests={} ok={} client_errors={} server_errors={} registrations={} deposits={} fetches={}",
            g(&self.requests),
            g(&self.ok),
            g(&self.client_errors),
            g(&self.server_errors),
            g(&self.registrations),
            g(&self.deposits),
            g(&self.fetches)
        )
    }
}

/// Everything the handlers share.
pub struct AppState {
    /// Persistent storage.
    pub store: Arc<dyn Store>,
    /// Configuration.
    pub cfg: Arc<Config>,
    /// Canonical address signed into proofs.
    pub address: String,
    /// Outstanding fetch challenges → the username they were issued for.
    challenges: ExpiringMap<String, Username>,
    /// Ack tokens → username and the ids delivered with the token.
    ack_tokens: ExpiringMap<String, (Username, Arc<HashSet<String>>)>,
    /// Spent proof-of-work stamp hashes.
    spent: ExpiringMap<[u8; 32], ()>,
    /// All requests.
    requests: TokenBucket,
    /// Registrations, deletions, deposits.
    writes: TokenBucket,
    /// Aggregate counters.
    pub counters: Counters,
    /// Signs registration bindings (PROTOCOL.md §17.11).
    binding: BindingSigner,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppState")
    }
}

impl AppState {
    /// State for serving `store` under `cfg`, with proofs bound to `address`.
    pub fn new(cfg: Config, store: Arc<dyn Store>, address: String) -> Self {
        let m = &cfg.mailbox;
        AppState {
            challenges: ExpiringMap::new(m.max_outstanding),
            ack_tokens: ExpiringMap::new(m.max_outstanding),
            spent: ExpiringMap::new(cfg.pow.max_spent_stamps),
            requests: TokenBucket::new(
                cfg.rate_limit.requests_per_sec,
                cfg.rate_limit.requests_burst,
            ),
            writes: TokenBucket::new(cfg.rate_limit.writes_per_sec, cfg.rate_limit.writes_burst),
            counters: Counters::default(),
            store,
            cfg: Arc::new(cfg),
            address,
            binding: BindingSigner::generate(),
        }
    }

    /// Signs bindings with `signer` (the persistent key of the data
    /// directory) instead of the throw-away key [`AppState::new`] makes.
    pub fn with_binding_key(mut self, signer: BindingSigner) -> Self {
        self.binding = signer;
        self
    }

    /// The public key clients pin.
    pub fn binding_key(&self) -> BindingKey {
        self.binding.public()
    }

    /// A fresh binding of `rec`'s name and key, hex.
    fn binding_of(&self, rec: &UserRecord, now: u64) -> Result<String, ApiError> {
        let signed = self
            .binding
            .issue(&rec.username, &rec.fingerprint, &self.address, now)
            .and_then(|b| b.encode())
            .map_err(|_| {
                tracing::warn!("a stored registration cannot be bound");
                ApiError::Internal
            })?;
        Ok(hex::encode(signed))
    }

    /// The directory entry of `rec`, with a fresh binding.
    fn user_response(&self, rec: &UserRecord) -> Result<UserResponse, ApiError> {
        Ok(UserResponse {
            username: rec.username.as_str().to_string(),
            fingerprint: rec.fingerprint.to_hex(),
            cert: rec.cert.clone(),
            binding: Some(self.binding_of(rec, now())?),
        })
    }

    /// Drops expired challenges, tokens and stamps.
    pub fn prune(&self, now: u64) {
        self.challenges.prune(now);
        self.ack_tokens.prune(now);
        self.spent.prune(now);
    }

    fn write_permit(&self) -> Result<(), ApiError> {
        if self.writes.try_acquire() {
            Ok(())
        } else {
            Err(ApiError::RateLimited)
        }
    }

    /// Checks a stamp without spending it; returns its hash.
    fn check_pow(
        &self,
        stamp: Option<&PowStamp>,
        purpose: Purpose,
        resource: &str,
        now: u64,
    ) -> Result<[u8; 32], ApiError> {
        let stamp = stamp.ok_or(ApiError::PowRequired)?;
        let hash = pow::check(stamp, purpose, resource, self.cfg.pow.difficulty, now)
            .map_err(ApiError::Pow)?;
        if self.spent.contains(&hash, now) {
            return Err(ApiError::PowReused);
        }
        Ok(hash)
    }

    /// Marks a stamp spent (atomically: a concurrent twin loses).
    fn spend(&self, hash: [u8; 32], now: u64) -> Result<(), ApiError> {
        // A stamp is acceptable for ±window around its ts: remember it for 2 windows.
        match self
            .spent
            .insert_new(hash, (), now + 2 * pow::POW_WINDOW_SECS, now)
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(ApiError::PowReused),
            Err(_) => Err(ApiError::Busy),
        }
    }
}

/// Runs a store operation on a blocking thread.
async fn db<T: Send + 'static>(
    st: &AppState,
    f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = st.store.clone();
    tokio::task::spawn_blocking(move || f(&*store))
        .await
        .map_err(|_| ApiError::Internal)?
        .map_err(ApiError::from)
}

type Shared = State<Arc<AppState>>;

fn now() -> u64 {
    umbra_proto::time::now_secs()
}

fn parse_json<T: serde::de::DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge {
                what: "request body",
                limit,
            }
        } else {
            ApiError::Malformed {
                reason: "cannot read the body".into(),
            }
        }
    })?;
    serde_json::from_slice(&body).map_err(|e| ApiError::Malformed {
        reason: format!("invalid JSON: {e}"),
    })
}

fn parse_username(path: Result<Path<String>, PathRejection>) -> Result<Username, ApiError> {
    let Path(name) = path.map_err(|_| ApiError::Malformed {
        reason: "bad path".into(),
    })?;
    username_from(&name)
}

fn username_from(s: &str) -> Result<Username, ApiError> {
    Username::parse(s).map_err(|e| match e {
        IdentityError::InvalidUsername { reason } => ApiError::InvalidUsername { reason },
        _ => ApiError::InvalidUsername { reason: "invalid" },
    })
}

fn check_timestamp(ts: u64, now: u64) -> Result<(), ApiError> {
    if ts.abs_diff(now) > PROOF_WINDOW_SECS {
        Err(ApiError::StaleTimestamp)
    } else {
        Ok(())
    }
}

fn verify(cert: &PublicCert, statement: &str, sig: &str) -> Result<(), ()> {
    cert.verify_detached(statement.as_bytes(), sig.as_bytes())
        .map(|_| ())
        .map_err(|_| ())
}

fn stored_cert(rec: &UserRecord) -> Result<PublicCert, ApiError> {
    PublicCert::from_bytes(rec.cert.as_bytes()).map_err(|_| {
        tracing::warn!("a stored certificate no longer parses");
        ApiError::Internal
    })
}

fn random_hex<const N: usize>() -> Result<String, ApiError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| ApiError::Internal)?;
    Ok(hex::encode(b))
}

/// Builds the router.
pub fn router(state: Arc<AppState>) -> Router {
    let body_limit = state.cfg.limits.max_body_bytes;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/info", get(info))
        .route("/v1/register", post(register))
        .route("/v1/users/{name}", get(lookup).delete(delete_user))
        .route("/v1/by-fingerprint/{fpr}", get(by_fingerprint))
        .route("/v1/search", get(search))
        .route("/v1/mailbox/{name}", post(deposit))
        .route("/v1/mailbox/{name}/challenge", post(challenge))
        .route("/v1/mailbox/{name}/fetch", post(fetch))
        .route("/v1/mailbox/{name}/ack", post(ack))
        .route("/pks/lookup", get(hkp::lookup))
        .route("/vks/v1/by-fingerprint/{fpr}", get(hkp::vks_by_fingerprint))
        .fallback(|| async { ApiError::NotFound })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Global rate limit, request timeout and aggregate counters.
async fn guard(State(st): Shared, req: Request, next: Next) -> Response {
    st.counters.requests.fetch_add(1, Ordering::Relaxed);
    let resp = if !st.requests.try_acquire() {
        ApiError::RateLimited.into_response()
    } else {
        match tokio::time::timeout(st.cfg.request_timeout(), next.run(req)).await {
            Ok(r) => r,
            Err(_) => ApiError::Timeout.into_response(),
        }
    };
    let c = &st.counters;
    match resp.status().as_u16() {
        200..=299 => c.ok.fetch_add(1, Ordering::Relaxed),
        400..=499 => c.client_errors.fetch_add(1, Ordering::Relaxed),
        _ => c.server_errors.fetch_add(1, Ordering::Relaxed),
    };
    resp
}

async fn health() -> axum::Json<HealthResponse> {
    axum::Json(HealthResponse {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

async fn info(State(st): Shared) -> axum::Json<InfoResponse> {
    let c = &st.cfg;
    axum::Json(InfoResponse {
        onion_address: st.address.clone(),
        pow_difficulty: c.pow.difficulty,
        limits: InfoLimits {
            max_body: c.limits.max_body_bytes,
            max_message: c.limits.max_message_bytes,
            max_cert: umbra_proto::limits::MAX_CERT,
            mailbox_capacity: c.mailbox.capacity,
            mailbox_retention_secs: c.mailbox.retention_secs,
            max_search_limit: MAX_SEARCH_LIMIT,
        },
        binding_key: Some(st.binding_key().to_hex()),
    })
}

async fn register(
    State(st): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    st.write_permit()?;
    let req: RegisterRequest = parse_json(body, st.cfg.limits.max_body_bytes)?;
    let now = now();
    let username = username_from(&req.username)?;
    if username.is_reserved() {
        return Err(ApiError::InvalidUsername { reason: "reserved" });
    }
    let cert = PublicCert::from_bytes(req.cert.as_bytes())
        .and_then(|c| c.stripped())
        .map_err(cert_err)?;
    // Exactly one `@` user ID, self-signed, equal to the registered name:
    // served certificates can vouch for no other name (SECURITY-2026-11 H1).
    if cert.username().ok().as_ref() != Some(&username) {
        return Err(ApiError::BadCert {
            reason: "the certificate must carry exactly one @name user ID, @username, with a valid self-signature".into(),
        });
    }
    let stamp = st.check_pow(req.pow.as_ref(), Purpose::Register, username.as_str(), now)?;
    check_timestamp(req.timestamp, now)?;
    let fpr = cert.fingerprint();
    let statement = register_statement(&username, &st.address, &fpr, req.timestamp);
    verify(&cert, &statement, &req.proof).map_err(|_| ApiError::BadProof)?;

    let (u, f) = (username.clone(), fpr);
    let (by_name, by_fpr) = db(&st, move |s| {
        Ok((s.user_by_name(&u)?, s.user_by_fingerprint(&f)?))
    })
    .await?;
    if by_fpr.is_some_and(|o| o.username != username) {
        return Err(ApiError::FingerprintTaken);
    }
    let expected: Option<Fingerprint> = match by_name {
        None => None,
        Some(cur) if cur.fingerprint == fpr => Some(fpr),
        Some(cur) => {
            let Some(cp) = req.current_proof.as_deref() else {
                return Err(ApiError::UsernameTaken);
            };
            verify(&stored_cert(&cur)?, &statement, cp).map_err(|_| ApiError::NotOwner)?;
            Some(cur.fingerprint)
        }
    };
    let rec = UserRecord {
        username,
        fingerprint: fpr,
        cert: cert.to_armored().map_err(|_| ApiError::Internal)?,
        registered_at: now,
    };
    let resp = st.user_response(&rec)?;
    st.spend(stamp, now)?;
    if let Err(e) = db(&st, move |s| s.put_user(&rec, expected.as_ref())).await {
        st.spent.remove(&stamp);
        return Err(e);
    }
    st.counters.registrations.fetch_add(1, Ordering::Relaxed);
    let status = if expected.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(resp)).into_response())
}

async fn delete_user(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    st.write_permit()?;
    let username = parse_username(path)?;
    let req: DeleteRequest = parse_json(body, st.cfg.limits.max_body_bytes)?;
    check_timestamp(req.timestamp, now())?;
    let u = username.clone();
    let cur = db(&st, move |s| s.user_by_name(&u))
        .await?
        .ok_or(ApiError::NotFound)?;
    let statement = delete_statement(&username, &st.address, &cur.fingerprint, req.timestamp);
    verify(&stored_cert(&cur)?, &statement, &req.proof).map_err(|_| ApiError::NotOwner)?;
    let fpr = cur.fingerprint;
    db(&st, move |s| s.delete_user(&username, &fpr)).await?;
    Ok((
        StatusCode::OK,
        axum::Json(serde_json::json!({"deleted": true})),
    )
        .into_response())
}

async fn lookup(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<UserResponse>, ApiError> {
    let username = parse_username(path)?;
    let rec = db(&st, move |s| s.user_by_name(&username))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(st.user_response(&rec)?))
}

async fn by_fingerprint(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<UserResponse>, ApiError> {
    let Path(fpr) = path.map_err(|_| ApiError::Malformed {
        reason: "bad path".into(),
    })?;
    let fpr = Fingerprint::from_hex(&fpr).map_err(|_| ApiError::Malformed {
        reason: "a fingerprint is 40 hex digits".into(),
    })?;
    let rec = db(&st, move |s| s.user_by_fingerprint(&fpr))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(st.user_response(&rec)?))
}

/// Query of `GET /v1/search`.
#[derive(Debug, Deserialize)]
pub(crate) struct SearchQuery {
    pub(crate) prefix: String,
    pub(crate) limit: Option<usize>,
}

/// Validates and folds a search prefix (`@` optional, `a–z0–9_`, ≤ 32).
pub(crate) fn search_prefix(p: &str) -> Result<String, ApiError> {
    let p = p.strip_prefix('@').unwrap_or(p).to_ascii_lowercase();
    if p.len() > 32
        || !p
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ApiError::Malformed {
            reason: "a search prefix has at most 32 characters a–z, 0–9 or _".into(),
        });
    }
    Ok(p)
}

async fn search(
    State(st): Shared,
    q: Result<Query<SearchQuery>, QueryRejection>,
) -> Result<axum::Json<SearchResponse>, ApiError> {
    let Query(q) = q.map_err(|_| ApiError::Malformed {
        reason: "expected ?prefix=..&limit=..".into(),
    })?;
    let prefix = search_prefix(&q.prefix)?;
    let limit = q
        .limit
        .unwrap_or(MAX_SEARCH_LIMIT)
        .clamp(1, MAX_SEARCH_LIMIT);
    let recs = db(&st, move |s| s.search(&prefix, limit)).await?;
    Ok(axum::Json(SearchResponse {
        users: recs
            .iter()
            .map(|r| SearchHit {
                username: r.username.as_str().to_string(),
                fingerprint: r.fingerprint.to_hex(),
            })
            .collect(),
    }))
}

async fn deposit(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    st.write_permit()?;
    let username = parse_username(path)?;
    let req: DepositRequest = parse_json(body, st.cfg.limits.max_body_bytes)?;
    let limit = st.cfg.limits.max_message_bytes;
    if req.message.len() > limit {
        return Err(ApiError::TooLarge {
            what: "message",
            limit,
        });
    }
    if !req
        .message
        .trim_start()
        .starts_with("-----BEGIN PGP MESSAGE-----")
    {
        return Err(ApiError::Malformed {
            reason: "message must be an ASCII-armored OpenPGP message".into(),
        });
    }
    let now = now();
    let stamp = st.check_pow(req.pow.as_ref(), Purpose::Deposit, username.as_str(), now)?;
    let item = StoredItem {
        id: random_hex::<16>()?,
        message: req.message,
        deposited_at: now,
        expires_at: now + st.cfg.mailbox.retention_secs,
    };
    let expires_at = item.expires_at;
    let cap = st.cfg.mailbox.capacity;
    st.spend(stamp, now)?;
    if let Err(e) = db(&st, move |s| s.deposit(&username, &item, cap)).await {
        st.spent.remove(&stamp);
        return Err(e);
    }
    st.counters.deposits.fetch_add(1, Ordering::Relaxed);
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(DepositResponse { expires_at }),
    )
        .into_response())
}

async fn challenge(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
) -> Result<axum::Json<ChallengeResponse>, ApiError> {
    let username = parse_username(path)?;
    let u = username.clone();
    db(&st, move |s| s.user_by_name(&u))
        .await?
        .ok_or(ApiError::NotFound)?;
    let now = now();
    let challenge = random_hex::<32>()?;
    let expires_at = now + st.cfg.mailbox.challenge_ttl_secs;
    match st
        .challenges
        .insert_new(challenge.clone(), username, expires_at, now)
    {
        Ok(true) => Ok(axum::Json(ChallengeResponse {
            challenge,
            expires_at,
        })),
        Ok(false) => Err(ApiError::Internal),
        Err(_) => Err(ApiError::Busy),
    }
}

async fn fetch(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<FetchResponse>, ApiError> {
    let username = parse_username(path)?;
    let req: FetchRequest = parse_json(body, st.cfg.limits.max_body_bytes)?;
    let now = now();
    // Single use: taken before anything else is checked.
    match st.challenges.take(&req.challenge, now) {
        Some(issued_for) if issued_for == username => {}
        _ => return Err(ApiError::ChallengeInvalid),
    }
    let u = username.clone();
    let rec = db(&st, move |s| s.user_by_name(&u))
        .await?
        .ok_or(ApiError::NotFound)?;
    let statement = fetch_statement(&username, &st.address, &req.challenge);
    verify(&stored_cert(&rec)?, &statement, &req.signature).map_err(|_| ApiError::NotOwner)?;
    let binding = st.binding_of(&rec, now)?;
    let max = st.cfg.mailbox.fetch_max_items;
    let u = username.clone();
    let (items, remaining) = db(&st, move |s| s.pending(&u, now, max)).await?;
    let ids: HashSet<String> = items.iter().map(|i| i.id.clone()).collect();
    let ack_token = random_hex::<32>()?;
    match st.ack_tokens.insert_new(
        ack_token.clone(),
        (username, Arc::new(ids)),
        now + st.cfg.mailbox.ack_token_ttl_secs,
        now,
    ) {
        Ok(true) => {}
        Ok(false) => return Err(ApiError::Internal),
        Err(_) => return Err(ApiError::Busy),
    }
    st.counters.fetches.fetch_add(1, Ordering::Relaxed);
    Ok(axum::Json(FetchResponse {
        items: items
            .into_iter()
            .map(|i| MailboxItem {
                id: i.id,
                message: i.message,
                deposited_at: i.deposited_at,
            })
            .collect(),
        ack_token,
        remaining,
        binding: Some(binding),
    }))
}

async fn ack(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<AckResponse>, ApiError> {
    let username = parse_username(path)?;
    let req: AckRequest = parse_json(body, st.cfg.limits.max_body_bytes)?;
    let (owner, delivered) = st
        .ack_tokens
        .get(&req.ack_token, now())
        .ok_or(ApiError::AckTokenInvalid)?;
    if owner != username {
        return Err(ApiError::AckTokenInvalid);
    }
    let ids: Vec<String> = req
        .ids
        .into_iter()
        .filter(|id| delivered.contains(id))
        .collect();
    let deleted = db(&st, move |s| s.ack(&username, &ids)).await?;
    Ok(axum::Json(AckResponse { deleted }))
}
