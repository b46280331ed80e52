//! The Arti transport: one embedded `TorClient` per user, one onion service
//! on a fixed virtual port, connections to other users' `.onion` addresses.
//!
//! State and cache live under `<data dir>/arti/`. The onion service's
//! identity key (and therefore the user's address) either comes from the
//! caller and stays in memory ([`ServiceKey::InMemory`]: the client keeps it
//! in its encrypted store; Arti then uses an in-memory keystore for every
//! onion-service key), or lives in Arti's on-disk keystore under
//! `<data dir>/arti/state/keystore/` ([`ServiceKey::Keystore`], the
//! Handshaker). Arti checks the permissions of those directories
//! (`fs-mistrust`); only a test-network configuration may switch that off,
//! with the explicit [`ArtiOptions::dangerously_trust_everyone`] flag.
//!
//! Onion-service circuits use vanguards ([`VanguardsMode`], lite by
//! default), against guard-discovery attacks on the service.
//!
//! Progress (bootstrap percentage, onion service state) is published on a
//! `tokio::sync::watch` channel, see [`ArtiTransport::status`].
//!
//! The onion service's own status is **not** a readiness signal (it flips
//! between states on a fast test network, and a freshly published descriptor
//! takes a moment to be fetchable): readiness is a successful `connect`,
//! which therefore retries with backoff within [`RetryPolicy::total`].

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arti_client::config::onion_service::OnionServiceConfigBuilder;
use arti_client::config::{CfgPath, TorClientConfigBuilder};
use arti_client::{ErrorKind as ArtiKind, HasKind, TorClient};
use futures::{Stream, StreamExt};
use safelog::DisplayRedacted;
use tokio::sync::watch;
use tokio_util::compat::FuturesAsyncReadCompatExt;
use tor_cell::relaycell::msg::Connected;
use tor_hsservice::{RunningOnionService, StreamRequest};
use tor_proto::stream::IncomingStreamRequest;
use tor_rtcompat::PreferredRuntime;

/// Whether onion-service circuits negotiate congestion control (the
/// `hs-congestion-control` feature, on by default).
pub const HS_CONGESTION_CONTROL: bool = cfg!(feature = "hs-congestion-control");

mod service_key;
pub use service_key::{
    OnionServiceKey, SERVICE_KEY_LEN, remove_keystore as remove_keystore_dir, take_keystore_key,
};

use super::{
    BoxedStream, Error, ErrorKind, Failure, Listener, PeerAddress, RetryPolicy, Transport,
    TransportKind, retry_connect,
};

/// The virtual port of every Umbra onion service (the protocol's
/// [`umbra_proto::wire::PEER_PORT`]).
pub const DEFAULT_VIRTUAL_PORT: u16 = umbra_proto::wire::PEER_PORT;

/// Which Tor network to join.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ArtiNetwork {
    /// The real Tor network (the default for users).
    Tor,
    /// Another network (a private test network), described by a TOML
    /// fragment of Arti's `TorClientConfig` (authorities, fallback caches,
    /// `override_net_params`, ...), as produced by `umbra-testnet`.
    Custom {
        /// The TOML text.
        arti_toml: String,
    },
}

/// Which vanguards onion-service circuits use (Arti's `vanguards.mode`).
/// Vanguards pin the second (and, in full mode, third) hop of onion-service
/// circuits to small, slowly rotating relay sets, so an adversary who makes
/// the service build many circuits cannot walk back to its guard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VanguardsMode {
    /// Lite vanguards (a set of L2 relays), Arti's and C tor's default for
    /// clients; the default here.
    #[default]
    Lite,
    /// Full vanguards (L2 and L3 sets, persisted across restarts), as the
    /// `vanguards` add-on does for C tor onion services.
    Full,
    /// No vanguards (not recommended).
    Disabled,
}

