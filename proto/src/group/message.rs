//! Group messages (PROTOCOL.md §20.5): signed by their sender so that they
//! stay authentic when relayed or pulled from any member, numbered per
//! sender, naming up to [`MAX_GROUP_PARENTS`] causal parents and the log
//! head the sender saw; and the per-sender [`DeliveryTracker`] that turns
//! arrivals in any order, with duplicates, into exactly-once, in-order
//! delivery.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::op::{GroupId, Role};
use super::state::GroupState;
use super::{GROUP_VERSION, GroupError, check_len, check_sig, decode, encode, hash, sign, verify};
use crate::identity::{Fingerprint, Identity};
use crate::limits::{
    MAX_CHUNK, MAX_FILE_NAME, MAX_GROUP_AHEAD, MAX_GROUP_BUFFER, MAX_GROUP_MESSAGE,
    MAX_GROUP_PARENTS, MAX_TEXT,
};

/// Domain label of a message id.
const LABEL_MSG: &str = "umbra/group/v1/msg";
/// Domain label of a sender's signature.
const LABEL_MSG_SIG: &str = "umbra/group/v1/msg-sig";

/// What a group message carries. Wire values are the variant indexes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Content {
    /// 0: text, ≤ MAX_TEXT bytes of UTF-8.
    Text {
        /// The text (untrusted: neutralise before display).
        body: String,
    },
    /// 1: delete-for-everyone of the message with id `target` (§20.6).
    Delete {
        /// The id of the message to hide.
        target: [u8; 32],
    },
    /// 2: a file offer fanned out to the group; each member who accepts
    /// pulls the file from the sender over their pairwise session (§14).
    File {
        /// Random transfer id, as in FileOffer.
        transfer_id: [u8; 16],
        /// Untrusted display name, ≤ MAX_FILE_NAME bytes.
        name: String,
        /// Size in bytes.
        size: u64,
        /// 0 file, 1 image, 2 voice, 3 video.
        media: u8,
        /// SHA-256 of the file.
        sha256: [u8; 32],
        /// Chunk size, 1..=MAX_CHUNK.
        chunk_size: u32,
    },
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Message content never reaches a log.
        f.write_str(match self {
            Content::Text { .. } => "Content::Text",
            Content::Delete { .. } => "Content::Delete",
            Content::File { .. } => "Content::File",
        })
    }
}

/// The signed part of a group message.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageBody {
    /// GROUP_VERSION.
    pub version: u8,
    /// The group.
    pub group: GroupId,
    /// The sender's fingerprint.
    pub sender: [u8; 20],
    /// Per-sender sequence in this group, from 1, +1 per message.
    pub seq: u64,
    /// Position of the log head the sender had.
    pub log_seq: u64,
    /// Hash of that head.
    pub log_head: [u8; 32],
    /// Ids of up to MAX_GROUP_PARENTS messages this one follows (the
    /// latest the sender had seen from other senders), no duplicates.
    #[serde(deserialize_with = "de_parents")]
    pub parents: Vec<[u8; 32]>,
    /// The sender's clock, unix seconds (display only).
    pub sent_at: u64,
    /// The content.
    pub content: Content,
}

fn de_parents<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<[u8; 32]>, D::Error> {
    super::bounded_seq(d, MAX_GROUP_PARENTS)
}

impl MessageBody {
    /// The sender as a [`Fingerprint`].
    pub fn sender(&self) -> Fingerprint {
        Fingerprint::from_bytes(self.sender)
    }

    fn validate(&self) -> Result<(), GroupError> {
        if self.version != GROUP_VERSION {
            return Err(GroupError::UnsupportedVersion(self.version));
        }
        let bad = |reason| GroupError::Malformed {
            what: "message",
            reason,
        };
        if self.seq == 0 {
            return Err(bad("sequence starts at 1"));
        }
        check_len("parents", self.parents.len(), MAX_GROUP_PARENTS)?;
        let mut sorted = self.parents.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != self.parents.len() {
            return Err(bad("duplicate parent"));
        }
        match &self.content {
            Content::Text { body } => check_len("text", body.len(), MAX_TEXT),
            Content::Delete { .. } => Ok(()),
            Content::File {
                name,
                media,
                chunk_size,
                ..
            } => {
                check_len("file name", name.len(), MAX_FILE_NAME)?;
                if *media > 3 {
                    return Err(bad("unknown media"));
                }
                if *chunk_size == 0 || *chunk_size as usize > MAX_CHUNK {
                    return Err(bad("chunk size out of range"));
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for MessageBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageBody")
            .field("seq", &self.seq)
            .field("log_seq", &self.log_seq)
            .field("content", &self.content)
            .finish_non_exhaustive()
    }
}

/// A signed group message.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMessage {
    /// The signed body.
    pub body: MessageBody,
    /// The sender's binary detached signature over `LABEL_MSG_SIG || 0 || body`.
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
}

impl fmt::Debug for GroupMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupMessage")
            .field("body", &self.body)
            .finish_non_exhaustive()
    }
}

