//! A control-socket client (used by the CLI, the terminal UI and tests).
//!
//! One [`Client`] is one connection. Replies come back in order; events
//! (after [`Client::subscribe`]) are buffered while a call waits for its
//! reply. A UI that sends commands while watching events typically opens two
//! clients: one subscribed, one for commands.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use futures::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LinesCodec, LinesCodecError};

use crate::proto::{
    ApiError, ClientMessage, Event, MAX_LINE, Reply, Request, ServerMessage, VERSION,
};
use crate::socket_path;

/// Errors of a control client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing listens on the socket.
    #[error("the Umbra daemon is not running for {}", path.display())]
    NotRunning {
        /// The socket path tried.
        path: PathBuf,
    },
    /// The socket failed.
    #[error("control socket: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon sent something this client does not understand.
    #[error("control protocol: {0}")]
    Protocol(String),
    /// The daemon closed the connection.
    #[error("the daemon closed the control connection")]
    Closed,
    /// The daemon refused the command.
    #[error("{0}")]
    Api(ApiError),
}

impl From<LinesCodecError> for ClientError {
    fn from(e: LinesCodecError) -> Self {
        match e {
            LinesCodecError::MaxLineLengthExceeded => {
                ClientError::Protocol("line over the length limit".into())
            }
            LinesCodecError::Io(e) => ClientError::Io(e),
        }
    }
}

/// A connection to the daemon's control socket.
pub struct Client {
    framed: Framed<UnixStream, LinesCodec>,
    next_id: u64,
    events: VecDeque<Event>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("control::Client")
    }
}

impl Client {
    /// Connects to the daemon of `data_dir`.
    pub async fn connect(data_dir: &Path) -> Result<Client, ClientError> {
        let path = socket_path(data_dir);
        let stream = match UnixStream::connect(&path).await {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(ClientError::NotRunning { path });
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Client {
            framed: Framed::new(stream, LinesCodec::new_with_max_length(MAX_LINE)),
            next_id: 1,
            events: VecDeque::new(),
        })
    }

    /// Sends `request` and waits for its reply (buffering events).
    pub async fn call(&mut self, request: Request) -> Result<Reply, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        let line = serde_json::to_string(&ClientMessage {
            v: VERSION,
            id,
            cmd: request,
        })
        .map_err(|e| ClientError::Protocol(e.to_string()))?;
        self.framed.send(line).await?;
        loop {
            match self.read().await? {
                ServerMessage::Reply { id: got, ok, error } if got == id || got == 0 => {
                    return match (ok, error) {
                        (_, Some(e)) => Err(ClientError::Api(e)),
                        (Some(r), None) => Ok(r),
                        (None, None) => Err(ClientError::Protocol("empty reply".into())),
                    };
                }
                ServerMessage::Reply { .. } => {
                    return Err(ClientError::Protocol("reply to another request".into()));
                }
                ServerMessage::Event(e) => self.events.push_back(e),
            }
        }
    }

    /// Asks for events on this connection.
    pub async fn subscribe(&mut self) -> Result<(), ClientError> {
        self.call(Request::Subscribe).await.map(|_| ())
    }

    /// The next event (buffered ones first). `Ok(None)` when the daemon
    /// closed the connection.
    pub async fn next_event(&mut self) -> Result<Option<Event>, ClientError> {
        if let Some(e) = self.events.pop_front() {
            return Ok(Some(e));
        }
        match self.read().await {
            Ok(ServerMessage::Event(e)) => Ok(Some(e)),
            Ok(_) => Err(ClientError::Protocol("unexpected reply".into())),
            Err(ClientError::Closed) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read(&mut self) -> Result<ServerMessage, ClientError> {
        let line = self.framed.next().await.ok_or(ClientError::Closed)??;
        serde_json::from_str(&line).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}
