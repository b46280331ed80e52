//! The control-socket side of the window, on a thread of its own.
//!
//! The UI thread never waits on the socket: it sends [`Command`]s and, every
//! frame, drains [`Update`]s; each update wakes the UI (`request_repaint`).
//! Two connections per daemon: one subscribed to events, one for commands in
//! order (sending stays ordered). Commands that go over the network and can
//! take a while (directory search, lookup, requests, register) each get a
//! connection of their own, so that a slow Handshaker never holds up a
//! message.

use std::path::PathBuf;
use std::sync::mpsc;

use tokio::sync::mpsc as tmpsc;
use umbra_control::proto::{Event, Reply, Request};
use umbra_control::{Client, ClientError};

/// What the UI asks of the backend.
#[derive(Debug)]
pub enum Command {
    /// Connect to the daemon (again).
    Connect,
    /// Send a request; its reply comes back as [`Update::Reply`].
    Call(Request),
}

/// What the backend tells the UI.
#[derive(Debug)]
pub enum Update {
    /// No daemon listens for the data directory.
    NotRunning,
    /// Connecting failed for another reason (permissions, a broken socket).
    ConnectFailed(String),
    /// Connected and subscribed to events.
    Connected,
    /// The daemon closed the connection (it stopped).
    Disconnected,
    /// The reply to a [`Command::Call`].
    Reply {
        /// The request answered.
        request: Request,
        /// Its result, or the error a person reads.
        result: Result<Reply, CallError>,
    },
    /// A daemon event.
    Event(Event),
}

/// A failed call, as shown to a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// The error code (`key_changed`, `network`, …), if the daemon refused.
    pub code: Option<String>,
    /// One sentence.
    pub message: String,
    /// What to do next.
    pub hint: Option<String>,
}

impl From<ClientError> for CallError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Api(a) => CallError {
                code: serde_json::to_value(a.code)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned)),
                message: a.message,
                hint: a.hint,
            },
            other => CallError {
                code: None,
                message: other.to_string(),
                hint: None,
            },
        }
    }
}

/// The UI's handle on the backend thread.
pub struct Backend {
    commands: tmpsc::UnboundedSender<Command>,
    updates: mpsc::Receiver<Update>,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Backend")
    }
}

type Wake = std::sync::Arc<dyn Fn() + Send + Sync>;

impl Backend {
    /// Starts the backend thread for the daemon of `data_dir`; `wake` is
    /// called after every update (the UI's `request_repaint`).
    pub fn spawn(
        data_dir: PathBuf,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> std::io::Result<Backend> {
        let (ctx, crx) = tmpsc::unbounded_channel();
        let (utx, urx) = mpsc::channel();
        let wake: Wake = std::sync::Arc::new(wake);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name("umbra-control".into())
            .spawn(move || {
                rt.block_on(run(data_dir, crx, Out { tx: utx, wake }));
            })?;
        Ok(Backend {
            commands: ctx,
            updates: urx,
        })
    }

    /// Queues a command (ignored if the backend stopped).
    pub fn send(&self, c: Command) {
        let _ = self.commands.send(c);
    }

    /// Queues a request.
    pub fn call(&self, r: Request) {
        self.send(Command::Call(r));
    }

    /// Updates that arrived since the last call.
    pub fn drain(&self) -> Vec<Update> {
        self.updates.try_iter().collect()
    }
}

#[derive(Clone)]
struct Out {
    tx: mpsc::Sender<Update>,
    wake: Wake,
}

impl Out {
    /// Sends `u`; false when the UI is gone.
    fn send(&self, u: Update) -> bool {
        let ok = self.tx.send(u).is_ok();
        (self.wake)();
        ok
    }
}

/// Whether `r` goes over the network and may take long.
fn is_slow(r: &Request) -> bool {
    matches!(
        r,
        Request::Search { .. }
            | Request::Lookup { .. }
            | Request::Request { .. }
            | Request::Register { .. }
    )
}

async fn run(data_dir: PathBuf, mut commands: tmpsc::UnboundedReceiver<Command>, out: Out) {
    while let Some(c) = commands.recv().await {
        match c {
            Command::Connect => {}
            Command::Call(request) => {
                let result = Err(CallError {
                    code: None,
                    message: "not connected to the Umbra daemon".into(),
                    hint: None,
                });
                if !out.send(Update::Reply { request, result }) {
                    return;
                }
                continue;
            }
        }
        let (cmd, mut events) = match connect(&data_dir).await {
            Ok(pair) => pair,
            Err(ClientError::NotRunning { .. }) => {
                if !out.send(Update::NotRunning) {
                    return;
                }
                continue;
            }
            Err(e) => {
                if !out.send(Update::ConnectFailed(e.to_string())) {
                    return;
                }
                continue;
            }
        };
        tracing::info!("connected to the daemon");
        if !out.send(Update::Connected) {
            return;
        }
        let ev_out = out.clone();
        let mut event_task = tokio::spawn(async move {
            while let Ok(Some(e)) = events.next_event().await {
                if !ev_out.send(Update::Event(e)) {
                    break;
                }
            }
        });
        let mut cmd = cmd;
        loop {
            tokio::select! {
                _ = &mut event_task => break,
                c = commands.recv() => match c {
                    None => return,
                    Some(Command::Connect) => {}
                    Some(Command::Call(request)) if is_slow(&request) => {
                        let dir = data_dir.clone();
                        let out = out.clone();
                        tokio::spawn(async move {
                            let result = match Client::connect(&dir).await {
                                Ok(mut c) => c.call(request.clone()).await,
                                Err(e) => Err(e),
                            };
                            out.send(Update::Reply { request, result: result.map_err(CallError::from) });
                        });
                    }
                    Some(Command::Call(request)) => {
                        let result = cmd.call(request.clone()).await;
                        let closed = matches!(result, Err(ClientError::Closed | ClientError::Io(_)));
                        if !out.send(Update::Reply { request, result: result.map_err(CallError::from) }) {
                            return;
                        }
                        if closed {
                            event_task.abort();
                            break;
                        }
                    }
                }
            }
        }
        if !out.send(Update::Disconnected) {
            return;
        }
    }
}

async fn connect(data_dir: &std::path::Path) -> Result<(Client, Client), ClientError> {
    let cmd = Client::connect(data_dir).await?;
    let mut events = Client::connect(data_dir).await?;
    events.subscribe().await?;
    Ok((cmd, events))
}
