//! The `umbra` command line: argument definitions (clap derive) and the command
//! implementations. `src/main.rs` only parses the arguments, sets up tracing, calls
//! [`run`] and prints the [`Failure`] report; no protocol or storage logic lives here
//! either, only the gathering of arguments and passphrases and the printing of results.
//!
//! # Layout
//! - this file: [`Cli`], [`GlobalArgs`], [`Command`] and [`run`];
//! - `commands`: one function per subcommand;
//! - `err`: [`CliError`], the exit codes and the `error:` / `hint:` report.
//!
//! # Output
//! Human-readable text on standard output by default; with `--json`, exactly one JSON
//! object on standard output (and, on failure, one JSON object on standard error).
//! Nothing secret is ever printed.
//!
//! # Exit codes
//! See [`EXIT_FAILURE`], [`EXIT_USAGE`], [`EXIT_PASSPHRASE`], [`EXIT_STORE_STATE`], and
//! `docs/CLI.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
#![deny(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]
#![deny(clippy::mod_module_files)]

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::identity::Username;

mod chat;
mod commands;
mod common;
mod err;
mod files;
pub mod groups;
mod remote;
mod requests;

// ---------- public exports ----------
pub use err::{
    CliError, EXIT_DAEMON, EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_PASSPHRASE, EXIT_STORE_STATE,
    EXIT_USAGE, Failure, PassphraseRole, usage_report_json,
};

/// The long help's closing section: exit codes and environment variables.
const AFTER_LONG_HELP: &str = "\
EXIT CODES:
    0  success
    1  failure (I/O, corrupt files, unsafe permissions, ...)
    2  usage error (unknown command, bad or missing argument, or an argument the
       daemon refused: an empty or over-long message, a malformed fingerprint, ...)
    3  wrong, missing or mismatched passphrase: the store stays locked
    4  no store in the data directory, or one already exists there
    5  no daemon runs for the data directory (`umbra up`), or `up` found one running
  130  interrupted (Ctrl-C) while following a file transfer: it goes on in the daemon

ENVIRONMENT:
    UMBRA_HOME               data directory (same as --data-dir)
    UMBRA_CONFIG             configuration file (same as --config)
    UMBRA_PASSPHRASE         store passphrase (read before prompting; --passphrase-file wins)
    UMBRA_NEW_PASSPHRASE     new store passphrase for `umbra passwd`
    UMBRA_BACKUP_PASSPHRASE  passphrase of an identity backup file
    UMBRA_LOG                log filter, e.g. `debug` (logs go to standard error)

Passphrases in environment variables are visible to other processes of the same
user; prefer a passphrase file (first line, mode 0600) or the prompt.";

/// Umbra: an anonymous messenger over Tor onion services.
#[derive(Debug, Parser)]
#[command(
    name = "umbra",
    version,
    about,
    long_about = "Umbra: an anonymous messenger over Tor onion services.\n\n\
        Everything Umbra keeps on disk lives in one encrypted store in the data directory, \
        unlocked with your passphrase. Start with `umbra init --name NAME`.",
    after_long_help = AFTER_LONG_HELP
)]
pub struct Cli {
    /// Options every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options shared by every command.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Data directory holding the encrypted store [default: $XDG_DATA_HOME/umbra or
    /// ~/.local/share/umbra]
    #[arg(
        long,
        value_name = "DIR",
        env = crate::store::datadir::ENV_HOME,
        hide_env_values = true,
        global = true
    )]
    pub data_dir: Option<PathBuf>,
    /// Read the store passphrase from the first line of FILE (instead of
    /// UMBRA_PASSPHRASE or a prompt)
    #[arg(long, value_name = "FILE", global = true)]
    pub passphrase_file: Option<PathBuf>,
    /// Print one JSON object instead of text (errors too, on standard error)
    #[arg(long, global = true)]
    pub json: bool,
    /// Configuration file [default: $XDG_CONFIG_HOME/umbra/config.toml or
    /// ~/.config/umbra/config.toml if it exists]
    #[arg(
        long,
        value_name = "FILE",
        env = "UMBRA_CONFIG",
        hide_env_values = true,
        global = true
    )]
    pub config: Option<PathBuf>,
}

