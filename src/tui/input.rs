//! Keys → model changes and commands for the daemon (sans-IO). The group
//! windows' keys are in `input/group.rs`.

mod group;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::model::{App, Overlay, TextField};
use crate::control::proto::GroupRequest;

/// What the run loop must ask the daemon after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing to ask.
    None,
    /// Send `text` to `to`.
    Send {
        /// `@name`.
        to: String,
        /// The message.
        text: String,
    },
    /// Load the selected conversation (and mark it read).
    Open(String),
    /// Search the directory.
    Search(String),
    /// Send a connection request.
    Request(String),
    /// Accept a pending request.
    Accept(String),
    /// Reject a pending request.
    Reject(String),
    /// Mark a contact verified.
    Verify(String),
    /// End a session.
    End(String),
    /// Offer the file at `path` to `to`.
    SendFile {
        /// `@name`.
        to: String,
        /// The path as typed (`~` expanded by the run loop).
        path: String,
    },
    /// Accept an incoming file (transfer id).
    AcceptFile(String),
    /// Decline or cancel a transfer (transfer id).
    CancelFile(String),
    /// Save a received file (transfer id, path as typed).
    SaveFile {
        /// Transfer id.
        id: String,
        /// Destination (file or directory).
        path: String,
    },
    /// Load the selected group's messages and members (by group id).
    OpenGroup(String),
    /// A group command (send, invite, join, set role, remove, …).
    Group(GroupRequest),
}

/// The key bindings, for the help overlay.
pub const BINDINGS: &[(&str, &str)] = &[
    ("Enter", "send the message"),
    ("Alt-Enter", "new line in the message"),
    (
        "Tab / Shift-Tab",
        "next / previous contact or group (# ...)",
    ),
    ("PgUp / PgDn", "scroll the conversation"),
    ("Ctrl-F", "search the Handshaker and send a request"),
    ("Ctrl-R", "pending requests: a accept, r reject"),
    ("Ctrl-K", "fingerprint of the contact; v marks it verified"),
    ("Ctrl-E", "end the session (asks first)"),
    ("Ctrl-O", "send a file to the contact (asks for the path)"),
    (
        "Ctrl-T",
        "file transfers: a accept, x decline/cancel, s save",
    ),
    ("Ctrl-N", "create a group (asks for its name)"),
    ("Ctrl-G", "group invites: a accept, d decline"),
    ("Ctrl-P", "the group's members pane (↑ ↓ pick a member)"),
    (
        "  p / d (in the pane)",
        "promote / demote the member (asks first)",
    ),
    (
        "  x (in the pane)",
        "remove the member from the group (asks first)",
    ),
    (
        "  i / n / t (in pane)",
        "invite a contact / rename / set the topic",
    ),
    (
        "  L / D (in the pane)",
        "leave / dissolve the group (asks first)",
    ),
    ("F1 or ? (empty input)", "this help"),
    ("Esc", "close a window"),
    ("Ctrl-C / Ctrl-Q", "quit"),
];

