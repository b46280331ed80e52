//! Direct TCP transport: an explicit, opt-in LAN/test mode.
//!
//! It is **not anonymous**: peers see each other's IP addresses. It is only
//! used when the configuration says `network.kind = "direct"`, never as a
//! fallback. Addresses are literal `IP:port` (no DNS lookups); `.onion`
//! addresses are refused rather than silently connected some other way.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

use super::{
    BoxedStream, Error, ErrorKind, Failure, Listener, PeerAddress, RetryPolicy, Transport,
    TransportKind, retry_connect,
};

/// Direct TCP between IP addresses.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    /// Where [`Transport::listen`] binds (port 0: any free port).
    bind: SocketAddr,
    /// How `connect` retries.
    retry: RetryPolicy,
}

impl TcpTransport {
    /// A transport that listens on `bind`.
    pub fn new(bind: SocketAddr) -> Self {
        Self {
            bind,
            retry: RetryPolicy::default(),
        }
    }

    /// Replace the retry policy of `connect`.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// Incoming TCP connections.
#[derive(Debug)]
pub struct TcpTransportListener {
    /// The bound socket.
    listener: TcpListener,
    /// `IP:port` actually bound.
    address: PeerAddress,
}

/// Parse a literal `IP:port`, refusing everything else.
fn parse(addr: &PeerAddress) -> Result<SocketAddr, Error> {
    if addr.is_onion() {
        return Err(Error::BadAddress {
            transport: "direct TCP",
            reason: "onion service addresses need the Tor transport (network.kind = \"tor\")",
        });
    }
    addr.as_str().parse().map_err(|_| Error::BadAddress {
        transport: "direct TCP",
        reason: "expected a literal IP:port",
    })
}

fn judge(e: &std::io::Error) -> Failure {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => Failure {
            retry: true,
            kind: ErrorKind::NotFound,
            reason: "connection refused",
        },
        K::PermissionDenied | K::AddrNotAvailable | K::InvalidInput => Failure {
            retry: false,
            kind: ErrorKind::Unreachable,
            reason: "address not usable",
        },
        _ => Failure {
            retry: true,
            kind: ErrorKind::Unreachable,
            reason: "network error",
        },
    }
}

impl Transport for TcpTransport {
    type Listener = TcpTransportListener;

    fn kind(&self) -> TransportKind {
        TransportKind::DirectTcp
    }

    async fn listen(&self) -> Result<TcpTransportListener, Error> {
        let listener = TcpListener::bind(self.bind)
            .await
            .map_err(|source| Error::Io {
                action: "bind the direct TCP listener",
                source,
            })?;
        let local = listener.local_addr().map_err(|source| Error::Io {
            action: "read the listener address",
            source,
        })?;
        Ok(TcpTransportListener {
            listener,
            address: PeerAddress::new(local.to_string()),
        })
    }

    async fn connect(&self, addr: &PeerAddress) -> Result<BoxedStream, Error> {
        let target = parse(addr)?;
        retry_connect(
            &self.retry,
            || async move {
                let s = TcpStream::connect(target).await?;
                s.set_nodelay(true)?;
                Ok::<BoxedStream, std::io::Error>(Box::new(s))
            },
            judge,
        )
        .await
    }
}

impl Listener for TcpTransportListener {
    fn address(&self) -> &PeerAddress {
        &self.address
    }

    async fn accept(&mut self) -> Result<BoxedStream, Error> {
        let (s, _peer) = self.listener.accept().await.map_err(|source| Error::Io {
            action: "accept a TCP connection",
            source,
        })?;
        // Best effort: small messages should not wait for Nagle.
        let _ = s.set_nodelay(true);
        Ok(Box::new(s))
    }
}
