#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![deny(clippy::mod_module_files)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::print_stdout,
        clippy::print_stderr
    )
)]

//! Transports: "listen as an onion service" and "connect to an address".
//!
//! Everything above this crate (wire framing, sessions, the daemon) sees a
//! [`Transport`] that hands out [`BoxedStream`]s: ordered, reliable byte
//! streams implementing tokio's `AsyncRead + AsyncWrite`. Three
//! implementations exist:
//!
//! * [`arti::ArtiTransport`]: the real thing. An embedded Arti `TorClient`,
//!   one onion service per user on a fixed virtual port, connections to
//!   other users' `.onion` addresses.
//! * [`tcp::TcpTransport`]: direct TCP between IP addresses. Only for an
//!   explicit, opt-in LAN mode and fast tests; it offers no anonymity and is
//!   never chosen silently (see the client's `umbra::config::NetworkKind`).
//! * [`memory::MemoryTransport`]: in-process pipes for unit tests.
//!
//! Streams may buffer (Arti packs bytes into 509-byte cells): callers must
//! `flush()` after every message.
//!
//! As little code as possible touches the network: only this crate opens
//! connections or listens.

pub mod arti;
pub mod memory;
pub mod tcp;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

/// A bidirectional byte stream returned by every transport.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncStream for T {}

/// A boxed [`AsyncStream`].
pub type BoxedStream = Box<dyn AsyncStream>;

/// The address of a peer: a `.onion` address for the Arti transport,
/// `IP:port` for the TCP transport, a name for the memory transport.
///
/// Addresses identify users, so `Display` and `Debug` print `[scrubbed]`
/// (through [`safelog::Sensitive`], which honours arti's global "unsafe
/// logging" switch for debugging). Use [`PeerAddress::as_str`] to get the
/// real value for protocol messages.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PeerAddress(String);

impl PeerAddress {
    /// Wrap an address string. It is checked by the transport that uses it.
    pub fn new(addr: impl Into<String>) -> Self {
        Self(addr.into())
    }

    /// The unredacted address, for protocol messages. Never log it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Does this look like an onion service address (`….onion`)?
    pub fn is_onion(&self) -> bool {
        self.0
            .get(self.0.len().saturating_sub(6)..)
            .is_some_and(|s| s.eq_ignore_ascii_case(".onion"))
    }
}

impl fmt::Display for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&safelog::Sensitive::new(&self.0), f)
    }
}

impl fmt::Debug for PeerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PeerAddress({self})")
    }
}

/// Which kind of transport this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportKind {
    /// Onion services through an embedded Arti client.
    Onion,
    /// Direct TCP (LAN/test mode: not anonymous).
    DirectTcp,
    /// In-process pipes (tests).
    Memory,
}

/// Listen as a service / connect to peers.
///
/// Implementations are cheap to share (`&self` methods) and their futures
/// are `Send`, so a daemon can drive them from any tokio task.
pub trait Transport: Send + Sync {
    /// What [`Transport::listen`] returns.
    type Listener: Listener;

    /// The kind of this transport.
    fn kind(&self) -> TransportKind;

    /// Start accepting connections (for Arti: launch the onion service).
    fn listen(&self) -> impl Future<Output = Result<Self::Listener, Error>> + Send;

    /// Open a stream to `addr`, retrying transient failures until the
    /// transport's connect timeout.
    fn connect(
        &self,
        addr: &PeerAddress,
    ) -> impl Future<Output = Result<BoxedStream, Error>> + Send;

    /// Like [`Transport::connect`], on a circuit not shared with other streams
    /// (Arti: a new isolation group). Used for file lanes (PROTOCOL.md §14.3).
    fn connect_isolated(
        &self,
        addr: &PeerAddress,
    ) -> impl Future<Output = Result<BoxedStream, Error>> + Send {
        self.connect(addr)
    }
}

/// A shared transport is a transport (the daemon shares one Arti client
/// between the node and the Handshaker client).
impl<T: Transport> Transport for std::sync::Arc<T> {
    type Listener = T::Listener;

    fn kind(&self) -> TransportKind {
        (**self).kind()
    }

    fn listen(&self) -> impl Future<Output = Result<Self::Listener, Error>> + Send {
        (**self).listen()
    }

    fn connect(
        &self,
        addr: &PeerAddress,
    ) -> impl Future<Output = Result<BoxedStream, Error>> + Send {
        (**self).connect(addr)
    }

    fn connect_isolated(
        &self,
        addr: &PeerAddress,
    ) -> impl Future<Output = Result<BoxedStream, Error>> + Send {
        (**self).connect_isolated(addr)
    }
}

