//! Client for a Handshaker (design-v1 "Handshaker HTTP API v1").
//!
//! [`HandshakerClient`] registers the user's `@name`, looks up and searches
//! other users, deposits connection requests into mailboxes and fetches and
//! acknowledges the user's own mailbox. Proof-of-work stamps are computed
//! here, on a blocking thread, with progress reported through a callback.
//!
//! The client speaks HTTP/1.1 over any byte stream produced by a
//! [`Connector`]: [`TcpConnector`] for `http://host:port` Handshakers (tests,
//! hosts behind an external tor), [`TransportConnector`] for `.onion`
//! Handshakers through an onion-service [`Transport`]. One request per
//! stream, so nothing is shared between requests.
//!
//! A Handshaker address is canonicalised ([`HandshakerAddress`]) and that
//! canonical string is signed into every proof, so a proof made for one
//! Handshaker cannot be replayed to another.

mod directory;

pub use umbra_proto::handshaker_api::{AddressError, HandshakerAddress, pow, wire};

pub use directory::{Directory, DirectoryError};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{ErrorKind, HasKind};
use crate::identity::{Fingerprint, Identity, IdentityError, PublicCert, Username};
use crate::transport::{BoxedStream, PeerAddress, Transport};
use pow::{PowProgress, Purpose};
use wire::*;

/// Largest response body the client reads, in bytes.
pub const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// Errors from talking to a Handshaker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakerClientError {
    /// The Handshaker address is not `http://host:port` or a `.onion` address.
    #[error("invalid Handshaker address: {reason} (use http://host:port or <56 chars>.onion)")]
    BadAddress {
        /// What is wrong.
        reason: &'static str,
    },
    /// An argument is not acceptable.
    #[error("invalid input: {reason}")]
    InvalidInput {
        /// What is wrong.
        reason: &'static str,
    },
    /// The connection or the HTTP exchange failed.
    #[error("cannot reach the Handshaker while {action}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// Underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The Handshaker refused the request.
    #[error("the Handshaker refused the request ({status}, {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// Machine-readable code.
        code: String,
        /// Server's explanation.
        message: String,
    },
    /// The Handshaker answered something that does not follow the protocol.
    #[error("unexpected answer from the Handshaker: {reason}")]
    Protocol {
        /// What is wrong.
        reason: String,
    },
    /// A local identity operation failed.
    #[error(transparent)]
    Identity(#[from] IdentityError),
}

impl HasKind for HandshakerClientError {
    fn kind(&self) -> ErrorKind {
        match self {
            HandshakerClientError::BadAddress { .. }
            | HandshakerClientError::InvalidInput { .. } => ErrorKind::InvalidInput,
            HandshakerClientError::Io { .. } => ErrorKind::Io,
            HandshakerClientError::Refused { status, code, .. } => match (*status, code.as_str()) {
                (401 | 403, _) => ErrorKind::BadSignature,
                (413, _) => ErrorKind::TooLarge,
                (_, "stale_timestamp") => ErrorKind::Stale,
                (_, "challenge_invalid") => ErrorKind::Replay,
                _ => ErrorKind::InvalidInput,
            },
            HandshakerClientError::Protocol { .. } => ErrorKind::Protocol,
            HandshakerClientError::Identity(e) => e.kind(),
        }
    }
}

impl From<AddressError> for HandshakerClientError {
    fn from(e: AddressError) -> Self {
        HandshakerClientError::BadAddress { reason: e.reason }
    }
}

type Result<T> = std::result::Result<T, HandshakerClientError>;

fn io_err(
    action: &'static str,
) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> HandshakerClientError {
    move |source| HandshakerClientError::Io { action, source }
}

/// A boxed future returned by [`Connector::connect`].
pub type ConnectFuture<'a> =
    Pin<Box<dyn Future<Output = std::io::Result<BoxedStream>> + Send + 'a>>;

/// Which circuits a Handshaker call may share (SECURITY-2026-11 H2).
///
/// Calls made as the user (registration, deletion, and the signed mailbox
/// challenge, fetch and ack) share one isolation group: the Handshaker knows
/// who makes them anyway. Every other call (lookup, search, deposit, info)
/// gets a fresh group, so the Handshaker cannot link it to the user's
/// account by circuit, nor to another anonymous call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// The user's own account operations.
    Account,
    /// A call no other call may share a circuit with.
    Fresh,
}

