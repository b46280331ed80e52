//! Keys of the group windows (issue 17): the member pane, the invites
//! overlay, the contact picker, the name/topic prompt (sans-IO). Rights are
//! checked here for a clear word before asking; the daemon checks them again.

use crossterm::event::{KeyCode, KeyEvent};

use super::Action;
use crate::control::proto::{GroupMemberView, GroupRequest};
use crate::tui::model::{App, Overlay, TextField, role_words};

/// Ctrl-P on the main screen: show and focus the member pane.
pub(super) fn toggle_pane(app: &mut App) {
    if app.current_group().is_none() {
        app.notice = Some("Ctrl-P shows a group's members: select a group with Tab first".into());
        return;
    }
    app.members_pane = true;
    app.overlay = Overlay::Members { sel: 0 };
}

/// Whether my role allows changing members, names and topics; else why not.
fn may_manage(app: &App) -> Result<(), String> {
    match app.my_group_role() {
        Some("owner" | "admin") => Ok(()),
        Some(_) => Err("only the owner or an admin can do that".into()),
        None => Err(app.group_writable().err().unwrap_or_default()),
    }
}

/// The selected group's name in quotes, for questions.
fn group_words(app: &App) -> String {
    app.current_group()
        .map_or_else(String::new, |g| format!("“{}”", g.name))
}

/// Asks `question` before `action`, or says why not.
fn confirm(app: &mut App, allowed: Result<(), String>, question: String, action: Action) {
    match allowed {
        Ok(()) => app.overlay = Overlay::Confirm { question, action },
        Err(why) => app.notice = Some(why),
    }
}

/// The role one step up (promote) or down (demote), if there is one.
fn next_role(m: &GroupMemberView, up: bool) -> Result<&'static str, String> {
    match (m.role.as_str(), up) {
        ("owner", _) => Err(format!(
            "{} is the owner: only a transfer of ownership changes that (umbra group transfer)",
            m.username
        )),
        ("read-only", true) => Ok("member"),
        ("member", true) => Ok("admin"),
        ("admin", true) => Err(format!("{} is already an admin", m.username)),
        ("admin", false) => Ok("member"),
        ("member", false) => Ok("read-only"),
        ("read-only", false) => Err(format!("{} is already read-only", m.username)),
        (r, _) => Err(format!("unknown role {r}")),
    }
}

/// Keys while the member pane is focused.
pub(super) fn members_key(app: &mut App, key: KeyEvent, ctrl: bool, sel: usize) -> Action {
    let Some(group) = app.current_group_id() else {
        app.overlay = Overlay::None;
        return Action::None;
    };
    let n = app.members().len();
    let member = app.members().get(sel).cloned();
    let me = app.status.as_ref().map(|s| s.username.clone());
    let gw = group_words(app);
    match key.code {
        KeyCode::Esc => app.overlay = Overlay::None,
        KeyCode::Char('p') if ctrl => {
            app.members_pane = false;
            app.overlay = Overlay::None;
        }
        KeyCode::Down | KeyCode::Up => {
            let sel = moved(&key, sel, n).unwrap_or(sel);
            app.overlay = Overlay::Members { sel };
        }
        KeyCode::Char(c @ ('p' | 'd')) => {
            let Some(m) = member else { return Action::None };
            let role = may_manage(app).and_then(|()| next_role(&m, c == 'p'));
            let question = format!(
                "Make {} {} of {gw}?",
                m.username,
                role_words(role.as_deref().unwrap_or_default())
            );
            let action = Action::Group(GroupRequest::SetRole {
                group,
                member: m.fingerprint,
                role: role.as_deref().unwrap_or_default().to_owned(),
            });
            confirm(app, role.map(|_| ()), question, action);
        }
        KeyCode::Char('x') => {
            let Some(m) = member else { return Action::None };
            let allowed = if me.as_deref() == Some(m.username.as_str()) {
                Err("that is you: L leaves the group".into())
            } else {
                may_manage(app)
            };
            let question = format!(
                "Remove {} from {gw}? Nobody delivers to them any more.",
                m.username
            );
            let action = Action::Group(GroupRequest::Remove {
                group,
                member: m.fingerprint,
            });
            confirm(app, allowed, question, action);
        }
        KeyCode::Char('i') => match may_manage(app) {
            Ok(()) => app.overlay = Overlay::InvitePick { sel: 0 },
            Err(why) => app.notice = Some(why),
        },
        KeyCode::Char(c @ ('n' | 't')) => match may_manage(app) {
            Ok(()) => {
                let g = app.current_group();
                let (field, value) = if c == 'n' {
                    (TextField::Rename, g.map(|g| g.name.clone()))
                } else {
                    (TextField::Topic, g.map(|g| g.topic.clone()))
                };
                app.overlay = Overlay::GroupText {
                    field,
                    value: value.unwrap_or_default(),
                };
            }
            Err(why) => app.notice = Some(why),
        },
        KeyCode::Char('L') => {
            let allowed = match app.my_group_role() {
                Some("owner") => Err("the owner cannot leave: transfer ownership \
                     (umbra group transfer) or dissolve (D)"
                    .into()),
                Some(_) => Ok(()),
                None => Err(app.group_writable().err().unwrap_or_default()),
            };
            let question = format!("Leave {gw}? You receive nothing more from it.");
            confirm(
                app,
                allowed,
                question,
                Action::Group(GroupRequest::Leave { group }),
            );
        }
        KeyCode::Char('D') => {
            let allowed = match app.my_group_role() {
                Some("owner") => Ok(()),
                _ => Err("only the owner can dissolve the group".into()),
            };
            let question = format!("Dissolve {gw} for everyone? This cannot be undone.");
            confirm(
                app,
                allowed,
                question,
                Action::Group(GroupRequest::Dissolve { group }),
            );
        }
        _ => {}
    }
    Action::None
}

