//! `umbra tui`: a full-screen chat client in the terminal (ratatui +
//! crossterm), built only on the daemon's control API — no second path to
//! the store or the network.
//!
//! * `model.rs`: the UI state and how daemon events change it (sans-IO);
//! * `input.rs`: keys → model changes and daemon commands (sans-IO);
//! * `view.rs`: rendering (also what the TestBackend tests snapshot);
//! * this file: terminal set-up and the event loop.
//!
//! The alternate screen is used and always restored (also on errors and
//! panics), so no message or name stays in the terminal's scrollback.

pub mod input;
pub mod model;
pub mod view;

use std::path::Path;
use std::time::Duration;

use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use crate::control::proto::{Event, GroupEventView, GroupRequest, Reply, Request};
use crate::control::{Client, ClientError};
use input::{Action, handle_key};
use model::{App, Overlay, Reload};
use view::Theme;

/// Errors of the terminal UI.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuiError {
    /// The daemon could not be reached or failed.
    #[error(transparent)]
    Control(#[from] ClientError),
    /// The terminal failed.
    #[error("terminal: {0}")]
    Io(#[from] std::io::Error),
}

/// Restores the terminal when dropped.
struct TermGuard;

impl Drop for TermGuard {
    fn drop(&mut self) {
        restore();
    }
}

fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(std::io::stdout(), LeaveAlternateScreen);
}

/// Runs the UI against the daemon of `data_dir` until the user quits.
pub fn run(data_dir: &Path) -> Result<(), TuiError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Connect before touching the terminal, so errors print normally.
        let mut events = Client::connect(data_dir).await?;
        events.subscribe().await?;
        let mut cmds = Client::connect(data_dir).await?;
        let mut app = App::default();
        refresh(&mut cmds, &mut app, true).await?;

        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            hook(info);
        }));
        enable_raw_mode()?;
        let _guard = TermGuard;
        execute!(std::io::stdout(), EnterAlternateScreen)?;
        let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
        term.clear()?;
        let theme = Theme::from_env();
        let mut keys = EventStream::new();
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        while !app.quit {
            term.draw(|f| view::render(f, &app, theme))?;
            tokio::select! {
                k = keys.next() => match k {
                    Some(Ok(TermEvent::Key(key))) if key.kind != KeyEventKind::Release => {
                        let action = handle_key(&mut app, key);
                        perform(&mut cmds, &mut app, action).await?;
                    }
                    Some(Ok(_)) => {} // resize: redrawn above
                    Some(Err(e)) => return Err(e.into()),
                    None => break,
                },
                ev = events.next_event() => match ev? {
                    Some(ev) => on_event(&mut cmds, &mut app, ev).await?,
                    None => {
                        app.notice = Some("the daemon stopped; press Ctrl-C to leave".into());
                    }
                },
                _ = tick.tick() => {
                    refresh(&mut cmds, &mut app, false).await?;
                    // Delivery states of group messages come with the history.
                    if let Some(id) = app.current_group_id() {
                        group_history(&mut cmds, &mut app, &id).await?;
                    }
                }
            }
        }
        Ok(())
    })
}

/// Re-reads status, contacts, requests (and the open conversation).
async fn refresh(cmds: &mut Client, app: &mut App, history: bool) -> Result<(), ClientError> {
    if let Reply::Status(s) = cmds.call(Request::Status).await? {
        app.status = Some(s);
    }
    if let Reply::Contacts(c) = cmds.call(Request::Contacts).await? {
        app.set_contacts(c);
    }
    if let Reply::Requests(r) = cmds.call(Request::Requests).await? {
        app.requests = r;
    }
    if let Reply::Transfers(t) = cmds.call(Request::Files { username: None }).await? {
        app.transfers = t;
    }
    if let Reply::Groups(g) = cmds.call(Request::Group(GroupRequest::List)).await? {
        app.set_groups(g.groups, g.invites);
    }
    if history && let Some(name) = app.current_name() {
        open(cmds, app, name).await?;
    }
    if history && let Some(id) = app.current_group_id() {
        open_group(cmds, app, &id).await?;
    }
    Ok(())
}

