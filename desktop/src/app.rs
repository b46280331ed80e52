//! The window's state machine: start-up (connect, unlock and start the
//! daemon, first run) and the main window, with its dialogs, shortcuts,
//! theme and font size. Drawing of the main window is in
//! [`crate::chat`]; this module owns the state and talks to the backend.

use std::path::PathBuf;
use std::sync::mpsc;

use eframe::egui::{self, Key, Modifiers};
use umbra_control::proto::{Reply, Request};
use zeroize::Zeroizing;

use crate::backend::{Backend, CallError, Command, Update};
use crate::daemon::{Progress, Umbra};
use crate::model::{Model, Notice, at};
use crate::notify::Notifier;

/// Longest message the daemon accepts, in bytes (control API `send`).
pub const MAX_TEXT: usize = 16 * 1024;

/// Where the window is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum Screen {
    /// Looking for the daemon.
    Connecting,
    /// No daemon runs; an identity exists: ask for the passphrase.
    Unlock,
    /// `umbra up` is starting: Tor bootstrap progress, 0–100, or `None`
    /// before the first report.
    Starting(Option<u8>, &'static str),
    /// No identity yet: choose a name and a passphrase.
    FirstRun,
    /// `umbra init` is running.
    Creating,
    /// The identity was created: show its fingerprint.
    Created(String),
    /// Connected.
    Main,
}

/// A dialog over the main window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialog {
    /// Search the directory and send a request.
    Search,
    /// Pending requests.
    Requests,
    /// A contact's fingerprint and verification.
    Details(String),
    /// Confirm ending the session with this contact.
    EndSession(String),
    /// Pick a file to send to this contact.
    SendFile(String),
    /// Choose the folder to save this transfer to.
    SaveFile(String),
    /// Keyboard shortcuts.
    Help,
}

/// Settings chosen on the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// How to run `umbra` for the data directory.
    pub umbra: Umbra,
    /// Desktop notifications (off in tests).
    pub notifications: bool,
}

/// The text fields of the start-up screens (zeroized on drop).
pub struct StartForm {
    /// Username for a new identity.
    pub name: String,
    /// Passphrase.
    pub passphrase: Zeroizing<String>,
    /// Passphrase again (new identities).
    pub confirm: Zeroizing<String>,
    /// The passphrase of a just-created identity, held until the daemon
    /// starts with it (moments later), then zeroized.
    pub created: Option<Zeroizing<String>>,
}

/// Room for a passphrase typed without reallocating (a reallocation would
/// leave a copy behind in freed memory).
const PASSPHRASE_ROOM: usize = 1024;

impl Default for StartForm {
    fn default() -> Self {
        let room = || Zeroizing::new(String::with_capacity(PASSPHRASE_ROOM));
        StartForm {
            name: String::new(),
            passphrase: room(),
            confirm: room(),
            created: None,
        }
    }
}

/// Fields of the main window's dialogs.
#[derive(Debug, Default)]
pub struct Forms {
    /// Search prefix.
    pub search: String,
    /// The user a request is being written to, and its note.
    pub request_to: Option<String>,
    /// The request's note.
    pub note: String,
    /// Accepting a changed key was confirmed for this requester.
    pub key_change_ok: Option<String>,
    /// The file path being chosen.
    pub path: String,
    /// The folder being browsed in the file dialog.
    pub browse: PathBuf,
    /// Media type of the file being sent (`file`, `image`, …).
    pub media: String,
}

/// The application.
pub struct App {
    pub(crate) opts: Options,
    pub(crate) backend: Backend,
    pub(crate) model: Model,
    pub(crate) screen: Screen,
    pub(crate) start: Option<mpsc::Receiver<Progress>>,
    pub(crate) form: StartForm,
    pub(crate) forms: Forms,
    /// The open conversation.
    pub(crate) selected: Option<String>,
    /// The message being written (per window, kept when switching).
    pub(crate) compose: String,
    pub(crate) dialog: Option<Dialog>,
    /// The last error, shown in a banner until dismissed.
    pub(crate) error: Option<String>,
    /// Short in-window notices (newest last).
    pub(crate) toasts: Vec<String>,
    pub(crate) notifier: Notifier,
    pub(crate) images: crate::images::Cache,
    /// The compose field asks for focus on the next frame.
    pub(crate) focus_compose: bool,
    /// Whether the window has keyboard focus (no notifications then).
    pub(crate) focused: bool,
    /// A fixed "now" (unix seconds) for day separators (tests, snapshots).
    pub(crate) fixed_now: Option<u64>,
    /// Heights of the open conversation's rows (only visible ones are drawn).
    pub(crate) row_heights: crate::chat::RowHeights,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").field("screen", &self.screen).finish()
    }
}