impl VanguardsMode {
    /// The name used in configuration files (`lite`, `full`, `disabled`).
    pub fn as_str(self) -> &'static str {
        match self {
            VanguardsMode::Lite => "lite",
            VanguardsMode::Full => "full",
            VanguardsMode::Disabled => "disabled",
        }
    }

    fn to_arti(self) -> tor_guardmgr::VanguardMode {
        match self {
            VanguardsMode::Lite => tor_guardmgr::VanguardMode::Lite,
            VanguardsMode::Full => tor_guardmgr::VanguardMode::Full,
            VanguardsMode::Disabled => tor_guardmgr::VanguardMode::Disabled,
        }
    }

    fn from_arti(m: tor_guardmgr::VanguardMode) -> Option<Self> {
        match m {
            tor_guardmgr::VanguardMode::Lite => Some(VanguardsMode::Lite),
            tor_guardmgr::VanguardMode::Full => Some(VanguardsMode::Full),
            tor_guardmgr::VanguardMode::Disabled => Some(VanguardsMode::Disabled),
            _ => None,
        }
    }
}

impl std::fmt::Display for VanguardsMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where the onion service's identity key comes from.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum ServiceKey {
    /// Arti's on-disk keystore under `<data_dir>/arti/state/keystore/`
    /// (generated there on first launch, plain files). The Handshaker's
    /// choice; the default.
    #[default]
    Keystore,
    /// Handed in by the caller (the client keeps it in its encrypted store).
    /// Arti's primary keystore is then in memory: the identity key and every
    /// key derived from it (blinded identities, descriptor signing and
    /// introduction point keys) never reach the disk.
    InMemory(Arc<OnionServiceKey>),
}

/// Everything needed to start an [`ArtiTransport`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ArtiOptions {
    /// Which network to join. Default: [`ArtiNetwork::Tor`].
    pub network: ArtiNetwork,
    /// The user's data directory; Arti's state (including the onion service
    /// key), cache and keystore go into `<data_dir>/arti/`.
    pub data_dir: PathBuf,
    /// Virtual port of the onion service. Default: [`DEFAULT_VIRTUAL_PORT`].
    pub virtual_port: u16,
    /// Nickname of the onion service inside Arti's keystore. Default: `umbra`.
    pub nickname: String,
    /// Give up joining the network after this long. Default: 300 s.
    pub bootstrap_timeout: Duration,
    /// How `connect` retries. Default: [`RetryPolicy::default`].
    pub retry: RetryPolicy,
    /// Build new circuits for every outgoing connection instead of reusing
    /// recent ones. Default: `false`. Costs a rendezvous (~1 s) per
    /// connection; the soak test uses it to exercise circuit building.
    pub isolate_every_connection: bool,
    /// Disable Arti's permission checks of the data directory. Default:
    /// `false`. Only for test networks (temporary directories fail the
    /// checks); refused together with [`ArtiNetwork::Tor`].
    pub dangerously_trust_everyone: bool,
    /// Vanguards for onion-service circuits. Default: [`VanguardsMode::Lite`].
    pub vanguards: VanguardsMode,
    /// Where the onion service's identity key comes from. Default:
    /// [`ServiceKey::Keystore`].
    pub service_key: ServiceKey,
    /// Streams one rendezvous circuit may have open at once; a circuit
    /// that opens more is torn down (Arti's
    /// `max_concurrent_streams_per_circuit`). Default: 65535 (Arti's).
    pub max_streams_per_circuit: u32,
    /// `(rate per second, burst)` of introductions the introduction points
    /// are asked to pass (Arti's `rate_limit_at_intro`, a `DOS_PARAMS`
    /// extension). Default: `None` (the introduction point decides).
    pub intro_rate_limit: Option<(u32, u32)>,
}

