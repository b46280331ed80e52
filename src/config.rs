//! Client configuration (`umbra.toml`).
//!
//! Every field has a default; an empty file is a valid configuration that
//! joins the real Tor network. Unknown fields are errors, so a typo never
//! silently falls back to a default. `config/umbra.example.toml` documents
//! every field and is checked by a test to parse and to equal the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::transport::RetryPolicy;
use crate::transport::arti::{ArtiNetwork, ArtiOptions, DEFAULT_VIRTUAL_PORT, VanguardsMode};

/// The example configuration shipped in `config/umbra.example.toml`.
pub const EXAMPLE_CONFIG: &str = include_str!("../config/umbra.example.toml");

/// The crate's one error classification (configuration errors are `Io` or
/// `Config`).
pub use crate::error::ErrorKind;

/// A configuration error. Messages name the offending field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Could not read a file.
    #[error("cannot read {what} {}", path.display())]
    Read {
        /// What the file is.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML for this schema (unknown field, wrong type, ...).
    #[error(
        "invalid configuration file{}",
        path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default()
    )]
    Parse {
        /// The file, if the text came from one.
        path: Option<PathBuf>,
        /// What toml found (names the line and the field).
        #[source]
        source: toml::de::Error,
    },
    /// A value is invalid.
    #[error("invalid configuration: `{field}` {reason}")]
    Invalid {
        /// The field, e.g. `network.local_network`.
        field: &'static str,
        /// What is wrong and how to fix it.
        reason: &'static str,
    },
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Read { .. } => ErrorKind::Io,
            Error::Parse { .. } | Error::Invalid { .. } => ErrorKind::Config,
        }
    }
}

impl crate::error::HasKind for Error {
    fn kind(&self) -> ErrorKind {
        Error::kind(self)
    }
}

/// The whole client configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct Config {
    /// Which network to use and how.
    pub network: NetworkConfig,
    /// Where data lives.
    pub storage: StorageConfig,
    /// The handshaker (username directory and request mailbox).
    pub handshaker: HandshakerConfig,
    /// Timeouts and size limits.
    pub limits: LimitsConfig,
    /// What files this client accepts and where they go.
    pub files: FilesConfig,
    /// What this client tells contacts about you.
    pub privacy: PrivacyConfig,
}

/// `[privacy]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct PrivacyConfig {
    /// Tell contacts when you have read their messages (their `[read]`
    /// mark). Off, they only see `[delivered]`. Default: true.
    pub read_receipts: bool,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            read_receipts: true,
        }
    }
}

/// `[files]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct FilesConfig {
    /// Offers larger than this many MiB are refused at once. Default: 4096.
    pub max_size_mib: u64,
    /// Offers from contacts you marked verified, up to this many MiB, are
    /// accepted without asking; 0 = always ask. Default: 16.
    pub auto_accept_mib: u64,
    /// Save completed files here (decrypted). Default: none: they stay
    /// encrypted in the data directory until `umbra save-file`.
    pub downloads_dir: Option<PathBuf>,
    /// Onion streams per outgoing transfer: 1 = the session's stream; 2–8 =
    /// that many extra streams on separate circuits (PROTOCOL.md §14.3).
    /// Default: 2.
    pub streams: u8,
    /// Transfers smaller than this (MiB left to send) use the session's stream
    /// whatever `streams` says; 0 = lanes for every size. Default: 8.
    pub lanes_from_mib: u64,
}

impl Default for FilesConfig {
    fn default() -> Self {
        Self {
            max_size_mib: 4096,
            auto_accept_mib: 16,
            downloads_dir: None,
            streams: u8::try_from(crate::files::DEFAULT_STREAMS).unwrap_or(u8::MAX),
            lanes_from_mib: crate::files::DEFAULT_LANES_FROM >> 20,
        }
    }
}

impl Config {
    /// The node's settings from this configuration (PROTOCOL.md defaults
    /// for everything the configuration does not set).
    pub fn node_config(&self) -> crate::node::NodeConfig {
        crate::node::NodeConfig {
            files: self.files.policy(),
            max_inbound: usize::try_from(self.limits.max_connections).unwrap_or(usize::MAX),
            max_frame: usize::try_from(self.limits.max_frame_bytes).unwrap_or(usize::MAX),
            read_receipts: self.privacy.read_receipts,
            ..crate::node::NodeConfig::default()
        }
    }
}