/// Where a backup passphrase comes from (besides the prompt).
#[derive(Debug, Clone, Args)]
pub struct BackupPassphraseArgs {
    /// Read the backup passphrase from the first line of FILE (instead of
    /// UMBRA_BACKUP_PASSPHRASE or a prompt)
    #[arg(long, value_name = "FILE")]
    pub backup_passphrase_file: Option<PathBuf>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create your identity and the encrypted store, and print your fingerprint.
    Init {
        /// Your username (3-32 characters a-z, 0-9 or _, starting with a letter; a
        /// leading @ is optional)
        #[arg(long, value_name = "NAME", value_parser = parse_username)]
        name: Username,
    },
    /// Show your identity, fingerprint, data directory and store details.
    Status,
    /// Write a passphrase-protected backup of your identity and contacts to FILE.
    ///
    /// The backup gets its own passphrase (asked twice, or UMBRA_BACKUP_PASSPHRASE /
    /// --backup-passphrase-file). An existing FILE is never overwritten.
    ExportIdentity {
        /// The backup file to create
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Backup passphrase source.
        #[command(flatten)]
        backup: BackupPassphraseArgs,
    },
    /// Restore your identity and contacts from a backup FILE.
    ///
    /// Into a new data directory (its store passphrase is asked twice), or into an
    /// existing store holding the same identity.
    ImportIdentity {
        /// The backup file made by `umbra export-identity`
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Backup passphrase source.
        #[command(flatten)]
        backup: BackupPassphraseArgs,
    },
    /// Change the store passphrase (the whole database is re-encrypted).
    Passwd {
        /// Read the new passphrase from the first line of FILE (instead of
        /// UMBRA_NEW_PASSPHRASE or a prompt)
        #[arg(long, value_name = "FILE")]
        new_passphrase_file: Option<PathBuf>,
    },
    /// Run the offline demo: two users, a PGP-wrapped handshake and an
    /// encrypted conversation, entirely on this machine.
    Demo,
    /// Run the daemon: join Tor, publish your onion service, deliver messages.
    ///
    /// Stays in the foreground until Ctrl-C or SIGTERM. Every other chat
    /// command talks to it through the control socket in the data directory.
    Up,
    /// Register your username and key at a Handshaker (the directory).
    Register {
        /// The Handshaker: an .onion address, or http://host:port for one
        /// reached directly [default: the configured or last used one]
        #[arg(long, value_name = "ADDR")]
        handshaker: Option<String>,
        /// Accept a new signing key of this Handshaker. Umbra pins the key
        /// a Handshaker signs registrations with the first time it is used;
        /// a different key is refused until you pass this (only after its
        /// operator announced the change)
        #[arg(long)]
        trust_new_handshaker_key: bool,
    },
    /// Search the Handshaker's directory by username prefix.
    Search {
        /// The beginning of a username
        #[arg(value_name = "PREFIX")]
        prefix: String,
    },
    /// Look a user up at the Handshaker and show their fingerprint.
    Lookup {
        /// The user, e.g. @alice
        #[arg(value_name = "@USER")]
        user: String,
    },
    /// Send a connection request through the Handshaker.
    Request {
        /// The user, e.g. @alice
        #[arg(value_name = "@USER")]
        user: String,
        /// A short note shown to them
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
        /// Proceed although their key differs from the one you pinned
        #[arg(long)]
        allow_key_change: bool,
        /// Replace your existing conversation's keys (a re-key): once they
        /// accept, the old session ends on both sides
        #[arg(long)]
        rekey: bool,
    },
    /// List received connection requests with their verified fingerprints.
    Requests,
    /// Accept the connection request of a user.
    Accept {
        /// The requester, e.g. @alice
        #[arg(value_name = "@USER")]
        user: String,
        /// Proceed although their key differs from the one you pinned
        #[arg(long)]
        allow_key_change: bool,
    },
    /// Cancel your unanswered connection request to a user (its keys are erased).
    CancelRequest {
        /// The user you asked, e.g. @bob
        #[arg(value_name = "@USER")]
        user: String,
    },
    /// Reject the connection request of a user (silently, unless --notify).
    Reject {
        /// The requester, e.g. @alice
        #[arg(value_name = "@USER")]
        user: String,
        /// Send them a signed rejection through the Handshaker
        #[arg(long)]
        notify: bool,
    },
    /// List your contacts with presence, last seen and unread counts.
    Contacts,
    /// Private groups: create, invite, send, manage members (`umbra group --help`).
    Group {
        /// What to do.
        #[command(subcommand)]
        cmd: groups::GroupCommand,
    },
    /// Send a text message (queued until delivered).
    Send {
        /// The contact, e.g. @alice
        #[arg(value_name = "@USER")]
        user: String,
        /// The message
        #[arg(value_name = "TEXT")]
        text: String,
    },
    /// Chat interactively: incoming messages appear live, each line you type is sent.
    Chat {
        /// The contact, e.g. @alice
        #[arg(value_name = "@USER")]
        user: String,
    },
    /// Show the conversation with a contact.
    History {
        /// The contact, e.g. @alice
        #[arg(value_name = "@USER")]
        user: String,
        /// Only messages containing TEXT
        #[arg(long, value_name = "TEXT")]
        search: Option<String>,
        /// At most N messages (the newest; 1 to 1000)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: Option<u32>,
    },
    /// Mark a contact's fingerprint as checked out of band.
    Verify {
        /// The contact, e.g. @alice
        #[arg(value_name = "@USER")]
        user: String,
        /// The fingerprint they told you; must match the pinned one
        /// (40 hex digits; spaces and a 0x prefix are fine)
        #[arg(long, value_name = "FPR")]
        fingerprint: Option<String>,
        /// Mark it without showing the fingerprint and asking (you compared it already)
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Offer a file to a contact and follow the transfer (it waits while they are offline).
    SendFile {
        /// The contact, e.g. @alice
        #[arg(value_name = "@USER")]
        user: String,
        /// The file
        #[arg(value_name = "PATH")]
        path: PathBuf,
        /// What it is, for their display
        #[arg(long = "as", value_name = "KIND", value_parser = ["file", "image", "voice", "video"])]
        media: Option<String>,
        /// Return once offered; the daemon sends it in the background
        #[arg(long)]
        detach: bool,
    },
    /// List file transfers (ids, progress, what waits for your decision).
    Files {
        /// Only transfers with this contact
        #[arg(value_name = "@USER")]
        user: Option<String>,
    },
    /// Accept an incoming file and follow the transfer.
    AcceptFile {
        /// Transfer id from `umbra files` (a unique prefix is enough)
        #[arg(value_name = "ID")]
        id: String,
        /// Return at once; the daemon receives it in the background
        #[arg(long)]
        detach: bool,
    },
    /// Decline an incoming file offer.
    RejectFile {
        /// Transfer id from `umbra files`
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Cancel a transfer in either direction (the partial data is deleted).
    CancelFile {
        /// Transfer id from `umbra files`
        #[arg(value_name = "ID")]
        id: String,
    },
    /// Decrypt a received file from the data directory to PATH (a new file or a folder).
    SaveFile {
        /// Transfer id from `umbra files`
        #[arg(value_name = "ID")]
        id: String,
        /// Destination file, or an existing folder
        #[arg(value_name = "PATH")]
        path: PathBuf,
    },
    /// Open the full-screen chat client (needs `umbra up` running).
    Tui,
    /// End the session: keys are destroyed on both sides; a new request is needed.
    End {
        /// The contact, e.g. @alice
        #[arg(value_name = "@USER")]
        user: String,
    },
    /// Print a shell completion script to standard output.
    #[command(hide = true)]
    Completions {
        /// The shell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to standard output, or write it and one page
    /// per command (umbra-send.1, ...) into a directory.
    #[command(hide = true)]
    Man {
        /// Write umbra.1 and every umbra-COMMAND.1 it refers to here
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// Print an example configuration file with every key and its default.
    ConfigExample,
}

fn parse_username(s: &str) -> Result<Username, crate::identity::IdentityError> {
    Username::parse(s)
}

/// Run a parsed command line, writing results to `out`.
///
/// Passphrase prompts go to the terminal, never to `out`. On failure the returned
/// [`Failure`] carries the error, its exit code and the report to print.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<(), Failure> {
    let result = match &cli.command {
        Command::Init { name } => commands::init(&cli.global, name, out),
        Command::Status => commands::status(&cli.global, out),
        Command::ExportIdentity { file, backup } => {
            commands::export_identity(&cli.global, file, backup, out)
        }
        Command::ImportIdentity { file, backup } => {
            commands::import_identity(&cli.global, file, backup, out)
        }
        Command::Passwd {
            new_passphrase_file,
        } => commands::passwd(&cli.global, new_passphrase_file.as_deref(), out),
        Command::Demo => commands::demo(&cli.global, out),
        Command::Up => remote::up(&cli.global, out),
        Command::Register {
            handshaker,
            trust_new_handshaker_key,
        } => remote::register(
            &cli.global,
            handshaker.clone(),
            *trust_new_handshaker_key,
            out,
        ),
        Command::Search { prefix } => remote::search(&cli.global, prefix.clone(), out),
        Command::Lookup { user } => remote::lookup(&cli.global, user.clone(), out),
        Command::Request {
            user,
            note,
            allow_key_change,
            rekey,
        } => requests::request(
            &cli.global,
            user.clone(),
            note.clone(),
            *allow_key_change,
            *rekey,
            out,
        ),
        Command::Requests => requests::requests(&cli.global, out),
        Command::Accept {
            user,
            allow_key_change,
        } => requests::accept(&cli.global, user.clone(), *allow_key_change, out),
        Command::Reject { user, notify } => {
            requests::reject(&cli.global, user.clone(), *notify, out)
        }
        Command::CancelRequest { user } => requests::cancel_request(&cli.global, user.clone(), out),
        Command::Contacts => remote::contacts(&cli.global, out),
        Command::Send { user, text } => chat::send(&cli.global, user.clone(), text.clone(), out),
        Command::Group { cmd } => groups::run(&cli.global, cmd.clone(), out),
        Command::Chat { user } => chat::chat(&cli.global, user.clone(), out),
        Command::History {
            user,
            search,
            limit,
        } => chat::history(&cli.global, user.clone(), search.clone(), *limit, out),
        Command::Verify {
            user,
            fingerprint,
            yes,
        } => remote::verify(&cli.global, user.clone(), fingerprint.clone(), *yes, out),
        Command::End { user } => remote::end(&cli.global, user.clone(), out),
        Command::SendFile {
            user,
            path,
            media,
            detach,
        } => files::send_file(
            &cli.global,
            user.clone(),
            path.clone(),
            media.clone(),
            *detach,
            out,
        ),
        Command::Files { user } => files::files(&cli.global, user.clone(), out),
        Command::AcceptFile { id, detach } => {
            files::accept_file(&cli.global, id.clone(), *detach, out)
        }
        Command::RejectFile { id } | Command::CancelFile { id } => {
            files::cancel_file(&cli.global, id.clone(), out)
        }
        Command::SaveFile { id, path } => {
            files::save_file(&cli.global, id.clone(), path.clone(), out)
        }
        Command::Tui => remote::tui(&cli.global),
        Command::Completions { shell } => commands::completions(*shell, out),
        Command::Man { out_dir } => commands::man(out_dir.as_deref(), out),
        Command::ConfigExample => commands::config_example(out),
    };
    result.map_err(|error| Failure::new(error, &cli.global))
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "umbra",
            "status",
            "--json",
            "--data-dir",
            "/d",
            "--passphrase-file",
            "/p",
        ])
        .unwrap();
        assert!(cli.global.json);
        assert_eq!(
            cli.global.data_dir.as_deref(),
            Some(std::path::Path::new("/d"))
        );
        assert!(matches!(cli.command, Command::Status));
    }

    #[test]
    fn bad_username_is_a_usage_error() {
        let e = Cli::try_parse_from(["umbra", "init", "--name", "x"]).unwrap_err();
        assert_eq!(e.exit_code(), i32::from(EXIT_USAGE));
        assert!(e.to_string().contains("too short"), "{e}");
    }
}
