//! One function per subcommand. Each gathers its passphrases, calls the store's
//! [`crate::store::lifecycle`] functions and prints the result as text or,
//! with `--json`, as one JSON object.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use super::common::{Result, grouped, json, read_passphrase};
use super::err::{CliError, PassphraseRole};
use super::{BackupPassphraseArgs, Cli, GlobalArgs};
use crate::identity::{Identity, Username};
use crate::store::passphrase::{
    ENV_BACKUP_PASSPHRASE, ENV_NEW_PASSPHRASE, ENV_PASSPHRASE, PassphraseSource,
};
use crate::store::{self, DataDir, KdfParams, OwnIdentity, Store, datadir, lifecycle};

// ---------------------------------------------------------------- helpers

/// Read a passphrase being chosen now: on a prompt it is asked twice.
fn read_new_passphrase(role: PassphraseRole, file: Option<&Path>) -> Result<SecretString> {
    let (env, prompt, confirm) = match role {
        PassphraseRole::Store => (
            ENV_PASSPHRASE,
            "Choose an Umbra passphrase: ",
            "Repeat the passphrase: ",
        ),
        PassphraseRole::NewStore => (
            ENV_NEW_PASSPHRASE,
            "New Umbra passphrase: ",
            "Repeat the new passphrase: ",
        ),
        PassphraseRole::Backup => (
            ENV_BACKUP_PASSPHRASE,
            "Choose a backup passphrase: ",
            "Repeat the backup passphrase: ",
        ),
    };
    let pass = PassphraseSource::choose_with(file, env)
        .read_new(prompt, confirm)
        .map_err(CliError::passphrase(role))?;
    let n = pass.expose_secret().chars().count();
    if n < SHORT_PASSPHRASE {
        // A warning, not a refusal: the choice is the user's.
        let _ = writeln!(
            std::io::stderr(),
            "warning: this passphrase is only {n} character(s) long. Whoever copies the data \
             directory can try passphrases offline; Argon2id slows each try, but a short \
             passphrase still falls quickly. Several random words are better."
        );
    }
    Ok(pass)
}

/// New passphrases shorter than this (in characters) get a warning.
const SHORT_PASSPHRASE: usize = 8;

