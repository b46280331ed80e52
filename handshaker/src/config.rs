//! Handshaker configuration (`config/handshaker.example.toml`).
//!
//! Every section and field has a default; unknown fields are refused so a
//! typo cannot silently leave a limit at its default. [`Config::validate`]
//! runs after loading.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use umbra_proto::{ErrorKind, HasKind};

/// Errors from loading or validating the configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file: {source}")]
    Read {
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema.
    #[error("invalid configuration: {source}")]
    Parse {
        /// Underlying error.
        #[source]
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("invalid configuration value {field}: {reason}")]
    Invalid {
        /// Dotted field name.
        field: &'static str,
        /// What is wrong and what to use instead.
        reason: &'static str,
    },
}

impl HasKind for ConfigError {
    fn kind(&self) -> ErrorKind {
        match self {
            ConfigError::Read { .. } => ErrorKind::Io,
            ConfigError::Parse { .. } | ConfigError::Invalid { .. } => ErrorKind::InvalidInput,
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Data directory (database, onion service keys). Default: none; the
    /// `--data-dir` option must then be given.
    pub data_dir: Option<PathBuf>,
    /// The directory's database: `postgres://…` / `postgresql://…` for
    /// PostgreSQL (which several front ends can share). Default: none =
    /// SQLite, `handshaker.sqlite` in the data directory.
    pub database: Option<String>,
    /// How the Handshaker is reached.
    pub network: NetworkConfig,
    /// Request and connection limits.
    pub limits: LimitsConfig,
    /// Proof of work.
    pub pow: PowConfig,
    /// Mailboxes.
    pub mailbox: MailboxConfig,
    /// Global rate limits.
    pub rate_limit: RateLimitConfig,
}

/// Serving options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    /// Serve over our own Arti onion service. Default: `true`.
    pub onion_service: bool,
    /// Path to an Arti network TOML fragment (a private test network from
    /// `umbra-testnet`); absent = the real Tor network. Default: none.
    pub arti_network_config: Option<PathBuf>,
    /// Also (or, with `onion_service = false`, only) listen on these TCP
    /// addresses, e.g. `["127.0.0.1:8080"]` behind an external tor.
    /// Default: none.
    pub listen: Vec<SocketAddr>,
    /// The address signed into proofs when it is not our own onion service
    /// address (e.g. the `.onion` of an external tor). Default: the onion
    /// service address, else `http://<first TCP listen address>`.
    pub public_address: Option<String>,
    /// Onion service: streams one circuit may have open at once; a circuit
    /// that opens more is torn down (Arti's
    /// `max_concurrent_streams_per_circuit`). Default: 16.
    pub hs_max_streams_per_circuit: u32,
    /// Onion service: introductions per second the introduction points are
    /// asked to pass (Arti's `rate_limit_at_intro`; 0 = leave it to the
    /// introduction point). Default: 25.
    pub hs_intro_rate: u32,
    /// Onion service: burst of introductions. Default: 200.
    pub hs_intro_burst: u32,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            onion_service: true,
            arti_network_config: None,
            listen: Vec::new(),
            public_address: None,
            hs_max_streams_per_circuit: 16,
            hs_intro_rate: 25,
            hs_intro_burst: 200,
        }
    }
}

/// Connection and request limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Connections served at once; more wait in the accept queue. Default: 256.
    pub max_connections: usize,
    /// Largest request body, bytes. Default: 69632 (a 64 KiB message plus
    /// JSON overhead).
    pub max_body_bytes: usize,
    /// Largest mailbox message, bytes. Default: 65536.
    pub max_message_bytes: usize,
    /// Time allowed for a request's headers to arrive (also the keep-alive
    /// idle limit), seconds. When all connections are taken, the one idle
    /// longest (no request in progress) is closed for the newcomer.
    /// Default: 5.
    pub header_timeout_secs: u64,
    /// Time allowed to read a body and answer, seconds. Default: 30.
    pub request_timeout_secs: u64,
    /// Longest a connection is kept before a graceful close, seconds. Default: 300.
    pub connection_lifetime_secs: u64,
    /// On shutdown, time given to in-flight requests, seconds. Default: 30.
    pub drain_timeout_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 256,
            max_body_bytes: 68 * 1024,
            max_message_bytes: 64 * 1024,
            header_timeout_secs: 5,
            request_timeout_secs: 30,
            connection_lifetime_secs: 300,
            drain_timeout_secs: 30,
        }
    }
}

/// The default proof-of-work difficulty in leading zero bits.
pub const DEFAULT_POW_DIFFICULTY: u32 = 22;

/// Proof-of-work settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PowConfig {
    /// Required leading zero bits for register and deposit stamps (each bit
    /// doubles the cost). Default: 22 (about 0.5–1 s on one desktop core).
    pub difficulty: u32,
}

impl Default for PowConfig {
    fn default() -> Self {
        PowConfig {
            difficulty: DEFAULT_POW_DIFFICULTY,
        }
    }
}

/// Mailbox settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailboxConfig {
    /// Pending items per recipient. Default: 100.
    pub capacity: usize,
    /// Seconds an unacknowledged item is kept. Default: 604800 (7 days).
    pub retention_secs: u64,
    /// Items returned by one fetch. Default: 16.
    pub fetch_max_items: usize,
    /// Seconds a fetch challenge stays valid. Default: 120.
    pub challenge_ttl_secs: u64,
    /// Seconds an ack token stays valid. Default: 600.
    pub ack_token_ttl_secs: u64,
    /// Seconds between purges of expired items. Default: 600.
    pub purge_interval_secs: u64,
}

