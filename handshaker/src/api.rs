//! The HTTP API v1 (design-v1 "Handshaker HTTP API v1"; docs/PROTOCOL.md).
//!
//! Handlers validate everything that is cheap and local first (size, JSON,
//! username, proof of work) and spend the stamp before they take a
//! rate-limit token (per target, then global) or parse a certificate
//! (PROTOCOL.md §17.4); the only write a refused request can cause is its
//! own spent stamp. Directory and mailbox changes come last, so every other
//! rejection leaves the store unchanged. Challenges and ack tokens are
//! stateless ([`crate::tokens`]), and everything single-use is recorded in
//! the store, so several front ends can serve one directory.
//!
//! No handler logs a username, fingerprint, address or id: the only record
//! of traffic is the aggregate [`Counters`].

pub mod hkp;

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
use sha2::{Digest, Sha256};
use umbra_proto::handshaker_api::binding::{BindingKey, BindingSigner};
use umbra_proto::handshaker_api::pow::{self, PowError, PowStamp, Purpose};
use umbra_proto::handshaker_api::wire::*;
use umbra_proto::identity::{Fingerprint, IdentityError, PublicCert, Username};
use umbra_proto::{ErrorKind, HasKind};

use crate::config::Config;
use crate::ratelimit::{KeyedBuckets, TokenBucket};
use crate::store::{Deposited, Store, StoreError, StoredItem, UserRecord};
use crate::tokens::{TokenKey, TokenKind};

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
    /// This proof was already accepted once (PROTOCOL.md §17.5).
    #[error("this proof was already used: sign a new statement (with the current time) and retry")]
    ProofReused,
    /// The search query is not acceptable.
    #[error("bad search: the prefix must be 3–32 characters a–z, 0–9 or _")]
    BadSearch,
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
            Malformed { .. } | BadCert { .. } | BadSearch => StatusCode::BAD_REQUEST,
            BadProof | ProofReused | StaleTimestamp | ChallengeInvalid | AckTokenInvalid => {
                StatusCode::UNAUTHORIZED
            }
            NotOwner => StatusCode::FORBIDDEN,
            NotFound => StatusCode::NOT_FOUND,
            UsernameTaken | FingerprintTaken | Conflict => StatusCode::CONFLICT,
            TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            InvalidUsername { .. } | PowRequired | Pow(_) | PowReused => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            RateLimited => StatusCode::TOO_MANY_REQUESTS,
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
            ProofReused => "proof_reused",
            BadSearch => "bad_search",
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
            ChallengeInvalid | PowReused | ProofReused => ErrorKind::Replay,
            TooLarge { .. } => ErrorKind::TooLarge,
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
        if matches!(self, ApiError::RateLimited) {
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
    /// Successful deposits (stored).
    pub deposits: AtomicU64,
    /// Deposits answered like the others but dropped: the mailbox was full.
    pub dropped: AtomicU64,
    /// Successful fetches.
    pub fetches: AtomicU64,
}

