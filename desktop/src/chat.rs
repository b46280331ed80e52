//! The main window: header (status, actions), contact list, conversation
//! timeline (messages and files with day separators), compose field, and
//! the dialogs (requests, search, contact details, end session, files).
//!
//! Everything a peer wrote (names, notes, messages, file names) goes
//! through [`crate::format`]'s neutralisers before it is shown; egui shows
//! text as text (no markup).

use eframe::egui::{self, Align, Layout, RichText, WidgetInfo, WidgetType};
use umbra_control::proto::{ContactView, MessageView, Request, TransferView};

use crate::app::{App, Dialog};
use crate::format::{self, grouped, line, neutralize_multiline};
use crate::model::Item;
use crate::start::{error_banner, field};

/// Width of the contact list.
const CONTACTS_WIDTH: f32 = 220.0;

/// Draws the main window and its open dialog.
pub fn main_window(app: &mut App, ui: &mut egui::Ui) {
    header(app, ui);
    egui::Panel::left("contacts")
        .resizable(true)
        .default_size(CONTACTS_WIDTH)
        .show(ui, |ui| contacts(app, ui));
    egui::CentralPanel::default().show(ui, |ui| conversation(app, ui));
    dialogs(app, ui.ctx());
}

fn header(app: &mut App, ui: &mut egui::Ui) {
    egui::Panel::top("header").show(ui, |ui| {
        if let Some(s) = &app.model.status {
            ui.horizontal_wrapped(|ui| {
                ui.strong(line(&s.username));
                ui.label("·");
                ui.label(crate::model::tor_words(&s.tor));
            });
        }
        ui.horizontal_wrapped(|ui| {
            if ui.button("Find people").on_hover_text("Ctrl+F").clicked() {
                app.dialog = Some(Dialog::Search);
            }
            let n = app.model.requests.len();
            let label = if n == 0 {
                "Requests".to_owned()
            } else {
                format!("Requests ({n})")
            };
            if ui.button(label).on_hover_text("Ctrl+R").clicked() {
                app.dialog = Some(Dialog::Requests);
            }
            let zoom = ui.ctx().zoom_factor();
            if ui
                .button("Larger text")
                .on_hover_text("Ctrl+Plus")
                .clicked()
            {
                ui.ctx().set_zoom_factor((zoom + 0.1).min(3.0));
            }
            if ui
                .button("Smaller text")
                .on_hover_text("Ctrl+Minus")
                .clicked()
            {
                ui.ctx().set_zoom_factor((zoom - 0.1).max(0.5));
            }
            let dark = ui.ctx().theme() == egui::Theme::Dark;
            let theme = if dark { "Light theme" } else { "Dark theme" };
            if ui.button(theme).on_hover_text("Ctrl+D").clicked() {
                ui.ctx().set_theme(if dark {
                    egui::Theme::Light
                } else {
                    egui::Theme::Dark
                });
            }
            if ui
                .button("Help")
                .on_hover_text("Keyboard shortcuts (F1)")
                .clicked()
            {
                app.dialog = Some(Dialog::Help);
            }
            if ui
                .button("Stop Umbra")
                .on_hover_text("Stops the daemon: nothing is received until it is started again")
                .clicked()
            {
                app.backend.call(Request::Shutdown);
            }
        });
        error_banner(app, ui);
        for t in &app.toasts {
            ui.label(RichText::new(t).italics());
        }
        if !app.toasts.is_empty() && ui.small_button("Clear notices").clicked() {
            app.toasts.clear();
        }
    });
}

/// A contact's line and its spoken description.
fn contact_words(c: &ContactView) -> (String, String) {
    let name = line(&c.username).into_owned();
    let mut shown = name.clone();
    let mut spoken = vec![name, if c.online { "online" } else { "offline" }.to_owned()];
    if c.verified {
        shown.push_str(" ✔");
        spoken.push("verified".into());
    }
    shown.push_str(if c.online {
        " · online"
    } else {
        " · offline"
    });
    if c.unread > 0 {
        shown.push_str(&format!("  ({})", c.unread));
        spoken.push(format!("{} unread", c.unread));
    }
    if !c.session {
        shown.push_str("  – no session");
        spoken.push("no session".into());
    } else if c.problem.is_some() {
        shown.push_str("  ⚠");
        spoken.push("connection problem".into());
    }
    (shown, spoken.join(", "))
}

