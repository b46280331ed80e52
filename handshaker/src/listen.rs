//! Where connections come from: plain TCP, our own onion service, or both.

use umbra_transport::arti::ArtiListener;
use umbra_transport::tcp::TcpTransportListener;
use umbra_transport::{BoxedStream, Error, Listener, PeerAddress};

/// TCP, onion service, or both at once.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyListener {
    /// Plain TCP only.
    Tcp(TcpTransportListener),
    /// Onion service only.
    Onion(ArtiListener),
    /// Both; [`Listener::address`] is the onion service address.
    Both(TcpTransportListener, ArtiListener),
}

impl Listener for AnyListener {
    fn address(&self) -> &PeerAddress {
        match self {
            AnyListener::Tcp(t) => t.address(),
            AnyListener::Onion(o) | AnyListener::Both(_, o) => o.address(),
        }
    }

    async fn accept(&mut self) -> Result<BoxedStream, Error> {
        match self {
            AnyListener::Tcp(t) => t.accept().await,
            AnyListener::Onion(o) => o.accept().await,
            AnyListener::Both(t, o) => tokio::select! {
                s = t.accept() => s,
                s = o.accept() => s,
            },
        }
    }
}