impl Counters {
    /// A one-line summary for the log.
    pub fn summary(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "requests={} ok={} client_errors={} server_errors={} registrations={} deposits={} dropped={} fetches={}",
            g(&self.requests),
            g(&self.ok),
            g(&self.client_errors),
            g(&self.server_errors),
            g(&self.registrations),
            g(&self.deposits),
            g(&self.dropped),
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
    /// Issues and checks fetch challenges and ack tokens (its key is in the
    /// store: every front end of the directory has the same).
    tokens: TokenKey,
    /// Registrations, deletions, deposits (with a valid, unspent stamp).
    writes: TokenBucket,
    /// Deposits and registrations per target username, before `writes`.
    targets: KeyedBuckets,
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
    /// Reads (or, on a new database, creates) the token key in the store:
    /// blocks, so call it from a blocking thread when in async code.
    pub fn new(cfg: Config, store: Arc<dyn Store>, address: String) -> Result<Self, StoreError> {
        let mut fresh = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut fresh[..]).map_err(|e| StoreError::Backend {
            action: "creating the token key",
            source: e.to_string().into(),
        })?;
        let key = zeroize::Zeroizing::new(store.secret(TOKEN_KEY_NAME, &fresh)?);
        let r = &cfg.rate_limit;
        Ok(AppState {
            tokens: TokenKey::new(*key),
            writes: TokenBucket::new(r.writes_per_sec, r.writes_burst),
            targets: KeyedBuckets::new(
                r.target_writes_per_min,
                r.target_writes_burst,
                r.max_targets,
            ),
            counters: Counters::default(),
            store,
            cfg: Arc::new(cfg),
            address,
            binding: BindingSigner::generate(),
        })
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

    /// A write token for a request aimed at `target` (which passed its
    /// proof of work, or proved ownership): the target's bucket first, so
    /// that a flood at one target cannot use up everyone's writes.
    fn write_permit(&self, target: &str) -> Result<(), ApiError> {
        if self.targets.try_acquire(target) && self.writes.try_acquire() {
            Ok(())
        } else {
            Err(ApiError::RateLimited)
        }
    }

    /// Checks `stamp` (cheap: one hash) and spends it in the store, where
    /// every front end sees it. A stamp is spent whatever becomes of the
    /// request afterwards (SECURITY-2026-11 M4).
    async fn pay(
        &self,
        stamp: Option<&PowStamp>,
        purpose: Purpose,
        resource: &str,
        now: u64,
    ) -> Result<(), ApiError> {
        let stamp = stamp.ok_or(ApiError::PowRequired)?;
        let hash = pow::check(stamp, purpose, resource, self.cfg.pow.difficulty, now)
            .map_err(ApiError::Pow)?;
        // Acceptable for ±window around its ts: remember it for 2 windows.
        if self
            .spend(hash, now + 2 * pow::POW_WINDOW_SECS, now)
            .await?
        {
            Ok(())
        } else {
            Err(ApiError::PowReused)
        }
    }

    /// Records `digest` as spent until `expires_at`; `false` if it was.
    async fn spend(&self, digest: [u8; 32], expires_at: u64, now: u64) -> Result<bool, ApiError> {
        db(self, move |s| s.spend(&digest, expires_at, now)).await
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

/// The name of the token key in the store's secrets.
const TOKEN_KEY_NAME: &str = "token-key-v1";

/// The spent-set digest of a proof statement or challenge (`what`
/// separates domains): an accepted register or delete proof is not accepted
/// again (PROTOCOL.md §17.5), nor a fetch challenge used twice (§17.9).
fn spent_digest(what: &str, text: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"umbra-spent-v1");
    h.update([0]);
    h.update(what.as_bytes());
    h.update([0]);
    h.update(text.as_bytes());
    h.finalize().into()
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

/// The request budget of the connection a request came on (put into the
/// request's extensions by [`crate::server`]; absent when the router is
/// served some other way, e.g. in a unit test).
#[derive(Clone, Debug)]
pub struct ConnectionBudget(pub Arc<TokenBucket>);

/// Per-connection rate limit, request timeout and aggregate counters.
async fn guard(State(st): Shared, req: Request, next: Next) -> Response {
    st.counters.requests.fetch_add(1, Ordering::Relaxed);
    let over = req
        .extensions()
        .get::<ConnectionBudget>()
        .is_some_and(|b| !b.0.try_acquire());
    let resp = if over {
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
        api_revision: API_REVISION,
    })
}

async fn register(
    State(st): Shared,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let req: RegisterRequest = parse_json(body, st.cfg.limits.max_body_bytes)?;
    let now = now();
    let username = username_from(&req.username)?;
    if username.is_reserved() {
        return Err(ApiError::InvalidUsername { reason: "reserved" });
    }
    // The stamp first: nothing below (tokens, OpenPGP) for free.
    st.pay(req.pow.as_ref(), Purpose::Register, username.as_str(), now)
        .await?;
    st.write_permit(&format!("register:{}", username.as_str()))?;
    check_timestamp(req.timestamp, now)?;
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
    let armored = cert.to_armored().map_err(|_| ApiError::Internal)?;
    let expected: Option<Fingerprint> = match by_name {
        None => None,
        // Exactly what is registered: a no-op, answered without spending
        // the proof (so a client may register twice within one second).
        Some(cur) if cur.fingerprint == fpr && cur.cert == armored => {
            return Ok((StatusCode::OK, axum::Json(st.user_response(&cur)?)).into_response());
        }
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
        cert: armored,
        registered_at: now,
    };
    let resp = st.user_response(&rec)?;
    // Every check passed: the proof is single use from here on.
    let digest = spent_digest("register", &statement);
    if !st.spend(digest, now + 2 * PROOF_WINDOW_SECS, now).await? {
        return Err(ApiError::ProofReused);
    }
    db(&st, move |s| s.put_user(&rec, expected.as_ref())).await?;
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
    let username = parse_username(path)?;
    let req: DeleteRequest = parse_json(body, st.cfg.limits.max_body_bytes)?;
    let now = now();
    check_timestamp(req.timestamp, now)?;
    let u = username.clone();
    let cur = db(&st, move |s| s.user_by_name(&u))
        .await?
        .ok_or(ApiError::NotFound)?;
    let statement = delete_statement(&username, &st.address, &cur.fingerprint, req.timestamp);
    verify(&stored_cert(&cur)?, &statement, &req.proof).map_err(|_| ApiError::NotOwner)?;
    // Only the owner gets here: a write token, then the proof is spent.
    st.write_permit(&format!("delete:{}", username.as_str()))?;
    let digest = spent_digest("delete", &statement);
    if !st.spend(digest, now + 2 * PROOF_WINDOW_SECS, now).await? {
        return Err(ApiError::ProofReused);
    }
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

/// Validates and folds a search prefix (`@` optional, 3–32 characters
/// `a–z0–9_`: PROTOCOL.md §17.8).
pub(crate) fn search_prefix(p: &str) -> Result<String, ApiError> {
    let p = p.strip_prefix('@').unwrap_or(p).to_ascii_lowercase();
    if !(3..=32).contains(&p.len())
        || !p
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(ApiError::BadSearch);
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
    st.pay(req.pow.as_ref(), Purpose::Deposit, username.as_str(), now)
        .await?;
    st.write_permit(&format!("deposit:{}", username.as_str()))?;
    let item = StoredItem {
        id: random_hex::<16>()?,
        message: req.message,
        deposited_at: now,
        expires_at: now + st.cfg.mailbox.retention_secs,
    };
    let expires_at = item.expires_at;
    let cap = st.cfg.mailbox.capacity;
    // A full mailbox drops the deposit and answers as if it were stored:
    // a stranger cannot watch a mailbox fill and empty (PROTOCOL.md §17.9).
    match db(&st, move |s| s.deposit(&username, &item, cap)).await? {
        Deposited::Stored => st.counters.deposits.fetch_add(1, Ordering::Relaxed),
        Deposited::Dropped => st.counters.dropped.fetch_add(1, Ordering::Relaxed),
    };
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
    // Stateless: nothing is stored until a fetch succeeds with it.
    let expires_at = now() + st.cfg.mailbox.challenge_ttl_secs;
    let challenge = st
        .tokens
        .issue(TokenKind::Challenge, &username, expires_at)
        .map_err(|_| ApiError::Internal)?;
    Ok(axum::Json(ChallengeResponse {
        challenge,
        expires_at,
    }))
}

async fn fetch(
    State(st): Shared,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<axum::Json<FetchResponse>, ApiError> {
    let username = parse_username(path)?;
    let req: FetchRequest = parse_json(body, st.cfg.limits.max_body_bytes)?;
    let now = now();
    let challenge_expiry = st
        .tokens
        .check(TokenKind::Challenge, &username, &req.challenge, now)
        .map_err(|_| ApiError::ChallengeInvalid)?;
    let u = username.clone();
    let rec = db(&st, move |s| s.user_by_name(&u))
        .await?
        .ok_or(ApiError::NotFound)?;
    let statement = fetch_statement(&username, &st.address, &req.challenge);
    verify(&stored_cert(&rec)?, &statement, &req.signature).map_err(|_| ApiError::NotOwner)?;
    // Single use: the first fetch that proves ownership consumes it.
    let digest = spent_digest("challenge", &req.challenge);
    if !st.spend(digest, challenge_expiry + 1, now).await? {
        return Err(ApiError::ChallengeInvalid);
    }
    let binding = st.binding_of(&rec, now)?;
    let max = st.cfg.mailbox.fetch_max_items;
    let u = username.clone();
    let (items, remaining, dropped) = db(&st, move |s| {
        let (items, remaining) = s.pending(&u, now, max)?;
        Ok((items, remaining, s.take_dropped(&u)?))
    })
    .await?;
    let ack_token = st
        .tokens
        .issue(
            TokenKind::Ack,
            &username,
            now + st.cfg.mailbox.ack_token_ttl_secs,
        )
        .map_err(|_| ApiError::Internal)?;
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
        dropped,
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
    st.tokens
        .check(TokenKind::Ack, &username, &req.ack_token, now())
        .map_err(|_| ApiError::AckTokenInvalid)?;
    let limit = st.cfg.mailbox.fetch_max_items;
    if req.ids.len() > limit {
        return Err(ApiError::Malformed {
            reason: format!("at most {limit} ids per ack"),
        });
    }
    let ids = req.ids;
    let deleted = db(&st, move |s| s.ack(&username, &ids)).await?;
    Ok(axum::Json(AckResponse { deleted }))
}