fn contacts(app: &mut App, ui: &mut egui::Ui) {
    ui.heading("Contacts");
    if app.model.contacts.is_empty() {
        ui.label("No contacts yet. Use “Find people” to send a request.");
    }
    let mut clicked = None;
    egui::ScrollArea::vertical()
        .id_salt("contact-list")
        .show(ui, |ui| {
            for c in app.model.contacts.values() {
                let (shown, spoken) = contact_words(c);
                let selected = app.selected.as_deref() == Some(c.username.as_str());
                let r = ui.selectable_label(selected, shown);
                r.widget_info(|| {
                    WidgetInfo::selected(WidgetType::SelectableLabel, true, selected, &spoken)
                });
                if r.clicked() {
                    clicked = Some(c.username.clone());
                }
            }
        });
    if let Some(name) = clicked {
        app.select(&name);
    }
}

fn conversation(app: &mut App, ui: &mut egui::Ui) {
    let Some(name) = app.selected.clone() else {
        ui.centered_and_justified(|ui| {
            ui.label("Choose a conversation on the left (Alt+Down for the next one).");
        });
        return;
    };
    let contact = app.model.contacts.get(&name).cloned();
    ui.horizontal(|ui| {
        ui.heading(line(&name));
        if let Some(c) = &contact {
            ui.label(if c.online {
                "online".to_owned()
            } else {
                match c.last_seen {
                    Some(t) => format!(
                        "offline, last seen {} {} UTC",
                        format::date(format::day(t)),
                        format::hhmm(t)
                    ),
                    None => "offline".into(),
                }
            });
            if c.verified {
                ui.label("✔ verified");
            }
        }
        ui.with_layout(Layout::right_to_left(Align::Center), |ui| {
            if ui
                .button("End session…")
                .on_hover_text("Ctrl+Shift+E")
                .clicked()
            {
                app.dialog = Some(Dialog::EndSession(name.clone()));
            }
            if ui.button("Details").on_hover_text("Ctrl+I").clicked() {
                app.dialog = Some(Dialog::Details(name.clone()));
            }
            if ui.button("Send file…").on_hover_text("Ctrl+O").clicked() {
                app.forms.path.clear();
                app.dialog = Some(Dialog::SendFile(name.clone()));
            }
        });
    });
    if let Some(problem) = contact.as_ref().and_then(|c| c.problem.as_deref()) {
        let text = match problem {
            "session_mismatch" => {
                "They no longer hold your session: end it and send a new request."
            }
            _ => "Their computer cannot be reached right now; messages wait in the queue.",
        };
        ui.colored_label(ui.visuals().warn_fg_color, text);
    }
    ui.separator();
    compose(app, ui, &name);
    timeline(app, ui, &name);
}

fn compose(app: &mut App, ui: &mut egui::Ui, name: &str) {
    egui::Panel::bottom("compose").show(ui, |ui| {
        ui.add_space(4.0);
        ui.horizontal(|ui| {
            let l = ui.label("Message");
            let width = (ui.available_width() - 80.0).max(100.0);
            let id = egui::Id::new("compose");
            // Enter sends, taken before the field sees it; Shift+Enter
            // reaches the field, which makes it a new line.
            let enter = ui.memory(|m| m.has_focus(id))
                && ui.input_mut(|i| {
                    !i.modifiers.shift && i.consume_key(egui::Modifiers::NONE, egui::Key::Enter)
                });
            let r = ui
                .add(
                    egui::TextEdit::multiline(&mut app.compose)
                        .id(id)
                        .desired_rows(3)
                        .desired_width(width)
                        .hint_text(format!(
                            "Write to {} (Enter sends, Shift+Enter for a new line)",
                            line(name)
                        )),
                )
                .labelled_by(l.id);
            if app.focus_compose {
                r.request_focus();
                app.focus_compose = false;
            }
            if ui.button("Send").clicked() || enter {
                app.send_compose();
            }
        });
        let n = app.compose.len();
        if n > crate::app::MAX_TEXT * 9 / 10 {
            ui.label(format!("{n} of {} bytes", crate::app::MAX_TEXT));
        }
    });
}

/// Measured heights of timeline rows at one width: only the rows in view
/// are laid out, so a conversation of thousands of messages scrolls as
/// fast as a short one.
#[derive(Debug, Default)]
pub struct RowHeights {
    width: f32,
    heights: std::collections::HashMap<u64, f32>,
}