impl App {
    /// A window for `opts`; `ctx` is woken by the backend.
    pub fn new(opts: Options, ctx: &egui::Context) -> std::io::Result<App> {
        let wake = ctx.clone();
        let backend = Backend::spawn(opts.umbra.data_dir.clone(), move || wake.request_repaint())?;
        backend.send(Command::Connect);
        let notifier = Notifier::new(opts.notifications);
        let browse = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/"));
        Ok(App {
            opts,
            backend,
            model: Model::default(),
            screen: Screen::Connecting,
            start: None,
            form: StartForm::default(),
            forms: Forms {
                browse,
                media: "file".into(),
                ..Forms::default()
            },
            selected: None,
            compose: String::new(),
            dialog: None,
            error: None,
            toasts: Vec::new(),
            notifier,
            images: crate::images::Cache::default(),
            focus_compose: false,
            focused: true,
            fixed_now: None,
            row_heights: Default::default(),
        })
    }

    /// Fixes "now" for day separators (tests and snapshots stay the same
    /// whatever the date).
    pub fn set_now(&mut self, secs: u64) {
        self.fixed_now = Some(secs);
    }

    /// Now, in unix seconds.
    pub(crate) fn now(&self) -> u64 {
        self.fixed_now.unwrap_or_else(crate::format::now_secs)
    }

    /// The current screen (tests).
    pub fn screen(&self) -> &Screen {
        &self.screen
    }

    /// What the window knows (tests, measurements).
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Mutable model (measurements fill it directly).
    pub fn model_mut(&mut self) -> &mut Model {
        &mut self.model
    }

    /// Opens the conversation with `username`.
    pub fn select(&mut self, username: &str) {
        let name = at(username);
        let needs_history = self.model.conversation(&name).is_none_or(|c| !c.loaded);
        if needs_history {
            self.backend.call(Request::History {
                username: name.clone(),
                limit: Some(crate::model::HISTORY_PAGE),
                search: None,
            });
        }
        if self.model.contacts.get(&name).is_some_and(|c| c.unread > 0) {
            self.backend.call(Request::MarkRead {
                username: name.clone(),
            });
            if let Some(c) = self.model.contacts.get_mut(&name) {
                c.unread = 0;
            }
        }
        self.selected = Some(name);
        self.focus_compose = true;
    }

    /// Sends the composed message to the open conversation.
    pub(crate) fn send_compose(&mut self) {
        let Some(to) = self.selected.clone() else {
            return;
        };
        let text = self.compose.trim_end().to_owned();
        if text.trim().is_empty() {
            return;
        }
        if text.len() > MAX_TEXT {
            self.error = Some(format!(
                "The message is too long ({} bytes; at most {MAX_TEXT}).",
                text.len()
            ));
            return;
        }
        self.backend.call(Request::Send { username: to, text });
        self.compose.clear();
        self.focus_compose = true;
    }

    pub(crate) fn refresh_all(&self) {
        for r in [
            Request::Status,
            Request::Contacts,
            Request::Requests,
            Request::Files { username: None },
        ] {
            self.backend.call(r);
        }
        if let Some(s) = &self.selected {
            self.backend.call(Request::History {
                username: s.clone(),
                limit: Some(crate::model::HISTORY_PAGE),
                search: None,
            });
        }
    }

    fn on_update(&mut self, u: Update) {
        match u {
            Update::NotRunning => {
                if !matches!(self.screen, Screen::Starting(..) | Screen::Created(_)) {
                    self.screen = if self.opts.umbra.has_identity() {
                        Screen::Unlock
                    } else {
                        Screen::FirstRun
                    };
                }
            }
            Update::ConnectFailed(e) => {
                self.error = Some(e);
                self.screen = Screen::Unlock;
            }
            Update::Connected => {
                self.screen = Screen::Main;
                self.error = None;
                self.refresh_all();
            }
            Update::Disconnected => {
                self.error = Some("The Umbra daemon stopped.".into());
                self.screen = Screen::Connecting;
                self.backend.send(Command::Connect);
            }
            Update::Reply { request, result } => self.on_reply(request, result),
            Update::Event(e) => {
                use umbra_control::proto::Event;
                let refresh_contacts = matches!(
                    e,
                    Event::RequestAnswered { .. } | Event::SessionEnded { .. }
                );
                let lagged = matches!(e, Event::Lagged { .. });
                let for_open = match &e {
                    Event::Message { username, .. } => self.selected.as_deref() == Some(username),
                    _ => false,
                };
                if let Some(n) = self.model.apply_event(e) {
                    self.notice(n, for_open);
                }
                if refresh_contacts {
                    self.backend.call(Request::Contacts);
                }
                if lagged {
                    self.refresh_all();
                }
            }
        }
    }