/// Runs a request whose refusal is shown in the notice line rather than
/// ending the UI (a group that just vanished, a daemon rule).
async fn call_or_notice(
    cmds: &mut Client,
    app: &mut App,
    request: Request,
) -> Result<Option<Reply>, ClientError> {
    match cmds.call(request).await {
        Ok(r) => Ok(Some(r)),
        Err(ClientError::Api(e)) => {
            app.notice = Some(api_words(e));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Re-reads a group's messages.
async fn group_history(cmds: &mut Client, app: &mut App, id: &str) -> Result<(), ClientError> {
    let req = Request::Group(GroupRequest::History {
        group: id.to_owned(),
        limit: Some(model::KEEP as u32),
    });
    if let Some(Reply::GroupHistory(h)) = call_or_notice(cmds, app, req).await? {
        app.set_group_history(id, h);
    }
    Ok(())
}

/// Re-reads a group's members.
async fn group_members(cmds: &mut Client, app: &mut App, id: &str) -> Result<(), ClientError> {
    let req = Request::Group(GroupRequest::Members {
        group: id.to_owned(),
    });
    if let Some(Reply::GroupMembers(m)) = call_or_notice(cmds, app, req).await? {
        app.set_members(id, m);
    }
    Ok(())
}

/// Loads a group's messages and members.
async fn open_group(cmds: &mut Client, app: &mut App, id: &str) -> Result<(), ClientError> {
    group_history(cmds, app, id).await?;
    group_members(cmds, app, id).await
}

/// Loads a conversation and marks it read.
async fn open(cmds: &mut Client, app: &mut App, name: String) -> Result<(), ClientError> {
    if let Reply::History(h) = cmds
        .call(Request::History {
            username: name.clone(),
            limit: Some(model::KEEP as u32),
            search: None,
        })
        .await?
    {
        app.set_history(&name, h);
    }
    cmds.call(Request::MarkRead {
        username: name.clone(),
    })
    .await?;
    if let Some(c) = app.contacts.iter_mut().find(|c| c.username == name) {
        c.unread = 0;
    }
    Ok(())
}

async fn on_event(cmds: &mut Client, app: &mut App, ev: Event) -> Result<(), ClientError> {
    if let Event::FileOffered(t) = &ev
        && t.state == "offered"
    {
        notify(&format!("{} offers you a file", view::clean(&t.username)));
    }
    if let Event::Message { username, .. } = &ev {
        notify(&format!("New message from {}", view::clean(username)));
        let shown = app.current_name().as_deref() == Some(username.as_str());
        if shown {
            let _ = cmds
                .call(Request::MarkRead {
                    username: username.clone(),
                })
                .await;
        }
    }
    if let Event::Group(GroupEventView::Message { group, .. }) = &ev
        && app.current_group_id().as_deref() != Some(group.as_str())
    {
        let name = app.groups.iter().find(|g| &g.id == group);
        notify(&match name {
            Some(g) => format!("New message in {}", view::clean(&g.name)),
            None => "New group message".to_owned(),
        });
    }
    match app.apply(&ev) {
        Reload::Nothing => {}
        Reload::Contact(name) => {
            refresh(cmds, app, false).await?;
            if app.current_name().as_deref() == Some(name.as_str()) {
                open(cmds, app, name).await?;
            }
        }
        // Members known (the group was opened): re-read them, so who
        // joined, left or changed role shows in the timeline.
        Reload::Group(id) if app.group_members.contains_key(&id) => {
            group_members(cmds, app, &id).await?;
        }
        Reload::Group(_) => {}
        Reload::All => refresh(cmds, app, true).await?,
    }
    if app.contacts.is_empty() || matches!(ev, Event::RequestAnswered { .. }) {
        refresh(cmds, app, true).await?;
    }
    Ok(())
}

/// `~` expanded and made absolute against the current directory (the
/// daemon has its own working directory).
fn absolute(path: &str) -> String {
    let p = match path.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(|h| std::path::PathBuf::from(h).join(rest))
            .unwrap_or_else(|| std::path::PathBuf::from(path)),
        None => std::path::PathBuf::from(path),
    };
    std::path::absolute(&p)
        .unwrap_or(p)
        .to_string_lossy()
        .into_owned()
}

/// A desktop notification without message content, if `notify-send` exists.
fn notify(text: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("notify-send").is_file()));
    if found {
        let _ = tokio::process::Command::new("notify-send")
            .arg("Umbra")
            .arg(text)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
}

/// Runs a group command; its refusal becomes the notice line.
async fn perform_group(
    cmds: &mut Client,
    app: &mut App,
    req: GroupRequest,
) -> Result<(), ClientError> {
    let Some(reply) = call_or_notice(cmds, app, Request::Group(req.clone())).await? else {
        return Ok(());
    };
    match (&req, reply) {
        (GroupRequest::Send { group, .. }, Reply::GroupMessage(m)) => {
            app.upsert_group_message(group, m);
            return Ok(());
        }
        (GroupRequest::Create { .. }, Reply::Group(g)) => {
            app.notice = Some(format!(
                "created “{}”: Ctrl-P, then i invites contacts",
                g.name
            ));
            let id = g.id.clone();
            refresh(cmds, app, false).await?;
            app.select_group(&id);
            return open_group(cmds, app, &id).await;
        }
        // Not the owner: the change waits for the owner's countersignature.
        (_, Reply::Group(_)) => {
            app.notice = Some(
                "asked the owner (only the owner appends changes); it applies once they countersign it"
                    .into(),
            );
        }
        (_, _) => app.notice = Some(group_done(&req).into()),
    }
    refresh(cmds, app, false).await?;
    if let Some(id) = app.current_group_id() {
        group_members(cmds, app, &id).await?;
    }
    Ok(())
}

/// What a group command did, in words.
fn group_done(req: &GroupRequest) -> &'static str {
    match req {
        GroupRequest::Invite { .. } => "invite sent; they join when they accept it",
        GroupRequest::Join { .. } => "accepted: you join once the owner's log arrives",
        GroupRequest::Decline { .. } => "invite declined",
        GroupRequest::SetRole { .. } => "role changed",
        GroupRequest::Remove { .. } => "removed; nobody delivers to them any more",
        GroupRequest::Leave { .. } => "you left the group",
        GroupRequest::Rename { .. } => "renamed",
        GroupRequest::Topic { .. } => "topic set",
        GroupRequest::Dissolve { .. } => "the group is dissolved",
        _ => "done",
    }
}

