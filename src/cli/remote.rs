//! The commands that talk to a running daemon over its control socket
//! (`register`, `search`, `send`, `chat`, ...), and `umbra up` itself.
//!
//! Each command opens one control connection, sends one request and prints
//! the reply as text or (`--json`) as one JSON object. `chat` keeps two
//! connections: one subscribed to events, one for sending.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;

use super::GlobalArgs;
use super::err::{CliError, PassphraseRole};
use crate::config::Config;
use crate::control::proto::{
    ContactView, DirectoryView, Event, MessageView, Reply, Request, RequestView, StatusView,
};
use crate::control::{Client, ClientError};
use crate::daemon::{self, DaemonLock, DaemonOptions, Progress};
use crate::store::{self, Store, datadir};

type Result<T, E = CliError> = std::result::Result<T, E>;

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
fn progress_note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

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

pub(super) fn unexpected() -> CliError {
    CliError::control(ClientError::Protocol("unexpected reply".into()))
}

pub(super) fn json(out: &mut dyn Write, v: &impl serde::Serialize) -> Result<()> {
    serde_json::to_writer_pretty(&mut *out, v)?;
    writeln!(out)?;
    Ok(())
}

fn when(secs: u64) -> String {
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
fn clock(secs: u64) -> String {
    use crate::time::{now_secs, utc_date, utc_hhmm};
    let date = utc_date(secs);
    if date == utc_date(now_secs()) {
        format!("{} UTC", utc_hhmm(secs))
    } else {
        format!("{date} {} UTC", utc_hhmm(secs))
    }
}

fn grouped(hex: &str) -> String {
    crate::identity::Fingerprint::from_hex(hex)
        .map(|f| f.to_string())
        .unwrap_or_else(|_| hex.to_owned())
}

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
    let pass =
        super::commands::read_passphrase(PassphraseRole::Store, global.passphrase_file.as_deref())?;
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

// ---------------------------------------------------------------- status

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
            "handshaker",
            s.handshaker
                .clone()
                .unwrap_or_else(|| "(none: `umbra register --handshaker ADDRESS`)".into()),
        ),
        ("contacts", s.contacts.to_string()),
        ("pending requests", s.pending_requests.to_string()),
    ]
}

// ---------------------------------------------------------------- directory

/// `umbra register [--handshaker ADDR]`.
pub(crate) fn register(
    global: &GlobalArgs,
    handshaker: Option<String>,
    out: &mut dyn Write,
) -> Result<()> {
    if !global.json {
        progress_note("registering (solving the Handshaker's proof of work, a few seconds)...");
    }
    let Reply::Registered(d) = call(global, Request::Register { handshaker })? else {
        return Err(unexpected());
    };
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
    let Reply::Directory(entries) = call(
        global,
        Request::Search {
            prefix,
            limit: None,
        },
    )?
    else {
        return Err(unexpected());
    };
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
    let Reply::Found(d) = call(global, Request::Lookup { username })? else {
        return Err(unexpected());
    };
    if global.json {
        return json(out, &d);
    }
    print_entries(out, std::slice::from_ref(&d))
}

// ---------------------------------------------------------------- requests

fn print_contact(out: &mut dyn Write, verb: &str, c: &ContactView) -> Result<()> {
    writeln!(out, "{verb} {} ({})", c.username, grouped(&c.fingerprint))?;
    Ok(())
}

/// `umbra request @user [--note TEXT]`.
pub(crate) fn request(
    global: &GlobalArgs,
    username: String,
    note: Option<String>,
    allow_key_change: bool,
    rekey: bool,
    out: &mut dyn Write,
) -> Result<()> {
    if !global.json {
        progress_note(
            "sending the request through the Handshaker (proof of work, a few seconds)...",
        );
    }
    let Reply::Contact(c) = call(
        global,
        Request::Request {
            username,
            note: note.unwrap_or_default(),
            allow_key_change,
            rekey,
        },
    )?
    else {
        return Err(unexpected());
    };
    if global.json {
        return json(out, &c);
    }
    print_contact(out, "Connection request sent to", &c)?;
    writeln!(
        out,
        "Compare the fingerprint with them over another channel; you can chat once they accept."
    )?;
    Ok(())
}