/// A row of the timeline: a day separator or an item.
enum Row<'a> {
    Day(i64),
    Item(Item<'a>),
}

impl Row<'_> {
    /// A cheap key for the height cache (no allocation per row and frame).
    fn key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        match self {
            Row::Day(d) => (0u8, d).hash(&mut h),
            Row::Item(Item::Message(m)) => (1u8, &m.id).hash(&mut h),
            Row::Item(Item::File(t)) => (2u8, &t.id).hash(&mut h),
        }
        h.finish()
    }

    /// A guess of the height before the row was ever laid out.
    fn estimate(&self, width: f32, line: f32) -> f32 {
        match self {
            Row::Day(_) => line,
            Row::Item(Item::Message(m)) => {
                let chars_per_line = (width / (line * 0.5)).max(10.0);
                let wrapped = (m.body.chars().count() as f32 / chars_per_line).ceil();
                let breaks = m.body.matches('\n').count() as f32;
                12.0 + line * (1.0 + wrapped.max(1.0) + breaks)
            }
            Row::Item(Item::File(_)) => 12.0 + line * 3.0,
        }
    }
}

fn timeline(app: &mut App, ui: &mut egui::Ui, name: &str) {
    // Taken out of the model while drawing (put back below), so that rows
    // borrow them instead of copying thousands of messages every frame.
    let conv = app.model.conversations.remove(name).unwrap_or_default();
    let transfers = std::mem::take(&mut app.model.transfers);
    let items = conv.timeline(&transfers, name);
    let today = format::day(app.now());
    let mut rows = Vec::with_capacity(items.len() + 8);
    let mut last_day = None;
    for item in items {
        let d = format::day(item.time());
        if last_day != Some(d) {
            last_day = Some(d);
            rows.push(Row::Day(d));
        }
        rows.push(Row::Item(item));
    }
    let mut actions = Vec::new();
    egui::ScrollArea::vertical()
        .id_salt(("timeline", name))
        .stick_to_bottom(true)
        .auto_shrink([false, false])
        .show_viewport(ui, |ui, viewport| {
            if rows.is_empty() {
                ui.label("No messages yet.");
                return;
            }
            let width = ui.available_width();
            if (app.row_heights.width - width).abs() > 0.5 {
                app.row_heights = RowHeights {
                    width,
                    heights: Default::default(),
                };
            }
            let gap = ui.spacing().item_spacing.y;
            let line = ui.text_style_height(&egui::TextStyle::Body);
            let heights: Vec<f32> = rows
                .iter()
                .map(|r| {
                    app.row_heights
                        .heights
                        .get(&r.key())
                        .copied()
                        .unwrap_or_else(|| r.estimate(width, line))
                        + gap
                })
                .collect();
            let total: f32 = heights.iter().sum();
            let (mut first, mut top) = (0, 0.0);
            while first < rows.len() && top + heights[first] < viewport.min.y {
                top += heights[first];
                first += 1;
            }
            let (mut last, mut bottom) = (first, top);
            while last < rows.len() && bottom <= viewport.max.y {
                bottom += heights[last];
                last += 1;
            }
            ui.add_space(top);
            for row in &rows[first..last] {
                let r = ui.scope(|ui| match row {
                    Row::Day(d) => {
                        ui.vertical_centered(|ui| {
                            ui.label(RichText::new(format::day_label(*d, today)).weak());
                        });
                    }
                    Row::Item(Item::Message(m)) => message(ui, m, name),
                    Row::Item(Item::File(t)) => file(app, ui, t, &mut actions),
                });
                app.row_heights
                    .heights
                    .insert(row.key(), r.response.rect.height());
            }
            ui.add_space((total - bottom).max(0.0));
        });
    drop(rows);
    app.model.conversations.insert(name.to_owned(), conv);
    app.model.transfers = transfers;
    for a in actions {
        match a {
            FileAction::Call(r) => app.backend.call(r),
            FileAction::Save(id) => app.dialog = Some(Dialog::SaveFile(id)),
        }
    }
}

