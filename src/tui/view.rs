//! Renders the [`App`] into a ratatui frame. Peer-controlled text (names,
//! messages, notes) is shown with control characters replaced, so it cannot
//! drive the terminal. Groups are drawn by `view/group.rs`.

mod group;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};

use super::input::BINDINGS;
use super::model::{App, Overlay};
use crate::control::proto::TransferView;

/// Colors, or none at all (`NO_COLOR`).
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    color: bool,
}

impl Theme {
    /// Colors unless `NO_COLOR` is set (to anything).
    pub fn from_env() -> Self {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// A theme with (`true`) or without colors.
    pub fn new(color: bool) -> Self {
        Theme { color }
    }

    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }

    fn bold(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }

    fn highlight(&self) -> Style {
        if self.color {
            Style::default().bg(Color::Blue).fg(Color::White)
        } else {
            Style::default().add_modifier(Modifier::REVERSED)
        }
    }
}

/// Printable form of peer text: control and bidi formatting characters
/// become `�` ([`crate::terminal::neutralize`]).
pub fn clean(s: &str) -> String {
    crate::terminal::neutralize(s).into_owned()
}

fn ago(secs: u64) -> String {
    let d = crate::time::now_secs().saturating_sub(secs);
    match d {
        0..=59 => "just now".into(),
        60..=3599 => format!("{}m ago", d / 60),
        3600..=86_399 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// Draws everything.
pub fn render(f: &mut Frame<'_>, app: &App, theme: Theme) {
    let input_lines = app.input.split('\n').count().clamp(1, 5) as u16;
    let [top, body, input, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(input_lines + 2),
        Constraint::Length(1),
    ])
    .areas(f.area());
    status_bar(f, app, theme, top);
    let contacts_width = (f.area().width / 4).clamp(18, 30);
    let [left, right] =
        Layout::horizontal([Constraint::Length(contacts_width), Constraint::Min(20)]).areas(body);
    contacts(f, app, theme, left);
    if app.members_pane && app.current_group().is_some() {
        let [chat, pane] =
            Layout::horizontal([Constraint::Min(20), Constraint::Length(group::PANE_WIDTH)])
                .areas(right);
        conversation(f, app, theme, chat);
        group::member_pane(f, app, theme, pane);
    } else {
        conversation(f, app, theme, right);
    }
    input_box(f, app, theme, input);
    let notice = app.notice.as_deref().map(clean).unwrap_or_else(|| {
        if app.current_group().is_some() {
            "Tab chat · Ctrl-P members · Ctrl-G invites · Ctrl-N new group · ? help".into()
        } else {
            "Tab contact · Ctrl-F find people · Ctrl-R requests · Ctrl-T files · ? help".into()
        }
    });
    f.render_widget(
        Paragraph::new(notice).style(theme.fg(Color::Yellow)),
        footer,
    );
    match &app.overlay {
        Overlay::None => {}
        Overlay::Help => help(f, theme),
        Overlay::Requests { sel } => requests(f, app, theme, *sel),
        Overlay::Search {
            query,
            results,
            sel,
        } => search(f, theme, query, results, *sel),
        Overlay::Fingerprint => fingerprint(f, app, theme),
        Overlay::ConfirmEnd => confirm_end(f, app, theme),
        Overlay::SendFile { path } => {
            let to = app.current_name().unwrap_or_default();
            prompt(f, &format!("send a file to {}", clean(&to)), path);
        }
        Overlay::SaveFile { path, .. } => prompt(f, "save the file to (file or folder)", path),
        Overlay::Files { sel } => transfers(f, app, theme, *sel),
        // The member pane is drawn in the layout above; it just has the keys.
        Overlay::Members { .. } => {}
        Overlay::GroupInvites { sel } => group::invites(f, app, theme, *sel),
        Overlay::InvitePick { sel } => group::pick(f, app, theme, *sel),
        Overlay::GroupText { field, value } => prompt(f, &group::text_title(app, *field), value),
        Overlay::Confirm { question, .. } => {
            let inner = popup(f, "are you sure?", 60, 6);
            f.render_widget(
                Paragraph::new(format!("{} y / n", clean(question))).wrap(Wrap { trim: true }),
                inner,
            );
        }
    }
}

fn prompt(f: &mut Frame<'_>, title: &str, value: &str) {
    let inner = popup(f, &format!("{title} (Enter · Esc)"), 70, 4);
    f.render_widget(Paragraph::new(format!("{}▏", clean(value))), inner);
}

/// `[#####-----]  42%` for `done` of `size`.
pub fn bar(done: u64, size: u64, width: usize) -> String {
    let frac = if size == 0 {
        1.0
    } else {
        (done as f64 / size as f64).clamp(0.0, 1.0)
    };
    let full = (frac * width as f64).round() as usize;
    format!(
        "[{}{}] {:>3}%",
        "#".repeat(full),
        "-".repeat(width - full),
        (frac * 100.0).floor() as u32
    )
}

/// What a transfer waits for or did, in words: in the files overlay
/// (`overlay`, where its keys work) or the conversation timeline (which
/// says how to get there).
fn transfer_words(t: &TransferView, overlay: bool) -> String {
    match (t.direction.as_str(), t.state.as_str()) {
        ("in", "offered") if overlay => "waiting for you (a / x)".to_owned(),
        ("in", "offered") => "waiting for you: Ctrl-T, then a accept / x decline".to_owned(),
        ("out", "offered") => "offered".to_owned(),
        ("in", "completed") if t.stored && overlay => "received (s to save)".to_owned(),
        ("in", "completed") if t.stored => "received: Ctrl-T, then s to save".to_owned(),
        ("in", "completed") => "saved".to_owned(),
        (_, "completed") => "delivered".to_owned(),
        (_, "active") => bar(t.done, t.size, 20),
        (_, s) => match &t.reason {
            Some(r) => format!("{s}: {}", clean(r)),
            None => s.to_owned(),
        },
    }
}

fn transfers(f: &mut Frame<'_>, app: &App, theme: Theme, sel: usize) {
    let inner = popup(
        f,
        "files (a accept · x decline/cancel · s save · Esc)",
        76,
        14,
    );
    if app.transfers.is_empty() {
        f.render_widget(
            Paragraph::new("no transfers yet; Ctrl-O sends a file to the selected contact"),
            inner,
        );
        return;
    }
    let items: Vec<ListItem<'_>> = app
        .transfers
        .iter()
        .rev()
        .map(|t| {
            let arrow = if t.direction == "in" { "←" } else { "→" };
            let state = transfer_words(t, true);
            ListItem::new(vec![
                Line::from(vec![
                    Span::raw(format!("{arrow} ")),
                    Span::styled(clean(&t.name), theme.bold()),
                    Span::raw(format!(
                        "  {} · {} · {}",
                        super::model::human_size(t.size),
                        clean(&t.username),
                        t.id.get(..8).unwrap_or("")
                    )),
                ]),
                Line::raw(format!("  {state}")),
            ])
        })
        .collect();
    let mut state = ListState::default();
    state.select(Some(sel.min(app.transfers.len() - 1)));
    f.render_stateful_widget(
        List::new(items).highlight_style(theme.highlight()),
        inner,
        &mut state,
    );
}

fn status_bar(f: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let direct = app.tor().is_some_and(|t| t.network == "direct");
    let (me, tor) = match &app.status {
        // Direct TCP (tests, development) must never pass for Tor.
        Some(s) if direct => (s.username.clone(), "DIRECT TCP – NOT ANONYMOUS".to_owned()),
        Some(s) => (
            s.username.clone(),
            umbra_control::display::tor_words(&s.tor),
        ),
        None => ("…".into(), "connecting to the daemon".into()),
    };
    let ok = !direct && app.tor().is_some_and(|t| t.ready);
    let line = Line::from(vec![
        Span::styled(format!(" umbra {me} "), theme.bold()),
        Span::raw("│ "),
        Span::styled(tor, theme.fg(if ok { Color::Green } else { Color::Yellow })),
    ]);
    f.render_widget(Paragraph::new(line), area);
}

fn contacts(f: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let mut items: Vec<ListItem<'_>> = app
        .contacts
        .iter()
        .map(|c| {
            let dot = if c.online { "●" } else { "○" };
            let mut spans = vec![
                Span::styled(
                    format!("{dot} "),
                    theme.fg(if c.online {
                        Color::Green
                    } else {
                        Color::DarkGray
                    }),
                ),
                Span::raw(clean(&c.username)),
            ];
            if c.unread > 0 {
                spans.push(Span::styled(format!(" ({})", c.unread), theme.bold()));
            }
            let sub = if !c.session {
                c.state.clone()
            } else if c.problem.as_deref() == Some("session_mismatch") {
                // They refuse our session: the remedy is end, then request.
                "session mismatch: ^E end, then request".into()
            } else if c.online {
                "online".into()
            } else {
                c.last_seen.map_or("never seen".into(), ago)
            };
            ListItem::new(vec![
                Line::from(spans),
                Line::styled(format!("  {sub}"), theme.fg(Color::DarkGray)),
            ])
        })
        .collect();
    // Groups after the contacts, under a heading (not selectable).
    let header = usize::from(!app.groups.is_empty());
    items.extend(group::list_items(app, theme));
    if !app.requests.is_empty() {
        items.push(ListItem::new(Line::styled(
            format!("» {} request(s) ^R", app.requests.len()),
            theme.fg(Color::Magenta),
        )));
    }
    if !app.group_invites.is_empty() {
        items.push(ListItem::new(Line::styled(
            format!("» {} invite(s) ^G", app.group_invites.len()),
            theme.fg(Color::Magenta),
        )));
    }
    let mut state = ListState::default();
    if app.current().is_some() {
        state.select(Some(app.selected));
    } else if app.current_group().is_some() {
        state.select(Some(app.selected + header));
    }
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).title(" contacts "))
        .highlight_style(theme.highlight());
    f.render_stateful_widget(list, area, &mut state);
}

