//! CLI errors, exit codes and the `error:` / `hint:` report.
//!
//! The report prints the error chain once (`error: a: b: c`), then, when there is
//! something to do about it, one `hint:` line (as rage pairs each error with a
//! recommendation). Exit codes are chosen from the error's *kind*, never from its text.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::GlobalArgs;
use crate::store::{self, ErrorKind};

/// Exit code of a failure that has no more specific code.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code of a usage error (clap's own code for bad arguments).
pub const EXIT_USAGE: u8 = 2;
/// Exit code when a passphrase is wrong, missing or mismatched: the store stays locked.
pub const EXIT_PASSPHRASE: u8 = 3;
/// Exit code when there is no store where one is needed, or one already exists where a
/// new one was to be created.
pub const EXIT_STORE_STATE: u8 = 4;
/// Exit code: no daemon runs for this data directory (or `up` found one running).
pub const EXIT_DAEMON: u8 = 5;
/// Exit code after Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// Which passphrase a command was reading (for messages and hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PassphraseRole {
    /// The store passphrase (`--passphrase-file`, `UMBRA_PASSPHRASE`).
    Store,
    /// A new store passphrase for `umbra passwd`.
    NewStore,
    /// The passphrase of a backup file.
    Backup,
}

impl PassphraseRole {
    fn name(self) -> &'static str {
        match self {
            PassphraseRole::Store => "the store passphrase",
            PassphraseRole::NewStore => "the new store passphrase",
            PassphraseRole::Backup => "the backup passphrase",
        }
    }

    fn sources(self) -> (&'static str, &'static str) {
        use crate::store::passphrase::{ENV_BACKUP_PASSPHRASE, ENV_NEW_PASSPHRASE, ENV_PASSPHRASE};
        match self {
            PassphraseRole::Store => (ENV_PASSPHRASE, "--passphrase-file"),
            PassphraseRole::NewStore => (ENV_NEW_PASSPHRASE, "--new-passphrase-file"),
            PassphraseRole::Backup => (ENV_BACKUP_PASSPHRASE, "--backup-passphrase-file"),
        }
    }
}