fn message(ui: &mut egui::Ui, m: &MessageView, name: &str) {
    let out = m.direction == "out";
    let who = if out {
        "You".to_owned()
    } else {
        line(name).into_owned()
    };
    let time = format::hhmm(m.received_at.unwrap_or(m.sent_at));
    let meta = if out {
        format!("{who} · {time} UTC · {}", format::delivery(&m.state))
    } else {
        format!("{who} · {time} UTC")
    };
    let fill = if out {
        ui.visuals().faint_bg_color
    } else {
        ui.visuals().extreme_bg_color
    };
    egui::Frame::new()
        .fill(fill)
        .inner_margin(6.0)
        .corner_radius(6.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(RichText::new(meta).small().weak());
            ui.label(neutralize_multiline(&m.body));
        });
    ui.add_space(2.0);
}

enum FileAction {
    Call(Request),
    Save(String),
}

fn file(app: &mut App, ui: &mut egui::Ui, t: &TransferView, actions: &mut Vec<FileAction>) {
    let saved = t.direction == "in" && t.path.is_some();
    let state = format::transfer_state(&t.direction, &t.state, t.stored, saved);
    let who = if t.direction == "out" { "You" } else { "They" };
    egui::Frame::new()
        .stroke(ui.visuals().widgets.noninteractive.bg_stroke)
        .inner_margin(6.0)
        .corner_radius(6.0)
        .show(ui, |ui| {
            ui.set_width(ui.available_width());
            ui.label(format!(
                "📎 {who} · {} ({}, {}) · {state}",
                line(&t.name),
                format::size(t.size),
                line(&t.media),
            ));
            if let Some(r) = &t.reason {
                ui.label(RichText::new(line(r)).weak());
            }
            if t.state == "active" && t.size > 0 {
                let f = (t.done as f32 / t.size as f32).clamp(0.0, 1.0);
                ui.add(
                    egui::ProgressBar::new(f)
                        .text(format!(
                            "{}: {} of {} ({:.0}%)",
                            line(&t.name),
                            format::size(t.done),
                            format::size(t.size),
                            f * 100.0
                        ))
                        .desired_width(360.0),
                );
            }
            ui.horizontal(|ui| {
                let unfinished = matches!(t.state.as_str(), "offered" | "active");
                if t.direction == "in" && t.state == "offered" {
                    if ui.button(format!("Accept {}", line(&t.name))).clicked() {
                        actions.push(FileAction::Call(Request::AcceptFile { id: t.id.clone() }));
                    }
                    if ui.button(format!("Decline {}", line(&t.name))).clicked() {
                        actions.push(FileAction::Call(Request::CancelFile { id: t.id.clone() }));
                    }
                } else if unfinished && ui.button(format!("Cancel {}", line(&t.name))).clicked() {
                    actions.push(FileAction::Call(Request::CancelFile { id: t.id.clone() }));
                }
                if t.direction == "in"
                    && t.state == "completed"
                    && t.stored
                    && ui.button(format!("Save {}…", line(&t.name))).clicked()
                {
                    actions.push(FileAction::Save(t.id.clone()));
                }
            });
            if saved
                && t.media == "image"
                && let Some(path) = &t.path
            {
                app.images
                    .show(ui, &t.id, std::path::Path::new(path), &t.name);
            }
        });
    ui.add_space(2.0);
}

fn dialogs(app: &mut App, ctx: &egui::Context) {
    let Some(d) = app.dialog.clone() else { return };
    let title = match &d {
        Dialog::Search => "Find people".to_owned(),
        Dialog::Requests => "Connection requests".into(),
        Dialog::Details(n) => format!("Contact {}", line(n)),
        Dialog::EndSession(n) => format!("End the session with {}?", line(n)),
        Dialog::SendFile(n) => format!("Send a file to {}", line(n)),
        Dialog::SaveFile(_) => "Save file".into(),
        Dialog::Help => "Keyboard shortcuts".into(),
    };
    let mut open = true;
    egui::Window::new(title)
        .open(&mut open)
        .collapsible(false)
        .resizable(true)
        .default_width(460.0)
        .anchor(egui::Align2::CENTER_CENTER, egui::Vec2::ZERO)
        .show(ctx, |ui| match &d {
            Dialog::Search => search(app, ui),
            Dialog::Requests => requests(app, ui),
            Dialog::Details(n) => details(app, ui, n),
            Dialog::EndSession(n) => end_session(app, ui, n),
            Dialog::SendFile(n) => send_file(app, ui, n),
            Dialog::SaveFile(id) => save_file(app, ui, id),
            Dialog::Help => help(ui),
        });
    if !open {
        app.dialog = None;
    }
}