    fn notice(&mut self, n: Notice, for_open: bool) {
        let (text, name) = match &n {
            Notice::Message(u) => ("New message from", u),
            Notice::Request(u) => ("Connection request from", u),
            Notice::File(u) => ("File offered by", u),
        };
        let name = crate::format::line(name).into_owned();
        if let Notice::Message(u) = &n
            && for_open
            && self.focused
        {
            // Shown in the open conversation: it is read now.
            if let Some(c) = self.model.contacts.get_mut(u) {
                c.unread = 0;
            }
            self.backend.call(Request::MarkRead {
                username: u.clone(),
            });
            return;
        }
        if !self.focused {
            self.notifier.show(&format!("{text} {name}"));
        }
        self.toasts.push(format!("{text} {name}"));
        if self.toasts.len() > 3 {
            self.toasts.remove(0);
        }
    }

    fn on_reply(&mut self, request: Request, result: Result<Reply, CallError>) {
        match result {
            Ok(reply) => {
                let refresh = matches!(
                    request,
                    Request::Accept { .. }
                        | Request::Reject { .. }
                        | Request::End { .. }
                        | Request::Verify { .. }
                        | Request::Request { .. }
                );
                match &request {
                    Request::Request { username, .. } => {
                        self.toasts.push(format!("Request sent to {username}"));
                        self.forms.request_to = None;
                        self.forms.note.clear();
                    }
                    Request::SaveFile { .. } => self.dialog = None,
                    Request::SendFile { .. } => self.dialog = None,
                    Request::End { username } => {
                        self.toasts.push(format!("Session with {username} ended"));
                    }
                    _ => {}
                }
                self.model.apply_reply(&request, reply);
                if refresh {
                    self.backend.call(Request::Contacts);
                    self.backend.call(Request::Requests);
                }
            }
            Err(e) => {
                let mut text = e.message;
                if let Some(h) = e.hint {
                    text.push_str(" — ");
                    text.push_str(&h);
                }
                self.error = Some(crate::format::line(&text).into_owned());
            }
        }
    }

    fn poll_start(&mut self) {
        let Some(rx) = &self.start else { return };
        let steps: Vec<Progress> = rx.try_iter().collect();
        for p in steps {
            match p {
                Progress::Bootstrap(pct) => {
                    self.screen = Screen::Starting(Some(pct), "Joining the Tor network")
                }
                Progress::Launching => {
                    self.screen = Screen::Starting(Some(100), "Publishing your onion address")
                }
                Progress::Ready => {
                    self.start = None;
                    self.screen = Screen::Connecting;
                    self.backend.send(Command::Connect);
                    return;
                }
                Progress::Created { fingerprint } => {
                    self.start = None;
                    self.screen = Screen::Created(fingerprint);
                    return;
                }
                Progress::Failed(why) => {
                    self.start = None;
                    self.error = Some(crate::format::line(&why).into_owned());
                    self.screen = if matches!(self.screen, Screen::Creating) {
                        Screen::FirstRun
                    } else {
                        Screen::Unlock
                    };
                    return;
                }
            }
        }
    }

    /// Starts the daemon with `passphrase` (zeroized here).
    pub(crate) fn start_daemon(&mut self, passphrase: Zeroizing<String>, ctx: &egui::Context) {
        let wake = ctx.clone();
        match self
            .opts
            .umbra
            .start(passphrase, move || wake.request_repaint())
        {
            Ok(rx) => {
                self.error = None;
                self.start = Some(rx);
                self.screen = Screen::Starting(None, "Opening your store");
            }
            Err(e) => {
                self.error = Some(format!(
                    "Could not run {}: {e}",
                    self.opts.umbra.bin.display()
                ))
            }
        }
    }

