//! The terminal UI's state: what is shown, and how it changes with the
//! daemon's replies and events. No I/O: the run loop feeds it. Groups
//! (issue 17) are in `model/group.rs`.

pub(crate) mod group;

use std::collections::HashMap;

pub use group::{Note, TextField, role_words};

use super::input::Action;
use crate::control::proto::{
    ContactView, DirectoryView, Event, GroupInviteView, GroupMemberView, GroupMessageView,
    GroupView, MessageView, RequestView, StatusView, TorView, TransferView,
};

/// Messages kept per conversation in memory (older ones are re-read on demand).
pub const KEEP: usize = 500;

/// A modal window over the main screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    /// None: the chat screen.
    None,
    /// The key bindings.
    Help,
    /// Received connection requests; `sel` is the highlighted one.
    Requests {
        /// Highlighted row.
        sel: usize,
    },
    /// Search at the Handshaker, then send a request.
    Search {
        /// The prefix typed so far.
        query: String,
        /// Results of the last search.
        results: Vec<DirectoryView>,
        /// Highlighted result.
        sel: usize,
    },
    /// The selected contact's fingerprint; `v` marks it verified.
    Fingerprint,
    /// "End the session with @x?"
    ConfirmEnd,
    /// Path prompt for sending a file to the selected contact.
    SendFile {
        /// The path typed so far.
        path: String,
    },
    /// File transfers; `sel` is the highlighted one.
    Files {
        /// Highlighted row.
        sel: usize,
    },
    /// Path prompt for saving a received file.
    SaveFile {
        /// The transfer id.
        id: String,
        /// The path typed so far.
        path: String,
    },
    /// The member pane has the keys; `sel` is the highlighted member.
    Members {
        /// Highlighted member.
        sel: usize,
    },
    /// Pending group invites (incoming); `sel` is the highlighted one.
    GroupInvites {
        /// Highlighted invite.
        sel: usize,
    },
    /// Pick a contact to invite into the selected group.
    InvitePick {
        /// Highlighted contact (among those who can be invited).
        sel: usize,
    },
    /// A one-line prompt for a group: new group's name, rename, topic.
    GroupText {
        /// What the text is for.
        field: TextField,
        /// The text typed so far.
        value: String,
    },
    /// "Are you sure?" before a group change; `y` runs `action`.
    Confirm {
        /// The question, in words.
        question: String,
        /// What `y` asks the daemon.
        action: Action,
    },
}

/// What the run loop must re-read from the daemon after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reload {
    /// Nothing: the event was self-contained.
    Nothing,
    /// Contacts, and this contact's conversation if it is shown.
    Contact(String),
    /// This group's members, if they were loaded (by group id).
    Group(String),
    /// Everything (events were lost).
    All,
}

/// The whole UI state.
#[derive(Debug, Clone)]
pub struct App {
    /// Daemon status (own name, Tor state), once known.
    pub status: Option<StatusView>,
    /// Contacts, in the daemon's order.
    pub contacts: Vec<ContactView>,
    /// Groups, in the daemon's order (listed after the contacts).
    pub groups: Vec<GroupView>,
    /// Index into `contacts` followed by `groups`.
    pub selected: usize,
    /// Conversations by `@name`, oldest first.
    pub conversations: HashMap<String, Vec<MessageView>>,
    /// Pending received requests.
    pub requests: Vec<RequestView>,
    /// File transfers, oldest first.
    pub transfers: Vec<TransferView>,
    /// Pending group invites we received.
    pub group_invites: Vec<GroupInviteView>,
    /// Group messages by group id, in the daemon's order.
    pub group_chats: HashMap<String, Vec<GroupMessageView>>,
    /// System lines by group id (member changes, renames, warnings) seen
    /// while the TUI runs.
    pub group_notes: HashMap<String, Vec<Note>>,
    /// Members by group id, once loaded.
    pub group_members: HashMap<String, Vec<GroupMemberView>>,
    /// Unread group messages by group id (counted while the TUI runs).
    pub group_unread: HashMap<String, u64>,
    /// Whether the member pane is shown (for a selected group).
    pub members_pane: bool,
    /// The message being typed (may hold newlines).
    pub input: String,
    /// Lines scrolled up from the bottom of the conversation.
    pub scroll: u16,
    /// The open modal, if any.
    pub overlay: Overlay,
    /// One line of feedback (errors with their hint, confirmations).
    pub notice: Option<String>,
    /// Set when the user asked to quit.
    pub quit: bool,
}

impl Default for App {
    fn default() -> Self {
        App {
            status: None,
            contacts: Vec::new(),
            groups: Vec::new(),
            selected: 0,
            conversations: HashMap::new(),
            requests: Vec::new(),
            transfers: Vec::new(),
            group_invites: Vec::new(),
            group_chats: HashMap::new(),
            group_notes: HashMap::new(),
            group_members: HashMap::new(),
            group_unread: HashMap::new(),
            members_pane: false,
            input: String::new(),
            scroll: 0,
            overlay: Overlay::None,
            notice: None,
            quit: false,
        }
    }
}