/// Incoming connections of a [`Transport`].
pub trait Listener: Send {
    /// The address peers use to reach this listener.
    fn address(&self) -> &PeerAddress;

    /// Wait for the next incoming stream.
    fn accept(&mut self) -> impl Future<Output = Result<BoxedStream, Error>> + Send;
}

/// The crate's one error classification (transport errors use its
/// `BadAddress`, `Config`, `LocalState`, `Bootstrap`, `NotFound`,
/// `Unreachable`, `Closed` and `Internal` kinds).
pub use umbra_proto::error::ErrorKind;

/// An error from a transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The address is malformed or not usable with this transport.
    #[error("invalid peer address for the {transport} transport: {reason}")]
    BadAddress {
        /// The transport that rejected the address.
        transport: &'static str,
        /// Why (never contains the address itself).
        reason: &'static str,
    },
    /// The configuration could not be turned into a working transport.
    #[error("invalid transport configuration: {reason}")]
    Config {
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// Arti failed while doing `action`.
    #[error("Tor (Arti) failed to {action}")]
    Arti {
        /// What we were doing.
        action: &'static str,
        /// Arti's error.
        #[source]
        source: Box<arti_client::Error>,
    },
    /// The onion service could not be launched.
    #[error("failed to launch the onion service")]
    Launch {
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Joining the Tor network took too long.
    #[error(
        "could not join the Tor network within {waited:?}; check the network connection \
         (or the local test network configuration)"
    )]
    BootstrapTimeout {
        /// How long we waited.
        waited: Duration,
    },
    /// Every connection attempt failed until the connect timeout.
    #[error(
        "could not connect to the peer after {attempts} attempt(s) in {elapsed:.1?} ({reason}); \
         check the address, or try again when the peer is online"
    )]
    ConnectFailed {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// Short description of the last failure.
        reason: &'static str,
        /// Classification of the last failure.
        kind: ErrorKind,
        /// The last failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A local I/O operation failed.
    #[error("failed to {action}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The onion service's identity key could not be read, moved or
    /// deleted (Arti's old on-disk keystore, its state directory).
    #[error("failed to {action}")]
    ServiceKey {
        /// What we were doing.
        action: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The listener or transport has been shut down.
    #[error("the transport has been shut down")]
    Closed,
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadAddress { .. } => ErrorKind::BadAddress,
            Error::Config { .. } => ErrorKind::Config,
            Error::Arti { source, .. } => arti::classify(source),
            Error::Launch { .. } => ErrorKind::Internal,
            Error::BootstrapTimeout { .. } => ErrorKind::Bootstrap,
            Error::ConnectFailed { kind, .. } => *kind,
            Error::Io { .. } | Error::ServiceKey { .. } => ErrorKind::LocalState,
            Error::Closed => ErrorKind::Closed,
        }
    }
}

/// How [`Transport::connect`] retries: exponential backoff from `initial`
/// up to `max` between attempts, giving up after `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total time budget for one `connect` call, attempts included.
    pub total: Duration,
    /// First pause between attempts.
    pub initial: Duration,
    /// Longest pause between attempts.
    pub max: Duration,
}

