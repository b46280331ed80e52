//! Groups on screen (issue 17): their rows in the contact list, a group's
//! timeline with system lines, the member pane, the invites overlay and the
//! contact picker. Group names, topics, member names and messages are peer
//! text: always through [`clean`].

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Color;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, ListItem, Paragraph};

use super::{Entry, Theme, by_time, clean, message_lines, popup, selectable, timeline};
use crate::control::proto::GroupView;
use crate::tui::model::{App, Note, Overlay, TextField};

/// Width of the member pane, borders included.
pub(super) const PANE_WIDTH: u16 = 26;

/// The groups' rows of the contact list: a heading, then one row per group.
pub(super) fn list_items<'a>(app: &'a App, theme: Theme) -> Vec<ListItem<'a>> {
    if app.groups.is_empty() {
        return Vec::new();
    }
    let mut items = vec![ListItem::new(Line::styled(
        "── groups ──",
        theme.fg(Color::DarkGray),
    ))];
    for g in &app.groups {
        let mut spans = vec![
            Span::styled("# ", theme.fg(Color::Yellow)),
            Span::raw(clean(&g.name)),
        ];
        if let Some(n) = app.group_unread.get(&g.id).filter(|n| **n > 0) {
            spans.push(Span::styled(format!(" ({n})"), theme.bold()));
        }
        let (sub, color) = list_sub(g);
        items.push(ListItem::new(vec![
            Line::from(spans),
            Line::styled(format!("  {sub}"), theme.fg(color)),
        ]));
    }
    items
}

/// The second line of a group's row: what state it is in.
fn list_sub(g: &GroupView) -> (String, Color) {
    if g.warning.is_some() {
        return ("⚠ warning".into(), Color::Red);
    }
    match g.status.as_str() {
        "active" if g.role.as_deref() == Some("read-only") => {
            ("read-only member".into(), Color::DarkGray)
        }
        "active" => (format!("{} members", g.members), Color::DarkGray),
        "joining" => ("joining…".into(), Color::DarkGray),
        "frozen" => ("frozen: split view".into(), Color::Red),
        s => (s.to_owned(), Color::Red),
    }
}

/// A group's timeline: messages and system lines by time, then its
/// warning and, when it is closed, why.
pub(super) fn conversation(f: &mut Frame<'_>, app: &App, theme: Theme, area: Rect, g: &GroupView) {
    let mut title = format!(" # {} ", clean(&g.name));
    if !g.topic.is_empty() {
        title.push_str(&format!("— {} ", clean(&g.topic)));
    }
    if let Some(r) = &g.role {
        title.push_str(&format!("· {r} "));
    }
    let mut lines: Vec<Line<'_>> = Vec::new();
    for entry in by_time(app.group_notes(), |n| n.at, app.group_chat(), |m| m.sent_at) {
        let m = match entry {
            Entry::Side(n) => {
                lines.push(note_line(n, theme));
                continue;
            }
            Entry::Message(m) => m,
        };
        let who = if m.mine { "me" } else { m.sender.as_str() };
        let body = match (&m.body, m.deleted) {
            (_, true) => "(deleted for everyone)",
            (Some(b), false) => b.as_str(),
            (None, false) => "(not a text message)",
        };
        let state = m.mine.then_some(m.state.as_str());
        message_lines(&mut lines, theme, m.sent_at, who, body, state);
    }
    if lines.is_empty() {
        lines.push(Line::styled(
            "no messages yet; Ctrl-P shows the members",
            theme.fg(Color::DarkGray),
        ));
    }
    if let Some(w) = &g.warning {
        lines.push(Line::styled(
            format!("⚠ {}", clean(w)),
            theme.fg(Color::Red),
        ));
    }
    if let Err(why) = app.group_writable()
        && g.status != "active"
    {
        lines.push(Line::styled(format!("— {why} —"), theme.fg(Color::Red)));
    }
    timeline(f, app, title, lines, area);
}