/// Applies `key` to `app`; returns what to ask the daemon.
pub fn handle_key(app: &mut App, key: KeyEvent) -> Action {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c') | KeyCode::Char('q')) {
        app.quit = true;
        return Action::None;
    }
    match app.overlay.clone() {
        Overlay::None => main_key(app, key, ctrl),
        Overlay::Help => {
            app.overlay = Overlay::None;
            Action::None
        }
        Overlay::Requests { sel } => {
            let n = app.requests.len();
            let name = app.requests.get(sel).map(|r| r.username.clone());
            match key.code {
                KeyCode::Esc => app.overlay = Overlay::None,
                KeyCode::Down => {
                    app.overlay = Overlay::Requests {
                        sel: (sel + 1).min(n.saturating_sub(1)),
                    }
                }
                KeyCode::Up => {
                    app.overlay = Overlay::Requests {
                        sel: sel.saturating_sub(1),
                    }
                }
                KeyCode::Char('a') => {
                    if let Some(n) = name {
                        app.overlay = Overlay::None;
                        return Action::Accept(n);
                    }
                }
                KeyCode::Char('r') => {
                    if let Some(n) = name {
                        app.overlay = Overlay::None;
                        return Action::Reject(n);
                    }
                }
                _ => {}
            }
            Action::None
        }
        Overlay::Search {
            mut query,
            results,
            sel,
        } => {
            match key.code {
                KeyCode::Esc => {
                    app.overlay = Overlay::None;
                    return Action::None;
                }
                KeyCode::Down => {
                    let sel = (sel + 1).min(results.len().saturating_sub(1));
                    app.overlay = Overlay::Search {
                        query,
                        results,
                        sel,
                    };
                    return Action::None;
                }
                KeyCode::Up => {
                    let sel = sel.saturating_sub(1);
                    app.overlay = Overlay::Search {
                        query,
                        results,
                        sel,
                    };
                    return Action::None;
                }
                KeyCode::Enter => {
                    // First Enter searches; Enter on a fresh result list requests.
                    if let Some(hit) = results.get(sel) {
                        let name = hit.username.clone();
                        app.overlay = Overlay::None;
                        return Action::Request(name);
                    }
                    let q = query.clone();
                    app.overlay = Overlay::Search {
                        query,
                        results,
                        sel,
                    };
                    return if q.trim().is_empty() {
                        Action::None
                    } else {
                        Action::Search(q)
                    };
                }
                KeyCode::Backspace => {
                    query.pop();
                }
                KeyCode::Char(c) if !ctrl => query.push(c),
                _ => {}
            }
            // Editing the query discards stale results.
            app.overlay = Overlay::Search {
                query,
                results: Vec::new(),
                sel: 0,
            };
            Action::None
        }
        Overlay::Fingerprint => {
            app.overlay = Overlay::None;
            match (key.code, app.current_name()) {
                (KeyCode::Char('v'), Some(n)) => Action::Verify(n),
                _ => Action::None,
            }
        }
        Overlay::SendFile { mut path } => {
            match key.code {
                KeyCode::Esc => app.overlay = Overlay::None,
                KeyCode::Enter => {
                    app.overlay = Overlay::None;
                    return match app.current_name() {
                        Some(to) if !path.trim().is_empty() => Action::SendFile {
                            to,
                            path: path.trim().to_owned(),
                        },
                        _ => Action::None,
                    };
                }
                KeyCode::Backspace => {
                    path.pop();
                    app.overlay = Overlay::SendFile { path };
                }
                KeyCode::Char('u') if ctrl => {
                    app.overlay = Overlay::SendFile {
                        path: String::new(),
                    }
                }
                KeyCode::Char(c) if !ctrl => {
                    path.push(c);
                    app.overlay = Overlay::SendFile { path };
                }
                _ => {}
            }
            Action::None
        }
        Overlay::SaveFile { id, mut path } => {
            match key.code {
                KeyCode::Esc => app.overlay = Overlay::Files { sel: 0 },
                KeyCode::Enter => {
                    app.overlay = Overlay::None;
                    if !path.trim().is_empty() {
                        return Action::SaveFile {
                            id,
                            path: path.trim().to_owned(),
                        };
                    }
                }
                KeyCode::Backspace => {
                    path.pop();
                    app.overlay = Overlay::SaveFile { id, path };
                }
                KeyCode::Char('u') if ctrl => {
                    app.overlay = Overlay::SaveFile {
                        id,
                        path: String::new(),
                    }
                }
                KeyCode::Char(c) if !ctrl => {
                    path.push(c);
                    app.overlay = Overlay::SaveFile { id, path };
                }
                _ => {}
            }
            Action::None
        }
        Overlay::Files { sel } => {
            let n = app.transfers.len();
            // Newest first on screen.
            let t = app.transfers.iter().rev().nth(sel).cloned();
            match key.code {
                KeyCode::Esc => app.overlay = Overlay::None,
                KeyCode::Down => {
                    app.overlay = Overlay::Files {
                        sel: (sel + 1).min(n.saturating_sub(1)),
                    }
                }
                KeyCode::Up => {
                    app.overlay = Overlay::Files {
                        sel: sel.saturating_sub(1),
                    }
                }
                KeyCode::Char('a') => {
                    if let Some(t) = t.filter(|t| t.direction == "in" && t.state == "offered") {
                        return Action::AcceptFile(t.id);
                    }
                }
                KeyCode::Char('x') => {
                    if let Some(t) = t.filter(|t| t.state == "offered" || t.state == "active") {
                        return Action::CancelFile(t.id);
                    }
                }
                KeyCode::Char('s') => {
                    if let Some(t) = t.filter(|t| t.stored) {
                        app.overlay = Overlay::SaveFile {
                            id: t.id,
                            path: "~/Downloads/".into(),
                        };
                    }
                }
                _ => {}
            }
            Action::None
        }
        Overlay::Members { sel } => group::members_key(app, key, ctrl, sel),
        Overlay::GroupInvites { sel } => group::invites_key(app, key, sel),
        Overlay::InvitePick { sel } => group::pick_key(app, key, sel),
        Overlay::GroupText { field, value } => group::text_key(app, key, ctrl, field, value),
        Overlay::Confirm { action, .. } => {
            app.overlay = Overlay::None;
            if key.code == KeyCode::Char('y') {
                return action;
            }
            app.notice = Some("nothing changed".into());
            Action::None
        }
        Overlay::ConfirmEnd => {
            app.overlay = Overlay::None;
            match (key.code, app.current_name()) {
                (KeyCode::Char('y'), Some(n)) => Action::End(n),
                _ => {
                    app.notice = Some("the session stays".into());
                    Action::None
                }
            }
        }
    }
}