    /// Runs `umbra init`.
    pub(crate) fn create_identity(&mut self, ctx: &egui::Context) {
        let name = self.form.name.trim().trim_start_matches('@').to_owned();
        if name.is_empty() {
            self.error = Some("Choose a username.".into());
            return;
        }
        if self.form.passphrase.is_empty() {
            self.error = Some("Choose a passphrase.".into());
            return;
        }
        if *self.form.passphrase != *self.form.confirm {
            self.error = Some("The two passphrases differ.".into());
            return;
        }
        let fresh = StartForm::default();
        let pass = std::mem::replace(&mut self.form.passphrase, fresh.passphrase);
        self.form.confirm = fresh.confirm;
        let wake = ctx.clone();
        let mut keep = Zeroizing::new(String::with_capacity(pass.len()));
        keep.push_str(&pass);
        match self
            .opts
            .umbra
            .init(&name, pass, move || wake.request_repaint())
        {
            Ok(rx) => {
                self.error = None;
                self.form.created = Some(keep);
                self.start = Some(rx);
                self.screen = Screen::Creating;
            }
            Err(e) => {
                self.error = Some(format!(
                    "Could not run {}: {e}",
                    self.opts.umbra.bin.display()
                ))
            }
        }
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        if self.screen != Screen::Main {
            return;
        }
        let cmd = Modifiers::COMMAND;
        let pressed = |k: Key, m: Modifiers| ctx.input_mut(|i| i.consume_key(m, k));
        if pressed(Key::Escape, Modifiers::NONE) && self.dialog.is_some() {
            self.dialog = None;
        }
        if pressed(Key::F, cmd) {
            self.dialog = Some(Dialog::Search);
        }
        if pressed(Key::R, cmd) {
            self.dialog = Some(Dialog::Requests);
        }
        if pressed(Key::F1, Modifiers::NONE) {
            self.dialog = Some(Dialog::Help);
        }
        if pressed(Key::D, cmd) {
            let dark = ctx.theme() == egui::Theme::Dark;
            ctx.set_theme(if dark {
                egui::Theme::Light
            } else {
                egui::Theme::Dark
            });
        }
        if pressed(Key::L, cmd) {
            self.focus_compose = true;
        }
        let down = pressed(Key::ArrowDown, Modifiers::ALT);
        let up = pressed(Key::ArrowUp, Modifiers::ALT);
        if down || up {
            let names: Vec<String> = self.model.contacts.keys().cloned().collect();
            if !names.is_empty() {
                let pos = self
                    .selected
                    .as_ref()
                    .and_then(|s| names.iter().position(|n| n == s));
                let next = match (pos, down) {
                    (None, _) => 0,
                    (Some(p), true) => (p + 1) % names.len(),
                    (Some(p), false) => (p + names.len() - 1) % names.len(),
                };
                self.select(&names[next]);
            }
        }
        if let Some(sel) = self.selected.clone() {
            if pressed(Key::I, cmd) {
                self.dialog = Some(Dialog::Details(sel.clone()));
            }
            if pressed(Key::O, cmd) {
                self.forms.path.clear();
                self.dialog = Some(Dialog::SendFile(sel.clone()));
            }
            if pressed(Key::E, cmd | Modifiers::SHIFT) {
                self.dialog = Some(Dialog::EndSession(sel));
            }
        }
    }

    /// Files dropped on the window go to the open conversation.
    fn dropped_files(&mut self, ctx: &egui::Context) {
        let dropped: Vec<PathBuf> = ctx.input(|i| {
            i.raw
                .dropped_files
                .iter()
                .filter_map(|f| f.path.clone())
                .collect()
        });
        if dropped.is_empty() || self.screen != Screen::Main {
            return;
        }
        let Some(to) = self.selected.clone() else {
            self.error = Some("Open a conversation first, then drop the file on it.".into());
            return;
        };
        for path in dropped {
            self.send_file(&to, &path);
        }
    }

    pub(crate) fn send_file(&mut self, to: &str, path: &std::path::Path) {
        if !crate::daemon::is_sendable(path) {
            self.error = Some(format!("{} is not a file.", path.display()));
            return;
        }
        let media = crate::images::media_of(path);
        self.backend.call(Request::SendFile {
            username: to.to_owned(),
            path: path.display().to_string(),
            media: Some(media.into()),
        });
        self.toasts.push(format!(
            "Offering {} to {to}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
    }

    /// One frame: process what arrived, then draw.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        self.focused = ctx.input(|i| i.viewport().focused.unwrap_or(true));
        for u in self.backend.drain() {
            self.on_update(u);
        }
        self.poll_start();
        self.shortcuts(&ctx);
        self.dropped_files(&ctx);
        match self.screen.clone() {
            Screen::Main => crate::chat::main_window(self, ui),
            other => crate::start::screen(self, ui, &other),
        }
    }
}

impl eframe::App for App {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        App::ui(self, ui);
    }
}
