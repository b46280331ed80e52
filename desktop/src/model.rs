//! What the window knows: contacts, conversations, requests and transfers,
//! kept up to date from control replies and events. Pure data, no I/O, no
//! egui: the views read it, [`Model::apply_reply`] and [`Model::apply_event`]
//! change it.

use std::collections::BTreeMap;

use umbra_control::display::delivery_rank as rank;
use umbra_control::proto::{
    ContactView, DirectoryView, Event, MessageView, Reply, Request, RequestView, StatusView,
    TransferView,
};

/// Messages of one conversation the window keeps (older ones stay in the
/// daemon's store; the control API pages history at 1000).
pub const HISTORY_PAGE: u32 = umbra_control::proto::MAX_HISTORY;

/// One entry of a conversation's timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A text message.
    Message(&'a MessageView),
    /// A file transfer (offer, progress, completed, saved, cancelled).
    File(&'a TransferView),
}

impl Item<'_> {
    /// When it happened (unix seconds), for ordering and day separators.
    pub fn time(&self) -> u64 {
        match self {
            Item::Message(m) => m.received_at.unwrap_or(m.sent_at),
            Item::File(t) => t.created_at,
        }
    }
}

/// One conversation.
#[derive(Debug, Clone, Default)]
pub struct Conversation {
    /// Messages, oldest first.
    pub messages: Vec<MessageView>,
    /// Whether the history was loaded from the daemon.
    pub loaded: bool,
}

impl Conversation {
    /// Messages and this contact's transfers merged by time, oldest first.
    pub fn timeline<'a>(&'a self, transfers: &'a [TransferView], username: &str) -> Vec<Item<'a>> {
        let mut items: Vec<Item<'a>> = self.messages.iter().map(Item::Message).collect();
        items.extend(
            transfers
                .iter()
                .filter(|t| t.username == username)
                .map(Item::File),
        );
        // Stable: messages of the same second keep their order.
        items.sort_by_key(Item::time);
        items
    }
}

/// Everything the window shows.
#[derive(Debug, Default)]
pub struct Model {
    /// The daemon's status (own name, fingerprint, Tor).
    pub status: Option<StatusView>,
    /// Contacts by `@name`.
    pub contacts: BTreeMap<String, ContactView>,
    /// Conversations by `@name`.
    pub conversations: BTreeMap<String, Conversation>,
    /// Received requests awaiting a decision.
    pub requests: Vec<RequestView>,
    /// File transfers, oldest first.
    pub transfers: Vec<TransferView>,
    /// The last directory search.
    pub search_results: Vec<DirectoryView>,
}

/// Something the user should be told about (a notification or a banner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A message arrived from this contact.
    Message(String),
    /// A connection request arrived from this user.
    Request(String),
    /// This contact offered a file.
    File(String),
}

impl Model {
    /// Stores the result of `request`. Returns what should be refreshed
    /// next, if anything.
    pub fn apply_reply(&mut self, request: &Request, reply: Reply) {
        match (request, reply) {
            (_, Reply::Status(s)) => self.status = Some(s),
            (_, Reply::Contacts(list)) => {
                self.contacts = list.into_iter().map(|c| (c.username.clone(), c)).collect();
            }
            (_, Reply::Contact(c)) => {
                self.contacts.insert(c.username.clone(), c);
            }
            (_, Reply::Requests(list)) => self.requests = list,
            (_, Reply::Directory(list)) => self.search_results = list,
            (Request::History { username, .. }, Reply::History(list)) => {
                let conv = self.conversations.entry(at(username)).or_default();
                conv.messages = list;
                conv.loaded = true;
            }
            (Request::Send { username, .. }, Reply::Message(m)) => {
                let conv = self.conversations.entry(at(username)).or_default();
                if !conv.messages.iter().any(|x| x.id == m.id) {
                    conv.messages.push(m);
                }
            }
            (_, Reply::Transfers(list)) => self.transfers = list,
            (_, Reply::Transfer(t)) => self.upsert_transfer(t),
            _ => {}
        }
    }

    fn upsert_transfer(&mut self, t: TransferView) {
        match self.transfers.iter_mut().find(|x| x.id == t.id) {
            Some(x) => *x = t,
            None => self.transfers.push(t),
        }
    }