/// One system line.
fn note_line(n: &Note, theme: Theme) -> Line<'static> {
    let color = if n.warn { Color::Red } else { Color::DarkGray };
    let mark = if n.warn { "⚠ " } else { "— " };
    Line::from(vec![
        Span::styled(
            format!("{} ", crate::time::utc_hhmm(n.at)),
            theme.fg(Color::DarkGray),
        ),
        Span::styled(format!("{mark}{}", clean(&n.text)), theme.fg(color)),
    ])
}

/// The member pane: members with their roles and whether they are my
/// contacts; the keys when it has them.
pub(super) fn member_pane(f: &mut Frame<'_>, app: &App, theme: Theme, area: Rect) {
    let focused = match app.overlay {
        Overlay::Members { sel } => Some(sel),
        _ => None,
    };
    let members = app.members();
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" members ({}) ", members.len()))
        .border_style(theme.fg(if focused.is_some() {
            Color::Cyan
        } else {
            Color::Reset
        }));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let keys: &[&str] = if focused.is_some() {
        &[
            "p/d promote/demote",
            "x remove · i invite",
            "n rename · t topic",
            "L leave · D dissolve",
        ]
    } else {
        &["Ctrl-P: manage"]
    };
    let [list_area, keys_area] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(keys.len() as u16)]).areas(inner);
    let me = app.status.as_ref().map(|s| s.username.as_str());
    let items: Vec<ListItem<'_>> = members
        .iter()
        .map(|m| {
            let mut name = vec![Span::styled(clean(&m.username), theme.bold())];
            if me == Some(m.username.as_str()) {
                name.push(Span::raw(" (me)"));
            }
            let reach = if me == Some(m.username.as_str()) {
                ""
            } else if m.contact {
                " · contact"
            } else {
                " · via owner"
            };
            let color = match m.role.as_str() {
                "owner" => Color::Yellow,
                "admin" => Color::Cyan,
                "read-only" => Color::DarkGray,
                _ => Color::Reset,
            };
            ListItem::new(vec![
                Line::from(name),
                Line::from(vec![
                    Span::raw("  "),
                    Span::styled(m.role.clone(), theme.fg(color)),
                    Span::styled(reach, theme.fg(Color::DarkGray)),
                ]),
            ])
        })
        .collect();
    if items.is_empty() {
        f.render_widget(Paragraph::new("loading…"), list_area);
    } else {
        selectable(f, items, focused, list_area, theme);
    }
    let hint: Vec<Line<'_>> = keys
        .iter()
        .map(|k| Line::styled(*k, theme.fg(Color::DarkGray)))
        .collect();
    f.render_widget(Paragraph::new(hint), keys_area);
}

/// "in 3d", "in 5h", "expired".
fn expires(at: u64) -> String {
    let now = crate::time::now_secs();
    match at.saturating_sub(now) {
        0 => "expired".into(),
        d @ 0..=3599 => format!("expires in {}m", d.div_ceil(60)),
        d @ 3600..=86_399 => format!("expires in {}h", d / 3600),
        d => format!("expires in {}d", d / 86_400),
    }
}

/// The pending invites overlay (Ctrl-G).
pub(super) fn invites(f: &mut Frame<'_>, app: &App, theme: Theme, sel: usize) {
    let inner = popup(f, "group invites (a accept · d decline · Esc)", 70, 12);
    // TODO(issue 17, invite links): when the control API can join by an
    // `umbra:group#…` link (h21's branch), a key here takes a pasted link.
    if app.group_invites.is_empty() {
        f.render_widget(
            Paragraph::new(
                "no pending group invites. To invite others: select a group, Ctrl-P, then i.",
            )
            .wrap(ratatui::widgets::Wrap { trim: true }),
            inner,
        );
        return;
    }
    let items: Vec<ListItem<'_>> = app
        .group_invites
        .iter()
        .map(|i| {
            ListItem::new(vec![
                Line::from(vec![
                    Span::styled("# ", theme.fg(Color::Yellow)),
                    Span::styled(clean(&i.name), theme.bold()),
                ]),
                Line::raw(format!(
                    "  from {} as {} · {}",
                    clean(&i.username),
                    i.role,
                    expires(i.expires_at)
                )),
            ])
        })
        .collect();
    selectable(f, items, Some(sel), inner, theme);
}