fn conversation(f: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    if let Some(g) = app.current_group() {
        return group::conversation(f, app, theme, area, g);
    }
    let title = match app.current() {
        Some(c) => format!(
            " {}{} ",
            clean(&c.username),
            if c.verified { " ✔ verified" } else { "" }
        ),
        None => " no conversation ".into(),
    };
    let mut lines: Vec<Line<'_>> = Vec::new();
    // Messages and this contact's files, by time (files offered while the
    // TUI was closed are in the timeline too: they come with the start-up
    // `files` list).
    let name = app.current_name().unwrap_or_default();
    let files = app.transfers.iter().filter(|t| t.username == name);
    let entries = by_time(files, |t| t.created_at, app.conversation(), |m| m.sent_at);
    for entry in entries {
        let m = match entry {
            Entry::Side(t) => {
                lines.push(file_line(t, theme));
                continue;
            }
            Entry::Message(m) => m,
        };
        let out = m.direction == "out";
        let who = if out {
            "me".to_owned()
        } else {
            app.current_name().unwrap_or_default()
        };
        let state = out.then_some(m.state.as_str());
        message_lines(&mut lines, theme, m.sent_at, &who, &m.body, state);
    }
    if lines.is_empty() && app.current().is_some() {
        lines.push(Line::styled("no messages yet", theme.fg(Color::DarkGray)));
    }
    timeline(f, app, title, lines, area);
}

