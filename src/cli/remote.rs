//! `umbra up` itself, and the daemon commands about the directory and
//! contacts (`register`, `search`, `lookup`, `contacts`, `verify`, `end`,
//! `tui`). Requests live in `requests.rs`, messages in `chat.rs`, files in
//! `files.rs`.
//!
//! Each command opens one control connection, sends one request and prints
//! the reply as text or (`--json`) as one JSON object.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::GlobalArgs;
use super::common::{
    Result, call, data_dir, grouped, json, load_config, print_contact, print_done, progress_note,
    read_passphrase, reply, runtime, when,
};
use super::err::{CliError, PassphraseRole};
use crate::control::proto::{ContactView, DirectoryView, Reply, Request};
use crate::daemon::{self, DaemonLock, DaemonOptions, Progress};
use crate::store::{self, Store};

// ---------------------------------------------------------------- up

/// `umbra up`.
pub(crate) fn up(global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let config = load_config(global)?;
    config.validate().map_err(CliError::config)?;
    let dir = data_dir(global, &config)?;
    let checked = store::DataDir::open(&dir)?;
    if !checked.db_path().exists() {
        return Err(store::Error::NotInitialized { dir }.into());
    }
    if let Some(mode) = checked.visible_to_others() {
        progress_note(&format!(
            "warning: others can see into {} (mode {mode:o}); make it private: chmod 700 {}",
            dir.display(),
            dir.display()
        ));
    }
    let lock = DaemonLock::acquire(&dir).map_err(CliError::daemon)?;
    let pass = read_passphrase(PassphraseRole::Store, global.passphrase_file.as_deref())?;
    let store = Store::open(&dir, &pass)?;
    drop(pass);
    let username = store
        .identity()?
        .map(|i| i.username)
        .ok_or(CliError::NoIdentity { dir: dir.clone() })?;
    let node = config.node_config();
    let opts = DaemonOptions {
        config,
        data_dir: dir.clone(),
        node,
    };
    let json_mode = global.json;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let bar = Arc::new(if tty && !json_mode {
        let b = indicatif::ProgressBar::new(100);
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg:24} [{bar:30}] {pos:>3}%")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_message("joining the Tor network");
        Some(b)
    } else {
        None
    });
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let b = bar.clone();
    let progress = move |p: Progress| match p {
        Progress::Bootstrap(pct) => match &*b {
            Some(b) => b.set_position(u64::from(pct)),
            None if !json_mode => progress_note(&format!("joining the Tor network: {pct}%")),
            None => {}
        },
        Progress::Launching => match &*b {
            Some(b) => {
                b.set_position(100);
                b.set_message("launching onion service");
            }
            None if !json_mode => progress_note("Tor is up; launching the onion service"),
            None => {}
        },
        Progress::Ready { socket } => {
            if let Some(b) = &*b {
                b.finish_and_clear();
            }
            let _ = ready_tx.send(socket);
        }
        Progress::Stopping => {
            if !json_mode {
                progress_note("stopping (closing connections)...");
            }
        }
    };
    let rt = runtime()?;
    rt.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(CliError::Output)?;
        let mut int = signal(SignalKind::interrupt()).map_err(CliError::Output)?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut stop_tx = Some(stop_tx);
        let mut handle = tokio::spawn(async move {
            let stop = async {
                let _ = stop_rx.await;
            };
            daemon::run(opts, store, &lock, progress, stop).await
        });
        loop {
            tokio::select! {
                r = &mut handle => {
                    return match r {
                        Ok(r) => r.map_err(CliError::daemon),
                        Err(_) => Err(CliError::daemon(daemon::DaemonError::Config(
                            "the daemon task failed".into(),
                        ))),
                    };
                }
                Some(socket) = ready_rx.recv() => {
                    if json_mode {
                        // One compact line, so scripts can block on it.
                        let v = serde_json::json!({"ready": true, "username": username, "socket": socket});
                        writeln!(out, "{v}")?;
                    } else {
                        writeln!(out, "Umbra is up as {username}. Control socket: {}", socket.display())?;
                        writeln!(out, "Use `umbra status`, `umbra chat @NAME` or `umbra tui` in another terminal; Ctrl-C stops.")?;
                    }
                    out.flush()?;
                }
                _ = term.recv() => { if let Some(t) = stop_tx.take() { let _ = t.send(()); } }
                _ = int.recv() => { if let Some(t) = stop_tx.take() { let _ = t.send(()); } }
            }
        }
    })
}

// ---------------------------------------------------------------- directory

/// `umbra register [--handshaker ADDR] [--trust-new-handshaker-key]`.
pub(crate) fn register(
    global: &GlobalArgs,
    handshaker: Option<String>,
    trust_new_key: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if !global.json {
        progress_note("registering (solving the Handshaker's proof of work, a few seconds)...");
    }
    let d = reply!(
        global,
        Request::Register {
            handshaker,
            trust_new_key
        },
        Reply::Registered
    );
    if global.json {
        return json(out, &d);
    }
    writeln!(
        out,
        "Registered {} ({})",
        d.username,
        grouped(&d.fingerprint)
    )?;
    Ok(())
}

fn print_entries(out: &mut dyn Write, entries: &[DirectoryView]) -> Result<()> {
    for d in entries {
        let mark = if d.key_differs {
            "  KEY DIFFERS FROM YOUR CONTACT"
        } else if d.is_contact {
            "  (contact)"
        } else {
            ""
        };
        writeln!(out, "{:<34} {}{mark}", d.username, grouped(&d.fingerprint))?;
    }
    Ok(())
}