impl GroupMessage {
    /// Signs `body` as its sender (`identity` must be the sender).
    pub fn sign(body: MessageBody, identity: &Identity) -> Result<GroupMessage, GroupError> {
        if !identity.fingerprint().ct_eq(&body.sender()) {
            return Err(GroupError::BadSignature { who: "sender" });
        }
        body.validate()?;
        let sig = sign(identity, LABEL_MSG_SIG, &encode("message", &body)?)?;
        Ok(GroupMessage { body, sig })
    }

    /// The message id: SHA-256 over the label and the body (signature
    /// excluded, so that re-encoded signatures do not change it).
    pub fn id(&self) -> Result<[u8; 32], GroupError> {
        Ok(hash(LABEL_MSG, &encode("message", &self.body)?))
    }

    /// Checks version and limits (no signature, no state).
    pub fn validate(&self) -> Result<(), GroupError> {
        self.body.validate()?;
        check_sig("sender signature", &self.sig)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>, GroupError> {
        self.validate()?;
        let out = encode("message", self)?;
        check_len("message", out.len(), MAX_GROUP_MESSAGE)?;
        Ok(out)
    }

    /// Strict decoding: ≤ MAX_GROUP_MESSAGE bytes, canonical, within limits.
    pub fn decode(bytes: &[u8]) -> Result<GroupMessage, GroupError> {
        let m: GroupMessage = decode("message", bytes, MAX_GROUP_MESSAGE)?;
        m.validate()?;
        Ok(m)
    }
}

impl GroupState {
    /// A message body for `sender`'s next message (`seq` from the sender's
    /// own counter), naming the current head.
    pub fn message_body(
        &self,
        sender: &Fingerprint,
        seq: u64,
        parents: Vec<[u8; 32]>,
        sent_at: u64,
        content: Content,
    ) -> MessageBody {
        MessageBody {
            version: GROUP_VERSION,
            group: self.id(),
            sender: *sender.as_bytes(),
            seq,
            log_seq: self.head_seq(),
            log_head: self.head(),
            parents,
            sent_at,
            content,
        }
    }

    /// Verifies a received message against this state and returns its id:
    /// right group, not dissolved, a log head we hold (else
    /// [`GroupError::BehindLog`]: pull the log and retry) and agree with
    /// (else [`GroupError::SplitView`]), a sender who is a member now,
    /// joined at or before that head and may post, and the sender's
    /// signature. Nothing is changed.
    pub fn verify_message(&self, msg: &GroupMessage) -> Result<[u8; 32], GroupError> {
        msg.validate()?;
        let b = &msg.body;
        if b.group != self.id() {
            return Err(GroupError::WrongGroup);
        }
        if self.is_dissolved() {
            return Err(GroupError::Dissolved);
        }
        if !self.check_head(b.log_seq, &b.log_head)? {
            return Err(GroupError::BehindLog {
                need_seq: b.log_seq,
            });
        }
        let member = self
            .members()
            .get(&b.sender())
            .filter(|m| m.joined <= b.log_seq)
            .ok_or(GroupError::NotAMember)?;
        if !member.role.may_post() {
            return Err(GroupError::CannotPost(member.role));
        }
        verify(
            &member.cert,
            LABEL_MSG_SIG,
            &encode("message", b)?,
            &msg.sig,
            "sender",
        )?;
        msg.id()
    }

    /// Whether a member may serve `msg` to `requester` in a pull
    /// (§20.10): the requester is a member, and the message was sent at or
    /// after the requester's Add unless the group keeps history for new
    /// members (FLAG_HISTORY).
    pub fn may_serve(&self, requester: &Fingerprint, msg: &GroupMessage) -> bool {
        self.members().get(requester).is_some_and(|m| {
            self.flags() & super::FLAG_HISTORY != 0 || msg.body.log_seq >= m.joined
        })
    }