impl ArtiOptions {
    /// Options with defaults for `network` and `data_dir`.
    pub fn new(network: ArtiNetwork, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            network,
            data_dir: data_dir.into(),
            virtual_port: DEFAULT_VIRTUAL_PORT,
            nickname: "umbra".into(),
            bootstrap_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            isolate_every_connection: false,
            dangerously_trust_everyone: false,
            vanguards: VanguardsMode::default(),
            service_key: ServiceKey::default(),
            max_streams_per_circuit: 65535,
            intro_rate_limit: None,
        }
    }

    /// Options for a private local test network (`umbra-testnet`): Arti's
    /// permission checks are off (temporary directories fail them), the
    /// bootstrap timeout is 60 s, and `connect` retries for up to 120 s while
    /// a freshly launched onion service's descriptor appears.
    pub fn for_test_network(arti_toml: String, data_dir: impl Into<PathBuf>) -> Self {
        let mut o = Self::new(ArtiNetwork::Custom { arti_toml }, data_dir);
        o.dangerously_trust_everyone = true;
        o.bootstrap_timeout = Duration::from_secs(60);
        o.retry = RetryPolicy {
            total: Duration::from_secs(120),
            initial: Duration::from_millis(250),
            max: Duration::from_secs(3),
        };
        o
    }

    /// Build Arti's client configuration.
    pub fn client_config(&self) -> Result<arti_client::TorClientConfig, Error> {
        let mut b: TorClientConfigBuilder = match &self.network {
            ArtiNetwork::Tor => {
                if self.dangerously_trust_everyone {
                    return Err(Error::Config {
                        reason: "dangerously_trust_everyone is only allowed on a local test \
                                 network"
                            .into(),
                    });
                }
                TorClientConfigBuilder::default()
            }
            ArtiNetwork::Custom { arti_toml } => {
                toml::from_str(arti_toml).map_err(|e| Error::Config {
                    reason: format!("cannot parse the Arti network configuration: {e}"),
                })?
            }
        };
        let arti_dir = self.data_dir.join("arti");
        b.storage()
            .state_dir(CfgPath::new_literal(arti_dir.join("state")))
            .cache_dir(CfgPath::new_literal(arti_dir.join("cache")));
        if self.dangerously_trust_everyone {
            b.storage().permissions().dangerously_trust_everyone();
        }
        b.address_filter().allow_onion_addrs(true);
        b.vanguards().mode(tor_config::ExplicitOrAuto::Explicit(
            self.vanguards.to_arti(),
        ));
        if matches!(self.service_key, ServiceKey::InMemory(_)) {
            b.storage()
                .keystore()
                .primary()
                .kind(tor_config::ExplicitOrAuto::Explicit(
                    tor_keymgr::config::ArtiKeystoreKind::Ephemeral,
                ));
        }
        b.build().map_err(|e| Error::Config {
            reason: format!("invalid Arti configuration: {e}"),
        })
    }
}

/// State of our onion service, as reported by Arti.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceState {
    /// [`Transport::listen`] has not been called.
    NotLaunched,
    /// Establishing introduction points and publishing the descriptor.
    Bootstrapping,
    /// Reachable.
    Running,
    /// Reachable, with problems.
    DegradedReachable,
    /// Possibly unreachable for now.
    DegradedUnreachable,
    /// Recovering from a problem.
    Recovering,
    /// Failed; needs a restart.
    Broken,
    /// Shut down.
    Shutdown,
    /// A state this version does not know.
    Unknown,
}

impl From<tor_hsservice::status::State> for ServiceState {
    fn from(s: tor_hsservice::status::State) -> Self {
        use tor_hsservice::status::State as S;
        match s {
            S::Shutdown => ServiceState::Shutdown,
            S::Bootstrapping => ServiceState::Bootstrapping,
            S::DegradedReachable => ServiceState::DegradedReachable,
            S::DegradedUnreachable => ServiceState::DegradedUnreachable,
            S::Running => ServiceState::Running,
            S::Recovering => ServiceState::Recovering,
            S::Broken => ServiceState::Broken,
            _ => ServiceState::Unknown,
        }
    }
}