impl FilesConfig {
    /// The node's receiver policy.
    pub fn policy(&self) -> crate::files::FilePolicy {
        crate::files::FilePolicy {
            max_size: self.max_size_mib.saturating_mul(1 << 20),
            auto_accept_max: self.auto_accept_mib.saturating_mul(1 << 20),
            downloads_dir: self.downloads_dir.clone(),
            streams: usize::from(self.streams.clamp(1, 8)),
            lanes_from: self.lanes_from_mib.saturating_mul(1 << 20),
            ..crate::files::FilePolicy::default()
        }
    }
}

/// Which network carries peer connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NetworkKind {
    /// The real Tor network through the embedded Arti client (default).
    #[default]
    Tor,
    /// A private Tor network (tests, offline demo); needs
    /// `network.local_network`.
    Local,
    /// Direct TCP, **not anonymous**: LAN or tests only; needs
    /// `network.direct_listen`. Never chosen unless written here.
    Direct,
}

/// Vanguards for our onion-service circuits (`network.vanguards`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum VanguardsConfig {
    /// Lite vanguards: the second hop of every onion-service circuit comes
    /// from a small, slowly rotating relay set (default).
    #[default]
    Lite,
    /// Full vanguards: second and third hops from such sets (more circuits'
    /// worth of latency, stronger against guard discovery).
    Full,
    /// No vanguards. Not recommended.
    Disabled,
}

impl From<VanguardsConfig> for VanguardsMode {
    fn from(v: VanguardsConfig) -> Self {
        match v {
            VanguardsConfig::Lite => VanguardsMode::Lite,
            VanguardsConfig::Full => VanguardsMode::Full,
            VanguardsConfig::Disabled => VanguardsMode::Disabled,
        }
    }
}

/// `[network]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct NetworkConfig {
    /// `tor` (default), `local` or `direct`.
    pub kind: NetworkKind,
    /// For `kind = "local"`: file with the Arti network configuration
    /// written by `umbra-testnet --arti-config`. Default: none.
    pub local_network: Option<PathBuf>,
    /// For `kind = "direct"`: `IP:port` to listen on. Default: none.
    pub direct_listen: Option<SocketAddr>,
    /// Virtual port of our onion service. Default: 7400.
    pub virtual_port: u16,
    /// Disable permission checks of the data directory. Only allowed with
    /// `kind = "local"` (test networks in temp dirs). Default: false.
    pub dangerously_trust_everyone: bool,
    /// Vanguards for onion-service circuits: `lite` (default), `full` or
    /// `disabled`.
    pub vanguards: VanguardsConfig,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            kind: NetworkKind::Tor,
            local_network: None,
            direct_listen: None,
            virtual_port: DEFAULT_VIRTUAL_PORT,
            dangerously_trust_everyone: false,
            vanguards: VanguardsConfig::default(),
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StorageConfig {
    /// Data directory (keys, Arti state, messages). Default:
    /// `$XDG_DATA_HOME/umbra`, else `$HOME/.local/share/umbra`.
    pub data_dir: Option<PathBuf>,
}

/// `[handshaker]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HandshakerConfig {
    /// Address of the handshaker (`….onion`, or `http://IP:port` in direct
    /// mode). Default: none (usernames cannot be looked up).
    pub address: Option<String>,
}

/// `[limits]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Give up joining the network after this many seconds. Default: 300.
    pub bootstrap_timeout_secs: u64,
    /// Give up one connection attempt sequence after this many seconds
    /// (retries included). Default: 120.
    pub connect_timeout_secs: u64,
    /// Maximum simultaneous peer connections. Default: 64.
    pub max_connections: u32,
    /// Largest accepted wire frame in bytes; at most 131072. Default: 131072.
    pub max_frame_bytes: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            bootstrap_timeout_secs: 300,
            connect_timeout_secs: 120,
            max_connections: 64,
            max_frame_bytes: 131_072,
        }
    }
}