    /// Whether `deleter` may delete for everyone a message sent by
    /// `original_sender` (the node looks the target up in its store): the
    /// sender itself, or in a room an admin or the owner.
    pub fn check_delete(
        &self,
        deleter: &Fingerprint,
        original_sender: &Fingerprint,
    ) -> Result<(), GroupError> {
        if deleter == original_sender {
            return Ok(());
        }
        match self.role(deleter) {
            Some(Role::Owner | Role::Admin) if self.is_room() => Ok(()),
            _ => Err(GroupError::DeleteNotAllowed),
        }
    }
}

/// What the tracker did with an arrival.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<T> {
    /// Deliver these, in this order (the arrival and any buffered
    /// successors it unblocked).
    Deliver(Vec<T>),
    /// Already delivered or already buffered: drop it.
    Duplicate,
    /// Buffered until the gap `from..to` (sequence numbers) is filled:
    /// pull those from any member.
    Buffered {
        /// First missing sequence number.
        from: u64,
        /// One past the last missing one.
        to: u64,
    },
}

/// Per-sender exactly-once, in-order delivery for one group, with a
/// bounded buffer for messages that arrive ahead of a gap.
///
/// Persist [`DeliveryTracker::next_expected`] for each sender with the
/// delivered messages (in one transaction); buffered messages need not be
/// persisted (they are pulled again).
#[derive(Debug, Clone)]
pub struct DeliveryTracker<T> {
    next: BTreeMap<Fingerprint, u64>,
    buffer: BTreeMap<(Fingerprint, u64), ([u8; 32], T)>,
}

impl<T> Default for DeliveryTracker<T> {
    fn default() -> Self {
        DeliveryTracker {
            next: BTreeMap::new(),
            buffer: BTreeMap::new(),
        }
    }
}

impl<T> DeliveryTracker<T> {
    /// An empty tracker (every sender starts at sequence 1).
    pub fn new() -> Self {
        Self::default()
    }

    /// A tracker resuming from persisted next-expected sequences.
    pub fn resume(next: impl IntoIterator<Item = (Fingerprint, u64)>) -> Self {
        DeliveryTracker {
            next: next.into_iter().map(|(f, n)| (f, n.max(1))).collect(),
            buffer: BTreeMap::new(),
        }
    }

    /// The next sequence number expected from `sender` (1 if none yet).
    pub fn next_expected(&self, sender: &Fingerprint) -> u64 {
        self.next.get(sender).copied().unwrap_or(1)
    }