/// A snapshot of the transport's progress, for progress bars and
/// `umbra status`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TransportStatus {
    /// Bootstrap progress, 0–100.
    pub bootstrap_percent: u8,
    /// Can we build circuits for traffic?
    pub ready_for_traffic: bool,
    /// Why bootstrapping is stuck, if it is.
    pub blocked: Option<String>,
    /// State of our onion service.
    pub service: ServiceState,
}

impl Default for TransportStatus {
    fn default() -> Self {
        Self {
            bootstrap_percent: 0,
            ready_for_traffic: false,
            blocked: None,
            service: ServiceState::NotLaunched,
        }
    }
}

/// The production transport: an embedded Arti client.
pub struct ArtiTransport {
    /// The Tor client shared by the service and outgoing connections.
    client: Arc<TorClient<PreferredRuntime>>,
    /// Port, nickname, retry policy.
    opts: ArtiOptions,
    /// Publishes [`TransportStatus`] updates.
    status: watch::Sender<TransportStatus>,
    /// How long [`ArtiTransport::bootstrap`] took.
    bootstrap_time: Duration,
    /// The vanguards mode of the client configuration in use.
    vanguards: VanguardsMode,
    /// Arti's permission checker (for its state directory).
    mistrust: fs_mistrust::Mistrust,
    /// Has the in-memory identity key been handed to Arti's keystore?
    hsid_given: AtomicBool,
}

impl std::fmt::Debug for ArtiTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtiTransport")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl ArtiTransport {
    /// Create the Tor client and join the network (bounded by
    /// [`ArtiOptions::bootstrap_timeout`]). Progress is visible on
    /// [`ArtiTransport::status`] only after this returns; use
    /// [`ArtiTransport::bootstrap_with_status`] to watch it live.
    pub async fn bootstrap(opts: ArtiOptions) -> Result<Self, Error> {
        Self::bootstrap_with_status(opts, watch::Sender::new(TransportStatus::default())).await
    }

    /// Like [`ArtiTransport::bootstrap`], publishing progress on `status`
    /// (subscribe before calling).
    pub async fn bootstrap_with_status(
        opts: ArtiOptions,
        status: watch::Sender<TransportStatus>,
    ) -> Result<Self, Error> {
        let started = Instant::now();
        let config = opts.client_config()?;
        let vanguards = configured_vanguards(&config)?;
        let mistrust = config.fs_mistrust().clone();
        let runtime = PreferredRuntime::current().map_err(|e| Error::Config {
            reason: format!("no tokio runtime to run Arti on: {e}"),
        })?;
        let client = TorClient::with_runtime(runtime)
            .config(config)
            // A previous instance on the same data dir may still be
            // releasing its lock (e.g. a restart).
            .local_resource_timeout(arti_client::MAX_LOCAL_RESOURCE_TIMEOUT)
            .create_unbootstrapped_async()
            .await
            .map_err(|e| arti_err("create the Tor client", e))?;

        let mut events = client.bootstrap_events();
        let tx = status.clone();
        tokio::spawn(async move {
            while let Some(ev) = events.next().await {
                let percent = (ev.as_frac().clamp(0.0, 1.0) * 100.0).round();
                tx.send_modify(|s| {
                    // `percent` is clamped to 0..=100 above.
                    s.bootstrap_percent = percent as u8;
                    s.ready_for_traffic = ev.ready_for_traffic();
                    s.blocked = ev.blocked().map(|b| b.to_string());
                });
            }
        });

        match tokio::time::timeout(opts.bootstrap_timeout, client.bootstrap()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(arti_err("join the Tor network", e)),
            Err(_) => {
                return Err(Error::BootstrapTimeout {
                    waited: opts.bootstrap_timeout,
                });
            }
        }
        status.send_modify(|s| {
            s.bootstrap_percent = 100;
            s.ready_for_traffic = true;
            s.blocked = None;
        });
        Ok(Self {
            client,
            opts,
            status,
            bootstrap_time: started.elapsed(),
            vanguards,
            mistrust,
            hsid_given: AtomicBool::new(false),
        })
    }

    /// Subscribe to progress updates.
    pub fn status(&self) -> watch::Receiver<TransportStatus> {
        self.status.subscribe()
    }

    /// How long [`ArtiTransport::bootstrap`] took.
    pub fn bootstrap_time(&self) -> Duration {
        self.bootstrap_time
    }

    /// The vanguards mode of the Tor client (as read back from the
    /// configuration Arti was given).
    pub fn vanguards(&self) -> VanguardsMode {
        self.vanguards
    }

    /// Replace the retry policy of `connect`.
    pub fn set_retry(&mut self, retry: RetryPolicy) {
        self.opts.retry = retry;
    }
}

