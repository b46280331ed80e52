#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rustdoc::broken_intra_doc_links)]
#![deny(clippy::mod_module_files)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)
)]

mod client;
mod err;
mod http;
mod keys;
mod node;
mod onionshare;
mod owned;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::node::Node;

// ---------- public exports ----------
pub use crate::client::{CLIENT_BOOTSTRAP_TIMEOUT, CTorClient, FETCH_TIMEOUT, Fetch};
pub use crate::err::{Error, ErrorKind};
pub use crate::node::{NodeInfo, Role};
pub use crate::onionshare::{ONIONSHARE_START_TIMEOUT, OnionShare};

/// How a [`TestNet`] is laid out and how long it may take to become ready.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TestNetOptions {
    /// Number of directory authorities. Default: 3.
    pub authorities: usize,
    /// Number of exit relays. Default: 2.
    pub exits: usize,
    /// Number of middle relays. Default: 6.
    pub middles: usize,
    /// Wait for a consensus listing every relay as an HSDir before
    /// [`TestNet::start`] returns. Default: `true`.
    pub wait_ready: bool,
    /// Give up waiting for the consensus after this long. Default: 180 s.
    pub ready_timeout: Duration,
    /// Process that owns the network: every tor exits by itself (within
    /// ~15 s) once this process is gone. Default: the current process.
    pub owner_pid: u32,
    /// Path of the `tor` binary. Default: `tor` (found on `PATH`).
    pub tor_binary: PathBuf,
    /// Path of the `tor-gencert` binary. Default: `tor-gencert`.
    pub gencert_binary: PathBuf,
}

impl Default for TestNetOptions {
    fn default() -> Self {
        Self {
            authorities: 3,
            exits: 2,
            middles: 6,
            wait_ready: true,
            ready_timeout: Duration::from_secs(180),
            owner_pid: std::process::id(),
            tor_binary: PathBuf::from("tor"),
            gencert_binary: PathBuf::from("tor-gencert"),
        }
    }
}

/// A running private Tor network on 127.0.0.1.
///
/// Every tor is a foreground child process; dropping the `TestNet` kills and
/// reaps them all and deletes the temporary directory. As a safety net for a
/// network that is never dropped (e.g. the one in [`shared`]), every tor is
/// started with `__OwningControllerProcess <owner pid>` and exits by itself
/// when the owning process has died.
#[derive(Debug)]
pub struct TestNet {
    /// The nodes, authorities first. Dropped (killed) before `dir`.
    nodes: Vec<Node>,
    /// Consensus parameters and identities that Arti must be told about.
    arti: ArtiNetworkConfig,
    /// Holds every node's data directory, torrc and log.
    dir: tempfile::TempDir,
    /// How long [`TestNet::start`] took.
    startup: Duration,
    /// One `DirAuthority` line per authority, for every torrc.
    dirauth_lines: Vec<String>,
    /// The process whose death makes every tor exit.
    owner_pid: u32,
    /// The `tor` binary, for client nodes.
    tor_binary: PathBuf,
}

/// One directory authority as Arti needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorityEntry {
    /// The v3 authority identity (hex RSA fingerprint of the authority key).
    pub v3ident: String,
    /// RSA relay identity (hex).
    pub rsa_identity: String,
    /// Ed25519 relay identity (unpadded base64).
    pub ed_identity: String,
    /// `127.0.0.1:ORPORT`.
    pub orport: String,
}

/// Everything an Arti client needs to use this network instead of the real
/// Tor network. [`ArtiNetworkConfig::to_toml`] renders it as a
/// `TorClientConfig` TOML fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtiNetworkConfig {
    /// The directory authorities; each doubles as a fallback directory cache.
    pub authorities: Vec<AuthorityEntry>,
    /// `override_net_params` for Arti: fixed circuit build timeout (see
    /// TESTNET.md: the learned timeout kills long runs on loopback), a guard
    /// sample that fits the network, and a one-day HS time period so no
    /// time-period boundary falls inside a test run.
    pub override_net_params: Vec<(String, i32)>,
}