fn main_key(app: &mut App, key: KeyEvent, ctrl: bool) -> Action {
    let alt = key.modifiers.contains(KeyModifiers::ALT);
    match key.code {
        KeyCode::F(1) => app.overlay = Overlay::Help,
        KeyCode::Char('?') if app.input.is_empty() => app.overlay = Overlay::Help,
        KeyCode::Char('f') if ctrl => {
            app.overlay = Overlay::Search {
                query: String::new(),
                results: Vec::new(),
                sel: 0,
            }
        }
        KeyCode::Char('r') if ctrl => app.overlay = Overlay::Requests { sel: 0 },
        KeyCode::Char('k') if ctrl && app.current().is_some() => app.overlay = Overlay::Fingerprint,
        KeyCode::Char('e') if ctrl && app.current().is_some() => app.overlay = Overlay::ConfirmEnd,
        KeyCode::Char('o') if ctrl && app.current().is_some() => {
            app.overlay = Overlay::SendFile {
                path: String::new(),
            }
        }
        KeyCode::Char('t') if ctrl => app.overlay = Overlay::Files { sel: 0 },
        KeyCode::Char('n') if ctrl => {
            app.overlay = Overlay::GroupText {
                field: TextField::Create,
                value: String::new(),
            }
        }
        KeyCode::Char('g') if ctrl => app.overlay = Overlay::GroupInvites { sel: 0 },
        KeyCode::Char('p') if ctrl => group::toggle_pane(app),
        KeyCode::Tab => {
            app.select_by(1);
            return open_selected(app);
        }
        KeyCode::BackTab => {
            app.select_by(-1);
            return open_selected(app);
        }
        KeyCode::PageUp => app.scroll = app.scroll.saturating_add(5),
        KeyCode::PageDown => app.scroll = app.scroll.saturating_sub(5),
        KeyCode::Enter if alt => app.input.push('\n'),
        KeyCode::Enter => {
            let text = app.input.trim_end().to_owned();
            if text.is_empty() {
                return Action::None;
            }
            if let Some(group) = app.current_group_id() {
                if let Err(why) = app.group_writable() {
                    app.notice = Some(format!("not sent: {why}"));
                    return Action::None;
                }
                app.input.clear();
                app.scroll = 0;
                return Action::Group(GroupRequest::Send { group, text });
            }
            let Some(to) = app.current_name() else {
                app.notice = Some("no contact selected: Ctrl-F to find someone".into());
                return Action::None;
            };
            app.input.clear();
            app.scroll = 0;
            return Action::Send { to, text };
        }
        KeyCode::Backspace => {
            app.input.pop();
        }
        KeyCode::Char(c) if !ctrl => app.input.push(c),
        _ => {}
    }
    Action::None
}

