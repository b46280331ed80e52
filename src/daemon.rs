//! `umbra up`: assembles the daemon from its parts — the unlocked store, the
//! transport (Arti onion service, or direct TCP in test mode), the
//! Handshaker client, the [`node`](crate::node) and the
//! [control socket](crate::control) — and runs it until a signal or a
//! `shutdown` command.
//!
//! One daemon per data directory: an exclusive lock on `<data_dir>/daemon.lock`
//! is held for the daemon's lifetime (the OS drops it if the process dies,
//! so a crash never leaves a stale lock).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::net::UnixListener;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, NetworkKind};
use crate::control::proto::TorView;
use crate::control::server::{self, Context, HANDSHAKER_SETTING};
use crate::error::{ErrorKind, HasKind};
use crate::handshaker_api::binding::BindingKey;
use crate::handshaker_client::{Connector, Directory, HandshakerClient, TransportConnector};
use crate::identity::{Identity, Username};
use crate::node::{MailBatch, MailItem, Mailbox, MailboxError, Node, NodeConfig, NodeError};
use crate::store::Store;
use crate::transport::RetryPolicy;
use crate::transport::arti::{ArtiTransport, ServiceState, TransportStatus, VanguardsMode};
use crate::transport::tcp::TcpTransport;

mod onion_key;
pub use onion_key::{OnionKeySource, onion_service_key, use_stored_onion_key};

/// File name of the daemon lock inside the data directory.
pub const LOCK_NAME: &str = "daemon.lock";

/// Errors that stop the daemon from starting or running.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// Another daemon holds the data directory.
    #[error("another Umbra daemon is already running for this data directory")]
    AlreadyRunning,
    /// The store has no identity.
    #[error("the store has no identity yet")]
    NoIdentity,
    /// The configuration is unusable.
    #[error("configuration: {0}")]
    Config(String),
    /// A local file operation failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// The transport (Tor) failed.
    #[error(transparent)]
    Transport(#[from] crate::transport::Error),
    /// The node failed to start.
    #[error(transparent)]
    Node(#[from] NodeError),
}

impl HasKind for DaemonError {
    fn kind(&self) -> ErrorKind {
        match self {
            DaemonError::AlreadyRunning => ErrorKind::Io,
            DaemonError::NoIdentity => ErrorKind::InvalidInput,
            DaemonError::Config(_) => ErrorKind::InvalidInput,
            DaemonError::Io { .. } | DaemonError::Transport(_) => ErrorKind::Io,
            DaemonError::Store(_) => ErrorKind::Io,
            DaemonError::Node(e) => e.kind(),
        }
    }
}

/// How long a graceful shutdown may take before the daemon stops anyway.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What the daemon reports while starting (for progress bars).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    /// Tor bootstrap at this percentage.
    Bootstrap(u8),
    /// Tor is up; launching the onion service.
    Launching,
    /// Serving; the control socket is at `socket`.
    Ready {
        /// The control socket.
        socket: PathBuf,
    },
    /// Shutting down.
    Stopping,
}

/// How to run the daemon.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    /// The configuration (network, Handshaker, limits).
    pub config: Config,
    /// The data directory (already holding the unlocked store).
    pub data_dir: PathBuf,
    /// Node timers and limits.
    pub node: NodeConfig,
}

/// The node's [`Mailbox`] over the Handshaker in use.
struct DirectoryMailbox {
    dir: Arc<Directory>,
    identity: Arc<Identity>,
    ids: Mutex<MailIds>,
}

#[derive(Default)]
struct MailIds {
    next: u64,
    by_remote: std::collections::HashMap<String, u64>,
    by_local: std::collections::HashMap<u64, String>,
    ack_token: Option<String>,
}

fn unavailable(e: impl std::fmt::Display) -> MailboxError {
    MailboxError::Unavailable {
        reason: e.to_string(),
    }
}

impl DirectoryMailbox {
    fn client(&self) -> Result<HandshakerClient, MailboxError> {
        self.dir.current().ok_or_else(|| MailboxError::Unavailable {
            reason: "no Handshaker configured".into(),
        })
    }