impl ArtiNetworkConfig {
    /// Render as a TOML fragment that deserializes into
    /// `arti_client::config::TorClientConfigBuilder`.
    pub fn to_toml(&self) -> String {
        use std::collections::BTreeMap;

        #[derive(serde::Serialize)]
        struct Fragment<'a> {
            tor_network: TorNetwork<'a>,
            override_net_params: BTreeMap<&'a str, i32>,
            path_rules: BTreeMap<&'static str, u8>,
            address_filter: BTreeMap<&'static str, bool>,
        }
        #[derive(serde::Serialize)]
        struct TorNetwork<'a> {
            authorities: Authorities<'a>,
            fallback_caches: Vec<Fallback<'a>>,
        }
        #[derive(serde::Serialize)]
        struct Authorities<'a> {
            v3idents: Vec<&'a str>,
        }
        #[derive(serde::Serialize)]
        struct Fallback<'a> {
            rsa_identity: &'a str,
            ed_identity: &'a str,
            orports: [&'a str; 1],
        }

        let fragment = Fragment {
            tor_network: TorNetwork {
                authorities: Authorities {
                    v3idents: self
                        .authorities
                        .iter()
                        .map(|a| a.v3ident.as_str())
                        .collect(),
                },
                fallback_caches: self
                    .authorities
                    .iter()
                    .map(|a| Fallback {
                        rsa_identity: &a.rsa_identity,
                        ed_identity: &a.ed_identity,
                        orports: [&a.orport],
                    })
                    .collect(),
            },
            override_net_params: self
                .override_net_params
                .iter()
                .map(|(k, v)| (k.as_str(), *v))
                .collect(),
            // Every relay is on 127.0.0.1: without these prefixes they all
            // count as one family and no path can be built.
            path_rules: [
                ("ipv4_subnet_family_prefix", 33),
                ("ipv6_subnet_family_prefix", 129),
            ]
            .into_iter()
            .collect(),
            address_filter: [("allow_onion_addrs", true)].into_iter().collect(),
        };
        let body = toml::to_string(&fragment).unwrap_or_else(|e| {
            // Only strings, integers and booleans: serialization cannot fail.
            format!("# cannot render the Arti configuration: {e}\n")
        });
        format!("# Arti configuration for a private umbra-testnet Tor network.\n{body}")
    }
}