impl Isolation {
    /// The isolation of an API call (`method`, `path`), decided in one place:
    /// `POST /v1/register`, `DELETE /v1/users/<me>` and
    /// `POST /v1/mailbox/<me>/{challenge,fetch,ack}` are account calls;
    /// everything else (including a deposit, `POST /v1/mailbox/<other>`) is
    /// fresh.
    pub fn of(method: &Method, path: &str) -> Isolation {
        let account = match *method {
            Method::DELETE => path.starts_with("/v1/users/"),
            Method::POST => {
                path == "/v1/register"
                    || path.strip_prefix("/v1/mailbox/").is_some_and(|rest| {
                        rest.split_once('/')
                            .is_some_and(|(_, op)| matches!(op, "challenge" | "fetch" | "ack"))
                    })
            }
            _ => false,
        };
        if account {
            Isolation::Account
        } else {
            Isolation::Fresh
        }
    }
}

/// Opens byte streams to a Handshaker.
pub trait Connector: Send + Sync {
    /// Opens a fresh stream to `addr`, on circuits chosen by `isolation`.
    fn connect<'a>(
        &'a self,
        addr: &'a HandshakerAddress,
        isolation: Isolation,
    ) -> ConnectFuture<'a>;
}

/// Plain TCP, for `http://host:port` Handshakers.
#[derive(Debug, Clone, Copy, Default)]
pub struct TcpConnector;

impl Connector for TcpConnector {
    /// Plain TCP has no circuits: `isolation` does not apply.
    fn connect<'a>(&'a self, addr: &'a HandshakerAddress, _: Isolation) -> ConnectFuture<'a> {
        Box::pin(async move {
            if addr.is_onion() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "onion service addresses need an onion-service transport",
                ));
            }
            let s = tokio::net::TcpStream::connect((addr.host(), addr.port())).await?;
            s.set_nodelay(true)?;
            Ok(Box::new(s) as BoxedStream)
        })
    }
}

/// Streams through an onion-service [`Transport`] (Arti).
pub struct TransportConnector<T>(pub Arc<T>);

impl<T: Transport + 'static> Connector for TransportConnector<T> {
    /// [`Isolation::Account`] uses the transport's default isolation group
    /// (nothing else of ours connects to the Handshaker's onion service with
    /// it); [`Isolation::Fresh`] a new group per stream.
    fn connect<'a>(
        &'a self,
        addr: &'a HandshakerAddress,
        isolation: Isolation,
    ) -> ConnectFuture<'a> {
        Box::pin(async move {
            let peer = PeerAddress::new(addr.host());
            match isolation {
                Isolation::Account => self.0.connect(&peer).await,
                Isolation::Fresh => self.0.connect_isolated(&peer).await,
            }
            .map_err(std::io::Error::other)
        })
    }
}

/// A user's directory entry, verified by the client.
#[derive(Debug, Clone)]
pub struct DirectoryEntry {
    /// The username.
    pub username: Username,
    /// The certificate's fingerprint.
    pub fingerprint: Fingerprint,
    /// The certificate (checked to carry the user ID `@username`).
    pub cert: PublicCert,
    /// The Handshaker's binding of this name to this key, hex (PROTOCOL.md
    /// §17.11), unchecked: the caller verifies it against the key it
    /// pinned. `None` from servers without bindings.
    pub binding: Option<String>,
}

/// Items returned by [`HandshakerClient::fetch`].
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The pending items.
    pub items: Vec<MailboxItem>,
    /// Token for [`HandshakerClient::ack`].
    pub ack_token: String,
    /// Items still pending beyond this batch.
    pub remaining: u64,
    /// Deposits the Handshaker dropped since the previous fetch because the
    /// mailbox was full (0 from servers that do not say).
    pub dropped: u64,
    /// The Handshaker's fresh binding of our name and key, hex (PROTOCOL.md
    /// §17.11); `None` from servers without bindings.
    pub binding: Option<String>,
}