impl Default for RetryPolicy {
    /// 120 s in total, pauses from 250 ms doubling up to 5 s.
    fn default() -> Self {
        Self {
            total: Duration::from_secs(120),
            initial: Duration::from_millis(250),
            max: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// The pause after attempt number `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// How one failed connection attempt is judged by [`retry_connect`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Failure {
    /// Worth another attempt within the time budget?
    pub(crate) retry: bool,
    /// Classification reported if this is the last failure.
    pub(crate) kind: ErrorKind,
    /// Short description reported if this is the last failure.
    pub(crate) reason: &'static str,
}

/// Run `attempt` until it succeeds, a failure is judged final, or the
/// policy's time budget is spent. Every attempt is itself bounded by the
/// remaining budget, so the call returns within `policy.total` (plus
/// scheduling noise).
pub(crate) async fn retry_connect<F, Fut, E>(
    policy: &RetryPolicy,
    mut attempt: F,
    judge: impl Fn(&E) -> Failure,
) -> Result<BoxedStream, Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<BoxedStream, E>>,
    E: std::error::Error + Send + Sync + 'static,
{
    let started = tokio::time::Instant::now();
    let deadline = started + policy.total;
    let mut attempts = 0u32;
    // The last real failure, reported if the budget runs out mid-attempt.
    let mut last: Option<(Failure, Box<dyn std::error::Error + Send + Sync>)> = None;
    loop {
        attempts = attempts.saturating_add(1);
        let outcome = tokio::time::timeout_at(deadline, attempt()).await;
        let (failure, source) = match outcome {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => {
                let f = judge(&e);
                (f, Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
            }
            Err(_elapsed) => last.take().unwrap_or_else(|| {
                (
                    Failure {
                        retry: false,
                        kind: ErrorKind::Unreachable,
                        reason: "timed out",
                    },
                    Box::new(std::io::Error::from(std::io::ErrorKind::TimedOut)),
                )
            }),
        };
        let pause = policy.backoff(attempts);
        let now = tokio::time::Instant::now();
        if !failure.retry || now + pause >= deadline {
            return Err(Error::ConnectFailed {
                attempts,
                elapsed: now - started,
                reason: failure.reason,
                kind: failure.kind,
                source,
            });
        }
        tracing::debug!(
            attempts,
            ?pause,
            reason = failure.reason,
            "connect failed; retrying"
        );
        last = Some((failure, source));
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn address_is_redacted() {
        let a = PeerAddress::new("abcdefghij.onion");
        assert_eq!(a.to_string(), "[scrubbed]");
        assert!(!format!("{a:?}").contains("abcdef"));
        assert!(a.is_onion());
        assert!(!PeerAddress::new("127.0.0.1:7").is_onion());
        assert!(!PeerAddress::new("").is_onion());
    }

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(250));
        assert_eq!(p.backoff(2), Duration::from_millis(500));
        assert_eq!(p.backoff(10), Duration::from_secs(5));
        assert_eq!(p.backoff(100), Duration::from_secs(5));
    }

    /// The scenario every transport must pass (gosling's
    /// `basic_onion_service_test` pattern): a listener, a client, messages
    /// both ways, a second connection, and a clean EOF.
    pub(crate) async fn basic_scenario<T: Transport>(server: &T, client: &T) {
        let mut listener = server.listen().await.unwrap();
        let addr = listener.address().clone();
        let accept = async {
            let mut s = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"hello");
            s.write_all(b"world").await.unwrap();
            s.flush().await.unwrap();
            // Wait for the client's EOF.
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty());
            let mut s2 = listener.accept().await.unwrap();
            let mut big = Vec::new();
            s2.read_to_end(&mut big).await.unwrap();
            big
        };
        let connect = async {
            let mut c = client.connect(&addr).await.unwrap();
            c.write_all(b"hello").await.unwrap();
            c.flush().await.unwrap();
            let mut buf = [0u8; 5];
            c.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"world");
            c.shutdown().await.unwrap();
            drop(c);
            let mut c2 = client.connect(&addr).await.unwrap();
            let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            c2.write_all(&data).await.unwrap();
            c2.shutdown().await.unwrap();
            data
        };
        let (got, sent) = tokio::join!(accept, connect);
        assert_eq!(got, sent);
    }

    #[tokio::test]
    async fn memory_transport_scenario() {
        let net = memory::MemoryNetwork::new();
        let server = memory::MemoryTransport::new(&net, "alice");
        let client = memory::MemoryTransport::new(&net, "bob");
        basic_scenario(&server, &client).await;
    }

    #[tokio::test]
    async fn tcp_transport_scenario() {
        let server = tcp::TcpTransport::new(([127, 0, 0, 1], 0).into());
        let client = tcp::TcpTransport::new(([127, 0, 0, 1], 0).into());
        basic_scenario(&server, &client).await;
    }

    #[tokio::test]
    async fn memory_unknown_peer_is_not_found() {
        let net = memory::MemoryNetwork::new();
        let client = memory::MemoryTransport::new(&net, "bob");
        let err = client
            .connect(&PeerAddress::new("nobody"))
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn tcp_refuses_onion_addresses_and_names() {
        let client = tcp::TcpTransport::new(([127, 0, 0, 1], 0).into());
        for bad in ["abc.onion", "localhost:80", "nonsense"] {
            let err = client.connect(&PeerAddress::new(bad)).await.err().unwrap();
            assert_eq!(err.kind(), ErrorKind::BadAddress, "{bad}");
            assert!(!err.to_string().contains(bad));
        }
    }

    #[tokio::test]
    async fn tcp_refused_is_bounded_not_found() {
        // Reserve a port, then close it so nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = tcp::TcpTransport::new(([127, 0, 0, 1], 0).into()).with_retry(RetryPolicy {
            total: Duration::from_millis(600),
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
        });
        let started = std::time::Instant::now();
        let err = client
            .connect(&PeerAddress::new(format!("127.0.0.1:{port}")))
            .await
            .err()
            .unwrap();
        assert_eq!(err.kind(), ErrorKind::NotFound);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