/// The vanguards mode a built Arti configuration carries (`None` if Arti
/// reports a mode this version does not know).
pub fn configured_vanguards(config: &arti_client::TorClientConfig) -> Result<VanguardsMode, Error> {
    let vc: &tor_guardmgr::VanguardConfig = config.as_ref();
    VanguardsMode::from_arti(vc.mode()).ok_or_else(|| Error::Config {
        reason: format!("unknown vanguards mode {}", vc.mode()),
    })
}

/// Wrap an Arti error.
fn arti_err(action: &'static str, e: arti_client::Error) -> Error {
    Error::Arti {
        action,
        source: Box::new(e),
    }
}

/// Map Arti's error kinds onto ours.
pub(crate) fn classify(e: &arti_client::Error) -> ErrorKind {
    judge(e).kind
}

/// Should a failed connect be retried, and how is it reported?
fn judge(e: &arti_client::Error) -> Failure {
    let (retry, kind, reason) = match e.kind() {
        ArtiKind::OnionServiceNotFound => (
            true,
            ErrorKind::NotFound,
            "no onion service descriptor found for that address",
        ),
        ArtiKind::OnionServiceAddressInvalid | ArtiKind::InvalidStreamTarget => (
            false,
            ErrorKind::BadAddress,
            "invalid onion service address",
        ),
        ArtiKind::OnionServiceMissingClientAuth | ArtiKind::OnionServiceWrongClientAuth => (
            false,
            ErrorKind::Unreachable,
            "the onion service requires client authorization",
        ),
        ArtiKind::ForbiddenStreamTarget => (
            false,
            ErrorKind::Config,
            "connections to onion services are disabled",
        ),
        ArtiKind::RemoteConnectionRefused | ArtiKind::RemoteStreamReset => (
            true,
            ErrorKind::NotFound,
            "the onion service refused the connection",
        ),
        ArtiKind::LocalResourceAlreadyInUse
        | ArtiKind::FsPermissions
        | ArtiKind::PersistentStateAccessFailed
        | ArtiKind::PersistentStateCorrupted
        | ArtiKind::CacheAccessFailed
        | ArtiKind::CacheCorrupted
        | ArtiKind::KeystoreAccessFailed
        | ArtiKind::KeystoreCorrupted => (false, ErrorKind::LocalState, "local state unusable"),
        ArtiKind::InvalidConfig | ArtiKind::InvalidConfigTransition | ArtiKind::FeatureDisabled => {
            (false, ErrorKind::Config, "invalid configuration")
        }
        ArtiKind::ArtiShuttingDown | ArtiKind::ReactorShuttingDown => {
            (false, ErrorKind::Closed, "Tor client shutting down")
        }
        ArtiKind::BootstrapRequired | ArtiKind::TorAccessFailed | ArtiKind::TorNetworkTimeout => {
            (true, ErrorKind::Bootstrap, "no usable Tor circuits")
        }
        _ => (
            true,
            ErrorKind::Unreachable,
            "could not reach the onion service",
        ),
    };
    Failure {
        retry,
        kind,
        reason,
    }
}

/// How long [`Transport::listen`] waits for a previous instance of the same
/// onion service (same state directory and nickname) to release its lock.
pub const SERVICE_LOCK_WAIT: Duration = Duration::from_secs(30);