    /// Every sender's next expected sequence (for a pull request).
    pub fn cursors(&self) -> impl Iterator<Item = (Fingerprint, u64)> + '_ {
        self.next.iter().map(|(f, n)| (*f, *n))
    }

    /// Messages held back waiting for a gap.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// Forgets a sender who left or was removed (its buffered messages are
    /// dropped; its cursor is kept so that old copies stay duplicates).
    pub fn forget_buffered(&mut self, sender: &Fingerprint) {
        self.buffer.retain(|(s, _), _| s != sender);
    }

    /// Moves `sender`'s cursor up to `seq` (nothing if it is there
    /// already), dropping what is buffered below it: for a member that may
    /// not see the messages before `seq` (joined without HISTORY, §20.10).
    pub fn skip_to(&mut self, sender: Fingerprint, seq: u64) {
        if seq <= self.next_expected(&sender) {
            return;
        }
        self.buffer.retain(|(s, q), _| *s != sender || *q >= seq);
        self.next.insert(sender, seq);
    }

    /// Offers a verified message `item` with id `id`, sequence `seq` from
    /// `sender`. Refusals ([`GroupError::TooFarAhead`], a full buffer,
    /// [`GroupError::Equivocation`]) change nothing.
    pub fn offer(
        &mut self,
        sender: Fingerprint,
        seq: u64,
        id: [u8; 32],
        item: T,
    ) -> Result<Offer<T>, GroupError> {
        let next = self.next_expected(&sender);
        if seq < next {
            return Ok(Offer::Duplicate);
        }
        if seq > next {
            if let Some((held, _)) = self.buffer.get(&(sender, seq)) {
                return if *held == id {
                    Ok(Offer::Duplicate)
                } else {
                    Err(GroupError::Equivocation { seq })
                };
            }
            if seq - next > MAX_GROUP_AHEAD {
                return Err(GroupError::TooFarAhead { next, seq });
            }
            if self.buffer.len() >= MAX_GROUP_BUFFER {
                return Err(GroupError::TooLarge {
                    what: "delivery buffer",
                    len: self.buffer.len() + 1,
                    limit: MAX_GROUP_BUFFER,
                });
            }
            self.buffer.insert((sender, seq), (id, item));
            let to = self
                .buffer
                .range((sender, next)..=(sender, seq))
                .next()
                .map_or(seq, |((_, s), _)| *s);
            return Ok(Offer::Buffered { from: next, to });
        }
        let mut out = vec![item];
        let mut n = next + 1;
        while let Some((_, it)) = self.buffer.remove(&(sender, n)) {
            out.push(it);
            n += 1;
        }
        self.next.insert(sender, n);
        Ok(Offer::Deliver(out))
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn f(b: u8) -> Fingerprint {
        Fingerprint::from_bytes([b; 20])
    }

    #[test]
    fn skip_to_moves_only_forward_and_drops_what_it_passes() {
        let mut t = DeliveryTracker::new();
        assert!(matches!(
            t.offer(f(1), 3, [3; 32], 3),
            Ok(Offer::Buffered { .. })
        ));
        assert!(matches!(
            t.offer(f(1), 6, [6; 32], 6),
            Ok(Offer::Buffered { .. })
        ));
        t.skip_to(f(1), 5);
        assert_eq!(t.next_expected(&f(1)), 5);
        assert_eq!(t.buffered(), 1, "seq 3 is dropped, 6 kept");
        t.skip_to(f(1), 2);
        assert_eq!(t.next_expected(&f(1)), 5, "never backwards");
        assert!(matches!(t.offer(f(1), 4, [4; 32], 4), Ok(Offer::Duplicate)));
        match t.offer(f(1), 5, [5; 32], 5) {
            Ok(Offer::Deliver(v)) => assert_eq!(v, vec![5, 6]),
            other => panic!("{other:?}"),
        }
        assert_eq!(t.next_expected(&f(2)), 1, "other senders untouched");
    }

    #[test]
    fn the_buffer_is_bounded_and_refusals_change_nothing() {
        let mut t = DeliveryTracker::new();
        let mut n = 0;
        'fill: for s in 0..=u8::MAX {
            for q in 2..=MAX_GROUP_AHEAD + 1 {
                if n == MAX_GROUP_BUFFER {
                    break 'fill;
                }
                t.offer(f(s), q, [s; 32], ()).unwrap();
                n += 1;
            }
        }
        assert_eq!(t.buffered(), MAX_GROUP_BUFFER);
        assert!(matches!(
            t.offer(f(200), 2, [0; 32], ()),
            Err(GroupError::TooLarge { .. })
        ));
        assert_eq!(t.buffered(), MAX_GROUP_BUFFER);
        assert_eq!(t.next_expected(&f(200)), 1);
        // The next expected message still goes through and drains its sender.
        match t.offer(f(0), 1, [0; 32], ()).unwrap() {
            Offer::Deliver(v) => assert_eq!(v.len() as u64, MAX_GROUP_AHEAD + 1),
            other => panic!("{other:?}"),
        }
        t.forget_buffered(&f(1));
        assert_eq!(
            t.buffered(),
            MAX_GROUP_BUFFER - 2 * MAX_GROUP_AHEAD as usize
        );
    }

    #[test]
    fn buffered_reports_the_first_gap() {
        let mut t = DeliveryTracker::new();
        t.offer(f(1), 5, [5; 32], 5).unwrap();
        assert_eq!(
            t.offer(f(1), 9, [9; 32], 9).unwrap(),
            Offer::Buffered { from: 1, to: 5 }
        );
        assert_eq!(
            t.offer(f(1), 1, [1; 32], 1).unwrap(),
            Offer::Deliver(vec![1])
        );
        assert_eq!(t.next_expected(&f(1)), 2);
        assert!(matches!(
            t.offer(f(1), 2 + MAX_GROUP_AHEAD + 1, [0; 32], 0),
            Err(GroupError::TooFarAhead { .. })
        ));
    }

    #[test]
    fn message_form_rules() {
        let body = MessageBody {
            version: GROUP_VERSION,
            group: GroupId([0; 32]),
            sender: [1; 20],
            seq: 1,
            log_seq: 0,
            log_head: [0; 32],
            parents: vec![[1; 32], [1; 32]],
            sent_at: 0,
            content: Content::Text { body: "x".into() },
        };
        assert!(body.validate().is_err(), "duplicate parents");
        let mut b = body.clone();
        b.parents = vec![];
        b.seq = 0;
        assert!(b.validate().is_err(), "seq 0");
        b.seq = 1;
        b.content = Content::File {
            transfer_id: [0; 16],
            name: "f".into(),
            size: 1,
            media: 4,
            sha256: [0; 32],
            chunk_size: 1,
        };
        assert!(b.validate().is_err(), "unknown media");
        b.version = 2;
        assert!(matches!(
            b.validate(),
            Err(GroupError::UnsupportedVersion(2))
        ));
    }
}