/// `umbra search PREFIX`.
pub(crate) fn search(global: &GlobalArgs, prefix: String, out: &mut dyn Write) -> Result<()> {
    let entries = reply!(
        global,
        Request::Search {
            prefix,
            limit: None,
        },
        Reply::Directory
    );
    if global.json {
        return json(out, &entries);
    }
    if entries.is_empty() {
        writeln!(out, "no users found")?;
    }
    print_entries(out, &entries)
}

/// `umbra lookup @user`.
pub(crate) fn lookup(global: &GlobalArgs, username: String, out: &mut dyn Write) -> Result<()> {
    let d = reply!(global, Request::Lookup { username }, Reply::Found);
    if global.json {
        return json(out, &d);
    }
    print_entries(out, std::slice::from_ref(&d))
}

// ---------------------------------------------------------------- contacts

/// `umbra contacts`.
pub(crate) fn contacts(global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let list = reply!(global, Request::Contacts, Reply::Contacts);
    if global.json {
        return json(out, &list);
    }
    if list.is_empty() {
        writeln!(
            out,
            "no contacts yet: `umbra search PREFIX`, then `umbra request @NAME`"
        )?;
    }
    for c in &list {
        let presence = if c.online {
            "online".to_owned()
        } else {
            match c.last_seen {
                Some(t) => format!("last seen {}", when(t)),
                None => "never seen".to_owned(),
            }
        };
        let mut extra = String::new();
        if c.unread > 0 {
            extra.push_str(&format!(", {} unread", c.unread));
        }
        if c.queued > 0 {
            extra.push_str(&format!(", {} queued", c.queued));
        }
        if !c.session {
            extra.push_str(", no session");
        }
        writeln!(
            out,
            "{:<34} {:<9} {:<8} {presence}{extra}",
            c.username,
            c.state,
            if c.verified { "verified" } else { "" },
        )?;
        match c.problem.as_deref() {
            Some("session_mismatch") => writeln!(
                out,
                "  session mismatch: {} keeps refusing your session (they ended it, or you both \
                 changed it). Run `umbra end {}`, then `umbra request {}`",
                c.username, c.username, c.username
            )?,
            Some(_) => writeln!(
                out,
                "  unreachable for a while; retrying automatically (messages stay queued)"
            )?,
            None => {}
        }
    }
    Ok(())
}

/// `umbra verify @user [--fingerprint FPR] [--yes]`.
///
/// Without `--fingerprint` the user must have looked: on a terminal the
/// grouped fingerprint is shown and confirmed with y; elsewhere `--yes` is
/// required (UX-2026-11 A2).
pub(crate) fn verify(
    global: &GlobalArgs,
    username: String,
    fingerprint: Option<String>,
    yes: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let list = reply!(global, Request::Contacts, Reply::Contacts);
    let name = crate::control::server::at(username.trim());
    // Unknown names fall through to the daemon's error (with "did you mean").
    let known = list
        .into_iter()
        .find(|c| c.username.eq_ignore_ascii_case(&name));
    if let Some(c) = &known
        && fingerprint.is_none()
    {
        if c.verified {
            if global.json {
                return json(out, c);
            }
            return print_contact(out, "Already verified:", c);
        }
        if !yes {
            confirm_fingerprint(global, c)?;
        }
    }
    let c = reply!(
        global,
        Request::Verify {
            username,
            fingerprint,
        },
        Reply::Contact
    );
    if global.json {
        return json(out, &c);
    }
    let already = known.is_some_and(|k| k.verified);
    print_contact(
        out,
        if already {
            "Already verified:"
        } else {
            "Marked as verified:"
        },
        &c,
    )
}

/// Shows `c`'s fingerprint on a terminal and asks; refuses without one.
fn confirm_fingerprint(global: &GlobalArgs, c: &ContactView) -> Result<()> {
    use std::io::IsTerminal;
    let name = &c.username;
    if global.json || !std::io::stdin().is_terminal() {
        return Err(CliError::Usage {
            message: format!(
                "verifying {name} needs the fingerprint they read to you, or a terminal to show \
                 it and ask"
            ),
            hint: Some(format!(
                "umbra verify {name} --fingerprint FPR (their 40 digits), or --yes if you \
                 compared `umbra lookup {name}` with them already"
            )),
        });
    }
    let mut err = std::io::stderr().lock();
    write!(
        err,
        "The fingerprint pinned for {name}:\n\n    {}\n\nDoes it match what {name} reads to you \
         over a channel you trust (in person, a call)? [y/N] ",
        grouped(&c.fingerprint)
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CliError::NotConfirmed {
            what: format!("{name} was not marked as verified"),
        })
    }
}

/// `umbra end @user`.
pub(crate) fn end(global: &GlobalArgs, username: String, out: &mut dyn Write) -> Result<()> {
    let name = username.clone();
    call(global, Request::End { username })?;
    print_done(
        global,
        out,
        "ended",
        &name,
        &format!(
            "Ended the session with {name}; its keys are erased. A new request is needed to talk again."
        ),
    )
}

/// `umbra tui`.
pub(crate) fn tui(global: &GlobalArgs) -> Result<()> {
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(CliError::Usage {
            message: "umbra tui needs a terminal (standard input and output)".into(),
            hint: Some(
                "run it in a terminal; scripts can use `umbra chat @USER`, `umbra send` and \
                 the other commands"
                    .into(),
            ),
        });
    }
    let config = load_config(global)?;
    let dir = data_dir(global, &config)?;
    crate::tui::run(&dir).map_err(|e| match e {
        crate::tui::TuiError::Control(c) => CliError::control(c),
        crate::tui::TuiError::Io(e) => CliError::Output(e),
    })
}