/// `umbra requests`.
pub(crate) fn requests(global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let Reply::Requests(list) = call(global, Request::Requests)? else {
        return Err(unexpected());
    };
    if global.json {
        return json(out, &list);
    }
    if list.is_empty() {
        writeln!(out, "no pending connection requests")?;
    }
    for r in &list {
        print_request(out, r)?;
    }
    Ok(())
}

fn print_request(out: &mut dyn Write, r: &RequestView) -> Result<()> {
    writeln!(out, "{}  ({})", r.username, when(r.received_at))?;
    writeln!(out, "  fingerprint  {}", grouped(&r.fingerprint))?;
    if !r.note.is_empty() {
        writeln!(out, "  note         {}", r.note.escape_debug())?;
    }
    if r.key_changed {
        writeln!(
            out,
            "  WARNING      this key differs from the one you pinned for {}",
            r.username
        )?;
    }
    if r.rekey {
        writeln!(
            out,
            "  re-key       already your contact: accepting replaces your conversation's keys"
        )?;
    }
    Ok(())
}

/// `umbra accept @user`.
pub(crate) fn accept(
    global: &GlobalArgs,
    username: String,
    allow_key_change: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let Reply::Contact(c) = call(
        global,
        Request::Accept {
            username,
            allow_key_change,
        },
    )?
    else {
        return Err(unexpected());
    };
    if global.json {
        return json(out, &c);
    }
    print_contact(out, "Accepted", &c)?;
    writeln!(
        out,
        "The answer goes directly to their onion service; messages can be sent now."
    )?;
    Ok(())
}

/// `umbra cancel-request @user`.
pub(crate) fn cancel_request(
    global: &GlobalArgs,
    username: String,
    out: &mut dyn Write,
) -> Result<()> {
    let name = username.clone();
    call(global, Request::CancelRequest { username })?;
    if global.json {
        return json(out, &serde_json::json!({"cancelled": name}));
    }
    writeln!(
        out,
        "Cancelled your request to {name}: its keys are erased, so it can no longer be accepted"
    )?;
    Ok(())
}

/// `umbra reject @user`.
pub(crate) fn reject(
    global: &GlobalArgs,
    username: String,
    notify: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let name = username.clone();
    call(global, Request::Reject { username, notify })?;
    if global.json {
        return json(out, &serde_json::json!({"rejected": name}));
    }
    writeln!(out, "Rejected the request from {name}")?;
    Ok(())
}

// ---------------------------------------------------------------- contacts

/// `umbra contacts`.
pub(crate) fn contacts(global: &GlobalArgs, out: &mut dyn Write) -> Result<()> {
    let Reply::Contacts(list) = call(global, Request::Contacts)? else {
        return Err(unexpected());
    };
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
    let Reply::Contacts(list) = call(global, Request::Contacts)? else {
        return Err(unexpected());
    };
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
    let Reply::Contact(c) = call(
        global,
        Request::Verify {
            username,
            fingerprint,
        },
    )?
    else {
        return Err(unexpected());
    };
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
    if global.json {
        return json(out, &serde_json::json!({"ended": name}));
    }
    writeln!(
        out,
        "Ended the session with {name}; its keys are erased. A new request is needed to talk again."
    )?;
    Ok(())
}

// ---------------------------------------------------------------- messages

/// `umbra send @user TEXT`.
pub(crate) fn send(
    global: &GlobalArgs,
    username: String,
    text: String,
    out: &mut dyn Write,
) -> Result<()> {
    let Reply::Message(m) = call(global, Request::Send { username, text })? else {
        return Err(unexpected());
    };
    if global.json {
        return json(out, &m);
    }
    writeln!(out, "message #{} {}", m.seq, m.state)?;
    Ok(())
}

fn print_message(out: &mut dyn Write, me: &str, them: &str, m: &MessageView) -> Result<()> {
    let who = if m.direction == "out" { me } else { them };
    let state = if m.direction == "out" {
        format!("  [{}]", m.state)
    } else {
        String::new()
    };
    // Peer text is printed escaped so it cannot drive the terminal; a
    // multi-line message keeps its lines, indented under the first.
    let body = m
        .body
        .lines()
        .map(|l| l.escape_debug().to_string())
        .collect::<Vec<_>>()
        .join("\n    ");
    writeln!(out, "{} {who}: {body}{state}", clock(m.sent_at))?;
    Ok(())
}