/// Runs `attempt` until it succeeds or fails with something else than
/// `is_locked`, or until `wait` has passed. Nothing announces the release of
/// Arti's state locks, so this polls, backing off from 50 ms to 1 s.
async fn wait_for_lock<T, E>(
    mut attempt: impl FnMut() -> Result<T, E>,
    is_locked: impl Fn(&E) -> bool,
    wait: Duration,
) -> Result<T, E> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = Duration::from_millis(50);
    let mut logged = false;
    loop {
        match attempt() {
            Err(e) if is_locked(&e) && tokio::time::Instant::now() + pause < deadline => {
                if !logged {
                    tracing::info!(
                        "the onion service's state is still locked by a previous instance; waiting"
                    );
                    logged = true;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            r => return r,
        }
    }
}

/// Incoming streams of our onion service.
pub struct ArtiListener {
    /// Keeps the onion service running; dropping it stops the service.
    service: Arc<RunningOnionService>,
    /// Stream requests from `handle_rend_requests`.
    requests: Pin<Box<dyn Stream<Item = StreamRequest> + Send>>,
    /// Our `.onion` address.
    address: PeerAddress,
    /// The only virtual port we accept.
    port: u16,
}

impl std::fmt::Debug for ArtiListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtiListener")
            .field("address", &self.address)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl ArtiListener {
    /// The running onion service (for status queries).
    pub fn service(&self) -> &Arc<RunningOnionService> {
        &self.service
    }
}

impl Transport for ArtiTransport {
    type Listener = ArtiListener;

    fn kind(&self) -> TransportKind {
        TransportKind::Onion
    }

    async fn listen(&self) -> Result<ArtiListener, Error> {
        let nickname: tor_hsservice::HsNickname =
            self.opts.nickname.parse().map_err(|e| Error::Config {
                reason: format!("invalid onion service nickname: {e}"),
            })?;
        let config =
            OnionServiceConfigBuilder::default()
                .nickname(nickname.clone())
                .max_concurrent_streams_per_circuit(self.opts.max_streams_per_circuit)
                .rate_limit_at_intro(self.opts.intro_rate_limit.map(|(rate, burst)| {
                    tor_hsservice::config::TokenBucketConfig::new(rate, burst)
                }))
                .build()
                .map_err(|e| Error::Launch {
                    source: Box::new(e),
                })?;
        let in_memory = match &self.opts.service_key {
            ServiceKey::Keystore => None,
            ServiceKey::InMemory(key) => Some(key.clone()),
        };
        if in_memory.is_some() && !self.hsid_given.load(Ordering::SeqCst) {
            self.purge_service_state(&nickname).await?;
        }
        // A previous onion service of the same nickname (e.g. of a Tor
        // client dropped a moment ago, in this process) keeps its state
        // directory locked until its background tasks have wound down.
        let launched = wait_for_lock(
            || match &in_memory {
                Some(key) if !self.hsid_given.load(Ordering::SeqCst) => {
                    let r = self
                        .client
                        .launch_onion_service_with_hsid(config.clone(), key.to_hsid_keypair())
                        .map(|o| o.map(|(svc, reqs)| (svc, reqs.boxed())));
                    // The key is in the keystore unless inserting it failed;
                    // a launch that failed on the state lock after the
                    // insertion is retried without inserting it again.
                    if r.as_ref()
                        .err()
                        .is_none_or(|e| e.kind() == ArtiKind::LocalResourceAlreadyInUse)
                    {
                        self.hsid_given.store(true, Ordering::SeqCst);
                    }
                    r
                }
                _ => self
                    .client
                    .launch_onion_service(config.clone())
                    .map(|o| o.map(|(svc, reqs)| (svc, reqs.boxed()))),
            },
            |e| e.kind() == ArtiKind::LocalResourceAlreadyInUse,
            SERVICE_LOCK_WAIT,
        )
        .await;
        let (service, rend_requests) = launched
            .map_err(|e| arti_err("launch the onion service", e))?
            .ok_or_else(|| Error::Config {
                reason: "the onion service is disabled in the configuration".into(),
            })?;
        let hsid = service.onion_address().ok_or_else(|| Error::Launch {
            source: "the onion service has no address (no identity key)".into(),
        })?;
        let address = PeerAddress::new(hsid.display_unredacted().to_string());

        let mut events = service.status_events();
        let tx = self.status.clone();
        tx.send_modify(|s| s.service = service.status().state().into());
        tokio::spawn(async move {
            while let Some(st) = events.next().await {
                tx.send_modify(|s| s.service = st.state().into());
            }
        });

        tracing::info!(port = self.opts.virtual_port, "onion service launched");
        Ok(ArtiListener {
            service,
            requests: Box::pin(tor_hsservice::handle_rend_requests(rend_requests)),
            address,
            port: self.opts.virtual_port,
        })
    }

    async fn connect(&self, addr: &PeerAddress) -> Result<BoxedStream, Error> {
        self.connect_with(addr, self.opts.isolate_every_connection)
            .await
    }

    async fn connect_isolated(&self, addr: &PeerAddress) -> Result<BoxedStream, Error> {
        self.connect_with(addr, true).await
    }
}

impl ArtiTransport {
    /// Delete what Arti keeps about onion service `nickname` in its state
    /// directory (`<state>/hss/<nickname>/`: introduction point records and
    /// replay logs). With an in-memory keystore the introduction point keys
    /// those records refer to died with the previous process; starting clean
    /// avoids Arti's "missing previous key" errors and leaves no record of
    /// which relays introduced us. Waits like `listen` for a previous
    /// instance's lock.
    async fn purge_service_state(&self, nickname: &tor_hsservice::HsNickname) -> Result<(), Error> {
        let state_dir = self.opts.data_dir.join("arti").join("state");
        let err = |source: tor_persist::Error| Error::ServiceKey {
            action: "clear the onion service's previous state",
            source: Box::new(source),
        };
        let dir =
            tor_persist::state_dir::StateDirectory::new(&state_dir, &self.mistrust).map_err(err)?;
        let handle = wait_for_lock(
            || dir.acquire_instance(nickname).map_err(Box::new),
            |e| e.kind() == ArtiKind::LocalResourceAlreadyInUse,
            SERVICE_LOCK_WAIT,
        )
        .await
        .map_err(|e| err(*e))?;
        handle.purge().map_err(err)
    }

    async fn connect_with(&self, addr: &PeerAddress, isolate: bool) -> Result<BoxedStream, Error> {
        let bad = |reason| Error::BadAddress {
            transport: "Tor",
            reason,
        };
        if !addr.is_onion() {
            return Err(bad(
                "expected an onion service address (direct IP:port needs network.kind = \"direct\")",
            ));
        }
        addr.as_str()
            .parse::<tor_hsservice::HsId>()
            .map_err(|_| bad("not a valid v3 onion service address"))?;
        let port = self.opts.virtual_port;
        let client = &self.client;
        let mut prefs = arti_client::StreamPrefs::new();
        if isolate {
            prefs.new_isolation_group();
        }
        let prefs = &prefs;
        retry_connect(
            &self.opts.retry,
            || async move {
                let stream = client
                    .connect_with_prefs((addr.as_str(), port), prefs)
                    .await?;
                Ok::<BoxedStream, arti_client::Error>(Box::new(stream.compat()))
            },
            judge,
        )
        .await
    }
}

impl Listener for ArtiListener {
    fn address(&self) -> &PeerAddress {
        &self.address
    }

    async fn accept(&mut self) -> Result<BoxedStream, Error> {
        loop {
            let req = self.requests.next().await.ok_or(Error::Closed)?;
            let wanted = match req.request() {
                IncomingStreamRequest::Begin(begin) => begin.port() == self.port,
                _ => false,
            };
            if !wanted {
                tracing::debug!("refusing a stream request for another port or type");
                let _ = req.shutdown_circuit();
                continue;
            }
            match req.accept(Connected::new_empty()).await {
                Ok(stream) => return Ok(Box::new(stream.compat())),
                Err(e) => {
                    tracing::debug!(error = %e, "failed to accept an onion service stream");
                }
            }
        }
    }
}

#[cfg(test)]
mod lock_wait_test {
    use super::*;

    #[derive(Debug, PartialEq)]
    enum Fail {
        Locked,
        Other,
    }

    /// Locked three times, then free: the fourth attempt succeeds.
    #[tokio::test(start_paused = true)]
    async fn waits_while_locked_then_succeeds() {
        let mut calls = 0;
        let r = wait_for_lock(
            || {
                calls += 1;
                if calls <= 3 {
                    Err(Fail::Locked)
                } else {
                    Ok(calls)
                }
            },
            |e| *e == Fail::Locked,
            SERVICE_LOCK_WAIT,
        )
        .await;
        assert_eq!(r, Ok(4));
    }

    /// Locked for ever: gives up within the bound, with the lock error.
    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_bound() {
        let start = tokio::time::Instant::now();
        let mut calls = 0u32;
        let r: Result<(), Fail> = wait_for_lock(
            || {
                calls += 1;
                Err(Fail::Locked)
            },
            |e| *e == Fail::Locked,
            SERVICE_LOCK_WAIT,
        )
        .await;
        assert_eq!(r, Err(Fail::Locked));
        assert!(start.elapsed() <= SERVICE_LOCK_WAIT);
        assert!(calls > 10, "polled {calls} times");
    }

    /// Any other error is returned at once.
    #[tokio::test(start_paused = true)]
    async fn other_errors_are_not_retried() {
        let mut calls = 0;
        let r: Result<(), Fail> = wait_for_lock(
            || {
                calls += 1;
                Err(Fail::Other)
            },
            |e| *e == Fail::Locked,
            SERVICE_LOCK_WAIT,
        )
        .await;
        assert_eq!((r, calls), (Err(Fail::Other), 1));
    }
}

#[cfg(test)]
mod config_test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tor_keymgr::config::ArtiKeystoreKind;

    /// The options reach Arti's configuration: the vanguards mode (lite by
    /// default), and an in-memory primary keystore exactly when the key is
    /// handed in.
    #[test]
    fn vanguards_and_keystore_reach_the_arti_config() {
        let d = std::env::temp_dir().join("umbra-arti-config-test");
        let mut o = ArtiOptions::new(ArtiNetwork::Tor, &d);
        let c = o.client_config().unwrap();
        assert_eq!(configured_vanguards(&c).unwrap(), VanguardsMode::Lite);
        assert_eq!(c.keystore().primary_kind(), Some(ArtiKeystoreKind::Native));
        for m in [
            VanguardsMode::Full,
            VanguardsMode::Disabled,
            VanguardsMode::Lite,
        ] {
            o.vanguards = m;
            assert_eq!(
                configured_vanguards(&o.client_config().unwrap()).unwrap(),
                m
            );
        }
        o.service_key = ServiceKey::InMemory(Arc::new(OnionServiceKey::generate().unwrap()));
        let c = o.client_config().unwrap();
        assert_eq!(
            c.keystore().primary_kind(),
            Some(ArtiKeystoreKind::Ephemeral)
        );
        // Nothing was created on disk by building the configuration.
        assert!(!d.exists());
        // The key never shows in Debug output of the options.
        let ServiceKey::InMemory(k) = &o.service_key else {
            unreachable!()
        };
        let dbg = format!("{o:?}");
        assert!(!dbg.contains(&k.onion_address().as_str()[..20]), "{dbg}");
        assert!(dbg.contains("[scrubbed]"), "{dbg}");
    }
}