/// Up / Down in a list of `n` rows: the new selection, if the key moved it.
fn moved(key: &KeyEvent, sel: usize, n: usize) -> Option<usize> {
    match key.code {
        KeyCode::Down => Some((sel + 1).min(n.saturating_sub(1))),
        KeyCode::Up => Some(sel.saturating_sub(1)),
        _ => None,
    }
}

/// Keys of the pending invites overlay (Ctrl-G).
pub(super) fn invites_key(app: &mut App, key: KeyEvent, sel: usize) -> Action {
    if let Some(sel) = moved(&key, sel, app.group_invites.len()) {
        app.overlay = Overlay::GroupInvites { sel };
        return Action::None;
    }
    let group = app.group_invites.get(sel).map(|i| i.group.clone());
    match (key.code, group) {
        (KeyCode::Esc, _) => app.overlay = Overlay::None,
        (KeyCode::Char('a'), Some(group)) => {
            app.overlay = Overlay::None;
            return Action::Group(GroupRequest::Join { group });
        }
        (KeyCode::Char('d'), Some(group)) => {
            app.overlay = Overlay::None;
            return Action::Group(GroupRequest::Decline { group });
        }
        _ => {}
    }
    Action::None
}

/// Keys of the contact picker (invite into the selected group).
pub(super) fn pick_key(app: &mut App, key: KeyEvent, sel: usize) -> Action {
    let names: Vec<String> = app.invitable().iter().map(|c| c.username.clone()).collect();
    if let Some(sel) = moved(&key, sel, names.len()) {
        app.overlay = Overlay::InvitePick { sel };
        return Action::None;
    }
    match key.code {
        KeyCode::Esc => app.overlay = Overlay::Members { sel: 0 },
        KeyCode::Enter => {
            if let (Some(username), Some(group)) = (names.get(sel), app.current_group_id()) {
                app.overlay = Overlay::Members { sel: 0 };
                return Action::Group(GroupRequest::Invite {
                    group,
                    username: username.clone(),
                    role: None,
                });
            }
        }
        _ => {}
    }
    Action::None
}