    fn ids(&self) -> std::sync::MutexGuard<'_, MailIds> {
        self.ids.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Mailbox for DirectoryMailbox {
    fn deposit<'a>(
        &'a self,
        to_username: &'a str,
        envelope: String,
    ) -> BoxFuture<'a, Result<(), MailboxError>> {
        Box::pin(async move {
            let to = Username::parse(to_username).map_err(unavailable)?;
            self.client()?
                .deposit(&to, &envelope)
                .await
                .map(|_| ())
                .map_err(unavailable)
        })
    }

    fn fetch<'a>(
        &'a self,
        _my_username: &'a str,
    ) -> BoxFuture<'a, Result<MailBatch, MailboxError>> {
        Box::pin(async move {
            let fetched = self
                .client()?
                .fetch(&self.identity)
                .await
                .map_err(unavailable)?;
            let mut ids = self.ids();
            ids.ack_token = Some(fetched.ack_token);
            let items = fetched
                .items
                .into_iter()
                .map(|item| {
                    let id = match ids.by_remote.get(&item.id) {
                        Some(id) => *id,
                        None => {
                            ids.next += 1;
                            let id = ids.next;
                            ids.by_remote.insert(item.id.clone(), id);
                            ids.by_local.insert(id, item.id);
                            id
                        }
                    };
                    MailItem {
                        id,
                        envelope: item.message,
                    }
                })
                .collect();
            Ok(MailBatch {
                items,
                binding: fetched.binding,
            })
        })
    }

    fn ack<'a>(
        &'a self,
        _my_username: &'a str,
        id: u64,
    ) -> BoxFuture<'a, Result<(), MailboxError>> {
        Box::pin(async move {
            let (remote, token) = {
                let ids = self.ids();
                (ids.by_local.get(&id).cloned(), ids.ack_token.clone())
            };
            let (Some(remote), Some(token)) = (remote, token) else {
                return Ok(());
            };
            self.client()?
                .ack(
                    self.identity.username(),
                    &token,
                    std::slice::from_ref(&remote),
                )
                .await
                .map_err(unavailable)?;
            let mut ids = self.ids();
            ids.by_local.remove(&id);
            ids.by_remote.remove(&remote);
            Ok(())
        })
    }

    fn address(&self) -> Option<String> {
        self.dir.current().map(|c| c.address().as_str().to_owned())
    }

    fn binding_key(&self) -> BoxFuture<'_, Result<Option<BindingKey>, MailboxError>> {
        Box::pin(async move {
            let info = self.client()?.info().await.map_err(unavailable)?;
            info.binding_key
                .map(|k| BindingKey::from_hex(&k).map_err(unavailable))
                .transpose()
        })
    }
}

/// Holds `<data_dir>/daemon.lock` while alive.
#[derive(Debug)]
pub struct DaemonLock {
    _file: std::fs::File,
}

