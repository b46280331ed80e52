//! What the `umbra` subcommands share: the configuration and data directory,
//! one control request to the daemon, passphrases, and output formatting
//! (JSON, times, fingerprints, the daemon's status).

use std::io::Write;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::GlobalArgs;
use super::err::{CliError, PassphraseRole};
use crate::config::Config;
use crate::control::proto::{ContactView, Reply, Request, StatusView};
use crate::control::{Client, ClientError};
use crate::store::datadir;
use crate::store::passphrase::{
    ENV_BACKUP_PASSPHRASE, ENV_NEW_PASSPHRASE, ENV_PASSPHRASE, PassphraseSource,
};

/// A command's result.
pub(super) type Result<T, E = CliError> = std::result::Result<T, E>;

/// The configuration file: `--config`, else `$XDG_CONFIG_HOME/umbra/config.toml`
/// (or `~/.config/umbra/config.toml`) if it exists, else defaults.
pub(crate) fn load_config(global: &GlobalArgs) -> Result<Config> {
    if let Some(p) = &global.config {
        return Config::load(p).map_err(CliError::config);
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        });
    match base.map(|b| b.join("umbra").join("config.toml")) {
        Some(p) if p.is_file() => Config::load(&p).map_err(CliError::config),
        _ => Ok(Config::default()),
    }
}

/// The data directory: `--data-dir`/`UMBRA_HOME`, else the configuration's,
/// else the default.
pub(crate) fn data_dir(global: &GlobalArgs, config: &Config) -> Result<PathBuf> {
    if global.data_dir.is_none()
        && let Some(d) = &config.storage.data_dir
    {
        return Ok(d.clone());
    }
    Ok(datadir::resolve(global.data_dir.as_deref())?)
}

/// A progress note on standard error (never on stdout, which scripts parse).
pub(super) fn progress_note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// The runtime a command talks to the daemon on.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::Output)
}

/// Sends one request to the daemon of this data directory.
pub(super) fn call(global: &GlobalArgs, request: Request) -> Result<Reply> {
    let config = load_config(global)?;
    let dir = data_dir(global, &config)?;
    runtime()?.block_on(async {
        let mut c = Client::connect(&dir).await.map_err(CliError::control)?;
        c.call(request).await.map_err(CliError::control)
    })
}

/// Sends a request to the daemon ([`call`]) whose reply must be the variant
/// `$reply`; evaluates to its value (any other reply: [`unexpected`]).
macro_rules! reply {
    ($global:expr, $request:expr, $reply:path) => {
        match $crate::cli::common::call($global, $request)? {
            $reply(v) => v,
            _ => return Err($crate::cli::common::unexpected()),
        }
    };
}
pub(super) use reply;

/// A reply that does not fit the request.
pub(super) fn unexpected() -> CliError {
    CliError::control(ClientError::Protocol("unexpected reply".into()))
}

/// One JSON document on `out`.
pub(super) fn json(out: &mut dyn Write, v: &impl serde::Serialize) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

pub(super) fn when(secs: u64) -> String {
    let now = crate::time::now_secs();
    let ago = now.saturating_sub(secs);
    match ago {
        0..=59 => "just now".into(),
        60..=3599 => format!("{} min ago", ago / 60),
        3600..=86_399 => format!("{} h ago", ago / 3600),
        _ => format!("{} days ago", ago / 86_400),
    }
}

/// `HH:MM UTC` for today (UTC), `YYYY-MM-DD HH:MM UTC` for other days.
pub(super) fn clock(secs: u64) -> String {
    use crate::time::{now_secs, utc_date, utc_hhmm};
    let date = utc_date(secs);
    if date == utc_date(now_secs()) {
        format!("{} UTC", utc_hhmm(secs))
    } else {
        format!("{date} {} UTC", utc_hhmm(secs))
    }
}

/// A 40-hex fingerprint in the grouped display form (as given if malformed).
pub(super) fn grouped(hex: &str) -> String {
    crate::identity::Fingerprint::from_hex(hex)
        .map(|f| f.to_string())
        .unwrap_or_else(|_| hex.to_owned())
}

/// Read an existing passphrase of `role` (file flag, then environment, then prompt).
pub(crate) fn read_passphrase(role: PassphraseRole, file: Option<&Path>) -> Result<SecretString> {
    let (env, prompt) = match role {
        PassphraseRole::Store => (ENV_PASSPHRASE, "Umbra passphrase: "),
        PassphraseRole::NewStore => (ENV_NEW_PASSPHRASE, "New Umbra passphrase: "),
        PassphraseRole::Backup => (ENV_BACKUP_PASSPHRASE, "Backup passphrase: "),
    };
    PassphraseSource::choose_with(file, env)
        .read(prompt)
        .map_err(CliError::passphrase(role))
}

/// A contact reply: as JSON, or the contact's line (`verb @name (fingerprint)`)
/// and then `note`.
pub(super) fn print_contact_reply(
    global: &GlobalArgs,
    out: &mut dyn Write,
    c: &ContactView,
    verb: &str,
    note: &str,
) -> Result<()> {
    if global.json {
        return json(out, c);
    }
    print_contact(out, verb, c)?;
    writeln!(out, "{note}")?;
    Ok(())
}

/// A command done for `name`: as JSON `{"key": name}`, or `text`.
pub(super) fn print_done(
    global: &GlobalArgs,
    out: &mut dyn Write,
    key: &str,
    name: &str,
    text: &str,
) -> Result<()> {
    if global.json {
        return json(out, &serde_json::json!({ key: name }));
    }
    writeln!(out, "{text}")?;
    Ok(())
}

/// One line naming a contact and its fingerprint.
pub(super) fn print_contact(out: &mut dyn Write, verb: &str, c: &ContactView) -> Result<()> {
    writeln!(out, "{verb} {} ({})", c.username, grouped(&c.fingerprint))?;
    Ok(())
}

/// The daemon part of `umbra status`: `None` if no daemon runs.
pub(crate) fn daemon_status(global: &GlobalArgs) -> Result<Option<StatusView>> {
    match call(global, Request::Status) {
        Ok(Reply::Status(s)) => Ok(Some(s)),
        Ok(_) => Err(unexpected()),
        Err(CliError::Control(e)) if matches!(*e, ClientError::NotRunning { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Text lines for a daemon status.
pub(crate) fn status_rows(s: &StatusView) -> Vec<(&'static str, String)> {
    vec![
        ("identity", s.username.clone()),
        ("fingerprint", grouped(&s.fingerprint)),
        (
            "daemon",
            format!("running (v{}, since {})", s.version, when(s.started_at)),
        ),
        ("network", s.tor.network.clone()),
        ("tor", s.tor.summary.clone()),
        (
            "onion service",
            if s.tor.network == "direct" {
                "none: direct TCP, NOT ANONYMOUS (for tests and development)".to_owned()
            } else {
                s.tor.onion_service.clone()
            },
        ),
        (
            "vanguards",
            if s.tor.vanguards.is_empty() {
                "none (not on Tor)".to_owned()
            } else {
                s.tor.vanguards.clone()
            },
        ),
        (
            "handshaker",
            s.handshaker
                .clone()
                .unwrap_or_else(|| "(none: `umbra register --handshaker ADDRESS`)".into()),
        ),
        ("contacts", s.contacts.to_string()),
        ("pending requests", s.pending_requests.to_string()),
    ]
}