impl Default for MailboxConfig {
    fn default() -> Self {
        MailboxConfig {
            capacity: 100,
            retention_secs: 7 * 24 * 3600,
            fetch_max_items: 16,
            challenge_ttl_secs: 120,
            ack_token_ttl_secs: 600,
            purge_interval_secs: 600,
        }
    }
}

/// Token-bucket rate limits: per connection (the Handshaker never knows
/// who a client is, but each connection gets its own budget, so a flood
/// over some connections takes nothing from the others), per target
/// username and global for writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests per second on one connection (an onion-service stream),
    /// all endpoints. Default: 20.
    pub requests_per_connection_per_sec: u32,
    /// Burst of requests on one connection. Default: 40.
    pub requests_per_connection_burst: u32,
    /// Registrations, deletions and deposits per second. Default: 50.
    pub writes_per_sec: u32,
    /// Burst of writes. Default: 100.
    pub writes_burst: u32,
    /// Writes per minute aimed at one target username (deposits into one
    /// mailbox, registrations of one name), taken before the global writes
    /// and only for requests with a valid, unspent stamp. Default: 10.
    pub target_writes_per_min: u32,
    /// Burst of writes at one target. Default: 20.
    pub target_writes_burst: u32,
    /// Targets tracked at once; beyond it, untracked targets have only the
    /// global limit. Default: 100000.
    pub max_targets: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            requests_per_connection_per_sec: 20,
            requests_per_connection_burst: 40,
            writes_per_sec: 50,
            writes_burst: 100,
            target_writes_per_min: 10,
            target_writes_burst: 20,
            max_targets: 100_000,
        }
    }
}

impl Config {
    /// Parses TOML text and validates it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|source| ConfigError::Parse { source })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { source })?;
        Self::from_toml(&text)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field, reason| Err(ConfigError::Invalid { field, reason });
        let l = &self.limits;
        if l.max_connections == 0 {
            return bad("limits.max_connections", "must be at least 1");
        }
        if l.max_message_bytes == 0 || l.max_message_bytes > umbra_proto::limits::MAX_ENVELOPE {
            return bad("limits.max_message_bytes", "must be 1..=65536");
        }
        if l.max_body_bytes < l.max_message_bytes || l.max_body_bytes > 1024 * 1024 {
            return bad(
                "limits.max_body_bytes",
                "must be at least limits.max_message_bytes and at most 1 MiB",
            );
        }
        if l.header_timeout_secs == 0 || l.request_timeout_secs == 0 {
            return bad(
                "limits.*_timeout_secs",
                "timeouts must be at least 1 second",
            );
        }
        if l.connection_lifetime_secs == 0 {
            return bad("limits.connection_lifetime_secs", "must be at least 1");
        }
        if self.pow.difficulty > 40 {
            return bad(
                "pow.difficulty",
                "must be at most 40 (22 costs about a second)",
            );
        }
        let m = &self.mailbox;
        if m.capacity == 0 || m.fetch_max_items == 0 {
            return bad("mailbox", "capacity and fetch_max_items must be at least 1");
        }
        if m.retention_secs == 0 || m.challenge_ttl_secs == 0 || m.ack_token_ttl_secs == 0 {
            return bad("mailbox", "retention and TTLs must be at least 1 second");
        }
        if m.purge_interval_secs == 0 {
            return bad("mailbox.purge_interval_secs", "must be at least 1");
        }
        let r = &self.rate_limit;
        if r.requests_per_connection_per_sec == 0
            || r.writes_per_sec == 0
            || r.requests_per_connection_burst == 0
            || r.writes_burst == 0
            || r.target_writes_per_min == 0
            || r.target_writes_burst == 0
            || r.max_targets == 0
        {
            return bad("rate_limit", "rates and bursts must be at least 1");
        }
        if let Some(db) = &self.database
            && !is_postgres_url(db)
        {
            return bad(
                "database",
                "must be a postgres:// or postgresql:// URL (leave it out for SQLite)",
            );
        }
        if self.network.hs_max_streams_per_circuit == 0 {
            return bad("network.hs_max_streams_per_circuit", "must be at least 1");
        }
        if (self.network.hs_intro_rate == 0) != (self.network.hs_intro_burst == 0) {
            return bad(
                "network.hs_intro_rate",
                "hs_intro_rate and hs_intro_burst are both 0 (unset) or both at least 1",
            );
        }
        if !self.network.onion_service && self.network.listen.is_empty() {
            return bad(
                "network",
                "nothing to serve: enable onion_service or give a TCP listen address",
            );
        }
        Ok(())
    }

    /// Header read timeout.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.header_timeout_secs)
    }

    /// Request timeout.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.request_timeout_secs)
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const EXAMPLE: &str = include_str!("../../config/handshaker.example.toml");

    #[test]
    fn example_parses_and_equals_defaults() {
        let cfg = Config::from_toml(EXAMPLE).unwrap();
        let expected = Config {
            data_dir: Some("/var/lib/umbra-handshaker".into()),
            ..Default::default()
        };
        assert_eq!(cfg, expected);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        assert!(matches!(
            Config::from_toml("[limits]\nmax_conections = 3\n"),
            Err(ConfigError::Parse { .. })
        ));
        assert!(matches!(
            Config::from_toml("[pow]\ndifficulty = 99\n"),
            Err(ConfigError::Invalid {
                field: "pow.difficulty",
                ..
            })
        ));
        assert!(matches!(
            Config::from_toml("[network]\nonion_service = false\n"),
            Err(ConfigError::Invalid {
                field: "network",
                ..
            })
        ));
    }
}