/// Progress callback for proof-of-work computations.
pub type ProgressFn = Arc<dyn Fn(PowProgress) + Send + Sync>;

/// A client for one Handshaker.
#[derive(Clone)]
pub struct HandshakerClient {
    addr: HandshakerAddress,
    connector: Arc<dyn Connector>,
    progress: Option<ProgressFn>,
    timeout: std::time::Duration,
}

/// Default bound on one Handshaker call, connecting included (an onion
/// connection may retry for up to two minutes around descriptor changes).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

impl fmt::Debug for HandshakerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HandshakerClient([scrubbed])")
    }
}

impl HandshakerClient {
    /// A client for `address` using plain TCP (for `http://host:port`).
    pub fn new(address: &str) -> Result<Self> {
        Self::with_connector(address, Arc::new(TcpConnector))
    }

    /// A client for `address` using `connector` for its streams.
    pub fn with_connector(address: &str, connector: Arc<dyn Connector>) -> Result<Self> {
        Ok(HandshakerClient {
            addr: HandshakerAddress::parse(address)?,
            connector,
            progress: None,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Bounds every call (connecting included) by `timeout`.
    pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Reports proof-of-work progress to `progress`.
    pub fn with_progress(mut self, progress: ProgressFn) -> Self {
        self.progress = Some(progress);
        self
    }

    /// The canonical Handshaker address.
    pub fn address(&self) -> &HandshakerAddress {
        &self.addr
    }

    /// `GET /v1/health`.
    pub async fn health(&self) -> Result<HealthResponse> {
        self.call(Method::GET, "/v1/health", None::<&()>).await
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<InfoResponse> {
        self.call(Method::GET, "/v1/info", None::<&()>).await
    }

    /// Registers `identity`'s username and public certificate.
    pub async fn register(&self, identity: &Identity) -> Result<DirectoryEntry> {
        let info = self.info().await?;
        self.register_inner(identity, None, &info).await
    }

    /// [`Self::register`] with the `/v1/info` answer the caller already
    /// has (it checked the binding key in it first).
    pub async fn register_with_info(
        &self,
        identity: &Identity,
        info: &InfoResponse,
    ) -> Result<DirectoryEntry> {
        self.register_inner(identity, None, info).await
    }

    /// Re-registers the username of `current` with the certificate of
    /// `new` (key rotation), proven by both keys.
    pub async fn rotate(&self, current: &Identity, new: &Identity) -> Result<DirectoryEntry> {
        let info = self.info().await?;
        self.register_inner(new, Some(current), &info).await
    }

    async fn register_inner(
        &self,
        identity: &Identity,
        current: Option<&Identity>,
        info: &InfoResponse,
    ) -> Result<DirectoryEntry> {
        let username = identity.username().clone();
        let difficulty = info.pow_difficulty;
        let pow = self
            .solve(Purpose::Register, username.as_str(), difficulty)
            .await?;
        let timestamp = crate::time::now_secs();
        let statement = register_statement(
            &username,
            self.addr.as_str(),
            &identity.fingerprint(),
            timestamp,
        );
        let req = RegisterRequest {
            username: username.as_str().to_string(),
            cert: identity.public_cert()?.to_armored()?,
            proof: identity.sign_detached(statement.as_bytes())?,
            timestamp,
            current_proof: match current {
                Some(c) => Some(c.sign_detached(statement.as_bytes())?),
                None => None,
            },
            pow: Some(pow),
        };
        let resp: UserResponse = self.call(Method::POST, "/v1/register", Some(&req)).await?;
        let entry = verify_entry(resp, Some(&username))?;
        if !entry.fingerprint.ct_eq(&identity.fingerprint()) {
            return Err(HandshakerClientError::Protocol {
                reason: "registered fingerprint differs from ours".into(),
            });
        }
        Ok(entry)
    }

    /// Deletes `identity`'s registration (and its mailbox).
    pub async fn delete(&self, identity: &Identity) -> Result<()> {
        let username = identity.username();
        let timestamp = crate::time::now_secs();
        let statement = delete_statement(
            username,
            self.addr.as_str(),
            &identity.fingerprint(),
            timestamp,
        );
        let req = DeleteRequest {
            proof: identity.sign_detached(statement.as_bytes())?,
            timestamp,
        };
        let _: serde_json::Value = self
            .call(
                Method::DELETE,
                &format!("/v1/users/{}", username.as_str()),
                Some(&req),
            )
            .await?;
        Ok(())
    }

    /// Looks up `username`; `None` if it is not registered.
    pub async fn lookup(&self, username: &Username) -> Result<Option<DirectoryEntry>> {
        let path = format!("/v1/users/{}", username.as_str());
        match self
            .call::<UserResponse>(Method::GET, &path, None::<&()>)
            .await
        {
            Ok(resp) => verify_entry(resp, Some(username)).map(Some),
            Err(HandshakerClientError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Looks up the user whose certificate has `fingerprint`.
    pub async fn lookup_fingerprint(
        &self,
        fingerprint: &Fingerprint,
    ) -> Result<Option<DirectoryEntry>> {
        let path = format!("/v1/by-fingerprint/{}", fingerprint.to_hex());
        match self
            .call::<UserResponse>(Method::GET, &path, None::<&()>)
            .await
        {
            Ok(resp) => {
                let entry = verify_entry(resp, None)?;
                if !entry.fingerprint.ct_eq(fingerprint) {
                    return Err(HandshakerClientError::Protocol {
                        reason: "answer has another fingerprint".into(),
                    });
                }
                Ok(Some(entry))
            }
            Err(HandshakerClientError::Refused { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Usernames starting with `prefix` (at most `limit`, ≤ 20).
    pub async fn search(&self, prefix: &str, limit: usize) -> Result<Vec<SearchHit>> {
        let prefix = prefix.strip_prefix('@').unwrap_or(prefix);
        if !prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(HandshakerClientError::InvalidInput {
                reason: "a search prefix may only contain letters, digits and _",
            });
        }
        let path = format!(
            "/v1/search?prefix={}&limit={}",
            prefix.to_ascii_lowercase(),
            limit.min(MAX_SEARCH_LIMIT)
        );
        let resp: SearchResponse = self.call(Method::GET, &path, None::<&()>).await?;
        Ok(resp.users)
    }

    /// Deposits an armored OpenPGP `message` into `to`'s mailbox; returns
    /// the Unix time it expires.
    pub async fn deposit(&self, to: &Username, message: &str) -> Result<u64> {
        let difficulty = self.info().await?.pow_difficulty;
        let pow = self
            .solve(Purpose::Deposit, to.as_str(), difficulty)
            .await?;
        let req = DepositRequest {
            message: message.to_string(),
            pow: Some(pow),
        };
        let resp: DepositResponse = self
            .call(
                Method::POST,
                &format!("/v1/mailbox/{}", to.as_str()),
                Some(&req),
            )
            .await?;
        Ok(resp.expires_at)
    }

    /// Fetches pending items of `identity`'s mailbox (challenge, signature,
    /// fetch). Items stay on the server until [`HandshakerClient::ack`].
    pub async fn fetch(&self, identity: &Identity) -> Result<Fetched> {
        let name = identity.username().as_str();
        let ch: ChallengeResponse = self
            .call(
                Method::POST,
                &format!("/v1/mailbox/{name}/challenge"),
                None::<&()>,
            )
            .await?;
        let statement = fetch_statement(identity.username(), self.addr.as_str(), &ch.challenge);
        let req = FetchRequest {
            challenge: ch.challenge,
            signature: identity.sign_detached(statement.as_bytes())?,
        };
        let resp: FetchResponse = self
            .call(
                Method::POST,
                &format!("/v1/mailbox/{name}/fetch"),
                Some(&req),
            )
            .await?;
        Ok(Fetched {
            items: resp.items,
            ack_token: resp.ack_token,
            remaining: resp.remaining,
            dropped: resp.dropped,
            binding: resp.binding,
        })
    }

    /// Acknowledges items the client has durably stored; the server deletes
    /// exactly those. Returns how many were deleted.
    pub async fn ack(&self, username: &Username, ack_token: &str, ids: &[String]) -> Result<u64> {
        let req = AckRequest {
            ack_token: ack_token.to_string(),
            ids: ids.to_vec(),
        };
        let resp: AckResponse = self
            .call(
                Method::POST,
                &format!("/v1/mailbox/{}/ack", username.as_str()),
                Some(&req),
            )
            .await?;
        Ok(resp.deleted)
    }

    async fn solve(
        &self,
        purpose: Purpose,
        resource: &str,
        difficulty: u32,
    ) -> Result<pow::PowStamp> {
        let resource = resource.to_string();
        let progress = self.progress.clone();
        tokio::task::spawn_blocking(move || {
            let ts = crate::time::now_secs();
            let mut report = |p: PowProgress| {
                if let Some(f) = &progress {
                    f(p);
                }
            };
            pow::solve(purpose, &resource, difficulty, ts, &mut report)
        })
        .await
        .map_err(|e| HandshakerClientError::Io {
            action: "computing the proof of work",
            source: Box::new(e),
        })
    }

    /// One HTTP/1.1 request on a fresh stream; JSON in, JSON out.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let (status, bytes) = self.raw(method, path, body).await?;
        if !status.is_success() {
            let err: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
                error: "unknown".into(),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
            });
            return Err(HandshakerClientError::Refused {
                status: status.as_u16(),
                code: err.error,
                message: err.message,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| HandshakerClientError::Protocol {
            reason: format!("bad JSON: {e}"),
        })
    }

    /// One HTTP/1.1 request; returns status and body. Gives up after the
    /// client's timeout (connecting included), so a stalled Handshaker
    /// never blocks the caller for ever.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(StatusCode, Bytes)> {
        match tokio::time::timeout(self.timeout, self.exchange(method, path, body)).await {
            Ok(r) => r,
            Err(_) => Err(HandshakerClientError::Io {
                action: "waiting for its answer",
                source: format!("no answer within {} s", self.timeout.as_secs()).into(),
            }),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<(StatusCode, Bytes)> {
        let isolation = Isolation::of(&method, path);
        let stream = self
            .connector
            .connect(&self.addr, isolation)
            .await
            .map_err(|e| io_err("connecting")(Box::new(e)))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| io_err("starting HTTP")(Box::new(e)))?;
        let driver = tokio::spawn(conn);
        let body_bytes =
            match body {
                Some(b) => Bytes::from(serde_json::to_vec(b).map_err(|e| {
                    HandshakerClientError::Protocol {
                        reason: format!("cannot encode request: {e}"),
                    }
                })?),
                None => Bytes::new(),
            };
        let host = if self.addr.is_onion() {
            self.addr.host().to_string()
        } else {
            format!("{}:{}", self.addr.host(), self.addr.port())
        };
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::CONNECTION, "close")
            .body(Full::new(body_bytes))
            .map_err(|e| HandshakerClientError::Protocol {
                reason: format!("cannot build request: {e}"),
            })?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| io_err("sending the request")(Box::new(e)))?;
        let status = resp.status();
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| io_err("reading the answer")(e))?
            .to_bytes();
        driver.abort();
        Ok((status, bytes))
    }
}

/// Checks a directory answer: the certificate parses, its fingerprint is the
/// one claimed, and it carries the user ID `@username`.
fn verify_entry(resp: UserResponse, expected: Option<&Username>) -> Result<DirectoryEntry> {
    let bad = |reason: &str| HandshakerClientError::Protocol {
        reason: reason.to_string(),
    };
    let username = Username::parse(&resp.username).map_err(|_| bad("invalid username"))?;
    if let Some(e) = expected
        && *e != username
    {
        return Err(bad("answer is for another username"));
    }
    let fingerprint =
        Fingerprint::from_hex(&resp.fingerprint).map_err(|_| bad("bad fingerprint"))?;
    let cert = PublicCert::from_bytes(resp.cert.as_bytes())?;
    if !cert.fingerprint().ct_eq(&fingerprint) {
        return Err(bad("certificate does not match the fingerprint"));
    }
    if cert.username().ok().as_ref() != Some(&username) {
        return Err(bad(
            "the certificate's one @name user ID is not the username (it must carry exactly one)",
        ));
    }
    Ok(DirectoryEntry {
        username,
        fingerprint,
        cert,
        binding: resp.binding,
    })
}