/// One row of a timeline: a message, or something beside the messages (a
/// file, a system line).
enum Entry<'a, S, M> {
    Side(&'a S),
    Message(&'a M),
}

/// Side rows and messages merged by time (a side row first only when it is
/// strictly older), each list keeping its own order.
fn by_time<'a, S, M>(
    side: impl IntoIterator<Item = &'a S>,
    side_at: impl Fn(&S) -> u64,
    messages: impl IntoIterator<Item = &'a M>,
    message_at: impl Fn(&M) -> u64,
) -> Vec<Entry<'a, S, M>> {
    let mut side = side.into_iter().peekable();
    let mut messages = messages.into_iter().peekable();
    let mut out = Vec::new();
    loop {
        let next_side = side.peek().map(|s| side_at(s));
        let next_msg = messages.peek().map(|m| message_at(m));
        match (next_side, next_msg) {
            (None, None) => return out,
            (Some(st), mt) if mt.is_none_or(|mt| st < mt) => {
                out.extend(side.next().map(Entry::Side));
            }
            _ => out.extend(messages.next().map(Entry::Message)),
        }
    }
}

/// A list with a highlighted row (none when `sel` is `None` or the list is
/// empty).
fn selectable(
    f: &mut Frame<'_>,
    items: Vec<ListItem<'_>>,
    sel: Option<usize>,
    area: Rect,
    theme: Theme,
) {
    let mut state = ListState::default();
    let n = items.len();
    state.select(sel.filter(|_| n > 0).map(|s| s.min(n - 1)));
    f.render_stateful_widget(
        List::new(items).highlight_style(theme.highlight()),
        area,
        &mut state,
    );
}