/// The contact picker: whom to invite into the selected group.
pub(super) fn pick(f: &mut Frame<'_>, app: &App, theme: Theme, sel: usize) {
    let name = app
        .current_group()
        .map(|g| clean(&g.name))
        .unwrap_or_default();
    let inner = popup(f, &format!("invite to “{name}” (Enter · Esc)"), 60, 12);
    let people = app.invitable();
    if people.is_empty() {
        f.render_widget(
            Paragraph::new(
                "every contact with a session is a member already (Ctrl-F finds people)",
            )
            .wrap(ratatui::widgets::Wrap { trim: true }),
            inner,
        );
        return;
    }
    let items: Vec<ListItem<'_>> = people
        .iter()
        .map(|c| {
            let mark = if c.verified { "  ✔ verified" } else { "" };
            ListItem::new(Line::raw(format!("{}{mark}", clean(&c.username))))
        })
        .collect();
    selectable(f, items, Some(sel), inner, theme);
}

/// The title of the name / topic prompt.
pub(super) fn text_title(app: &App, field: TextField) -> String {
    let name = app
        .current_group()
        .map(|g| clean(&g.name))
        .unwrap_or_default();
    match field {
        TextField::Create => "name of the new group".into(),
        TextField::Rename => format!("new name for “{name}”"),
        TextField::Topic => format!("topic of “{name}” (empty: none)"),
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::control::proto::GroupEventView;
    use crate::tui::model::group::test::{gmsg, group, invite, member};
    use crate::tui::view::test::{app, draw, has};

    /// @alice's screen with two groups; "Night shift" selected, its
    /// timeline and members loaded.
    fn with_groups() -> App {
        let mut a = app();
        for c in &mut a.contacts {
            c.last_seen = None;
        }
        a.requests.clear();
        let mut night = group('a', "Night shift", "owner", "active");
        night.topic = "rota".into();
        let id = night.id.clone();
        a.set_groups(
            vec![night, group('b', "Book club", "read-only", "active")],
            vec![invite('c', "Choir", "@bob")],
        );
        a.group_unread.insert("b".repeat(64), 4);
        a.set_members(
            &id,
            vec![
                member("@alice", "owner", false),
                member("@bob", "admin", true),
                member("@carol", "read-only", false),
            ],
        );
        a.select_group(&id);
        a.set_group_history(
            &id,
            vec![
                gmsg(1, "@bob", "evening all", "received"),
                gmsg(2, "@alice", "hi\nthere", "delivered"),
                gmsg(3, "@carol", "\u{1b}[2Jboo", "received"),
            ],
        );
        a.upsert_group_message(&id, {
            let mut m = gmsg(4, "@alice", "queued one", "pending");
            m.sent_at = 1_795_000_900;
            m
        });
        a
    }

    #[test]
    fn the_contact_list_shows_groups_with_marker_and_unread() {
        let (l, _) = draw(&with_groups(), 80, 24, false);
        assert!(has(&l, "── groups ──"), "{l:#?}");
        assert!(has(&l, "# Night shift"));
        assert!(has(&l, "# Book club (4)"));
        assert!(has(&l, "read-only member"));
        assert!(has(&l, "» 1 invite(s) ^G"));
        // The group's timeline: senders, my delivery states, the topic.
        assert!(has(&l, "# Night shift — rota · owner"), "{l:#?}");
        assert!(has(&l, "@bob: evening all"));
        assert!(has(&l, "me: hi"));
        assert!(has(&l, "      there  [delivered]"));
        assert!(has(&l, "me: queued one  [pending]"));
        assert!(has(&l, "@carol: \u{FFFD}[2Jboo"), "escapes neutralized");
        assert!(has(&l, "message to # Night shift"));
        assert!(has(&l, "Ctrl-P members"));
    }

    #[test]
    fn system_lines_and_closed_groups() {
        let mut a = with_groups();
        let id = "a".repeat(64);
        a.apply(&crate::control::proto::Event::Group(
            GroupEventView::Warning {
                group: id.clone(),
                reason: "two members saw different heads".into(),
            },
        ));
        a.set_members(&id, vec![member("@alice", "owner", false)]);
        let mut g = a.groups[0].clone();
        g.status = "dissolved".into();
        a.apply(&crate::control::proto::Event::Group(
            GroupEventView::Changed(g),
        ));
        a.notice = None;
        let (l, _) = draw(&a, 100, 30, false);
        assert!(has(&l, "⚠ two members saw different heads"), "{l:#?}");
        assert!(has(&l, "— @bob is no longer a member"));
        assert!(has(&l, "the group was dissolved"));
        assert!(
            has(&l, "this group was dissolved: read-only"),
            "input says why"
        );
        assert!(has(&l, "  dissolved"), "the list row says it too");
    }

    /// The member pane and the invites overlay at 80x24, compared with a
    /// reviewed snapshot (`UMBRA_SNAPSHOT=write` rewrites it).
    #[test]
    fn member_pane_and_invites_at_80x24() {
        let mut a = with_groups();
        a.members_pane = true;
        a.overlay = Overlay::Members { sel: 1 };
        let (l, _) = draw(&a, 80, 24, false);
        for want in [
            "members (3)",
            "@alice (me)",
            "owner",
            "@bob",
            "admin · contact",
            "@carol",
            "read-only · via owner",
            "p/d promote/demote",
            "x remove · i invite",
            "n rename · t topic",
            "L leave · D dissolve",
            "member pane has the keys: Esc to type",
        ] {
            assert!(has(&l, want), "{want}: {l:#?}");
        }
        let got = l.join("\n") + "\n";
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/snapshots/tui_group_80x24.txt"
        );
        if std::env::var("UMBRA_SNAPSHOT").as_deref() == Ok("write") {
            std::fs::write(path, &got).unwrap();
        }
        let want = std::fs::read_to_string(path).unwrap();
        assert_eq!(got, want, "the screen changed; compare with {path}");

        a.overlay = Overlay::GroupInvites { sel: 0 };
        let (l, _) = draw(&a, 80, 24, false);
        assert!(has(&l, "group invites (a accept · d decline · Esc)"));
        assert!(has(&l, "# Choir"));
        assert!(has(&l, "from @bob as member · expired"), "{l:#?}");
        a.group_invites.clear();
        let (l, _) = draw(&a, 80, 24, false);
        assert!(has(&l, "no pending group invites"));

        a.overlay = Overlay::InvitePick { sel: 0 };
        let (l, _) = draw(&a, 80, 24, false);
        assert!(has(&l, "invite to “Night shift”"));
        assert!(
            has(&l, "every contact with a session is a member"),
            "@bob is a member; @carol is not a contact: {l:#?}"
        );
        a.overlay = Overlay::Confirm {
            question: "Remove @bob from “Night shift”? Nobody delivers to them any more.".into(),
            action: crate::tui::input::Action::None,
        };
        let (l, _) = draw(&a, 80, 24, false);
        assert!(has(&l, "Remove @bob from “Night shift”?"), "{l:#?}");
        assert!(has(&l, "y / n"));
        a.overlay = Overlay::GroupText {
            field: TextField::Topic,
            value: "new topic".into(),
        };
        let (l, _) = draw(&a, 80, 24, false);
        assert!(has(&l, "topic of “Night shift” (empty: none)"));
    }

    #[test]
    fn a_read_only_member_sees_why_it_cannot_type() {
        let mut a = with_groups();
        a.select_group(&"b".repeat(64));
        let (l, _) = draw(&a, 80, 24, false);
        assert!(
            has(&l, "you are a read-only member of this group"),
            "{l:#?}"
        );
        assert!(has(&l, "no messages yet"));
    }
}