impl DaemonLock {
    /// Takes the lock, or fails with [`DaemonError::AlreadyRunning`].
    pub fn acquire(data_dir: &Path) -> Result<Self, DaemonError> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(data_dir.join(LOCK_NAME))
            .map_err(|source| DaemonError::Io {
                action: "open the daemon lock file",
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(DaemonLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(DaemonError::AlreadyRunning),
            Err(std::fs::TryLockError::Error(source)) => Err(DaemonError::Io {
                action: "lock the data directory",
                source,
            }),
        }
    }
}

fn tor_view(network: &str, vanguards: VanguardsMode, s: &TransportStatus) -> TorView {
    let onion_service = match s.service {
        ServiceState::NotLaunched => "starting",
        ServiceState::Bootstrapping => "bootstrapping",
        ServiceState::Running => "running",
        ServiceState::DegradedReachable
        | ServiceState::DegradedUnreachable
        | ServiceState::Recovering => "degraded",
        ServiceState::Broken => "broken",
        ServiceState::Shutdown => "stopped",
        _ => "unknown",
    };
    let summary = if !s.ready_for_traffic {
        match &s.blocked {
            Some(b) => format!("joining the Tor network ({}%): {b}", s.bootstrap_percent),
            None => format!("joining the Tor network ({}%)", s.bootstrap_percent),
        }
    } else {
        format!("connected to Tor; onion service {onion_service}")
    };
    TorView {
        network: network.to_owned(),
        bootstrap_percent: s.bootstrap_percent,
        ready: s.ready_for_traffic,
        onion_service: onion_service.to_owned(),
        summary,
        vanguards: vanguards.as_str().to_owned(),
    }
}

/// Runs the daemon on an unlocked `store` until `stop` resolves, a
/// `shutdown` command arrives, or a fatal error. `lock` proves this process
/// owns the data directory.
pub async fn run(
    opts: DaemonOptions,
    store: Store,
    _lock: &DaemonLock,
    progress: impl Fn(Progress) + Send + Sync + 'static,
    stop: impl Future<Output = ()> + Send,
) -> Result<(), DaemonError> {
    let own = store.identity()?.ok_or(DaemonError::NoIdentity)?;
    let identity = Arc::new(
        Identity::from_secret_bytes(&own.secret_cert)
            .map_err(|e| DaemonError::Config(format!("the stored identity is unusable: {e}")))?,
    );
    let saved_handshaker = store.setting(HANDSHAKER_SETTING)?;
    let progress = Arc::new(progress);
    let shutdown = CancellationToken::new();
    let cfg = &opts.config;

    // Transport.
    let (tor_tx, tor_rx) = watch::channel(TorView {
        network: String::new(),
        bootstrap_percent: 0,
        ready: false,
        onion_service: "starting".into(),
        summary: "starting".into(),
        vanguards: String::new(),
    });
    let mut arti: Option<Arc<ArtiTransport>> = None;
    let mut tcp: Option<TcpTransport> = None;
    match cfg.network.kind {
        NetworkKind::Direct => {
            let bind = cfg.network.direct_listen.ok_or_else(|| {
                DaemonError::Config(
                    "network.direct_listen is required with kind = \"direct\"".into(),
                )
            })?;
            tcp = Some(TcpTransport::new(bind).with_retry(RetryPolicy {
                total: std::time::Duration::from_secs(cfg.limits.connect_timeout_secs),
                ..RetryPolicy::default()
            }));
            tor_tx.send_replace(TorView {
                network: "direct".into(),
                bootstrap_percent: 100,
                ready: true,
                onion_service: "not_applicable".into(),
                summary: "direct TCP mode (NOT anonymous)".into(),
                vanguards: String::new(),
            });
        }
        NetworkKind::Tor | NetworkKind::Local => {
            let network = if cfg.network.kind == NetworkKind::Tor {
                "tor"
            } else {
                "test"
            };
            let mut o = cfg
                .arti_options()
                .map_err(|e| DaemonError::Config(e.to_string()))?
                .ok_or_else(|| DaemonError::Config("no Arti options".into()))?;
            o.data_dir = opts.data_dir.clone();
            // The onion service key lives in the encrypted store (moved
            // there from Arti's keystore on the first start of this
            // version) and reaches Arti only in memory.
            let source = use_stored_onion_key(&store, &mut o)?;
            tracing::debug!(?source, "onion service key ready");
            let vanguards = o.vanguards;
            let status = watch::Sender::new(TransportStatus::default());
            let mut rx = status.subscribe();
            let p = progress.clone();
            let tx = tor_tx.clone();
            let stop_watch = shutdown.clone();
            tokio::spawn(async move {
                let mut last = None;
                loop {
                    let s = rx.borrow_and_update().clone();
                    if last != Some(s.bootstrap_percent) && !s.ready_for_traffic {
                        p(Progress::Bootstrap(s.bootstrap_percent));
                        last = Some(s.bootstrap_percent);
                    }
                    tx.send_if_modified(|v| {
                        let n = tor_view(network, vanguards, &s);
                        let changed = *v != n;
                        *v = n;
                        changed
                    });
                    tokio::select! {
                        () = stop_watch.cancelled() => return,
                        r = rx.changed() => if r.is_err() { return },
                    }
                }
            });
            let t = ArtiTransport::bootstrap_with_status(o, status).await?;
            progress(Progress::Launching);
            arti = Some(Arc::new(t));
        }
    }

    // Handshaker.
    let onion_connector: Option<Arc<dyn Connector>> = arti
        .clone()
        .map(|a| Arc::new(TransportConnector(a)) as Arc<dyn Connector>);
    let directory = Arc::new(Directory::new(onion_connector));
    if let Some(addr) = saved_handshaker.or_else(|| cfg.handshaker.address.clone()) {
        match directory.client_for(&addr) {
            Ok(c) => directory.set(c),
            Err(e) => tracing::warn!(error = %e, "the configured Handshaker is unusable"),
        }
    }
    let mailbox: Arc<dyn Mailbox> = Arc::new(DirectoryMailbox {
        dir: directory.clone(),
        identity: identity.clone(),
        ids: Mutex::new(MailIds::default()),
    });

    // Node.
    let node = match (arti, tcp) {
        (Some(a), _) => Node::start(opts.node.clone(), store, a, Some(mailbox)).await?,
        (None, Some(t)) => Node::start(opts.node.clone(), store, t, Some(mailbox)).await?,
        (None, None) => return Err(DaemonError::Config("no transport".into())),
    };

    // Control socket.
    let socket = crate::control::socket_path(&opts.data_dir);
    match std::fs::remove_file(&socket) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(DaemonError::Io {
                action: "remove the stale control socket",
                source,
            });
        }
    }
    let listener = UnixListener::bind(&socket).map_err(|source| DaemonError::Io {
        action: "create the control socket",
        source,
    })?;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| DaemonError::Io {
                action: "restrict the control socket to its owner",
                source,
            },
        )?;
    }
    let (events, _) = broadcast::channel(4096);
    let ctx = Arc::new(Context {
        node: node.clone(),
        identity,
        directory,
        tor: tor_rx.clone(),
        events: events.clone(),
        shutdown: shutdown.clone(),
        started_at: crate::time::now_secs(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(server::forward_events(node.clone(), events.clone()));
    {
        let mut rx = tor_rx;
        let events = events.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    r = rx.changed() => if r.is_err() { return },
                }
                let v = rx.borrow_and_update().clone();
                let _ = events.send(crate::control::proto::Event::Tor(v));
            }
        });
    }
    tasks.spawn(server::serve(listener, ctx));
    progress(Progress::Ready {
        socket: socket.clone(),
    });
    tracing::info!("daemon ready");

    tokio::select! {
        () = stop => {}
        () = shutdown.cancelled() => {}
    }
    progress(Progress::Stopping);
    shutdown.cancel();
    // Goodbyes are best effort: a peer or network that stalls must not keep
    // the process alive (the store is consistent at every await point).
    if tokio::time::timeout(SHUTDOWN_GRACE, node.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections did not close in time; stopping anyway");
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    let _ = std::fs::remove_file(&socket);
    tracing::info!("daemon stopped");
    Ok(())
}
