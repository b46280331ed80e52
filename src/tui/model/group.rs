//! Groups in the terminal UI's state (issue 17): the selected group, its
//! timeline with system lines, members, invites, unread counts, and how
//! group events change them. No I/O.

use super::{App, Reload, Selection};
use crate::control::proto::{
    ContactView, GroupEventView, GroupInviteView, GroupMemberView, GroupMessageView, GroupView,
};

/// A system line in a group's timeline (not a message: a member change,
/// a rename, a warning). Kept in memory while the TUI runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// Unix seconds (our clock), to place it among the messages.
    pub at: u64,
    /// What happened, in words (peer text already quoted, not cleaned).
    pub text: String,
    /// A warning (split view, refused op): shown in red.
    pub warn: bool,
}

/// What a group text prompt is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextField {
    /// The name of a new group (Ctrl-N).
    Create,
    /// A new name for the selected group.
    Rename,
    /// A new topic for the selected group.
    Topic,
}

/// Whether the status lets anyone write (`joining` waits for the log).
fn open_status(status: &str) -> bool {
    status == "active"
}

impl App {
    /// The selected group, if a group is selected.
    pub fn current_group(&self) -> Option<&GroupView> {
        self.selected
            .checked_sub(self.contacts.len())
            .and_then(|i| self.groups.get(i))
    }

    /// The selected group's id.
    pub fn current_group_id(&self) -> Option<String> {
        self.current_group().map(|g| g.id.clone())
    }

    /// Replaces the group list (and the pending incoming invites), keeping
    /// the selection. Changes to a group we already knew become system
    /// lines in its timeline.
    pub fn set_groups(&mut self, groups: Vec<GroupView>, invites: Vec<GroupInviteView>) {
        let keep = self.selection();
        for g in &groups {
            self.group_changed(g);
        }
        self.groups = groups;
        self.group_invites = invites
            .into_iter()
            .filter(|i| i.incoming && i.state == "pending")
            .collect();
        self.reselect(keep);
    }