/// `umbra history @user [--search TEXT] [--limit N]`.
pub(crate) fn history(
    global: &GlobalArgs,
    username: String,
    search: Option<String>,
    limit: Option<u32>,
    out: &mut dyn Write,
) -> Result<()> {
    let them = crate::control::server::at(&username);
    let searched = search.is_some();
    let Reply::History(list) = call(
        global,
        Request::History {
            username,
            limit,
            search,
        },
    )?
    else {
        return Err(unexpected());
    };
    if global.json {
        return json(out, &list);
    }
    if list.is_empty() {
        writeln!(
            out,
            "{}",
            if searched {
                "no messages match"
            } else {
                "no messages yet"
            }
        )?;
    }
    for m in &list {
        print_message(out, "me", &them, m)?;
    }
    Ok(())
}

/// `umbra chat @user`: history, then live messages; each input line is sent.
pub(crate) fn chat(global: &GlobalArgs, username: String, out: &mut dyn Write) -> Result<()> {
    let config = load_config(global)?;
    let dir = data_dir(global, &config)?;
    let them = crate::control::server::at(&username);
    let rt = runtime()?;
    let (mut events, mut cmds) = rt
        .block_on(async {
            let mut ev = Client::connect(&dir).await?;
            ev.subscribe().await?;
            let cmds = Client::connect(&dir).await?;
            Ok::<_, ClientError>((ev, cmds))
        })
        .map_err(CliError::control)?;
    let Reply::History(list) = rt
        .block_on(cmds.call(Request::History {
            username: username.clone(),
            limit: Some(20),
            search: None,
        }))
        .map_err(CliError::control)?
    else {
        return Err(unexpected());
    };
    writeln!(
        out,
        "chat with {them}: type a line and press Enter to send; /quit or Ctrl-D leaves"
    )?;
    for m in &list {
        print_message(out, "me", &them, m)?;
    }
    out.flush()?;
    let _ = rt.block_on(cmds.call(Request::MarkRead {
        username: username.clone(),
    }));
    // Input lines come from a blocking thread.
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        for line in stdin.lock().lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    rt.block_on(async {
        loop {
            tokio::select! {
                line = line_rx.recv() => {
                    let Some(line) = line else { return Ok(()) };
                    let text = line.trim_end();
                    if text == "/quit" { return Ok(()); }
                    if text.is_empty() { continue; }
                    match cmds.call(Request::Send { username: username.clone(), text: text.to_owned() }).await {
                        Ok(Reply::Message(m)) => print_message(out, "me", &them, &m)?,
                        Ok(_) => return Err(unexpected()),
                        Err(ClientError::Api(e)) => {
                            writeln!(out, "! {}", e.message)?;
                            if let Some(h) = e.hint { writeln!(out, "! {h}")?; }
                        }
                        Err(e) => return Err(CliError::control(e)),
                    }
                    out.flush()?;
                }
                ev = events.next_event() => {
                    let Some(ev) = ev.map_err(CliError::control)? else {
                        writeln!(out, "! the daemon stopped")?;
                        return Ok(());
                    };
                    match ev {
                        Event::Message { username: u, message } if u == them => {
                            print_message(out, "me", &them, &message)?;
                            let _ = cmds.call(Request::MarkRead { username: username.clone() }).await;
                        }
                        Event::Delivery { username: u, upto, state } if u == them => {
                            writeln!(out, "  (messages up to #{upto} {state})")?;
                        }
                        Event::Presence { username: u, online, .. } if u == them => {
                            writeln!(out, "  ({them} is {})", if online { "online" } else { "offline" })?;
                        }
                        Event::SessionEnded { username: u, by_peer } if u == them => {
                            writeln!(out, "  (session ended{})", if by_peer { " by them" } else { "" })?;
                        }
                        Event::Message { username: u, .. } => {
                            writeln!(out, "  (new message from {u})")?;
                        }
                        _ => {}
                    }
                    out.flush()?;
                }
            }
        }
    })
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