/// Keys of the name / topic prompt.
pub(super) fn text_key(
    app: &mut App,
    key: KeyEvent,
    ctrl: bool,
    field: TextField,
    mut value: String,
) -> Action {
    match key.code {
        KeyCode::Esc => {
            app.overlay = Overlay::None;
            return Action::None;
        }
        KeyCode::Enter => {
            app.overlay = Overlay::None;
            let text = value.trim().to_owned();
            let group = app.current_group_id();
            return match (field, group) {
                (TextField::Create, _) if !text.is_empty() => Action::Group(GroupRequest::Create {
                    name: text,
                    topic: String::new(),
                    room: false,
                    history: false,
                }),
                (TextField::Rename, Some(group)) if !text.is_empty() => {
                    Action::Group(GroupRequest::Rename { group, name: text })
                }
                (TextField::Topic, Some(group)) => {
                    Action::Group(GroupRequest::Topic { group, topic: text })
                }
                _ => {
                    app.notice = Some("nothing changed: a group's name cannot be empty".into());
                    Action::None
                }
            };
        }
        KeyCode::Backspace => {
            value.pop();
        }
        KeyCode::Char('u') if ctrl => value.clear(),
        KeyCode::Char(c) if !ctrl => value.push(c),
        _ => {}
    }
    app.overlay = Overlay::GroupText { field, value };
    Action::None
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tui::input::handle_key;
    use crate::tui::input::test::{ctrl, key, typed};
    use crate::tui::model::group::test::{group, invite, member};
    use crate::tui::model::test::{contact, status};
    use crossterm::event::KeyModifiers;

    /// Me (@alice) with contacts @bob and @carol, and one group where I
    /// have `role`, selected, its members loaded.
    fn app(role: &str) -> App {
        let mut app = App {
            status: Some(status(0)),
            ..App::default()
        };
        app.set_contacts(vec![contact("@bob", true, 0), contact("@carol", true, 0)]);
        app.set_groups(vec![group('a', "Night shift", role, "active")], vec![]);
        let owner = if role == "owner" { "@alice" } else { "@dave" };
        app.set_members(
            &"a".repeat(64),
            vec![
                member(owner, "owner", false),
                member("@bob", "member", true),
                member("@alice", role, false),
            ],
        );
        app.select_by(2);
        app
    }

    fn gid() -> String {
        "a".repeat(64)
    }

    #[test]
    fn selecting_and_typing_in_a_group() {
        let mut a = app("member");
        a.select_by(1);
        assert_eq!(
            handle_key(&mut a, key(KeyCode::BackTab)),
            Action::OpenGroup(gid())
        );
        typed(&mut a, "hello all");
        assert_eq!(
            handle_key(&mut a, key(KeyCode::Enter)),
            Action::Group(GroupRequest::Send {
                group: gid(),
                text: "hello all".into()
            })
        );
        assert!(a.input.is_empty());
        // A read-only member keeps the text and is told why.
        let mut r = app("read-only");
        typed(&mut r, "let me speak");
        assert_eq!(handle_key(&mut r, key(KeyCode::Enter)), Action::None);
        assert_eq!(r.input, "let me speak");
        assert!(r.notice.as_deref().unwrap().contains("read-only member"));
        // So does a removed one.
        r.groups[0].role = Some("member".into());
        r.groups[0].status = "removed".into();
        assert_eq!(handle_key(&mut r, key(KeyCode::Enter)), Action::None);
        assert!(r.notice.as_deref().unwrap().contains("removed"));
    }

    #[test]
    fn member_pane_actions_ask_first() {
        let mut a = app("owner");
        handle_key(&mut a, ctrl('p'));
        assert!(a.members_pane);
        assert_eq!(a.overlay, Overlay::Members { sel: 0 });
        // Down to @bob; promote asks, y sends the request (by fingerprint).
        handle_key(&mut a, key(KeyCode::Down));
        handle_key(&mut a, key(KeyCode::Char('p')));
        let Overlay::Confirm { question, .. } = &a.overlay else {
            panic!("{:?}", a.overlay)
        };
        assert_eq!(question, "Make @bob an admin of “Night shift”?");
        let bob = member("@bob", "member", true).fingerprint;
        assert_eq!(
            handle_key(&mut a, key(KeyCode::Char('y'))),
            Action::Group(GroupRequest::SetRole {
                group: gid(),
                member: bob.clone(),
                role: "admin".into()
            })
        );
        // Demote, then anything but y changes nothing.
        handle_key(&mut a, ctrl('p'));
        handle_key(&mut a, key(KeyCode::Down));
        handle_key(&mut a, key(KeyCode::Char('d')));
        assert_eq!(handle_key(&mut a, key(KeyCode::Char('n'))), Action::None);
        assert_eq!(a.notice.as_deref(), Some("nothing changed"));
        // Remove @bob; removing myself is refused with the way out.
        a.overlay = Overlay::Members { sel: 1 };
        handle_key(&mut a, key(KeyCode::Char('x')));
        assert_eq!(
            handle_key(&mut a, key(KeyCode::Char('y'))),
            Action::Group(GroupRequest::Remove {
                group: gid(),
                member: bob
            })
        );
        a.overlay = Overlay::Members { sel: 0 };
        handle_key(&mut a, key(KeyCode::Char('x')));
        assert!(a.notice.as_deref().unwrap().contains("that is you"));
        assert_eq!(a.overlay, Overlay::Members { sel: 0 });
        // The owner's role is not changed by promote/demote.
        handle_key(&mut a, key(KeyCode::Char('d')));
        assert!(
            a.notice
                .as_deref()
                .unwrap()
                .contains("transfer of ownership")
        );
        // The owner cannot leave, but can dissolve.
        handle_key(&mut a, key(KeyCode::Char('L')));
        assert!(a.notice.as_deref().unwrap().contains("cannot leave"));
        handle_key(&mut a, key(KeyCode::Char('D')));
        assert_eq!(
            handle_key(&mut a, key(KeyCode::Char('y'))),
            Action::Group(GroupRequest::Dissolve { group: gid() })
        );
        // Esc gives the keys back to typing, the pane stays; Ctrl-P hides it.
        handle_key(&mut a, ctrl('p'));
        handle_key(&mut a, key(KeyCode::Esc));
        assert_eq!(a.overlay, Overlay::None);
        assert!(a.members_pane);
        handle_key(&mut a, ctrl('p'));
        handle_key(&mut a, ctrl('p'));
        assert!(!a.members_pane);
    }

    #[test]
    fn rename_topic_and_invite() {
        let mut a = app("admin");
        handle_key(&mut a, ctrl('p'));
        handle_key(&mut a, key(KeyCode::Char('n')));
        assert_eq!(
            a.overlay,
            Overlay::GroupText {
                field: TextField::Rename,
                value: "Night shift".into()
            }
        );
        handle_key(&mut a, ctrl('u'));
        typed(&mut a, "Day shift");
        assert_eq!(
            handle_key(&mut a, key(KeyCode::Enter)),
            Action::Group(GroupRequest::Rename {
                group: gid(),
                name: "Day shift".into()
            })
        );
        // An empty name is refused here; an empty topic clears it.
        handle_key(&mut a, ctrl('p'));
        handle_key(&mut a, key(KeyCode::Char('n')));
        handle_key(&mut a, ctrl('u'));
        assert_eq!(handle_key(&mut a, key(KeyCode::Enter)), Action::None);
        assert!(a.notice.as_deref().unwrap().contains("cannot be empty"));
        handle_key(&mut a, ctrl('p'));
        handle_key(&mut a, key(KeyCode::Char('t')));
        assert_eq!(
            handle_key(&mut a, key(KeyCode::Enter)),
            Action::Group(GroupRequest::Topic {
                group: gid(),
                topic: String::new()
            })
        );
        // Invite: only contacts who are not members (@carol).
        handle_key(&mut a, ctrl('p'));
        handle_key(&mut a, key(KeyCode::Char('i')));
        assert_eq!(a.overlay, Overlay::InvitePick { sel: 0 });
        handle_key(&mut a, key(KeyCode::Down));
        assert_eq!(
            handle_key(&mut a, key(KeyCode::Enter)),
            Action::Group(GroupRequest::Invite {
                group: gid(),
                username: "@carol".into(),
                role: None
            })
        );
        // An admin may leave.
        handle_key(&mut a, key(KeyCode::Char('L')));
        assert_eq!(
            handle_key(&mut a, key(KeyCode::Char('y'))),
            Action::Group(GroupRequest::Leave { group: gid() })
        );
    }

    #[test]
    fn a_plain_member_is_told_what_it_may_not_do() {
        let mut a = app("member");
        handle_key(&mut a, ctrl('p'));
        for c in ['p', 'd', 'x', 'i', 'n', 't', 'D'] {
            a.notice = None;
            a.overlay = Overlay::Members { sel: 1 };
            assert_eq!(handle_key(&mut a, key(KeyCode::Char(c))), Action::None);
            assert_eq!(a.overlay, Overlay::Members { sel: 1 }, "{c}");
            assert!(
                a.notice.as_deref().unwrap().contains("only the owner"),
                "{c}"
            );
        }
        // Ctrl-P on a contact says how to get to a group.
        let mut b = app("member");
        b.overlay = Overlay::None;
        b.select_by(1);
        handle_key(&mut b, ctrl('p'));
        assert!(!b.members_pane);
        assert!(b.notice.as_deref().unwrap().contains("select a group"));
    }

    #[test]
    fn invites_overlay_and_new_group() {
        let mut a = app("member");
        a.group_invites = vec![invite('c', "Choir", "@bob"), invite('d', "Dance", "@carol")];
        handle_key(&mut a, ctrl('g'));
        assert_eq!(a.overlay, Overlay::GroupInvites { sel: 0 });
        handle_key(&mut a, key(KeyCode::Down));
        assert_eq!(
            handle_key(&mut a, key(KeyCode::Char('a'))),
            Action::Group(GroupRequest::Join {
                group: "d".repeat(64)
            })
        );
        handle_key(&mut a, ctrl('g'));
        assert_eq!(
            handle_key(&mut a, key(KeyCode::Char('d'))),
            Action::Group(GroupRequest::Decline {
                group: "c".repeat(64)
            })
        );
        handle_key(&mut a, ctrl('n'));
        typed(&mut a, "Rota");
        assert_eq!(
            handle_key(&mut a, KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
            Action::Group(GroupRequest::Create {
                name: "Rota".into(),
                topic: String::new(),
                room: false,
                history: false
            })
        );
    }
}
