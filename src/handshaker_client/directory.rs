//! The Handshaker in use by a running daemon, shared by the mailbox poller and
//! the control commands (`register --handshaker` switches it).

use std::sync::{Arc, RwLock};

use super::{Connector, HandshakerAddress, HandshakerClient, HandshakerClientError, TcpConnector};

/// The Handshaker currently in use.
pub struct Directory {
    current: RwLock<Option<HandshakerClient>>,
    onion: Option<Arc<dyn Connector>>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Directory")
    }
}

impl Directory {
    /// A directory with no Handshaker yet; `onion` opens onion streams.
    pub fn new(onion: Option<Arc<dyn Connector>>) -> Self {
        Directory {
            current: RwLock::new(None),
            onion,
        }
    }

    /// The Handshaker in use.
    pub fn current(&self) -> Option<HandshakerClient> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Switches to `client`.
    pub fn set(&self, client: HandshakerClient) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(client);
    }

    /// A client for `address` with the right connector (Arti for onion
    /// addresses, TCP for `http://host:port`).
    pub fn client_for(&self, address: &str) -> Result<HandshakerClient, DirectoryError> {
        let parsed = HandshakerAddress::parse(address).map_err(HandshakerClientError::from)?;
        let connector: Arc<dyn Connector> = if parsed.is_onion() {
            self.onion.clone().ok_or(DirectoryError::NoTor)?
        } else {
            Arc::new(TcpConnector)
        };
        Ok(HandshakerClient::with_connector(address, connector)?)
    }
}

/// Why a Handshaker client could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// An onion Handshaker without Tor.
    #[error("this Handshaker is an onion service, but the daemon runs without Tor")]
    NoTor,
    /// A bad address.
    #[error(transparent)]
    Client(#[from] HandshakerClientError),
}