/// Runs a daemon command; its error becomes the notice line.
async fn perform(cmds: &mut Client, app: &mut App, action: Action) -> Result<(), ClientError> {
    let request = match &action {
        Action::None => return Ok(()),
        Action::Open(n) => return open(cmds, app, n.clone()).await,
        Action::OpenGroup(id) => return open_group(cmds, app, id).await,
        Action::Group(req) => return perform_group(cmds, app, req.clone()).await,
        Action::Send { to, text } => Request::Send {
            username: to.clone(),
            text: text.clone(),
        },
        Action::Search(q) => Request::Search {
            prefix: q.clone(),
            limit: Some(20),
        },
        Action::Request(n) => Request::Request {
            username: n.clone(),
            note: String::new(),
            allow_key_change: false,
            rekey: false,
        },
        Action::Accept(n) => Request::Accept {
            username: n.clone(),
            allow_key_change: false,
        },
        Action::Reject(n) => Request::Reject {
            username: n.clone(),
            notify: false,
        },
        Action::Verify(n) => Request::Verify {
            username: n.clone(),
            fingerprint: None,
        },
        Action::End(n) => Request::End {
            username: n.clone(),
        },
        Action::SendFile { to, path } => Request::SendFile {
            username: to.clone(),
            path: absolute(path),
            media: None,
        },
        Action::AcceptFile(id) => Request::AcceptFile { id: id.clone() },
        Action::CancelFile(id) => Request::CancelFile { id: id.clone() },
        Action::SaveFile { id, path } => Request::SaveFile {
            id: id.clone(),
            path: absolute(path),
        },
    };
    match cmds.call(request).await {
        Ok(Reply::Message(m)) => {
            if let Action::Send { to, .. } = &action {
                app.upsert_message(to, m);
            }
        }
        Ok(Reply::Transfer(t)) => {
            app.notice = Some(match &action {
                Action::SendFile { to, .. } => format!(
                    "offered {} ({}) to {to}; Ctrl-T shows progress",
                    t.name,
                    model::human_size(t.size)
                ),
                Action::AcceptFile(_) => format!("accepted {}", t.name),
                Action::CancelFile(_) => format!("stopped {}", t.name),
                Action::SaveFile { .. } => {
                    format!("saved to {}", t.path.clone().unwrap_or_default())
                }
                _ => "done".into(),
            });
            app.upsert_transfer(t);
        }
        Ok(Reply::Directory(results)) => {
            if let Overlay::Search { query, .. } = &app.overlay {
                app.notice = Some(format!("{} found", results.len()));
                app.overlay = Overlay::Search {
                    query: query.clone(),
                    results,
                    sel: 0,
                };
            }
        }
        Ok(_) => {
            app.notice = Some(match &action {
                Action::Request(n) => format!("request sent to {n}"),
                Action::Accept(n) => format!("accepted {n}"),
                Action::Reject(n) => format!("rejected {n}"),
                Action::Verify(n) => format!("{n} marked verified"),
                Action::End(n) => format!("session with {n} ended"),
                _ => "done".into(),
            });
            refresh(cmds, app, true).await?;
        }
        Err(ClientError::Api(e)) => app.notice = Some(api_words(e)),
        Err(e) => return Err(e),
    }
    Ok(())
}

/// A daemon refusal in words: its sentence and hint.
fn api_words(e: crate::control::proto::ApiError) -> String {
    match e.hint {
        Some(h) => format!("{} — {h}", e.message),
        None => e.message,
    }
}
