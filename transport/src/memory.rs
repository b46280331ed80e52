//! In-memory transport for unit tests of the layers above the transport.
//!
//! A [`MemoryNetwork`] is a registry of named listeners; each connection is
//! a `tokio::io::duplex` pipe.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::io::DuplexStream;
use tokio::sync::mpsc;

use super::{BoxedStream, Error, Listener, PeerAddress, Transport, TransportKind};

/// Buffer size of each direction of a pipe.
const PIPE_BUFFER: usize = 64 * 1024;

/// Backlog of not-yet-accepted connections per listener.
const BACKLOG: usize = 16;

/// A set of [`MemoryTransport`]s that can reach each other by name.
#[derive(Debug, Clone, Default)]
pub struct MemoryNetwork {
    /// Listening names and where to deliver new connections.
    listeners: Arc<Mutex<HashMap<String, mpsc::Sender<DuplexStream>>>>,
}

impl MemoryNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }
}

/// One node of a [`MemoryNetwork`], listening under a fixed name.
#[derive(Debug, Clone)]
pub struct MemoryTransport {
    /// The network shared with the peers.
    net: MemoryNetwork,
    /// The address this node listens on.
    name: PeerAddress,
}

impl MemoryTransport {
    /// A node of `net` that will listen as `name`.
    pub fn new(net: &MemoryNetwork, name: &str) -> Self {
        Self {
            net: net.clone(),
            name: PeerAddress::new(name),
        }
    }
}

/// Incoming connections of a [`MemoryTransport`].
#[derive(Debug)]
pub struct MemoryListener {
    /// Our address.
    name: PeerAddress,
    /// New connections from [`MemoryTransport::connect`].
    incoming: mpsc::Receiver<DuplexStream>,
}

fn not_found() -> Error {
    Error::ConnectFailed {
        attempts: 1,
        elapsed: std::time::Duration::ZERO,
        reason: "nobody listens at that address",
        kind: super::ErrorKind::NotFound,
        source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
    }
}

impl Transport for MemoryTransport {
    type Listener = MemoryListener;

    fn kind(&self) -> TransportKind {
        TransportKind::Memory
    }

    async fn listen(&self) -> Result<MemoryListener, Error> {
        let (tx, rx) = mpsc::channel(BACKLOG);
        let mut map = self.net.listeners.lock().map_err(|_| Error::Closed)?;
        // Replaces a previous listener of the same name, like a restarted node.
        map.insert(self.name.as_str().to_owned(), tx);
        Ok(MemoryListener {
            name: self.name.clone(),
            incoming: rx,
        })
    }

    async fn connect(&self, addr: &PeerAddress) -> Result<BoxedStream, Error> {
        let tx = {
            let map = self.net.listeners.lock().map_err(|_| Error::Closed)?;
            map.get(addr.as_str()).cloned()
        };
        let tx = tx.ok_or_else(not_found)?;
        let (ours, theirs) = tokio::io::duplex(PIPE_BUFFER);
        tx.send(theirs).await.map_err(|_| not_found())?;
        Ok(Box::new(ours))
    }
}

impl Listener for MemoryListener {
    fn address(&self) -> &PeerAddress {
        &self.name
    }

    async fn accept(&mut self) -> Result<BoxedStream, Error> {
        let s = self.incoming.recv().await.ok_or(Error::Closed)?;
        Ok(Box::new(s))
    }
}