impl Config {
    /// Parse and validate TOML text.
    pub fn from_toml(text: &str) -> Result<Self, Error> {
        let cfg: Config =
            toml::from_str(text).map_err(|source| Error::Parse { path: None, source })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Read, parse and validate a file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            what: "configuration file",
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::Parse { source, .. } => Error::Parse {
                path: Some(path.to_owned()),
                source,
            },
            e => e,
        })
    }

    /// Check values and combinations.
    pub fn validate(&self) -> Result<(), Error> {
        let n = &self.network;
        let invalid = |field, reason| Err(Error::Invalid { field, reason });
        match n.kind {
            NetworkKind::Local if n.local_network.is_none() => {
                return invalid(
                    "network.local_network",
                    "is required with kind = \"local\" (see umbra-testnet --arti-config)",
                );
            }
            NetworkKind::Direct if n.direct_listen.is_none() => {
                return invalid(
                    "network.direct_listen",
                    "is required with kind = \"direct\" (e.g. \"192.168.1.10:7400\")",
                );
            }
            _ => {}
        }
        if n.dangerously_trust_everyone && n.kind != NetworkKind::Local {
            return invalid(
                "network.dangerously_trust_everyone",
                "is only allowed with kind = \"local\"",
            );
        }
        if n.virtual_port == 0 {
            return invalid("network.virtual_port", "must not be 0");
        }
        let l = &self.limits;
        if l.bootstrap_timeout_secs == 0 || l.connect_timeout_secs == 0 {
            return invalid("limits", "timeouts must be at least 1 second");
        }
        if l.max_connections == 0 {
            return invalid("limits.max_connections", "must be at least 1");
        }
        if !(crate::wire::MIN_FRAME_LIMIT..=crate::limits::MAX_FRAME)
            .contains(&(l.max_frame_bytes as usize))
        {
            return invalid(
                "limits.max_frame_bytes",
                "must be between 66560 (a file chunk must fit) and 131072",
            );
        }
        if self
            .files
            .downloads_dir
            .as_ref()
            .is_some_and(|d| !d.is_absolute())
        {
            return invalid("files.downloads_dir", "must be an absolute path");
        }
        if !(1..=8).contains(&self.files.streams) {
            return invalid("files.streams", "must be between 1 and 8");
        }
        Ok(())
    }

    /// The data directory, with the default applied.
    pub fn data_dir(&self) -> Result<PathBuf, Error> {
        if let Some(d) = &self.storage.data_dir {
            return Ok(d.clone());
        }
        let base = match std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local").join("share"))
                .ok_or(Error::Invalid {
                    field: "storage.data_dir",
                    reason: "has no default: neither XDG_DATA_HOME nor HOME is set",
                })?,
        };
        Ok(base.join("umbra"))
    }

    /// Options for the Arti transport (`kind = "tor"` or `"local"`); `None`
    /// for `kind = "direct"`. Reads `network.local_network`.
    pub fn arti_options(&self) -> Result<Option<ArtiOptions>, Error> {
        let network = match self.network.kind {
            NetworkKind::Direct => return Ok(None),
            NetworkKind::Tor => ArtiNetwork::Tor,
            NetworkKind::Local => {
                let path = self.network.local_network.as_ref().ok_or(Error::Invalid {
                    field: "network.local_network",
                    reason: "is required with kind = \"local\"",
                })?;
                let arti_toml = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    what: "local network configuration",
                    path: path.clone(),
                    source,
                })?;
                ArtiNetwork::Custom { arti_toml }
            }
        };
        let mut o = ArtiOptions::new(network, self.data_dir()?);
        o.virtual_port = self.network.virtual_port;
        o.bootstrap_timeout = Duration::from_secs(self.limits.bootstrap_timeout_secs);
        o.retry = RetryPolicy {
            total: Duration::from_secs(self.limits.connect_timeout_secs),
            ..RetryPolicy::default()
        };
        o.dangerously_trust_everyone = self.network.dangerously_trust_everyone;
        o.vanguards = self.network.vanguards.into();
        Ok(Some(o))
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn limits_reach_the_node() {
        let cfg: Config = toml::from_str(
            "[limits]\nmax_connections = 3\nmax_frame_bytes = 70000\n[files]\nstreams = 4\n",
        )
        .unwrap();
        cfg.validate().unwrap();
        let node = cfg.node_config();
        assert_eq!(node.max_inbound, 3);
        assert_eq!(node.max_frame, 70_000);
        assert_eq!(node.files.streams, 4);
        let default = Config::default().node_config();
        assert_eq!(default.max_frame, crate::limits::MAX_FRAME);
        assert_eq!(default.max_inbound, 64);
    }

    #[test]
    fn vanguards_reach_arti() {
        let mode = |toml: &str| {
            let cfg = Config::from_toml(toml).unwrap();
            let o = cfg.arti_options().unwrap().unwrap();
            let built = o.client_config().unwrap();
            let carried = crate::transport::arti::configured_vanguards(&built).unwrap();
            assert_eq!(o.vanguards, carried);
            carried
        };
        assert_eq!(mode(""), VanguardsMode::Lite);
        assert_eq!(
            mode("[network]\nvanguards = \"lite\"\n"),
            VanguardsMode::Lite
        );
        assert_eq!(
            mode("[network]\nvanguards = \"full\"\n"),
            VanguardsMode::Full
        );
        assert_eq!(
            mode("[network]\nvanguards = \"disabled\"\n"),
            VanguardsMode::Disabled
        );
        let e = Config::from_toml("[network]\nvanguards = \"heavy\"\n").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
    }

    #[test]
    fn example_parses_and_equals_defaults() {
        let cfg = Config::from_toml(EXAMPLE_CONFIG).unwrap();
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn empty_is_default_and_valid() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let e = Config::from_toml("[network]\nkin = \"tor\"\n").unwrap_err();
        assert!(matches!(e, Error::Parse { .. }), "{e}");
        // The message says what the file is; its source what toml found,
        // once (UX-2026-11 P1: it used to be printed twice).
        assert_eq!(e.to_string(), "invalid configuration file");
        let why = std::error::Error::source(&e).unwrap().to_string();
        assert!(why.contains("kin"), "{why}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("umbra.toml");
        std::fs::write(&path, "[network]\nkin = \"tor\"\n").unwrap();
        let e = Config::load(&path).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("invalid configuration file {}", path.display())
        );
        let e = Config::from_toml("[nope]\n").unwrap_err();
        assert!(matches!(e, Error::Parse { .. }), "{e}");
        let e = Config::from_toml("[network]\nkind = \"carrier-pigeon\"\n").unwrap_err();
        assert!(matches!(e, Error::Parse { .. }), "{e}");
    }

    #[test]
    fn modes_need_their_settings() {
        let e = Config::from_toml("[network]\nkind = \"local\"\n").unwrap_err();
        assert!(e.to_string().contains("network.local_network"));
        let e = Config::from_toml("[network]\nkind = \"direct\"\n").unwrap_err();
        assert!(e.to_string().contains("network.direct_listen"));
        let ok =
            Config::from_toml("[network]\nkind = \"direct\"\ndirect_listen = \"127.0.0.1:7400\"\n")
                .unwrap();
        assert_eq!(ok.network.kind, NetworkKind::Direct);
        assert!(ok.arti_options().unwrap().is_none());
    }

    #[test]
    fn trust_everyone_only_on_local() {
        let e = Config::from_toml("[network]\ndangerously_trust_everyone = true\n").unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e}");
        Config::from_toml(
            "[network]\nkind = \"local\"\nlocal_network = \"/x\"\n\
             dangerously_trust_everyone = true\n",
        )
        .unwrap();
    }

    #[test]
    fn limits_are_checked() {
        for bad in [
            "[limits]\nmax_frame_bytes = 200000\n",
            "[limits]\nmax_frame_bytes = 1024\n",
            "[limits]\nconnect_timeout_secs = 0\n",
            "[limits]\nmax_connections = 0\n",
            "[network]\nvirtual_port = 0\n",
        ] {
            let e = Config::from_toml(bad).unwrap_err();
            assert!(matches!(e, Error::Invalid { .. }), "{bad}: {e}");
            assert_eq!(e.kind(), ErrorKind::Config);
        }
    }

    #[test]
    fn tor_options_from_config() {
        let cfg = Config::from_toml("[storage]\ndata_dir = \"/tmp/u\"\n").unwrap();
        let o = cfg.arti_options().unwrap().unwrap();
        assert_eq!(o.network, ArtiNetwork::Tor);
        assert_eq!(o.data_dir, PathBuf::from("/tmp/u"));
        assert_eq!(o.virtual_port, 7400);
        assert!(!o.dangerously_trust_everyone);
        assert_eq!(o.retry.total, Duration::from_secs(120));
    }
}