/// What to load for the selected row.
fn open_selected(app: &App) -> Action {
    match (app.current_name(), app.current_group_id()) {
        (Some(n), _) => Action::Open(n),
        (None, Some(g)) => Action::OpenGroup(g),
        (None, None) => Action::None,
    }
}

#[cfg(test)]
pub(crate) mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tui::model::test::contact;

    pub(crate) fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    pub(crate) fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    pub(crate) fn typed(app: &mut App, s: &str) {
        for c in s.chars() {
            assert_eq!(handle_key(app, key(KeyCode::Char(c))), Action::None);
        }
    }

    #[test]
    fn typing_multi_line_and_sending() {
        let mut app = App::default();
        app.set_contacts(vec![contact("@bob", true, 0), contact("@carol", false, 0)]);
        typed(&mut app, "line one");
        handle_key(&mut app, KeyEvent::new(KeyCode::Enter, KeyModifiers::ALT));
        typed(&mut app, "two!");
        handle_key(&mut app, key(KeyCode::Backspace));
        assert_eq!(app.input, "line one\ntwo");
        let a = handle_key(&mut app, key(KeyCode::Enter));
        assert_eq!(
            a,
            Action::Send {
                to: "@bob".into(),
                text: "line one\ntwo".into()
            }
        );
        assert!(app.input.is_empty());
        // Empty input sends nothing; `?` opens the help only then.
        assert_eq!(handle_key(&mut app, key(KeyCode::Enter)), Action::None);
        handle_key(&mut app, key(KeyCode::Char('?')));
        assert_eq!(app.overlay, Overlay::Help);
        handle_key(&mut app, key(KeyCode::Esc));
        assert_eq!(app.overlay, Overlay::None);
        typed(&mut app, "why?");
        assert_eq!(app.input, "why?");
    }

    #[test]
    fn switching_contacts_and_overlays() {
        let mut app = App::default();
        app.set_contacts(vec![contact("@bob", true, 0), contact("@carol", false, 0)]);
        assert_eq!(
            handle_key(&mut app, key(KeyCode::Tab)),
            Action::Open("@carol".into())
        );
        assert_eq!(
            handle_key(
                &mut app,
                KeyEvent::new(KeyCode::BackTab, KeyModifiers::SHIFT)
            ),
            Action::Open("@bob".into())
        );
        // Search: type, Enter searches, Enter again requests the highlighted hit.
        handle_key(&mut app, ctrl('f'));
        typed(&mut app, "da");
        assert_eq!(
            handle_key(&mut app, key(KeyCode::Enter)),
            Action::Search("da".into())
        );
        app.overlay = Overlay::Search {
            query: "da".into(),
            results: vec![crate::control::proto::DirectoryView {
                username: "@dave".into(),
                fingerprint: "F".repeat(40),
                is_contact: false,
                key_differs: false,
            }],
            sel: 0,
        };
        assert_eq!(
            handle_key(&mut app, key(KeyCode::Enter)),
            Action::Request("@dave".into())
        );
        // End asks first; anything but `y` keeps the session.
        handle_key(&mut app, ctrl('e'));
        assert_eq!(handle_key(&mut app, key(KeyCode::Char('n'))), Action::None);
        handle_key(&mut app, ctrl('e'));
        assert_eq!(
            handle_key(&mut app, key(KeyCode::Char('y'))),
            Action::End("@bob".into())
        );
        handle_key(&mut app, ctrl('k'));
        assert_eq!(
            handle_key(&mut app, key(KeyCode::Char('v'))),
            Action::Verify("@bob".into())
        );
        handle_key(&mut app, ctrl('q'));
        assert!(app.quit);
    }
}
