//! JSON bodies and signed statements of the Handshaker HTTP API v1.
//!
//! The server (`umbra-handshaker`) and the client (`umbra::handshaker_client`) both use
//! these types, so client and server cannot drift apart. Requests reject
//! unknown fields; responses ignore them (forward compatibility).

use serde::{Deserialize, Serialize};

use super::pow::PowStamp;
use crate::identity::{Fingerprint, Username};

/// How far a proof's timestamp may be from the server's clock, in seconds.
pub const PROOF_WINDOW_SECS: u64 = 600;
/// Largest `limit` accepted by `GET /v1/search`.
pub const MAX_SEARCH_LIMIT: usize = 20;

/// The revision of the v1 API described by PROTOCOL.md §17 (2: issue #16).
pub const API_REVISION: u32 = 2;

/// `POST /v1/register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The username (a leading `@` and upper case are accepted and folded).
    pub username: String,
    /// Armored public certificate.
    pub cert: String,
    /// Armored detached signature by `cert` over [`register_statement`].
    pub proof: String,
    /// The Unix timestamp inside the signed statement.
    pub timestamp: u64,
    /// For re-registration / key rotation: armored detached signature by
    /// the currently registered key over the same statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_proof: Option<String>,
    /// Proof-of-work stamp (purpose `register`, resource = folded username).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pow: Option<PowStamp>,
}

/// `DELETE /v1/users/<name>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    /// Armored detached signature by the registered key over
    /// [`delete_statement`].
    pub proof: String,
    /// The Unix timestamp inside the signed statement.
    pub timestamp: u64,
}

/// A directory entry (`GET /v1/users/<name>`, `GET /v1/by-fingerprint/<FPR>`,
/// and the answer to a registration).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserResponse {
    /// Folded username without `@`.
    pub username: String,
    /// 40 upper-case hex digits.
    pub fingerprint: String,
    /// Armored (stripped) public certificate.
    pub cert: String,
    /// The Handshaker's signed binding of this name to this key, hex
    /// (PROTOCOL.md §17.11). Absent from servers older than the binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
}

/// One search hit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchHit {
    /// Folded username without `@`.
    pub username: String,
    /// 40 upper-case hex digits.
    pub fingerprint: String,
}

/// `GET /v1/search?prefix=..&limit=..`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SearchResponse {
    /// At most `limit` hits, in username order.
    pub users: Vec<SearchHit>,
}

/// `POST /v1/mailbox/<name>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DepositRequest {
    /// Armored OpenPGP message (opaque to the server).
    pub message: String,
    /// Proof-of-work stamp (purpose `deposit`, resource = folded recipient).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pow: Option<PowStamp>,
}

/// Answer to a deposit (202).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepositResponse {
    /// Unix time after which the item is purged if not acknowledged.
    pub expires_at: u64,
}

/// `POST /v1/mailbox/<name>/challenge`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// 32 random bytes, lower-case hex.
    pub challenge: String,
    /// Unix time after which the challenge is refused.
    pub expires_at: u64,
}

/// `POST /v1/mailbox/<name>/fetch`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FetchRequest {
    /// The challenge from [`ChallengeResponse`].
    pub challenge: String,
    /// Armored detached signature by the registered key over
    /// [`fetch_statement`].
    pub signature: String,
}

/// One pending mailbox item.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailboxItem {
    /// Opaque item id (32 hex digits).
    pub id: String,
    /// The deposited armored OpenPGP message.
    pub message: String,
    /// Unix time of the deposit.
    pub deposited_at: u64,
}

/// Answer to a fetch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchResponse {
    /// Oldest pending items first (at most the server's per-fetch limit).
    pub items: Vec<MailboxItem>,
    /// Token for `POST /v1/mailbox/<name>/ack`.
    pub ack_token: String,
    /// Items still pending beyond this answer.
    #[serde(default)]
    pub remaining: u64,
    /// Deposits dropped since the previous fetch because the mailbox was
    /// full (the depositors were answered as if they were stored:
    /// PROTOCOL.md §17.9). Absent from older servers: 0.
    #[serde(default)]
    pub dropped: u64,
    /// A fresh binding of the fetching user, hex (PROTOCOL.md §17.11): the
    /// client carries it in its requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding: Option<String>,
}

/// `POST /v1/mailbox/<name>/ack`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AckRequest {
    /// The token from [`FetchResponse`].
    pub ack_token: String,
    /// Ids of items durably stored by the client.
    pub ids: Vec<String>,
}

/// Answer to an ack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AckResponse {
    /// Number of items deleted.
    pub deleted: u64,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `"ok"`.
    pub status: String,
    /// Server version.
    pub version: String,
}

/// Limits advertised by `GET /v1/info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InfoLimits {
    /// Largest request body, bytes.
    pub max_body: usize,
    /// Largest mailbox message, bytes.
    pub max_message: usize,
    /// Largest certificate, bytes.
    pub max_cert: usize,
    /// Pending items per mailbox.
    pub mailbox_capacity: usize,
    /// Mailbox retention, seconds.
    pub mailbox_retention_secs: u64,
    /// Largest search `limit`.
    pub max_search_limit: usize,
}

/// `GET /v1/info`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InfoResponse {
    /// The address signed into proofs: the `.onion` address, or
    /// `http://host:port` when serving plain TCP only.
    pub onion_address: String,
    /// Required leading zero bits of proof-of-work stamps.
    pub pow_difficulty: u32,
    /// Limits.
    pub limits: InfoLimits,
    /// The Ed25519 key that signs bindings, 64 hex digits (PROTOCOL.md
    /// §17.11). Clients pin it on first use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_key: Option<String>,
    /// Revision of the v1 API the server implements (PROTOCOL.md §17);
    /// 0 from servers older than revision 2.
    #[serde(default)]
    pub api_revision: u32,
}

/// Every error answer: `{"error": code, "message": text}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Stable machine-readable code (`"username_taken"`, ...).
    pub error: String,
    /// Human-readable explanation with what to do.
    pub message: String,
}

/// The statement signed to register `username` with `fingerprint` at the
/// Handshaker whose canonical address is `handshaker`.
pub fn register_statement(
    username: &Username,
    handshaker: &str,
    fingerprint: &Fingerprint,
    timestamp: u64,
) -> String {
    key_statement(
        "umbra-register-v1",
        username,
        handshaker,
        fingerprint,
        timestamp,
    )
}

/// The statement signed by the registered key to delete `username`.
pub fn delete_statement(
    username: &Username,
    handshaker: &str,
    fingerprint: &Fingerprint,
    timestamp: u64,
) -> String {
    key_statement(
        "umbra-delete-v1",
        username,
        handshaker,
        fingerprint,
        timestamp,
    )
}

/// The lines every statement about a name and its key carries, after `tag`.
fn key_statement(
    tag: &str,
    username: &Username,
    handshaker: &str,
    fingerprint: &Fingerprint,
    timestamp: u64,
) -> String {
    format!(
        "{tag}\nusername={}\nhandshaker={handshaker}\nfingerprint={}\ntimestamp={timestamp}\n",
        username.as_str(),
        fingerprint.to_hex()
    )
}

/// The statement signed by the registered key to fetch the mailbox.
pub fn fetch_statement(username: &Username, handshaker: &str, challenge: &str) -> String {
    format!(
        "umbra-fetch-v1\nusername={}\nhandshaker={handshaker}\nchallenge={challenge}\n",
        username.as_str()
    )
}