/// The lines of one message: time, sender, the text (its own lines
/// indented) and, for ours, the delivery state.
fn message_lines(
    lines: &mut Vec<Line<'_>>,
    theme: Theme,
    at: u64,
    who: &str,
    body: &str,
    state: Option<&str>,
) {
    let mut first = true;
    for part in body.split('\n') {
        let mut spans = Vec::new();
        if first {
            spans.push(Span::styled(
                format!("{} ", crate::time::utc_hhmm(at)),
                theme.fg(Color::DarkGray),
            ));
            spans.push(Span::styled(
                format!("{}: ", clean(who)),
                theme.fg(if state.is_some() {
                    Color::Cyan
                } else {
                    Color::Magenta
                }),
            ));
        } else {
            spans.push(Span::raw("      "));
        }
        spans.push(Span::raw(clean(part)));
        first = false;
        lines.push(Line::from(spans));
    }
    if let Some(state) = state
        && let Some(l) = lines.last_mut()
    {
        l.spans.push(Span::styled(
            format!("  [{state}]"),
            theme.fg(if state == "read" {
                Color::Green
            } else {
                Color::DarkGray
            }),
        ));
    }
}

/// A conversation's lines in a bordered box, scrolled to the bottom (less
/// what the user scrolled up).
fn timeline(f: &mut Frame<'_>, app: &App, title: String, lines: Vec<Line<'_>>, area: Rect) {
    let inner_h = area.height.saturating_sub(2);
    let total = lines.len() as u16;
    let top = total
        .saturating_sub(inner_h)
        .saturating_sub(app.scroll.min(total));
    let p = Paragraph::new(lines)
        .block(Block::default().borders(Borders::ALL).title(title))
        .wrap(Wrap { trim: false })
        .scroll((top, 0));
    f.render_widget(p, area);
}

/// One line of the timeline for a file transfer.
fn file_line(t: &TransferView, theme: Theme) -> Line<'static> {
    let who = if t.direction == "in" {
        "file from them"
    } else {
        "file to them"
    };
    Line::from(vec![
        Span::styled(
            format!("{} ", crate::time::utc_hhmm(t.created_at)),
            theme.fg(Color::DarkGray),
        ),
        Span::styled(format!("📎 {who}: "), theme.fg(Color::Yellow)),
        Span::styled(clean(&t.name), theme.bold()),
        Span::raw(format!(
            " ({}) · {}",
            super::model::human_size(t.size),
            transfer_words(t, false)
        )),
    ])
}

