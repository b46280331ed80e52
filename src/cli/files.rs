//! File commands: `send-file`, `files`, `accept-file`, `reject-file`, `cancel-file`,
//! `save-file` (all through the running daemon; PROTOCOL.md §14, CONTROL.md).
//!
//! `send-file` and `accept-file` print the transfer (with its id) at once, then wait
//! for it with a progress bar (rate and ETA) on standard error unless `--detach`, and
//! print it again when it ends. Ctrl-C leaves the transfer running in the daemon and
//! says how to cancel it (exit 130).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::GlobalArgs;
use super::common::{data_dir, json, load_config, reply, runtime};
use super::err::CliError;
use crate::control::proto::{Event, Reply, Request, TransferView};
use crate::control::{Client, ClientError};
use crate::tui::model::human_size;

type Result<T, E = CliError> = std::result::Result<T, E>;

fn absolute(p: &Path) -> Result<String> {
    let abs = std::path::absolute(p).map_err(|source| CliError::Input {
        path: p.to_path_buf(),
        source,
    })?;
    Ok(abs.to_string_lossy().into_owned())
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

fn describe(t: &TransferView) -> String {
    let state = match (t.direction.as_str(), t.state.as_str()) {
        ("in", "offered") => "waiting for your decision".to_owned(),
        ("out", "offered") => "offered, waiting for them".to_owned(),
        (_, "active") => format!("{} of {}", human_size(t.done), human_size(t.size)),
        ("in", "completed") if t.stored => "received (save it with save-file)".to_owned(),
        ("in", "completed") => match &t.path {
            Some(p) => format!("saved to {p}"),
            None => "received".to_owned(),
        },
        (_, "completed") => "delivered".to_owned(),
        (_, s) => match &t.reason {
            Some(r) if r != s => format!("{s}: {r}"),
            _ => s.to_owned(),
        },
    };
    let arrow = if t.direction == "in" { "from" } else { "to" };
    format!(
        "{}  {} {} {} ({}, {}) — {state}",
        short(&t.id),
        t.name,
        arrow,
        t.username,
        t.media,
        human_size(t.size)
    )
}

/// `umbra send-file @user PATH`.
pub(crate) fn send_file(
    global: &GlobalArgs,
    username: String,
    path: PathBuf,
    media: Option<String>,
    detach: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let abs = absolute(&path)?;
    let t = reply!(
        global,
        Request::SendFile {
            username,
            path: abs,
            media,
        },
        Reply::Transfer
    );
    if detach {
        if global.json {
            return json(out, &t);
        }
        writeln!(out, "{}", describe(&t))?;
        return Ok(());
    }
    follow(global, t, out)
}

/// Prints the transfer at once (its id is what a script or a person needs
/// to accept, cancel or find it: UX-2026-11 A1), follows it until it ends,
/// then prints it again. `--json` prints one compact JSON line each time.
fn follow(global: &GlobalArgs, t: TransferView, out: &mut dyn Write) -> Result<()> {
    let rt = runtime()?;
    // Ctrl-C is ours before the id is printed: whoever reacts to the line
    // with SIGINT gets the "goes on in the daemon" report, never a bare kill.
    let interrupt = {
        let _entered = rt.enter();
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?
    };
    print_line(global, &t, out)?;
    out.flush()?;
    let done = match wait(global, &rt, interrupt, t)? {
        Waited::Ended(t) => t,
        Waited::Interrupted(t) => {
            return Err(CliError::Interrupted {
                what: format!(
                    "the transfer goes on in the daemon as {} ({})",
                    short(&t.id),
                    t.state
                ),
                hint: format!(
                    "`umbra cancel-file {}` stops it; `umbra files` shows how far it got",
                    short(&t.id)
                ),
            });
        }
    };
    finish(global, &done, out)
}

/// `umbra files [@user]`.
pub(crate) fn files(
    global: &GlobalArgs,
    username: Option<String>,
    out: &mut dyn Write,
) -> Result<()> {
    let list = reply!(global, Request::Files { username }, Reply::Transfers);
    if global.json {
        return json(out, &list);
    }
    if list.is_empty() {
        writeln!(out, "no file transfers")?;
    }
    for t in &list {
        writeln!(out, "{}", describe(t))?;
    }
    Ok(())
}

/// `umbra accept-file ID`.
pub(crate) fn accept_file(
    global: &GlobalArgs,
    id: String,
    detach: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let t = reply!(global, Request::AcceptFile { id }, Reply::Transfer);
    if detach {
        if global.json {
            return json(out, &t);
        }
        writeln!(out, "accepted: {}", describe(&t))?;
        return Ok(());
    }
    follow(global, t, out)
}

/// `umbra reject-file ID` / `umbra cancel-file ID`.
pub(crate) fn cancel_file(global: &GlobalArgs, id: String, out: &mut dyn Write) -> Result<()> {
    let t = reply!(global, Request::CancelFile { id }, Reply::Transfer);
    if global.json {
        return json(out, &t);
    }
    writeln!(out, "{}", describe(&t))?;
    Ok(())
}

/// `umbra save-file ID PATH`.
pub(crate) fn save_file(
    global: &GlobalArgs,
    id: String,
    path: PathBuf,
    out: &mut dyn Write,
) -> Result<()> {
    let abs = absolute(&path)?;
    let t = reply!(global, Request::SaveFile { id, path: abs }, Reply::Transfer);
    if global.json {
        return json(out, &t);
    }
    writeln!(
        out,
        "saved {} ({}, SHA-256 verified) to {}",
        t.name,
        human_size(t.size),
        t.path.as_deref().unwrap_or("?")
    )?;
    Ok(())
}

/// The transfer as one line: compact JSON with `--json`, else [`describe`].
fn print_line(global: &GlobalArgs, t: &TransferView, out: &mut dyn Write) -> Result<()> {
    if global.json {
        writeln!(out, "{}", serde_json::to_string(t)?)?;
    } else {
        writeln!(out, "{}", describe(t))?;
    }
    Ok(())
}

fn finish(global: &GlobalArgs, t: &TransferView, out: &mut dyn Write) -> Result<()> {
    print_line(global, t, out)?;
    if matches!(t.state.as_str(), "cancelled" | "failed") {
        return Err(CliError::control(ClientError::Api(
            crate::control::proto::ApiError::new(
                crate::control::proto::ErrorCode::BadRequest,
                format!(
                    "the transfer did not complete: {}",
                    t.reason.as_deref().unwrap_or("cancelled")
                ),
            ),
        )));
    }
    Ok(())
}

fn bar(t: &TransferView) -> ProgressBar {
    let pb = ProgressBar::new(t.size);
    let style = ProgressStyle::with_template(
        "{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    pb.set_style(style);
    pb.set_message(format!("{} {}", short(&t.id), t.name));
    pb.set_position(t.done);
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// How following a transfer ended.
enum Waited {
    /// It completed, failed or was cancelled (or the daemon stopped).
    Ended(TransferView),
    /// The user pressed Ctrl-C; the daemon carries on with it.
    Interrupted(TransferView),
}

/// Follows transfer `t` on the event stream until it completes or stops,
/// or until Ctrl-C.
fn wait(
    global: &GlobalArgs,
    rt: &tokio::runtime::Runtime,
    mut interrupt: tokio::signal::unix::Signal,
    t: TransferView,
) -> Result<Waited> {
    let config = load_config(global)?;
    let dir = data_dir(global, &config)?;
    rt.block_on(async {
        let mut events = Client::connect(&dir).await?;
        events.subscribe().await?;
        let mut cmds = Client::connect(&dir).await?;
        let pb = bar(&t);
        let who = t.username.clone();
        let waiting = |pb: &ProgressBar| {
            pb.set_message(format!(
                "{} {}: waiting for {who} (Ctrl-C leaves it to the daemon)",
                short(&t.id),
                t.name
            ))
        };
        // The state may have moved before we subscribed.
        let mut current = t.clone();
        if let Reply::Transfers(list) = cmds.call(Request::Files { username: None }).await?
            && let Some(x) = list.into_iter().find(|x| x.id == t.id)
        {
            current = x;
        }
        loop {
            match current.state.as_str() {
                "completed" | "cancelled" | "failed" => {
                    if current.state == "completed" {
                        pb.set_position(current.size);
                    }
                    pb.finish_and_clear();
                    return Ok(Waited::Ended(current));
                }
                "offered" => waiting(&pb),
                _ => pb.set_message(format!("{} {}", short(&t.id), current.name)),
            }
            let ev = tokio::select! {
                ev = events.next_event() => ev?,
                _ = interrupt.recv() => {
                    pb.abandon();
                    return Ok(Waited::Interrupted(current));
                }
            };
            let Some(ev) = ev else {
                pb.abandon_with_message("the daemon stopped; the transfer resumes when it runs");
                return Ok(Waited::Ended(current));
            };
            match ev {
                Event::FileProgress { id, done, .. } if id == t.id => {
                    pb.set_position(done);
                    if current.state == "offered" {
                        current.state = "active".into();
                    }
                }
                Event::FileCompleted(x) if x.id == t.id => current = x,
                Event::FileCancelled { id, .. } | Event::FileProgress { id, .. } if id == t.id => {
                    if let Reply::Transfers(list) =
                        cmds.call(Request::Files { username: None }).await?
                        && let Some(x) = list.into_iter().find(|x| x.id == t.id)
                    {
                        current = x;
                    }
                }
                Event::Lagged { .. } => {
                    if let Reply::Transfers(list) =
                        cmds.call(Request::Files { username: None }).await?
                        && let Some(x) = list.into_iter().find(|x| x.id == t.id)
                    {
                        current = x;
                        pb.set_position(current.done);
                    }
                }
                _ => {}
            }
        }
    })
}