fn search(app: &mut App, ui: &mut egui::Ui) {
    ui.label("Search the directory by the start of a username.");
    let r = field(ui, "Username", &mut app.forms.search, false);
    let enter = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
    if (ui.button("Search").clicked() || enter) && !app.forms.search.trim().is_empty() {
        app.backend.call(Request::Search {
            prefix: app.forms.search.trim().trim_start_matches('@').to_owned(),
            limit: Some(20),
        });
    }
    ui.separator();
    for d in app.model.search_results.clone() {
        ui.horizontal(|ui| {
            ui.label(line(&d.username));
            ui.monospace(grouped(&d.fingerprint));
        });
        if d.key_differs {
            ui.colored_label(
                ui.visuals().warn_fg_color,
                "⚠ This key differs from your contact of that name: it may be someone else.",
            );
        } else if d.is_contact {
            ui.label("Already a contact.");
        }
        if ui
            .button(format!("Request {}…", line(&d.username)))
            .clicked()
        {
            app.forms.request_to = Some(d.username.clone());
        }
        ui.separator();
    }
    if let Some(to) = app.forms.request_to.clone() {
        ui.label(format!(
            "A note for {} (they see it with your request):",
            line(&to)
        ));
        let l = ui.label("Note");
        ui.add(egui::TextEdit::multiline(&mut app.forms.note).desired_rows(2))
            .labelled_by(l.id);
        let differs = app
            .model
            .search_results
            .iter()
            .any(|d| d.username == to && d.key_differs);
        if ui
            .button(format!("Send request to {}", line(&to)))
            .clicked()
        {
            app.backend.call(Request::Request {
                username: to,
                note: app.forms.note.clone(),
                allow_key_change: differs,
                rekey: false,
            });
        }
    }
}

fn requests(app: &mut App, ui: &mut egui::Ui) {
    if app.model.requests.is_empty() {
        ui.label("No requests waiting.");
    }
    for r in app.model.requests.clone() {
        let who = line(&r.username).into_owned();
        ui.strong(&who);
        ui.label("Fingerprint (compare it with them over another channel):");
        ui.monospace(grouped(&r.fingerprint));
        if !r.note.is_empty() {
            ui.label(format!("Note: {}", neutralize_multiline(&r.note)));
        }
        if r.rekey {
            ui.label("They are already a contact: accepting starts a new session.");
        }
        let mut confirmed = app.forms.key_change_ok.as_deref() == Some(r.username.as_str());
        if r.key_changed {
            ui.colored_label(
                ui.visuals().error_fg_color,
                format!(
                    "⚠ The key of {who} changed since you last talked. It may be someone else: \
                     check the fingerprint with them before accepting."
                ),
            );
            if ui
                .checkbox(&mut confirmed, "I checked the new fingerprint")
                .changed()
            {
                app.forms.key_change_ok = confirmed.then(|| r.username.clone());
            }
        }
        ui.horizontal(|ui| {
            let can = !r.key_changed || confirmed;
            if ui
                .add_enabled(can, egui::Button::new(format!("Accept {who}")))
                .clicked()
            {
                app.backend.call(Request::Accept {
                    username: r.username.clone(),
                    allow_key_change: r.key_changed && confirmed,
                });
            }
            if ui.button(format!("Reject {who}")).clicked() {
                app.backend.call(Request::Reject {
                    username: r.username.clone(),
                    notify: false,
                });
            }
        });
        ui.separator();
    }
}

fn details(app: &mut App, ui: &mut egui::Ui, name: &str) {
    let Some(c) = app.model.contacts.get(name).cloned() else {
        ui.label("Not a contact.");
        return;
    };
    ui.label("Fingerprint, in groups for reading aloud:");
    ui.label(
        RichText::new(grouped(&c.fingerprint))
            .monospace()
            .size(18.0),
    );
    ui.label(if c.session {
        "A session (keys) exists."
    } else {
        "No session: send a new request to talk again."
    });
    if c.verified {
        ui.label("✔ You verified this fingerprint.");
    } else {
        ui.label(
            "Not verified. Read the fingerprint to each other over another channel; \
             if it matches, mark it verified.",
        );
        if ui.button("Mark as verified").clicked() {
            app.backend.call(Request::Verify {
                username: c.username.clone(),
                fingerprint: Some(c.fingerprint.clone()),
            });
        }
    }
    if ui.button("Copy fingerprint").clicked() {
        ui.ctx().copy_text(grouped(&c.fingerprint));
    }
}