fn input_box(f: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let title = match (app.current_name(), app.current_group()) {
        (Some(n), _) => format!(
            " message to {} (Enter send, Alt-Enter new line) ",
            clean(&n)
        ),
        (None, Some(_)) if matches!(app.overlay, Overlay::Members { .. }) => {
            " member pane has the keys: Esc to type ".into()
        }
        (None, Some(g)) => match app.group_writable() {
            Ok(()) => format!(
                " message to # {} (Enter send, Alt-Enter new line) ",
                clean(&g.name)
            ),
            Err(why) => format!(" {why} "),
        },
        (None, None) => " message ".into(),
    };
    let lines: Vec<Line<'_>> = app
        .input
        .split('\n')
        .map(|l| Line::raw(l.to_owned()))
        .collect();
    let skip = lines.len().saturating_sub(5);
    let p = Paragraph::new(lines.into_iter().skip(skip).collect::<Vec<_>>()).block(
        Block::default()
            .borders(Borders::ALL)
            .title(title)
            .border_style(theme.fg(Color::Cyan)),
    );
    f.render_widget(p, area);
}

fn popup(f: &mut Frame<'_>, title: &str, w: u16, h: u16) -> Rect {
    let a = f.area();
    let w = w.min(a.width);
    let h = h.min(a.height);
    let r = Rect {
        x: a.x + (a.width - w) / 2,
        y: a.y + (a.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Block::default()
            .borders(Borders::ALL)
            .title(format!(" {title} ")),
        r,
    );
    Rect {
        x: r.x + 1,
        y: r.y + 1,
        width: r.width.saturating_sub(2),
        height: r.height.saturating_sub(2),
    }
}

fn help(f: &mut Frame<'_>, theme: Theme) {
    const KEY_COLUMN: usize = 22;
    let longest = BINDINGS
        .iter()
        .map(|(_, v)| KEY_COLUMN + v.chars().count())
        .max()
        .unwrap_or(KEY_COLUMN);
    let width = u16::try_from(longest + 2).unwrap_or(u16::MAX);
    // Narrower screens wrap: room for every entry on two lines.
    let rows = BINDINGS.len() as u16;
    let height = if width > f.area().width {
        2 * rows + 2
    } else {
        rows + 2
    };
    let inner = popup(f, "keys", width, height);
    let lines: Vec<Line<'_>> = BINDINGS
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:<KEY_COLUMN$}"), theme.bold()),
                Span::raw(*v),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}

fn requests(f: &mut Frame<'_>, app: &App, theme: Theme, sel: usize) {
    let inner = popup(f, "connection requests (a accept · r reject · Esc)", 70, 12);
    if app.requests.is_empty() {
        f.render_widget(Paragraph::new("no pending requests"), inner);
        return;
    }
    let items: Vec<ListItem<'_>> = app
        .requests
        .iter()
        .map(|r| {
            let mut l = vec![
                Line::from(Span::styled(clean(&r.username), theme.bold())),
                Line::raw(format!("  {}", grouped(&r.fingerprint))),
            ];
            if !r.note.is_empty() {
                l.push(Line::raw(format!("  “{}”", clean(&r.note))));
            }
            if r.key_changed {
                l.push(Line::styled(
                    "  KEY CHANGED: verify out of band before accepting",
                    theme.fg(Color::Red),
                ));
            }
            ListItem::new(l)
        })
        .collect();
    let mut state = ListState::default();
    state.select(Some(sel.min(app.requests.len() - 1)));
    f.render_stateful_widget(
        List::new(items).highlight_style(theme.highlight()),
        inner,
        &mut state,
    );
}

fn search(
    f: &mut Frame<'_>,
    theme: Theme,
    query: &str,
    results: &[crate::control::proto::DirectoryView],
    sel: usize,
) {
    let inner = popup(
        f,
        "find people (Enter search · Enter again: request)",
        70,
        12,
    );
    let [q, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(1)]).areas(inner);
    f.render_widget(Paragraph::new(format!("@{query}▏")), q);
    let items: Vec<ListItem<'_>> = results
        .iter()
        .map(|d| {
            let mark = if d.key_differs {
                " KEY DIFFERS"
            } else if d.is_contact {
                " (contact)"
            } else {
                ""
            };
            ListItem::new(Line::raw(format!(
                "{:<20} {}{mark}",
                clean(&d.username),
                &d.fingerprint.get(..16).unwrap_or("")
            )))
        })
        .collect();
    let mut state = ListState::default();
    if !results.is_empty() {
        state.select(Some(sel.min(results.len() - 1)));
    }
    f.render_stateful_widget(
        List::new(items).highlight_style(theme.highlight()),
        rest,
        &mut state,
    );
}