    /// Messages of the selected group (empty if none).
    pub fn group_chat(&self) -> &[GroupMessageView] {
        self.current_group()
            .and_then(|g| self.group_chats.get(&g.id))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// System lines of the selected group.
    pub fn group_notes(&self) -> &[Note] {
        self.current_group()
            .and_then(|g| self.group_notes.get(&g.id))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Members of the selected group, if loaded.
    pub fn members(&self) -> &[GroupMemberView] {
        self.current_group()
            .and_then(|g| self.group_members.get(&g.id))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Replaces a group's messages (from `history`) and clears its unread count.
    pub fn set_group_history(&mut self, group: &str, mut msgs: Vec<GroupMessageView>) {
        if msgs.len() > super::KEEP {
            msgs.drain(..msgs.len() - super::KEEP);
        }
        self.group_chats.insert(group.to_owned(), msgs);
        self.group_unread.remove(group);
    }

    /// Adds or updates one group message (same row id: replaced).
    pub fn upsert_group_message(&mut self, group: &str, m: GroupMessageView) {
        let chat = self.group_chats.entry(group.to_owned()).or_default();
        match chat.iter_mut().find(|x| x.id == m.id) {
            Some(x) => *x = m,
            None => {
                chat.push(m);
                if chat.len() > super::KEEP {
                    chat.remove(0);
                }
            }
        }
    }

    /// Replaces a group's members; when they were known, who joined,
    /// left or changed role becomes system lines.
    pub fn set_members(&mut self, group: &str, members: Vec<GroupMemberView>) {
        if let Some(old) = self.group_members.get(group) {
            let mut lines = Vec::new();
            for m in &members {
                match old.iter().find(|o| o.fingerprint == m.fingerprint) {
                    None if m.role == "member" => lines.push(format!("{} joined", m.username)),
                    None => lines.push(format!("{} joined as {}", m.username, m.role)),
                    Some(o) if o.role != m.role => {
                        lines.push(format!("{} is now {}", m.username, role_words(&m.role)))
                    }
                    Some(_) => {}
                }
            }
            for o in old {
                if !members.iter().any(|m| m.fingerprint == o.fingerprint) {
                    lines.push(format!("{} is no longer a member", o.username));
                }
            }
            for l in lines {
                self.note(group, l, false);
            }
        }
        self.group_members.insert(group.to_owned(), members);
    }

    /// Adds a system line to a group's timeline.
    pub fn note(&mut self, group: &str, text: String, warn: bool) {
        let notes = self.group_notes.entry(group.to_owned()).or_default();
        notes.push(Note {
            at: crate::time::now_secs(),
            text,
            warn,
        });
        if notes.len() > super::KEEP {
            notes.remove(0);
        }
    }

    /// Records what changed between the group as we knew it and `new`
    /// (as system lines); does not store `new`.
    fn group_changed(&mut self, new: &GroupView) {
        let Some(old) = self.groups.iter().find(|g| g.id == new.id).cloned() else {
            return;
        };
        let id = new.id.as_str();
        if old.name != new.name {
            self.note(id, format!("renamed to “{}”", new.name), false);
        }
        if old.topic != new.topic {
            let line = if new.topic.is_empty() {
                "topic cleared".to_owned()
            } else {
                format!("topic: “{}”", new.topic)
            };
            self.note(id, line, false);
        }
        if old.status != new.status {
            let (line, warn) = status_change(&new.status);
            self.note(id, line.to_owned(), warn);
            if warn {
                self.notice = Some(format!("group “{}”: {line}", new.name));
            }
        } else if old.role != new.role
            && let Some(r) = &new.role
        {
            self.note(id, format!("you are now {}", role_words(r)), false);
        }
        if new.warning.is_some() && old.warning != new.warning {
            let w = new.warning.clone().unwrap_or_default();
            self.note(id, format!("warning: {w}"), true);
        }
    }

    /// Whether I may type in the selected group; `Err` says why not.
    pub fn group_writable(&self) -> Result<(), String> {
        let Some(g) = self.current_group() else {
            return Err("no group selected".into());
        };
        match g.status.as_str() {
            s if open_status(s) => {}
            "joining" => {
                return Err("joining: waiting for the group's log from the owner".into());
            }
            "removed" => return Err("you were removed from this group: read-only".into()),
            "left" => return Err("you left this group: read-only".into()),
            "dissolved" => return Err("this group was dissolved: read-only".into()),
            "frozen" => {
                return Err("frozen: members saw different histories (split view)".into());
            }
            s => return Err(format!("{s}: read-only")),
        }
        if g.role.as_deref() == Some("read-only") {
            return Err("you are a read-only member of this group".into());
        }
        Ok(())
    }

    /// Applies a group event.
    pub(super) fn apply_group(&mut self, ev: &GroupEventView) -> Reload {
        match ev {
            GroupEventView::Message { group, message } => {
                let shown = self.current_group().is_some_and(|g| &g.id == group);
                self.upsert_group_message(group, message.clone());
                if !shown && !message.mine {
                    *self.group_unread.entry(group.clone()).or_default() += 1;
                }
                Reload::Nothing
            }
            GroupEventView::Changed(g) => {
                self.group_changed(g);
                let keep = self.selection();
                match self.groups.iter_mut().find(|x| x.id == g.id) {
                    Some(x) => *x = g.clone(),
                    None => self.groups.push(g.clone()),
                }
                // A joined group's invite is answered.
                self.group_invites.retain(|i| i.group != g.id);
                self.reselect(keep);
                Reload::Group(g.id.clone())
            }
            GroupEventView::Invited(i) => {
                self.notice = Some(format!(
                    "{} invites you to the group “{}” (Ctrl-G to answer)",
                    i.username, i.name
                ));
                self.group_invites.retain(|x| x.group != i.group);
                if i.incoming && i.state == "pending" {
                    self.group_invites.push(i.clone());
                }
                Reload::Nothing
            }
            GroupEventView::Answered {
                group,
                username,
                accepted,
            } => {
                let words = if *accepted {
                    "accepted the invite"
                } else {
                    "declined the invite"
                };
                self.note(group, format!("{username} {words}"), false);
                self.notice = Some(format!("{username} {words}"));
                Reload::Group(group.clone())
            }
            GroupEventView::Warning { group, reason } => {
                self.note(group, reason.clone(), true);
                let name = self
                    .groups
                    .iter()
                    .find(|g| &g.id == group)
                    .map_or("a group".to_owned(), |g| format!("“{}”", g.name));
                self.notice = Some(format!("warning in {name}: {reason}"));
                Reload::Nothing
            }
        }
    }

    /// Contacts who can be invited into the selected group: with a
    /// session, not already a member.
    pub fn invitable(&self) -> Vec<&ContactView> {
        let members = self.members();
        self.contacts
            .iter()
            .filter(|c| c.session && !members.iter().any(|m| m.username == c.username))
            .collect()
    }

    /// My role in the selected group, if it is active and I am a member.
    pub fn my_group_role(&self) -> Option<&str> {
        self.current_group()
            .filter(|g| open_status(&g.status))
            .and_then(|g| g.role.as_deref())
    }

    /// Selects the group `id` (after creating it).
    pub fn select_group(&mut self, id: &str) {
        self.reselect(Some(Selection::Group(id.to_owned())));
        self.scroll = 0;
    }
}

/// A role as a person says it.
pub fn role_words(role: &str) -> &str {
    match role {
        "owner" => "the owner",
        "admin" => "an admin",
        "member" => "a member",
        "read-only" => "read-only",
        r => r,
    }
}

/// A status change as a system line, and whether it is bad news.
fn status_change(status: &str) -> (&'static str, bool) {
    match status {
        "active" => ("you are a member of this group", false),
        "joining" => ("joining: waiting for the group's log", false),
        "removed" => (
            "you were removed from this group; it is read-only now",
            true,
        ),
        "left" => ("you left this group", false),
        "dissolved" => ("the group was dissolved; it is read-only now", true),
        "frozen" => (
            "frozen: members saw different histories (split view); nothing is sent",
            true,
        ),
        _ => ("the group's status changed", false),
    }
}

#[cfg(test)]
pub(crate) mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::control::proto::Event;
    use crate::tui::model::test::contact;

    pub(crate) fn group(id: char, name: &str, role: &str, status: &str) -> GroupView {
        GroupView {
            id: id.to_string().repeat(64),
            name: name.into(),
            topic: String::new(),
            room: false,
            history: false,
            role: Some(role.into()),
            status: status.into(),
            members: 3,
            warning: None,
        }
    }

    pub(crate) fn member(name: &str, role: &str, contact: bool) -> GroupMemberView {
        GroupMemberView {
            username: name.into(),
            fingerprint: format!("{:F>40}", name.trim_start_matches('@')),
            role: role.into(),
            contact,
            queued: 0,
        }
    }

    pub(crate) fn gmsg(id: i64, sender: &str, body: &str, state: &str) -> GroupMessageView {
        GroupMessageView {
            id,
            sender: sender.into(),
            mine: sender == "@alice",
            seq: id as u64,
            sent_at: 1_795_000_000 + id as u64 * 60,
            body: Some(body.into()),
            state: state.into(),
            deleted: false,
        }
    }

    pub(crate) fn invite(id: char, name: &str, from: &str) -> GroupInviteView {
        GroupInviteView {
            group: id.to_string().repeat(64),
            name: name.into(),
            username: from.into(),
            incoming: true,
            role: "member".into(),
            state: "pending".into(),
            expires_at: 1_795_000_000,
        }
    }

    fn ev(g: GroupEventView) -> Event {
        Event::Group(g)
    }

    fn texts(app: &App, id: &str) -> Vec<String> {
        app.group_notes
            .get(id)
            .map(|n| n.iter().map(|n| n.text.clone()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn groups_follow_the_contacts_and_keep_the_selection() {
        let mut app = App::default();
        app.set_contacts(vec![contact("@bob", true, 0)]);
        app.set_groups(
            vec![
                group('a', "Night shift", "owner", "active"),
                group('b', "Book club", "member", "active"),
            ],
            vec![
                invite('c', "Choir", "@bob"),
                GroupInviteView {
                    incoming: false,
                    ..invite('d', "Ours", "@bob")
                },
            ],
        );
        assert_eq!(app.group_invites.len(), 1, "only incoming pending invites");
        assert!(app.current_group().is_none());
        app.select_by(1);
        assert_eq!(app.current_group().unwrap().name, "Night shift");
        assert!(app.current().is_none() && app.current_name().is_none());
        app.select_by(1);
        assert_eq!(app.current_group().unwrap().name, "Book club");
        app.select_by(1);
        assert_eq!(app.current_name().as_deref(), Some("@bob"), "wraps");
        app.select_by(-1);
        // A new contact above does not move the selection off the group.
        app.set_contacts(vec![contact("@alice", true, 0), contact("@bob", true, 0)]);
        assert_eq!(app.current_group().unwrap().name, "Book club");
        app.set_groups(vec![group('b', "Book club", "member", "active")], vec![]);
        assert_eq!(app.current_group().unwrap().name, "Book club");
        // The selected group vanishing falls back to the first row.
        app.set_groups(vec![], vec![]);
        assert_eq!(app.current_name().as_deref(), Some("@alice"));
    }

    #[test]
    fn group_messages_count_unread_unless_shown() {
        let mut app = App::default();
        app.set_groups(
            vec![
                group('a', "A", "member", "active"),
                group('b', "B", "member", "active"),
            ],
            vec![],
        );
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        app.set_group_history(&a, vec![gmsg(1, "@bob", "one", "received")]);
        app.apply(&ev(GroupEventView::Message {
            group: a.clone(),
            message: gmsg(2, "@carol", "two", "received"),
        }));
        assert_eq!(app.group_chat().len(), 2);
        assert_eq!(app.group_chat()[1].sender, "@carol");
        assert!(!app.group_unread.contains_key(&a), "shown: read");
        for i in 3..6 {
            app.apply(&ev(GroupEventView::Message {
                group: b.clone(),
                message: gmsg(i, "@bob", "x", "received"),
            }));
        }
        assert_eq!(app.group_unread[&b], 3);
        // The same row again replaces, not duplicates.
        let mut again = gmsg(5, "@bob", "x", "received");
        again.deleted = true;
        app.upsert_group_message(&b, again);
        assert_eq!(app.group_chats[&b].len(), 3);
        assert!(app.group_chats[&b][2].deleted);
        // Opening (history) clears the count.
        app.set_group_history(&b, vec![]);
        assert!(!app.group_unread.contains_key(&b));
    }

    #[test]
    fn changes_become_system_lines() {
        let mut app = App::default();
        let id = "a".repeat(64);
        app.set_groups(vec![group('a', "Night", "member", "active")], vec![]);
        let mut g = group('a', "Day", "admin", "active");
        g.topic = "rota".into();
        assert_eq!(
            app.apply(&ev(GroupEventView::Changed(g.clone()))),
            Reload::Group(id.clone())
        );
        assert_eq!(
            texts(&app, &id),
            ["renamed to “Day”", "topic: “rota”", "you are now an admin"]
        );
        assert_eq!(app.groups[0].name, "Day");
        g.warning = Some("two different heads".into());
        app.apply(&ev(GroupEventView::Changed(g.clone())));
        let last = app.group_notes[&id].last().unwrap().clone();
        assert!(last.warn && last.text.contains("two different heads"));
        // Removed: a warning line, the notice, and no typing.
        g.status = "removed".into();
        app.select_by(0);
        app.apply(&ev(GroupEventView::Changed(g.clone())));
        assert!(texts(&app, &id).last().unwrap().contains("removed"));
        assert!(app.notice.as_deref().unwrap().contains("removed"));
        assert!(app.group_writable().unwrap_err().contains("removed"));
        g.status = "dissolved".into();
        app.apply(&ev(GroupEventView::Changed(g)));
        assert!(app.group_writable().unwrap_err().contains("dissolved"));
    }

    #[test]
    fn member_changes_become_system_lines() {
        let mut app = App::default();
        let id = "a".repeat(64);
        app.set_groups(vec![group('a', "A", "owner", "active")], vec![]);
        // The first load is no news.
        app.set_members(
            &id,
            vec![
                member("@alice", "owner", false),
                member("@bob", "member", true),
            ],
        );
        assert!(texts(&app, &id).is_empty());
        app.set_members(
            &id,
            vec![
                member("@alice", "owner", false),
                member("@bob", "admin", true),
                member("@carol", "member", false),
                member("@dave", "read-only", false),
            ],
        );
        assert_eq!(
            texts(&app, &id),
            [
                "@bob is now an admin",
                "@carol joined",
                "@dave joined as read-only"
            ]
        );
        app.set_members(&id, vec![member("@alice", "owner", false)]);
        assert_eq!(
            texts(&app, &id)[3..],
            [
                "@bob is no longer a member",
                "@carol is no longer a member",
                "@dave is no longer a member"
            ]
        );
        assert_eq!(app.members().len(), 1);
    }

    #[test]
    fn invites_answers_and_warnings() {
        let mut app = App::default();
        let id = "c".repeat(64);
        app.apply(&ev(GroupEventView::Invited(invite('c', "Choir", "@bob"))));
        assert_eq!(app.group_invites.len(), 1);
        assert!(app.notice.as_deref().unwrap().contains("Ctrl-G"));
        // The same invite again is not listed twice.
        app.apply(&ev(GroupEventView::Invited(invite('c', "Choir", "@bob"))));
        assert_eq!(app.group_invites.len(), 1);
        // Joined: the group appears, the invite goes.
        app.apply(&ev(GroupEventView::Changed(group(
            'c', "Choir", "member", "joining",
        ))));
        assert!(app.group_invites.is_empty());
        assert_eq!(app.groups.len(), 1);
        assert!(app.group_writable().unwrap_err().contains("joining"));
        assert_eq!(
            app.apply(&ev(GroupEventView::Answered {
                group: id.clone(),
                username: "@carol".into(),
                accepted: true,
            })),
            Reload::Group(id.clone())
        );
        assert_eq!(texts(&app, &id), ["@carol accepted the invite"]);
        app.apply(&ev(GroupEventView::Warning {
            group: id.clone(),
            reason: "a message whose signature does not match".into(),
        }));
        assert!(app.group_notes[&id].last().unwrap().warn);
        assert!(
            app.notice
                .as_deref()
                .unwrap()
                .starts_with("warning in “Choir”")
        );
    }

    #[test]
    fn read_only_members_cannot_write() {
        let mut app = App::default();
        app.set_groups(
            vec![
                group('a', "A", "read-only", "active"),
                group('b', "B", "member", "active"),
                group('c', "C", "member", "joining"),
            ],
            vec![],
        );
        assert!(app.group_writable().unwrap_err().contains("read-only"));
        app.select_by(1);
        assert!(app.group_writable().is_ok());
        app.select_by(1);
        assert!(app.group_writable().unwrap_err().contains("joining"));
    }
}