    /// Applies an event; returns what the user should be told, if anything.
    pub fn apply_event(&mut self, event: Event) -> Option<Notice> {
        match event {
            Event::Message { username, message } => {
                let conv = self.conversations.entry(username.clone()).or_default();
                if !conv.messages.iter().any(|x| x.id == message.id) {
                    conv.messages.push(message);
                }
                if let Some(c) = self.contacts.get_mut(&username) {
                    c.unread += 1;
                }
                Some(Notice::Message(username))
            }
            Event::Delivery {
                username,
                upto,
                state,
            } => {
                if let Some(conv) = self.conversations.get_mut(&username) {
                    for m in conv
                        .messages
                        .iter_mut()
                        .filter(|m| m.direction == "out" && m.seq <= upto)
                    {
                        if rank(&state) > rank(&m.state) {
                            m.state.clone_from(&state);
                        }
                    }
                }
                None
            }
            Event::MessageFailed { username, id } => {
                if let Some(m) = self
                    .conversations
                    .get_mut(&username)
                    .and_then(|c| c.messages.iter_mut().find(|m| m.id == id))
                {
                    m.state = "failed".into();
                }
                None
            }
            Event::Presence {
                username,
                online,
                last_seen,
            } => {
                if let Some(c) = self.contacts.get_mut(&username) {
                    c.online = online;
                    c.last_seen = last_seen.or(c.last_seen);
                }
                None
            }
            Event::Request(r) => {
                let name = r.username.clone();
                self.requests.retain(|x| x.username != r.username);
                self.requests.push(r);
                Some(Notice::Request(name))
            }
            Event::FileOffered(t) => {
                let name = t.username.clone();
                self.upsert_transfer(t);
                Some(Notice::File(name))
            }
            Event::FileProgress { id, done, .. } => {
                if let Some(t) = self.transfers.iter_mut().find(|t| t.id == id) {
                    t.done = done;
                    if t.state == "offered" {
                        t.state = "active".into();
                    }
                }
                None
            }
            Event::FileCompleted(t) => {
                self.upsert_transfer(t);
                None
            }
            Event::FileCancelled { id, reason, .. } => {
                if let Some(t) = self.transfers.iter_mut().find(|t| t.id == id) {
                    t.state = "cancelled".into();
                    t.reason = Some(reason);
                }
                None
            }
            Event::Tor(tor) => {
                if let Some(s) = &mut self.status {
                    s.tor = tor;
                }
                None
            }
            // Contacts, sessions and request answers: the app re-reads the
            // contact list (and, after Lagged, everything).
            _ => None,
        }
    }

    /// The conversation with `username` (empty if none yet).
    pub fn conversation(&self, username: &str) -> Option<&Conversation> {
        self.conversations.get(username)
    }

    /// Total unread messages.
    pub fn unread(&self) -> u64 {
        self.contacts.values().map(|c| c.unread).sum()
    }

    /// Incoming offers that wait for a decision.
    pub fn pending_offers(&self) -> impl Iterator<Item = &TransferView> {
        self.transfers
            .iter()
            .filter(|t| t.direction == "in" && t.state == "offered")
    }
}

/// `@name` for `name` or `@name`.
pub fn at(username: &str) -> String {
    if username.starts_with('@') {
        username.to_owned()
    } else {
        format!("@{username}")
    }
}

pub use umbra_control::display::tor_words;

#[cfg(test)]
mod test {
    use super::*;
    use umbra_control::proto::TorView;

    fn msg(id: &str, dir: &str, seq: u64, state: &str, t: u64) -> MessageView {
        MessageView {
            id: id.into(),
            direction: dir.into(),
            seq,
            sent_at: t,
            received_at: None,
            body: format!("body {id}"),
            state: state.into(),
        }
    }

    #[test]
    fn delivery_never_goes_back_and_stops_at_upto() {
        let mut m = Model::default();
        m.conversations.insert(
            "@bob".into(),
            Conversation {
                messages: vec![
                    msg("a", "out", 1, "sent", 1),
                    msg("b", "out", 2, "read", 2),
                    msg("c", "out", 3, "queued", 3),
                ],
                loaded: true,
            },
        );
        m.apply_event(Event::Delivery {
            username: "@bob".into(),
            upto: 2,
            state: "delivered".into(),
        });
        let s: Vec<_> = m.conversations["@bob"]
            .messages
            .iter()
            .map(|m| m.state.as_str())
            .collect();
        assert_eq!(s, ["delivered", "read", "queued"]);
    }

    #[test]
    fn incoming_message_counts_unread_once() {
        let mut m = Model::default();
        let ev = Event::Message {
            username: "@bob".into(),
            message: msg("x", "in", 1, "received", 5),
        };
        assert_eq!(
            m.apply_event(ev.clone()),
            Some(Notice::Message("@bob".into()))
        );
        m.apply_event(ev);
        assert_eq!(m.conversations["@bob"].messages.len(), 1);
    }

    #[test]
    fn tor_words_are_human() {
        let tor = TorView {
            network: "direct".into(),
            bootstrap_percent: 100,
            ready: true,
            onion_service: "not_applicable".into(),
            summary: String::new(),
            vanguards: String::new(),
        };
        assert!(!tor_words(&tor).contains("not_applicable"));
        assert_eq!(at("bob"), "@bob");
    }
}