impl App {
    /// The selected contact, if any.
    pub fn current(&self) -> Option<&ContactView> {
        self.contacts.get(self.selected)
    }

    /// The selected contact's `@name`.
    pub fn current_name(&self) -> Option<String> {
        self.current().map(|c| c.username.clone())
    }

    /// The selected conversation (empty if none).
    pub fn conversation(&self) -> &[MessageView] {
        self.current()
            .and_then(|c| self.conversations.get(&c.username))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Replaces the contact list, keeping the selection on the same name
    /// (or group).
    pub fn set_contacts(&mut self, contacts: Vec<ContactView>) {
        let keep = self.selection();
        self.contacts = contacts;
        self.reselect(keep);
    }

    /// What is selected, to find it again after a list changed.
    fn selection(&self) -> Option<Selection> {
        match (self.current(), self.current_group()) {
            (Some(c), _) => Some(Selection::Contact(c.username.clone())),
            (None, Some(g)) => Some(Selection::Group(g.id.clone())),
            (None, None) => None,
        }
    }

    /// Puts the selection back on `keep`, or on the first row.
    fn reselect(&mut self, keep: Option<Selection>) {
        let n = self.contacts.len() + self.groups.len();
        let found = match keep {
            Some(Selection::Contact(name)) => self.contacts.iter().position(|c| c.username == name),
            Some(Selection::Group(id)) => self
                .groups
                .iter()
                .position(|g| g.id == id)
                .map(|i| i + self.contacts.len()),
            None => None,
        };
        self.selected = found.unwrap_or(0).min(n.saturating_sub(1));
    }

    /// Moves the selection by `delta` (wrapping over contacts, then groups).
    pub fn select_by(&mut self, delta: isize) {
        let n = self.contacts.len() + self.groups.len();
        if n == 0 {
            return;
        }
        let i = (self.selected as isize + delta).rem_euclid(n as isize);
        self.selected = i as usize;
        self.scroll = 0;
    }

    /// Replaces a conversation (from `history`).
    pub fn set_history(&mut self, username: &str, mut msgs: Vec<MessageView>) {
        if msgs.len() > KEEP {
            msgs.drain(..msgs.len() - KEEP);
        }
        self.conversations.insert(username.to_owned(), msgs);
    }

    /// Adds or updates one message (same id and direction: replaced).
    pub fn upsert_message(&mut self, username: &str, m: MessageView) {
        let conv = self.conversations.entry(username.to_owned()).or_default();
        match conv
            .iter_mut()
            .find(|x| x.id == m.id && x.direction == m.direction)
        {
            Some(x) => *x = m,
            None => {
                conv.push(m);
                if conv.len() > KEEP {
                    conv.remove(0);
                }
            }
        }
    }

    /// Adds or replaces a transfer (same id).
    pub fn upsert_transfer(&mut self, t: TransferView) {
        match self.transfers.iter_mut().find(|x| x.id == t.id) {
            Some(x) => *x = t,
            None => self.transfers.push(t),
        }
    }

    /// Transfers still waiting for our decision.
    pub fn offers(&self) -> usize {
        self.transfers
            .iter()
            .filter(|t| t.direction == "in" && t.state == "offered")
            .count()
    }

    /// Applies a daemon event. Returns what should be re-read from the
    /// daemon, if the event is not self-contained.
    pub fn apply(&mut self, ev: &Event) -> Reload {
        match ev {
            Event::Message { username, message } => {
                self.upsert_message(username, message.clone());
                let shown = self.current_name().as_deref() == Some(username.as_str());
                if let Some(c) = self.contacts.iter_mut().find(|c| &c.username == username)
                    && !shown
                {
                    c.unread += 1;
                }
                Reload::Nothing
            }
            Event::Delivery {
                username,
                upto,
                state,
            } => {
                if let Some(conv) = self.conversations.get_mut(username) {
                    for m in conv
                        .iter_mut()
                        .filter(|m| m.direction == "out" && m.seq <= *upto)
                    {
                        if rank(&m.state) < rank(state) {
                            m.state = state.clone();
                        }
                    }
                }
                Reload::Nothing
            }
            Event::Presence {
                username,
                online,
                last_seen,
            } => {
                if let Some(c) = self.contacts.iter_mut().find(|c| &c.username == username) {
                    c.online = *online;
                    c.last_seen = *last_seen;
                }
                Reload::Nothing
            }
            Event::Request(r) => {
                self.notice = Some(format!(
                    "connection request from {} (Ctrl-R to answer)",
                    r.username
                ));
                self.requests.push(r.clone());
                Reload::Nothing
            }
            Event::RequestAnswered { username, accepted } => {
                self.notice = Some(format!(
                    "{username} {} your request",
                    if *accepted { "accepted" } else { "rejected" }
                ));
                Reload::Contact(username.clone())
            }
            Event::SessionEnded { username, by_peer } => {
                self.notice = Some(format!(
                    "session with {username} ended{}",
                    if *by_peer { " by them" } else { "" }
                ));
                Reload::Contact(username.clone())
            }
            Event::MessageFailed { username, .. } => Reload::Contact(username.clone()),
            Event::FileOffered(t) => {
                self.notice = Some(if t.state == "offered" {
                    format!(
                        "{} offers {} ({}) — Ctrl-T to answer",
                        t.username,
                        t.name,
                        human_size(t.size)
                    )
                } else {
                    format!("receiving {} from {}", t.name, t.username)
                });
                self.upsert_transfer(t.clone());
                Reload::Nothing
            }
            Event::FileProgress { id, done, .. } => {
                if let Some(t) = self.transfers.iter_mut().find(|t| &t.id == id) {
                    t.done = *done;
                    if t.state == "offered" {
                        t.state = "active".into();
                    }
                }
                Reload::Nothing
            }
            Event::FileCompleted(t) => {
                self.notice = Some(if t.direction == "in" {
                    match &t.path {
                        Some(p) => format!("{} from {} saved to {p}", t.name, t.username),
                        None => format!(
                            "{} from {} received — Ctrl-T, s to save it",
                            t.name, t.username
                        ),
                    }
                } else {
                    format!("{} delivered to {}", t.name, t.username)
                });
                self.upsert_transfer(t.clone());
                Reload::Nothing
            }
            Event::FileCancelled {
                id,
                username,
                reason,
                by_peer,
            } => {
                if let Some(t) = self.transfers.iter_mut().find(|t| &t.id == id) {
                    t.state = "cancelled".into();
                    t.reason = Some(reason.clone());
                    self.notice = Some(format!(
                        "transfer of {} {}: {reason}",
                        t.name,
                        if *by_peer {
                            format!("cancelled by {username}")
                        } else {
                            "stopped".to_owned()
                        }
                    ));
                }
                Reload::Nothing
            }
            Event::Tor(t) => {
                if let Some(s) = &mut self.status {
                    s.tor = t.clone();
                }
                Reload::Nothing
            }
            Event::Lagged { .. } => Reload::All,
            Event::Group(g) => self.apply_group(g),
        }
    }

    /// The Tor line for the status bar.
    pub fn tor(&self) -> Option<&TorView> {
        self.status.as_ref().map(|s| &s.tor)
    }
}

/// A selected row, by what it names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Selection {
    Contact(String),
    Group(String),
}