impl TestNet {
    /// Generate keys, start every tor and (unless disabled) wait until a
    /// consensus usable by Arti exists.
    ///
    /// Ports are chosen free but are only bound by tor a moment later; if
    /// another process takes one in between, the tor that needed it exits
    /// at once saying so. That attempt is then thrown away and the whole
    /// network is started again on fresh ports and in a fresh directory (at
    /// most [`START_ATTEMPTS`] times; the reason is printed on stderr). Any
    /// other failure is returned as it is.
    pub fn start(opts: TestNetOptions) -> Result<TestNet, Error> {
        let started = Instant::now();
        if opts.authorities == 0 {
            return Err(Error::BadOptions("at least one authority is needed"));
        }
        let mut attempt = 1;
        loop {
            match Self::start_once(&opts) {
                Ok(mut net) => {
                    net.startup = started.elapsed();
                    return Ok(net);
                }
                Err(e) if attempt < START_ATTEMPTS && e.is_port_conflict() => {
                    tracing::warn!(attempt, error = %e, "test network lost a port race; restarting it");
                    #[allow(clippy::print_stderr)]
                    {
                        eprintln!(
                            "umbra-testnet: attempt {attempt} lost a port race, starting again on \
                             fresh ports: {e}"
                        );
                    }
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One attempt of [`TestNet::start`].
    fn start_once(opts: &TestNetOptions) -> Result<TestNet, Error> {
        let dir = tempfile::Builder::new()
            .prefix("umbra-testnet-")
            .tempdir()
            .map_err(|source| Error::Io {
                action: "create the temporary directory",
                path: std::env::temp_dir(),
                source,
            })?;

        let mut plans = Vec::new();
        let roles = std::iter::repeat_n(node::Role::Authority, opts.authorities)
            .chain(std::iter::repeat_n(Role::Exit, opts.exits))
            .chain(std::iter::repeat_n(Role::Middle, opts.middles));
        let ports = free_ports(3 * (opts.authorities + opts.exits + opts.middles))?;
        for (i, role) in roles.enumerate() {
            plans.push(node::Plan {
                nickname: format!("{}{i:02}", role.prefix()),
                role,
                orport: ports[3 * i],
                dirport: ports[3 * i + 1],
                controlport: ports[3 * i + 2],
                datadir: dir.path().join(format!("node{i:02}")),
            });
        }

        let identities = keys::generate_all(opts, &plans)?;
        let authorities: Vec<AuthorityEntry> = plans
            .iter()
            .zip(&identities)
            .filter(|(p, _)| p.role == node::Role::Authority)
            .map(|(p, id)| AuthorityEntry {
                v3ident: id.v3ident.clone().unwrap_or_default(),
                rsa_identity: id.rsa.clone(),
                ed_identity: id.ed.clone(),
                orport: format!("127.0.0.1:{}", p.orport),
            })
            .collect();

        let dirauth_lines: Vec<String> = plans
            .iter()
            .zip(&authorities)
            .map(|(p, a)| {
                format!(
                    "DirAuthority {} orport={} no-v2 v3ident={} 127.0.0.1:{} {}",
                    p.nickname, p.orport, a.v3ident, p.dirport, a.rsa_identity
                )
            })
            .collect();

        let mut net = TestNet {
            nodes: Vec::new(),
            arti: ArtiNetworkConfig {
                authorities,
                override_net_params: vec![
                    ("cbtdisabled".into(), 1),
                    ("cbtinitialtimeout".into(), 10_000),
                    ("guard-min-filtered-sample-size".into(), 3),
                    ("hsdir_interval".into(), 1440),
                ],
            },
            dir,
            startup: Duration::ZERO,
            dirauth_lines: dirauth_lines.clone(),
            owner_pid: opts.owner_pid,
            tor_binary: opts.tor_binary.clone(),
        };
        for plan in plans {
            // On error, `net` is dropped here and kills what was started.
            let node = Node::spawn(opts, plan, &dirauth_lines)?;
            net.nodes.push(node);
        }
        if opts.wait_ready {
            net.wait_ready(opts.ready_timeout)?;
        } else {
            // Without the wait, still catch a tor that could not bind its ports.
            for node in &mut net.nodes {
                node.check_alive()?;
            }
        }
        Ok(net)
    }

    /// Poll the first authority's microdescriptor consensus until it lists
    /// every relay with the flags onion services need and is signed by a
    /// majority of authorities.
    fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let dirport = self
            .nodes
            .first()
            .map(|n| n.info.dirport)
            .ok_or(Error::BadOptions("no authority"))?;
        let nicknames: Vec<String> = self.nodes.iter().map(|n| n.info.nickname.clone()).collect();
        loop {
            for node in &mut self.nodes {
                node.check_alive()?;
            }
            let last = match http::get(dirport, "/tor/status-vote/current/consensus-microdesc") {
                Ok(body) => match consensus_ready(&body, &nicknames, self.arti.authorities.len()) {
                    Ok(()) => return Ok(()),
                    Err(why) => why,
                },
                Err(e) => format!("no consensus yet ({e})"),
            };
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    waited: timeout,
                    last,
                    log_tail: self.log_tail(8),
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The Arti network configuration for this network.
    pub fn arti_config(&self) -> &ArtiNetworkConfig {
        &self.arti
    }

    /// The Arti network configuration as a `TorClientConfig` TOML fragment.
    pub fn arti_config_toml(&self) -> String {
        self.arti.to_toml()
    }

    /// Write [`TestNet::arti_config_toml`] into `path`.
    pub fn write_arti_config(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.arti_config_toml()).map_err(|source| Error::Io {
            action: "write the Arti configuration",
            path: path.to_owned(),
            source,
        })
    }

    /// The nodes of the network, authorities first.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.nodes.iter().map(|n| &n.info)
    }

    /// Process ids of every tor of this network.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.info.pid).collect()
    }

    /// The temporary directory holding all data directories and logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// How long [`TestNet::start`] took (keys, processes, consensus).
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// [`TestNet::c_client_within`] with [`CLIENT_BOOTSTRAP_TIMEOUT`].
    pub fn c_client(&self, name: &str) -> Result<CTorClient, Error> {
        self.c_client_within(name, CLIENT_BOOTSTRAP_TIMEOUT)
    }

    /// Start a C tor client node (not a relay) for this network and wait
    /// until it has bootstrapped to 100%, for at most `timeout`.
    ///
    /// `name` (letters, digits, `-`, `_`; unique per network) names its data
    /// directory `client-NAME` inside [`TestNet::dir`]. The client gets a
    /// SocksPort and a ControlPort (cookie authentication) on free ports of
    /// 127.0.0.1. Call it once the network is ready (the default of
    /// [`TestNet::start`]); it bootstraps in a few seconds then.
    pub fn c_client_within(&self, name: &str, timeout: Duration) -> Result<CTorClient, Error> {
        if !client::valid_name(name) {
            return Err(Error::BadOptions(
                "a client name is 1-32 letters, digits, '-' or '_'",
            ));
        }
        let data_dir = self.dir.path().join(format!("client-{name}"));
        if data_dir.exists() {
            return Err(Error::BadOptions("a client of that name already exists"));
        }
        let mut attempt = 1;
        loop {
            let data_dir = if attempt == 1 {
                data_dir.clone()
            } else {
                data_dir.with_file_name(format!("client-{name}-retry{attempt}"))
            };
            let ports = free_ports(2)?;
            let r = CTorClient::spawn(
                client::ClientPlan {
                    name,
                    data_dir,
                    socks_port: ports[0],
                    control_port: ports[1],
                    owner_pid: self.owner_pid,
                    tor_binary: &self.tor_binary,
                    dirauth_lines: &self.dirauth_lines,
                },
                timeout,
            );
            match r {
                Err(e) if attempt < START_ATTEMPTS && e.is_port_conflict() => {
                    tracing::warn!(attempt, error = %e, "C tor client lost a port race; retrying");
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// The last `lines` lines of every node's log, each prefixed by its
    /// nickname.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for n in &self.nodes {
            for line in n.log_tail(lines) {
                out.push_str(&n.info.nickname);
                out.push_str(": ");
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Signal every tor first, then reap them all (each `Node`'s own Drop
        // waits), so teardown takes one kill latency, not eleven.
        for n in &mut self.nodes {
            n.kill();
        }
        self.nodes.clear();
    }
}

/// Check a microdescriptor consensus: `Ok` when usable, else why not.
fn consensus_ready(body: &str, nicknames: &[String], n_auth: usize) -> Result<(), String> {
    const NEEDED: [&str; 6] = ["Running", "Valid", "HSDir", "Guard", "Fast", "V2Dir"];
    let sigs = body
        .lines()
        .filter(|l| l.starts_with("directory-signature "))
        .count();
    if sigs * 2 <= n_auth {
        return Err(format!("consensus has {sigs} of {n_auth} signatures"));
    }
    let mut good = std::collections::HashSet::new();
    let mut current: Option<&str> = None;
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("r ") {
            current = rest.split(' ').next();
        } else if let Some(flags) = line.strip_prefix("s ") {
            let flags: Vec<&str> = flags.split(' ').collect();
            if let Some(nick) = current.take()
                && NEEDED.iter().all(|f| flags.contains(f))
            {
                good.insert(nick.to_owned());
            }
        }
    }
    let missing: Vec<&str> = nicknames
        .iter()
        .filter(|n| !good.contains(n.as_str()))
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "consensus lacks usable relays: {}",
            missing.join(", ")
        ))
    }
}

/// How many times [`TestNet::start`] (and [`TestNet::c_client`]) start over
/// after losing a port race.
pub const START_ATTEMPTS: u32 = 3;

/// Reserve `n` distinct free TCP ports on 127.0.0.1.
///
/// Ports are drawn at random *below* the kernel's ephemeral range
/// (`/proc/sys/net/ipv4/ip_local_port_range`): the ephemeral range is where
/// every outgoing connection of every process (Arti's circuits, curl, other
/// test networks' relays) gets its local port, so a port chosen there can be
/// taken by an outgoing connection before tor binds it. Below it, only
/// another listener choosing the same number can collide, which
/// [`TestNet::start`] detects and recovers from. Each candidate is bound
/// (and held until all are chosen) to make sure it is free now.
fn free_ports(n: usize) -> Result<Vec<u16>, Error> {
    let (low, high) = listener_port_range();
    let mut held: Vec<TcpListener> = Vec::with_capacity(n);
    let mut tries = 0usize;
    while held.len() < n {
        tries += 1;
        if tries > 64 * n + 64 {
            // The range is crowded: fall back to kernel-chosen ports.
            let l = TcpListener::bind("127.0.0.1:0").map_err(Error::Ports)?;
            held.push(l);
            continue;
        }
        let port = random_port(low, high);
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(l);
        }
    }
    held.iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(Error::Ports))
        .collect()
}

/// The range test listeners draw from: from 10000 up to just below the
/// kernel's ephemeral range (Linux default 32768), never below 1024.
fn listener_port_range() -> (u16, u16) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let high = ephemeral_low.saturating_sub(1).max(2048);
    let low = 10_000u16.min(high / 2).max(1024);
    (low, high)
}