/// Whether `dir` holds a (non-empty) database. Checks the directory's permissions.
fn store_exists(dir: &Path) -> Result<bool> {
    let checked = match DataDir::open(dir) {
        Ok(d) => d,
        Err(store::Error::NotInitialized { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    Ok(std::fs::metadata(checked.db_path()).is_ok_and(|m| m.len() > 0))
}

/// Resolve the data directory, fail with "not initialized" before prompting if there
/// is no store, then ask for the passphrase and unlock.
fn unlock(global: &GlobalArgs) -> Result<Store> {
    Ok(unlock_keeping_passphrase(global)?.0)
}

/// [`unlock`], also returning the passphrase that opened the store.
fn unlock_keeping_passphrase(global: &GlobalArgs) -> Result<(Store, SecretString)> {
    let dir = datadir::resolve(global.data_dir.as_deref())?;
    if !store_exists(&dir)? {
        return Err(store::Error::NotInitialized { dir }.into());
    }
    let pass = read_passphrase(PassphraseRole::Store, global.passphrase_file.as_deref())?;
    let store = Store::open(&dir, &pass)?;
    Ok((store, pass))
}

// ---------------------------------------------------------------- init

#[derive(Serialize)]
struct InitOutput {
    username: String,
    fingerprint: String,
    fingerprint_grouped: String,
    data_dir: PathBuf,
    hs_dir: PathBuf,
}

/// `umbra init --name NAME`.
pub(crate) fn init(global: &GlobalArgs, name: &Username, out: &mut dyn Write) -> Result<()> {
    let dir = datadir::resolve(global.data_dir.as_deref())?;
    let file = global.passphrase_file.as_deref();
    // An existing store is only ever completed (an interrupted init), never replaced:
    // its passphrase is asked once; a new one is asked twice.
    let pass = if store_exists(&dir)? {
        read_passphrase(PassphraseRole::Store, file)?
    } else {
        read_new_passphrase(PassphraseRole::Store, file)?
    };
    let identity = Identity::generate(name).map_err(|source| CliError::Identity {
        action: "create the identity",
        source,
    })?;
    let own = OwnIdentity {
        username: identity.username().to_string(),
        fingerprint: identity.fingerprint().to_hex(),
        secret_cert: identity
            .to_secret_bytes()
            .map_err(|source| CliError::Identity {
                action: "serialize the identity",
                source,
            })?,
        created_at: crate::time::now_secs(),
    };
    let store = lifecycle::init(&dir, &pass, KdfParams::default(), &own)?;
    let hs_dir = store.dir().hs_dir()?;
    let data_dir = store.data_dir().to_path_buf();
    store.close()?;
    tracing::info!("store initialized");
    let o = InitOutput {
        username: own.username.clone(),
        fingerprint: own.fingerprint.clone(),
        fingerprint_grouped: identity.fingerprint().to_string(),
        data_dir,
        hs_dir,
    };
    if global.json {
        return json(out, &o);
    }
    writeln!(out, "Created the identity {}", o.username)?;
    writeln!(out, "  fingerprint  {}", o.fingerprint_grouped)?;
    writeln!(out, "  data dir     {}", o.data_dir.display())?;
    writeln!(out)?;
    writeln!(
        out,
        "Compare this fingerprint with your contacts over another channel before trusting them."
    )?;
    writeln!(
        out,
        "Back up your identity with `umbra export-identity FILE`; without the passphrase the store cannot be opened."
    )?;
    Ok(())
}

// ---------------------------------------------------------------- status

/// `status --json`: one shape whether or not the daemon runs (UX-2026-11
/// A3). What only the store can tell (it is locked while the daemon runs)
/// or only the daemon can tell is `null` when unavailable.
#[derive(Serialize)]
struct StatusOutput {
    /// Whether a daemon runs for this data directory.
    running: bool,
    data_dir: PathBuf,
    username: Option<String>,
    fingerprint: Option<String>,
    fingerprint_grouped: Option<String>,
    contacts: u64,
    /// From the store (`null` while the daemon holds it).
    schema_version: Option<u32>,
    kdf: Option<KdfParams>,
    hs_dir: Option<PathBuf>,
    /// From the daemon (`null` when it does not run).
    daemon: Option<crate::control::proto::StatusView>,
}

/// `umbra status`.
pub(crate) fn status(global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    // A running daemon holds the store: ask it (no passphrase needed).
    if let Some(d) = super::common::daemon_status(global)? {
        let config = super::common::load_config(global)?;
        let dir = super::common::data_dir(global, &config)?;
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        if global.json {
            return json(
                out,
                &StatusOutput {
                    running: true,
                    data_dir: dir,
                    username: Some(d.username.clone()),
                    fingerprint: Some(d.fingerprint.clone()),
                    fingerprint_grouped: Some(grouped(&d.fingerprint)),
                    contacts: d.contacts,
                    schema_version: None,
                    kdf: None,
                    hs_dir: None,
                    daemon: Some(d),
                },
            );
        }
        let mut rows = super::common::status_rows(&d);
        rows.insert(2, ("data dir", dir.display().to_string()));
        for (label, value) in rows {
            writeln!(out, "{label:<19} {value}")?;
        }
        return Ok(());
    }
    let store = unlock(global)?;
    let status = lifecycle::status(&store)?;
    store.close()?;
    let fingerprint_grouped = status.fingerprint.as_deref().map(grouped);
    if global.json {
        return json(
            out,
            &StatusOutput {
                running: false,
                data_dir: status.data_dir,
                username: status.username,
                fingerprint: status.fingerprint,
                fingerprint_grouped,
                contacts: status.contacts as u64,
                schema_version: Some(status.schema_version),
                kdf: Some(status.kdf),
                hs_dir: Some(status.hs_dir),
                daemon: None,
            },
        );
    }
    let s = &status;
    let none = "(none: run `umbra init --name NAME` to finish creating it)";
    let kdf = format!(
        "Argon2id, {} MiB, {} passes, {} lane(s)",
        s.kdf.m_cost_kib / 1024,
        s.kdf.t_cost,
        s.kdf.p_cost
    );
    let rows = [
        ("identity", s.username.as_deref().unwrap_or(none).to_owned()),
        (
            "fingerprint",
            fingerprint_grouped.unwrap_or_else(|| "-".into()),
        ),
        ("data dir", s.data_dir.display().to_string()),
        ("contacts", s.contacts.to_string()),
        ("schema", format!("v{}", s.schema_version)),
        ("key derivation", kdf),
        ("onion service keys", s.hs_dir.display().to_string()),
        (
            "daemon",
            "not running (start it with `umbra up`)".to_owned(),
        ),
    ];
    for (label, value) in rows {
        writeln!(out, "{label:<19} {value}")?;
    }
    Ok(())
}

// ---------------------------------------------------------------- export / import

#[derive(Serialize)]
struct ExportOutput {
    file: PathBuf,
    username: String,
    fingerprint: String,
    contacts: usize,
}

/// `umbra export-identity FILE`.
pub(crate) fn export_identity(
    global: &GlobalArgs,
    file: &Path,
    backup: &BackupPassphraseArgs,
    out: &mut dyn Write,
) -> Result<()> {
    // Checked before any prompt; the final create is exclusive anyway.
    if file.exists() {
        return Err(CliError::OutputExists {
            path: file.to_path_buf(),
        });
    }
    let store = unlock(global)?;
    let id = store.identity()?.ok_or_else(|| CliError::NoIdentity {
        dir: store.data_dir().to_path_buf(),
    })?;
    let contacts = store.contacts()?.len();
    let pass = read_new_passphrase(
        PassphraseRole::Backup,
        backup.backup_passphrase_file.as_deref(),
    )?;
    lifecycle::export_identity(&store, file, &pass, KdfParams::default())?;
    store.close()?;
    let o = ExportOutput {
        file: file.to_path_buf(),
        username: id.username.clone(),
        fingerprint: id.fingerprint.clone(),
        contacts,
    };
    if global.json {
        return json(out, &o);
    }
    writeln!(
        out,
        "Wrote the backup of {} and {} contact(s) to {}",
        o.username,
        o.contacts,
        o.file.display()
    )?;
    writeln!(out, "  fingerprint  {}", grouped(&o.fingerprint))?;
    writeln!(
        out,
        "Keep it somewhere safe: with its passphrase it restores your identity (`umbra import-identity`)."
    )?;
    Ok(())
}

#[derive(Serialize)]
struct ImportOutput {
    data_dir: PathBuf,
    username: Option<String>,
    fingerprint: String,
    contacts_added: usize,
    new_store: bool,
}

/// `umbra import-identity FILE`.
pub(crate) fn import_identity(
    global: &GlobalArgs,
    file: &Path,
    backup: &BackupPassphraseArgs,
    out: &mut dyn Write,
) -> Result<()> {
    std::fs::metadata(file).map_err(|source| CliError::Input {
        path: file.to_path_buf(),
        source,
    })?;
    let dir = datadir::resolve(global.data_dir.as_deref())?;
    let new_store = !store_exists(&dir)?;
    let backup_pass = read_passphrase(
        PassphraseRole::Backup,
        backup.backup_passphrase_file.as_deref(),
    )?;
    let store_file = global.passphrase_file.as_deref();
    let store_pass = if new_store {
        read_new_passphrase(PassphraseRole::Store, store_file)?
    } else {
        read_passphrase(PassphraseRole::Store, store_file)?
    };
    let (store, fingerprint, contacts_added) =
        lifecycle::import_identity(&dir, &store_pass, KdfParams::default(), file, &backup_pass)?;
    let username = store.identity()?.map(|i| i.username);
    let data_dir = store.data_dir().to_path_buf();
    store.close()?;
    let o = ImportOutput {
        data_dir,
        username,
        fingerprint,
        contacts_added,
        new_store,
    };
    if global.json {
        return json(out, &o);
    }
    writeln!(
        out,
        "Restored {} with {} contact(s) into {}",
        o.username.as_deref().unwrap_or("the identity"),
        o.contacts_added,
        o.data_dir.display()
    )?;
    writeln!(out, "  fingerprint  {}", grouped(&o.fingerprint))?;
    Ok(())
}

// ---------------------------------------------------------------- passwd

#[derive(Serialize)]
struct PasswdOutput {
    data_dir: PathBuf,
    changed: bool,
}

/// `umbra passwd`.
pub(crate) fn passwd(
    global: &GlobalArgs,
    new_passphrase_file: Option<&Path>,
    out: &mut dyn Write,
) -> Result<()> {
    // The current passphrase is checked before the new one is asked for
    // (a wrong one changes nothing on disk).
    let (mut store, old) = unlock_keeping_passphrase(global)?;
    // A running daemon keeps the store open under the old key: changing it
    // underneath would leave that daemon failing on every command. Holding
    // the daemon lock also keeps one from starting meanwhile.
    let _lock = crate::daemon::DaemonLock::acquire(store.data_dir()).map_err(|e| match e {
        crate::daemon::DaemonError::AlreadyRunning => CliError::DaemonHoldsStore {
            action: "change the passphrase",
        },
        e => CliError::daemon(e),
    })?;
    let new = read_new_passphrase(PassphraseRole::NewStore, new_passphrase_file)?;
    let same: bool = subtle::ConstantTimeEq::ct_eq(
        old.expose_secret().as_bytes(),
        new.expose_secret().as_bytes(),
    )
    .into();
    drop(old);
    if same {
        return Err(CliError::Usage {
            message: "the new passphrase is the same as the current one".into(),
            hint: Some("nothing was changed; choose a different passphrase".into()),
        });
    }
    store.rekey(&new, None)?;
    let data_dir = store.data_dir().to_path_buf();
    store.close()?;
    tracing::info!("store passphrase changed");
    let o = PasswdOutput {
        data_dir,
        changed: true,
    };
    if global.json {
        return json(out, &o);
    }
    writeln!(
        out,
        "Changed the passphrase of the store in {}",
        o.data_dir.display()
    )?;
    writeln!(
        out,
        "Backups made earlier keep their own passphrase; update UMBRA_PASSPHRASE or your passphrase file if you use one."
    )?;
    Ok(())
}

// ---------------------------------------------------------------- demo, completions, man

#[derive(Serialize)]
struct DemoOutput {
    transcript: String,
}

/// `umbra demo`.
pub(crate) fn demo(global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    if !global.json {
        return Ok(crate::demo::run(out)?);
    }
    let mut buf = Vec::new();
    crate::demo::run(&mut buf)?;
    json(
        out,
        &DemoOutput {
            transcript: String::from_utf8_lossy(&buf).into_owned(),
        },
    )
}

/// `umbra completions SHELL` (hidden).
pub(crate) fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<()> {
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "umbra", out);
    Ok(())
}

/// `umbra config-example`.
pub(crate) fn config_example(out: &mut dyn Write) -> Result<()> {
    out.write_all(crate::config::EXAMPLE_CONFIG.as_bytes())?;
    Ok(())
}

/// `umbra man [--out-dir DIR]` (hidden).
pub(crate) fn man(out_dir: Option<&Path>, out: &mut dyn Write) -> Result<()> {
    let cmd = Cli::command();
    let Some(dir) = out_dir else {
        clap_mangen::Man::new(cmd).render(out)?;
        return Ok(());
    };
    // The main page lists its commands as umbra-COMMAND(1): write those too.
    let write = |name: String, page: clap::Command| -> Result<()> {
        let path = dir.join(format!("{name}.1"));
        let mut buf = Vec::new();
        clap_mangen::Man::new(page).render(&mut buf)?;
        std::fs::write(&path, buf)?;
        Ok(())
    };
    let mut cmd = cmd;
    cmd.build();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("umbra-{}", sub.get_name());
        write(name.clone(), sub.clone().display_name(name))?;
    }
    write("umbra".into(), cmd)?;
    writeln!(out, "wrote the man pages to {}", dir.display())?;
    Ok(())
}