/// Everything a CLI command can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The command needs the store to itself, and a daemon holds it.
    #[error("the Umbra daemon is running for this data directory; stop it before you {action}")]
    DaemonHoldsStore {
        /// What the user wanted to do.
        action: &'static str,
    },
    /// The arguments cannot work (found after parsing, e.g. a missing
    /// confirmation without a terminal).
    #[error("{message}")]
    Usage {
        /// What is wrong.
        message: String,
        /// What to do instead.
        hint: Option<String>,
    },
    /// The user pressed Ctrl-C while a command followed something the
    /// daemon carries on with.
    #[error("interrupted: {what}")]
    Interrupted {
        /// What goes on without us.
        what: String,
        /// How to stop or find it.
        hint: String,
    },
    /// The user answered no to a confirmation.
    #[error("{what}")]
    NotConfirmed {
        /// What did not happen.
        what: String,
    },
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A passphrase could not be read.
    #[error("cannot read {}", .which.name())]
    Passphrase {
        /// PassphraseRole passphrase.
        which: PassphraseRole,
        /// Why.
        #[source]
        source: store::Error,
    },
    /// Creating or reading an identity failed.
    #[error("cannot {action}")]
    Identity {
        /// What we were doing.
        action: &'static str,
        /// Why.
        #[source]
        source: crate::identity::IdentityError,
    },
    /// The store has no identity (an `init` was interrupted before storing it).
    #[error("the store in {dir} holds no identity")]
    NoIdentity {
        /// The data directory.
        dir: PathBuf,
    },
    /// A file to be created exists already.
    #[error("{path} already exists")]
    OutputExists {
        /// The file.
        path: PathBuf,
    },
    /// An input file cannot be used.
    #[error("cannot read {path}")]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Writing to standard output failed.
    #[error("cannot write the output")]
    Output(#[from] std::io::Error),
    /// Encoding the `--json` output failed.
    #[error("cannot encode the output as JSON")]
    Json(#[from] serde_json::Error),
    /// The demo failed.
    #[error(transparent)]
    Demo(#[from] crate::demo::DemoError),
    /// The configuration file is unusable.
    #[error(transparent)]
    Config(Box<crate::config::Error>),
    /// Talking to the daemon failed, or the daemon refused the command.
    #[error(transparent)]
    Control(Box<crate::control::ClientError>),
    /// The daemon could not start or stopped with an error.
    #[error(transparent)]
    Daemon(Box<crate::daemon::DaemonError>),
}

impl From<crate::control::ClientError> for CliError {
    fn from(e: crate::control::ClientError) -> Self {
        CliError::control(e)
    }
}

impl CliError {
    /// Wrap a failure to read a passphrase.
    pub(crate) fn passphrase(which: PassphraseRole) -> impl FnOnce(store::Error) -> CliError {
        move |source| CliError::Passphrase { which, source }
    }

    /// Wrap a control-socket error.
    pub(crate) fn control(e: crate::control::ClientError) -> CliError {
        CliError::Control(Box::new(e))
    }

    /// Wrap a configuration error.
    pub(crate) fn config(e: crate::config::Error) -> CliError {
        CliError::Config(Box::new(e))
    }

    /// Wrap a daemon error.
    pub(crate) fn daemon(e: crate::daemon::DaemonError) -> CliError {
        CliError::Daemon(Box::new(e))
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        let kind = match self {
            CliError::Store(e) => e.kind(),
            CliError::Passphrase { source, .. } => match source.kind() {
                // A passphrase file that cannot be opened is an I/O problem...
                ErrorKind::Io => return EXIT_FAILURE,
                // ...anything else (none available, empty, mismatch) keeps the store locked.
                _ => return EXIT_PASSPHRASE,
            },
            CliError::NoIdentity { .. } => return EXIT_STORE_STATE,
            CliError::Control(e)
                if matches!(**e, crate::control::ClientError::NotRunning { .. }) =>
            {
                return EXIT_DAEMON;
            }
            CliError::Daemon(e) if matches!(**e, crate::daemon::DaemonError::AlreadyRunning) => {
                return EXIT_DAEMON;
            }
            CliError::DaemonHoldsStore { .. } => return EXIT_DAEMON,
            // The daemon refused an argument (an empty message, a short
            // transfer id...): a usage error like clap's.
            CliError::Control(e)
                if matches!(&**e, crate::control::ClientError::Api(a)
                    if a.code == crate::control::proto::ErrorCode::BadRequest) =>
            {
                return EXIT_USAGE;
            }
            CliError::Usage { .. } => return EXIT_USAGE,
            CliError::Interrupted { .. } => return EXIT_INTERRUPTED,
            _ => return EXIT_FAILURE,
        };
        match kind {
            ErrorKind::WrongPassphrase | ErrorKind::Passphrase => EXIT_PASSPHRASE,
            ErrorKind::NotInitialized | ErrorKind::AlreadyExists => EXIT_STORE_STATE,
            _ => EXIT_FAILURE,
        }
    }

    /// What the user should do next, when we know. `data_dir` is the data directory
    /// the command used, if it could be resolved.
    pub fn hint(&self, data_dir: Option<&Path>) -> Option<String> {
        use crate::store::passphrase::{ENV_BACKUP_PASSPHRASE, ENV_PASSPHRASE};
        Some(match self {
            CliError::Store(e) => match e {
                store::Error::WrongPassphrase { .. } => format!(
                    "check the passphrase; {ENV_PASSPHRASE} and --passphrase-file are read before \
                     prompting and may hold an old one. Nothing on disk was changed"
                ),
                store::Error::BackupWrongPassphrase { .. } => format!(
                    "use the passphrase chosen when the backup was exported; {ENV_BACKUP_PASSPHRASE} \
                     and --backup-passphrase-file are read before prompting"
                ),
                store::Error::UnsafePermissions { path, .. } => permissions_hint(path, data_dir),
                store::Error::Conflict { what } if what.contains("identity") => {
                    "import into a new --data-dir; a store holds exactly one identity".into()
                }
                other => other.recommendation()?.to_owned(),
            },
            CliError::Passphrase { which, source } => {
                let (env, flag) = which.sources();
                match source.kind() {
                    ErrorKind::Io => format!("check the file given to {flag}"),
                    _ => match source {
                        store::Error::NoPassphrase { .. } => {
                            format!("set {env}, pass {flag} FILE, or run in a terminal")
                        }
                        other => other.recommendation()?.to_owned(),
                    },
                }
            }
            CliError::NoIdentity { .. } => {
                "run `umbra init --name NAME` with the same passphrase to finish creating it".into()
            }
            CliError::Input { .. } => {
                "check the file name; a backup file is made by `umbra export-identity FILE`".into()
            }
            CliError::OutputExists { .. } => {
                "choose another file name, or move the existing file away (exports never overwrite)"
                    .into()
            }
            CliError::Control(e) => match &**e {
                crate::control::ClientError::NotRunning { .. } => {
                    "start it with `umbra up` (in another terminal or as a service), then retry"
                        .into()
                }
                crate::control::ClientError::Api(e) => e.hint.clone()?,
                _ => return None,
            },
            CliError::Daemon(e) if matches!(**e, crate::daemon::DaemonError::AlreadyRunning) => {
                "use the running daemon (`umbra status`), or stop it first".into()
            }
            CliError::DaemonHoldsStore { .. } => {
                "stop it (Ctrl-C where `umbra up` runs, or send it SIGTERM), run this again, then start it with `umbra up`"
                    .into()
            }
            CliError::Usage { hint, .. } => hint.clone()?,
            CliError::Interrupted { hint, .. } => hint.clone(),
            CliError::Config(_) => "fix the configuration file; `umbra config-example` prints \
                                    one with every key and its default"
                .into(),
            _ => return None,
        })
    }
}

/// The hint for a directory others could tamper with.
fn permissions_hint(path: &Path, data_dir: Option<&Path>) -> String {
    let p = path.display();
    let me = rustix::process::geteuid().as_raw();
    if let Ok(m) = std::fs::metadata(path)
        && m.uid() != me
    {
        return format!(
            "{p} must be owned by you (uid {me}); use a data directory of your own with --data-dir"
        );
    }
    let is_data_dir = data_dir
        .and_then(|d| std::fs::canonicalize(d).ok())
        .is_some_and(|d| d == path);
    if is_data_dir {
        format!("make it private: chmod 700 {p}")
    } else {
        format!(
            "remove write access for others: chmod go-w {p} (or chmod +t {p} for a shared \
             directory like /tmp), or choose another --data-dir"
        )
    }
}

/// A failed command: the error plus what is needed to report it.
#[derive(Debug)]
pub struct Failure {
    /// The error.
    pub error: CliError,
    data_dir: Option<PathBuf>,
    json: bool,
}

/// The `--json` form of a failure.
#[derive(Serialize)]
struct JsonFailure<'a> {
    error: &'a str,
    chain: Vec<String>,
    hint: Option<String>,
    exit_code: u8,
}

impl Failure {
    pub(crate) fn new(error: CliError, global: &GlobalArgs) -> Self {
        let data_dir = crate::store::datadir::resolve(global.data_dir.as_deref()).ok();
        Failure {
            error,
            data_dir,
            json: global.json,
        }
    }

    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        self.error.exit_code()
    }

    /// Whether the reader of standard output went away (`umbra man | head`): not
    /// worth a report.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(&self.error, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// The text to print on standard error: `error: a: b: c`, then a `hint:` line
    /// when there is one; with `--json`, one JSON object on a line.
    pub fn report(&self) -> String {
        let chain = chain(&self.error);
        let hint = self.error.hint(self.data_dir.as_deref());
        if self.json {
            let obj = JsonFailure {
                error: &chain.join(": "),
                chain: chain.clone(),
                hint,
                exit_code: self.exit_code(),
            };
            if let Ok(s) = serde_json::to_string(&obj) {
                return s + "\n";
            }
        }
        let mut s = format!("error: {}\n", chain.join(": "));
        if let Some(h) = self.error.hint(self.data_dir.as_deref()) {
            let _ = writeln!(s, "hint: {h}");
        }
        s
    }
}