/// A port in `low..=high`, uniformly enough for picking test ports.
fn random_port(low: u16, high: u16) -> u16 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded randomly per process; mixing a counter gives a
    // fresh value per call. Not cryptographic, and need not be.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    let span = u64::from(high.saturating_sub(low)) + 1;
    // `h.finish() % span` < span <= 65536, so it fits after adding `low`.
    low.saturating_add(u16::try_from(h.finish() % span).unwrap_or(0))
}

/// The network shared by every test of one test binary, started on first
/// use with [`TestNetOptions::default`].
///
/// It lives in a `static` and is therefore never dropped. Its tor processes
/// are cleaned up by tor itself: each one runs with
/// `__OwningControllerProcess <pid of the test binary>` and exits within
/// ~15 s of the test binary's exit (normal, panic or kill -9). Its temporary
/// `umbra-testnet-*` directory is left behind in the system temp dir.
///
/// # Panics
///
/// Panics (failing the calling test) if the network cannot be started; the
/// message includes the tail of the tor logs.
#[allow(clippy::panic)]
pub fn shared() -> &'static TestNet {
    static NET: OnceLock<TestNet> = OnceLock::new();
    NET.get_or_init(|| match TestNet::start(TestNetOptions::default()) {
        Ok(net) => net,
        Err(e) => panic!("cannot start the shared test network: {e}"),
    })
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ready_needs_flags_and_signatures() {
        let nicks = vec!["a".to_string(), "b".to_string()];
        let body = "r a x\ns Fast Guard HSDir Running V2Dir Valid\nr b y\ns Running Valid\n\
                    directory-signature 1\ndirectory-signature 2\n";
        assert!(consensus_ready(body, &nicks, 3).unwrap_err().contains("b"));
        let body = body.replace("s Running Valid", "s Fast Guard HSDir Running V2Dir Valid");
        consensus_ready(&body, &nicks, 3).unwrap();
        assert!(consensus_ready(&body, &nicks, 4).is_err());
    }

    #[test]
    fn toml_mentions_everything() {
        let cfg = ArtiNetworkConfig {
            authorities: vec![AuthorityEntry {
                v3ident: "AA".into(),
                rsa_identity: "BB".into(),
                ed_identity: "CC".into(),
                orport: "127.0.0.1:5".into(),
            }],
            override_net_params: vec![("cbtdisabled".into(), 1)],
        };
        let t = cfg.to_toml();
        for needle in [
            "\"AA\"",
            "\"BB\"",
            "\"CC\"",
            "127.0.0.1:5",
            "cbtdisabled = 1",
        ] {
            assert!(t.contains(needle), "{needle} missing in {t}");
        }
    }

    #[test]
    fn free_ports_are_distinct_and_below_the_ephemeral_range() {
        let (low, high) = listener_port_range();
        assert!(1024 <= low && low < high, "{low}..{high}");
        let ports = free_ports(40).unwrap();
        let mut sorted = ports.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 40, "a port was handed out twice: {ports:?}");
        for p in ports {
            assert!((low..=high).contains(&p), "{p} outside {low}..={high}");
        }
    }

    /// A tor whose ORPort is taken exits at once; the error says why (tor
    /// prints it on stdout before its log file exists) and is recognised as
    /// a port race that `TestNet::start` recovers from.
    #[test]
    fn a_taken_port_is_reported_with_tor_own_words() {
        if std::process::Command::new("tor")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!("tor is not installed (apt-get install tor)");
        }
        let dir = tempfile::tempdir().unwrap();
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let ports = free_ports(2).unwrap();
        let datadir = dir.path().join("node00");
        keys::create_private_dir(&datadir).unwrap();
        let plan = node::Plan {
            nickname: "mid00".into(),
            role: Role::Middle,
            orport: taken.local_addr().unwrap().port(),
            dirport: ports[0],
            controlport: ports[1],
            datadir,
        };
        let line = "DirAuthority x orport=1 no-v2 v3ident=\
                    FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF 127.0.0.1:1 \
                    FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
            .to_owned();
        let mut n = Node::spawn(&TestNetOptions::default(), plan, &[line]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let err = loop {
            if let Err(e) = n.check_alive() {
                break e;
            }
            assert!(Instant::now() < deadline, "tor did not exit");
            std::thread::sleep(Duration::from_millis(50));
        };
        let text = err.to_string();
        assert!(text.contains("Address already in use"), "{text}");
        assert!(err.is_port_conflict(), "{text}");
        assert!(!Error::BadOptions("x").is_port_conflict());
    }
}