use umbra_control::display::delivery_rank as rank;
pub use umbra_control::display::human_size;

#[cfg(test)]
pub(crate) mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The daemon's status for `@alice` on Tor.
    pub(crate) fn status(pending_requests: u64) -> StatusView {
        StatusView {
            version: "0.1.0".into(),
            username: "@alice".into(),
            fingerprint: "A".repeat(40),
            handshaker: None,
            tor: TorView {
                network: "tor".into(),
                bootstrap_percent: 100,
                ready: true,
                onion_service: "running".into(),
                summary: String::new(),
                vanguards: "lite".into(),
            },
            contacts: 2,
            pending_requests,
            started_at: 0,
        }
    }

    pub(crate) fn contact(name: &str, online: bool, unread: u64) -> ContactView {
        ContactView {
            username: name.into(),
            fingerprint: "ABCD".repeat(10),
            verified: false,
            state: "accepted".into(),
            session: true,
            online,
            last_seen: Some(1_795_000_000),
            unread,
            queued: 0,
            problem: None,
        }
    }

    pub(crate) fn msg(dir: &str, seq: u64, body: &str, state: &str) -> MessageView {
        MessageView {
            id: format!("{dir}{seq:030}"),
            direction: dir.into(),
            seq,
            sent_at: 1_795_000_000 + seq * 60,
            received_at: None,
            body: body.into(),
            state: state.into(),
        }
    }

    #[test]
    fn events_update_the_model() {
        let mut app = App::default();
        app.set_contacts(vec![contact("@bob", false, 0), contact("@carol", true, 0)]);
        app.set_history("@bob", vec![msg("out", 1, "hi", "sent")]);
        app.apply(&Event::Delivery {
            username: "@bob".into(),
            upto: 1,
            state: "delivered".into(),
        });
        assert_eq!(app.conversation()[0].state, "delivered");
        // A late "delivered" never undoes "read".
        app.apply(&Event::Delivery {
            username: "@bob".into(),
            upto: 1,
            state: "read".into(),
        });
        app.apply(&Event::Delivery {
            username: "@bob".into(),
            upto: 1,
            state: "delivered".into(),
        });
        assert_eq!(app.conversation()[0].state, "read");
        // A message for another contact counts as unread there.
        app.apply(&Event::Message {
            username: "@carol".into(),
            message: msg("in", 1, "yo", "received"),
        });
        assert_eq!(app.contacts[1].unread, 1);
        assert_eq!(app.contacts[0].unread, 0);
        app.apply(&Event::Presence {
            username: "@bob".into(),
            online: true,
            last_seen: None,
        });
        assert!(app.contacts[0].online);
        // The selection follows the name when the list changes.
        app.select_by(1);
        app.set_contacts(vec![contact("@alice", true, 0), contact("@carol", true, 1)]);
        assert_eq!(app.current_name().as_deref(), Some("@carol"));
        app.select_by(1);
        assert_eq!(app.current_name().as_deref(), Some("@alice"));
    }
}