/// The `--json` report of an argument error found by clap (which prints
/// plain text by itself): one JSON object like [`Failure::report`]'s, with
/// clap's tips as the hint (UX-2026-11 A3).
pub fn usage_report_json(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let error = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_owned();
    let tips: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tip: "))
        .collect();
    let hint = if tips.is_empty() {
        "see `umbra --help`".to_owned()
    } else {
        tips.join("; ")
    };
    let obj = JsonFailure {
        error: &error,
        chain: vec![error.clone()],
        hint: Some(hint),
        exit_code: EXIT_USAGE,
    };
    serde_json::to_string(&obj).unwrap_or(error) + "\n"
}

/// The messages of `e` and its sources, skipping a message repeated by a wrapper.
fn chain(e: &dyn std::error::Error) -> Vec<String> {
    let mut out: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if out.last() != Some(&msg) {
            out.push(msg);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn global(json: bool) -> GlobalArgs {
        GlobalArgs {
            data_dir: Some("/nonexistent/umbra".into()),
            passphrase_file: None,
            json,
            config: None,
        }
    }

    #[test]
    fn exit_codes_follow_kinds() {
        let wrong = CliError::Store(store::Error::WrongPassphrase { dir: "/d".into() });
        assert_eq!(wrong.exit_code(), EXIT_PASSPHRASE);
        let none = CliError::Store(store::Error::NotInitialized { dir: "/d".into() });
        assert_eq!(none.exit_code(), EXIT_STORE_STATE);
        let twice = CliError::Store(store::Error::AlreadyInitialized { dir: "/d".into() });
        assert_eq!(twice.exit_code(), EXIT_STORE_STATE);
        let mismatch =
            CliError::passphrase(PassphraseRole::Backup)(store::Error::PassphraseMismatch);
        assert_eq!(mismatch.exit_code(), EXIT_PASSPHRASE);
        let out = CliError::Output(std::io::Error::other("pipe"));
        assert_eq!(out.exit_code(), EXIT_FAILURE);
    }

    #[test]
    fn report_prints_chain_once_and_a_hint() {
        let e = CliError::passphrase(PassphraseRole::Backup)(store::Error::NoPassphrase {
            reason: "standard input is not a terminal".into(),
        });
        let r = Failure::new(e, &global(false)).report();
        assert_eq!(
            r,
            "error: cannot read the backup passphrase: no passphrase available: standard input is not a terminal\n\
             hint: set UMBRA_BACKUP_PASSPHRASE, pass --backup-passphrase-file FILE, or run in a terminal\n"
        );
        let e = CliError::Store(store::Error::NotInitialized { dir: "/d".into() });
        let r = Failure::new(e, &global(true)).report();
        let v: serde_json::Value = serde_json::from_str(&r).unwrap();
        assert_eq!(v["error"], "no Umbra store in /d");
        assert_eq!(v["exit_code"], 4);
        assert!(v["hint"].as_str().unwrap().contains("umbra init"));
    }
}