/// 40 hex digits in groups of four.
pub fn grouped(hex: &str) -> String {
    crate::identity::Fingerprint::from_hex(hex)
        .map(|f| f.to_string())
        .unwrap_or_else(|_| clean(hex))
}

fn fingerprint(f: &mut Frame<'_>, app: &App, theme: Theme) {
    let inner = popup(f, "fingerprint", 64, 8);
    let Some(c) = app.current() else { return };
    let lines = vec![
        Line::from(Span::styled(clean(&c.username), theme.bold())),
        Line::raw(grouped(&c.fingerprint)),
        Line::raw(""),
        Line::raw(if c.verified {
            "verified out of band".to_owned()
        } else {
            "compare it with them in person or by phone; v = matches".to_owned()
        }),
    ];
    f.render_widget(Paragraph::new(lines), inner);
}

fn confirm_end(f: &mut Frame<'_>, app: &App, _theme: Theme) {
    let inner = popup(f, "end session", 60, 6);
    let name = app.current_name().unwrap_or_default();
    f.render_widget(
        Paragraph::new(format!(
            "End the session with {}? Keys are destroyed on both sides; a new request is needed to talk again. y / n",
            clean(&name)
        ))
        .wrap(Wrap { trim: true }),
        inner,
    );
}

#[cfg(test)]
pub(crate) mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::control::proto::{RequestView, TransferView};
    use crate::tui::model::test::{contact, msg, status};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    pub(crate) fn app() -> App {
        let mut a = App {
            status: Some(status(1)),
            ..App::default()
        };
        a.set_contacts(vec![contact("@bob", true, 0), contact("@carol", false, 2)]);
        a.set_history(
            "@bob",
            vec![
                msg("in", 1, "hi alice\x1b[31m\u{202e}", "received"),
                msg("out", 1, "hello bob", "read"),
                msg("out", 2, "two\nlines", "delivered"),
                msg("out", 3, "still queued", "queued"),
            ],
        );
        a.requests.push(RequestView {
            username: "@dave".into(),
            fingerprint: "D".repeat(40),
            note: "met at the fair".into(),
            received_at: 0,
            key_changed: true,
            rekey: false,
        });
        a
    }

    pub(crate) fn draw(
        app: &App,
        w: u16,
        h: u16,
        color: bool,
    ) -> (Vec<String>, ratatui::buffer::Buffer) {
        let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
        t.draw(|f| render(f, app, Theme::new(color))).unwrap();
        let buf = t.backend().buffer().clone();
        let lines = (0..h)
            .map(|y| {
                (0..w)
                    .map(|x| buf[(x, y)].symbol().to_owned())
                    .collect::<String>()
            })
            .collect();
        (lines, buf)
    }

    pub(crate) fn has(lines: &[String], s: &str) -> bool {
        lines.iter().any(|l| l.contains(s))
    }

    #[test]
    fn main_screen_at_80x24() {
        let (l, _) = draw(&app(), 80, 24, true);
        assert!(
            l[0].starts_with(" umbra @alice │ connected through Tor; reachable"),
            "{}",
            l[0]
        );
        assert!(has(&l, "● @bob"), "{l:#?}");
        assert!(has(&l, "○ @carol (2)"));
        assert!(has(&l, "» 1 request(s) ^R"), "{l:#?}");
        assert!(
            has(&l, "@bob: hi alice\u{FFFD}[31m\u{FFFD}"),
            "control and bidi characters are neutralized: {l:#?}"
        );
        assert!(has(&l, "me: hello bob  [read]"));
        assert!(has(&l, "me: two"));
        assert!(has(&l, "      lines  [delivered]"));
        assert!(has(&l, "me: still queued  [queued]"));
        assert!(has(&l, "message to @bob"));
        assert!(has(&l, "Ctrl-F find people"));
    }

    /// The whole 80x24 main screen, compared with a reviewed snapshot
    /// (`UMBRA_SNAPSHOT=write` rewrites it; review the diff by eye).
    #[test]
    fn main_screen_snapshot() {
        let mut a = app();
        for c in &mut a.contacts {
            c.last_seen = None;
        }
        a.input = "draft".into();
        let (l, _) = draw(&a, 80, 24, false);
        let got = l.join("\n") + "\n";
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/snapshots/tui_main_80x24.txt"
        );
        if std::env::var("UMBRA_SNAPSHOT").as_deref() == Ok("write") {
            std::fs::write(path, &got).unwrap();
        }
        let want = std::fs::read_to_string(path).unwrap();
        assert_eq!(got, want, "the screen changed; compare with {path}");
    }

    #[test]
    fn overlays() {
        let mut a = app();
        a.overlay = Overlay::Help;
        let (l, _) = draw(&a, 80, 24, true);
        assert!(has(&l, "Ctrl-E"));
        assert!(has(&l, "send a file to the contact"));
        a.overlay = Overlay::Requests { sel: 0 };
        let (l, _) = draw(&a, 80, 24, true);
        assert!(has(&l, "@dave"));
        assert!(has(&l, "DDDD DDDD"));
        assert!(has(&l, "met at the fair"));
        assert!(has(&l, "KEY CHANGED"));
        a.overlay = Overlay::Fingerprint;
        let (l, _) = draw(&a, 80, 24, true);
        assert!(has(&l, "ABCD ABCD ABCD"));
        a.overlay = Overlay::ConfirmEnd;
        let (l, _) = draw(&a, 80, 24, true);
        assert!(has(&l, "End the session with @bob?"));
    }

    fn transfer(id: &str, dir: &str, name: &str, state: &str, done: u64) -> TransferView {
        TransferView {
            id: id.repeat(32),
            username: "@bob".into(),
            direction: dir.into(),
            name: name.into(),
            size: 4 << 20,
            media: "file".into(),
            state: state.into(),
            done,
            sha256: "0".repeat(64),
            reason: (state == "cancelled").then(|| "declined by the receiver".into()),
            path: None,
            stored: state == "completed" && dir == "in",
            chunks_sent: 0,
            created_at: 1,
        }
    }

    /// The transfers overlay (Ctrl-T), compared with a reviewed snapshot.
    #[test]
    fn files_overlay_snapshot() {
        let mut a = app();
        for c in &mut a.contacts {
            c.last_seen = None;
        }
        a.transfers = vec![
            transfer("1", "out", "report.pdf", "cancelled", 0),
            transfer("2", "in", "photo\u{1b}[2J.jpg", "completed", 4 << 20),
            transfer("3", "out", "voice.ogg", "active", 3 << 20),
            transfer("4", "in", "movie.mp4", "offered", 0),
        ];
        a.overlay = Overlay::Files { sel: 0 };
        let (l, _) = draw(&a, 80, 24, false);
        assert!(has(&l, "waiting for you (a / x)"));
        assert!(has(&l, "[###############-----]  75%"), "{l:#?}");
        assert!(has(&l, "received (s to save)"));
        assert!(has(&l, "cancelled: declined by the receiver"));
        assert!(
            !l.iter().any(|x| x.contains('\u{1b}')),
            "escapes neutralized"
        );
        let got = l.join("\n") + "\n";
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/snapshots/tui_files_80x24.txt"
        );
        if std::env::var("UMBRA_SNAPSHOT").as_deref() == Ok("write") {
            std::fs::write(path, &got).unwrap();
        }
        let want = std::fs::read_to_string(path).unwrap();
        assert_eq!(got, want, "the screen changed; compare with {path}");
        a.overlay = Overlay::SendFile {
            path: "/tmp/x.png".into(),
        };
        let (l, _) = draw(&a, 80, 24, true);
        assert!(has(&l, "send a file to @bob"));
        assert!(has(&l, "/tmp/x.png"));
    }

    /// Files are in the conversation, by time, with what they wait for
    /// (issue 18: an offer that arrived while the TUI was closed showed up
    /// only in the Ctrl-T overlay).
    #[test]
    fn files_are_in_the_conversation_timeline() {
        let mut a = app();
        let mut offer = transfer("4", "in", "movie.mp4", "offered", 0);
        offer.created_at = 5;
        let mut got = transfer("2", "in", "photo.jpg", "completed", 4 << 20);
        got.created_at = 1_795_000_600;
        let mut other = transfer("5", "in", "not-bob.txt", "offered", 0);
        other.username = "@carol".into();
        a.transfers = vec![offer, got, other];
        let (l, _) = draw(&a, 160, 30, false);
        let offer_at = l
            .iter()
            .position(|x| x.contains("file from them: movie.mp4"));
        let photo_at = l.iter().position(|x| x.contains("photo.jpg"));
        let first_msg = l.iter().position(|x| x.contains("hi alice"));
        assert!(offer_at.is_some() && photo_at.is_some(), "{l:#?}");
        assert!(
            offer_at < first_msg && first_msg < photo_at,
            "by time: {l:#?}"
        );
        assert!(has(
            &l,
            "waiting for you: Ctrl-T, then a accept / x decline"
        ));
        assert!(has(&l, "received: Ctrl-T, then s to save"));
        assert!(!has(&l, "not-bob.txt"), "only this contact's files");
    }

    /// The help overlay shows every binding whole (it cut them at 100
    /// columns), and wraps rather than cuts on a narrow terminal.
    #[test]
    fn help_is_never_cut() {
        let mut a = app();
        a.overlay = Overlay::Help;
        for (w, h) in [(200, 40), (100, 40), (80, 40), (80, 24)] {
            let (l, _) = draw(&a, w, h, false);
            for (k, v) in BINDINGS {
                assert!(has(&l, v), "{w} columns: {k} {v}: {l:#?}");
            }
        }
        let (l, _) = draw(&a, 50, 40, false);
        let text: String = l.join(" ");
        for word in ["verified", "decline/cancel,", "save"] {
            assert!(text.contains(word), "{word} at 50 columns: {l:#?}");
        }
    }

    #[test]
    fn direct_tcp_is_labelled_not_anonymous() {
        let mut a = app();
        if let Some(s) = &mut a.status {
            s.tor.network = "direct".into();
            s.tor.onion_service = "not_applicable".into();
        }
        let (l, _) = draw(&a, 80, 24, false);
        let top = &l[0];
        assert!(top.contains("DIRECT TCP – NOT ANONYMOUS"), "{top}");
        assert!(!top.contains("not_applicable"), "{top}");
    }

    #[test]
    fn progress_bar_text() {
        assert_eq!(bar(0, 100, 10), "[----------]   0%");
        assert_eq!(bar(50, 100, 10), "[#####-----]  50%");
        assert_eq!(bar(100, 100, 10), "[##########] 100%");
        assert_eq!(bar(0, 0, 4), "[####] 100%");
        assert_eq!(bar(7, 3, 4), "[####] 100%");
    }

    #[test]
    fn resizes_and_no_color() {
        let a = app();
        let (small, _) = draw(&a, 40, 12, true);
        assert!(small[0].starts_with(" umbra @alice"));
        let (big, buf) = draw(&a, 120, 40, false);
        assert!(has(&big, "me: hello bob  [read]"));
        // NO_COLOR: no cell carries a foreground or background color.
        for cell in buf.content() {
            assert_eq!(cell.fg, Color::Reset);
            assert_eq!(cell.bg, Color::Reset);
        }
    }
}