fn end_session(app: &mut App, ui: &mut egui::Ui, name: &str) {
    ui.label(format!(
        "The keys of your session with {} are erased on both sides. Queued messages \
         are not delivered. To talk again, one of you sends a new request.",
        line(name)
    ));
    ui.horizontal(|ui| {
        if ui.button("End session").clicked() {
            app.backend.call(Request::End {
                username: name.to_owned(),
            });
            app.dialog = None;
        }
        if ui.button("Cancel").clicked() {
            app.dialog = None;
        }
    });
}

/// The in-app file chooser: a path field and a folder listing.
fn browse(app: &mut App, ui: &mut egui::Ui, folders_only: bool) {
    ui.horizontal(|ui| {
        ui.label(format!("Folder: {}", app.forms.browse.display()));
        if ui.button("Up").clicked()
            && let Some(p) = app.forms.browse.parent()
        {
            app.forms.browse = p.to_path_buf();
        }
    });
    let mut entries: Vec<(bool, String)> = std::fs::read_dir(&app.forms.browse)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let dir = e.file_type().ok()?.is_dir();
                    (!name.starts_with('.') && (dir || !folders_only)).then_some((dir, name))
                })
                .take(2000)
                .collect()
        })
        .unwrap_or_default();
    entries.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    egui::ScrollArea::vertical()
        .id_salt("browse")
        .max_height(220.0)
        .show(ui, |ui| {
            for (dir, name) in entries {
                let shown = format!("{} {}", if dir { "📁" } else { "📄" }, line(&name));
                if ui.selectable_label(false, shown).clicked() {
                    let p = app.forms.browse.join(&name);
                    if dir {
                        app.forms.browse = p.clone();
                        if folders_only {
                            app.forms.path = p.display().to_string();
                        }
                    } else {
                        app.forms.path = p.display().to_string();
                    }
                }
            }
        });
}

fn send_file(app: &mut App, ui: &mut egui::Ui, name: &str) {
    ui.label("Choose a file, type its path, or drop it on the window.");
    browse(app, ui, false);
    field(ui, "File path", &mut app.forms.path, false);
    if ui.button(format!("Send to {}", line(name))).clicked() {
        let p = std::path::PathBuf::from(app.forms.path.trim());
        app.send_file(name, &p);
        if crate::daemon::is_sendable(&p) {
            app.dialog = None;
        }
    }
}

fn save_file(app: &mut App, ui: &mut egui::Ui, id: &str) {
    if app.forms.path.is_empty() {
        app.forms.path = crate::images::download_dir().display().to_string();
        app.forms.browse = crate::images::download_dir();
    }
    ui.label("Choose the folder to save it in (it keeps its name).");
    browse(app, ui, true);
    field(ui, "Save in folder", &mut app.forms.path, false);
    if ui.button("Save here").clicked() {
        app.backend.call(Request::SaveFile {
            id: id.to_owned(),
            path: app.forms.path.trim().to_owned(),
        });
    }
}

/// The shortcuts, as shown in the help dialog.
pub const SHORTCUTS: &[(&str, &str)] = &[
    ("Enter", "send the message"),
    ("Shift+Enter", "new line in the message"),
    ("Alt+Down / Alt+Up", "next / previous conversation"),
    ("Ctrl+L", "go to the message field"),
    ("Ctrl+F", "find people (send a request)"),
    ("Ctrl+R", "connection requests"),
    ("Ctrl+I", "contact details and verification"),
    ("Ctrl+O", "send a file"),
    ("Ctrl+Shift+E", "end the session"),
    ("Ctrl+D", "light / dark theme"),
    (
        "Ctrl+Plus / Ctrl+Minus / Ctrl+0",
        "larger / smaller / normal text",
    ),
    ("Tab / Shift+Tab", "move between buttons and fields"),
    ("Escape", "close this dialog"),
    ("F1", "this help"),
];

fn help(ui: &mut egui::Ui) {
    egui::Grid::new("shortcuts").striped(true).show(ui, |ui| {
        for (k, what) in SHORTCUTS {
            ui.monospace(*k);
            ui.label(*what);
            ui.end_row();
        }
    });
}
