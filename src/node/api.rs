//! The node's API for front ends: messages, receipts, ending a session,
//! presence, shutdown. Requests live in `requests.rs`, files in
//! `file_api.rs`.

use tokio::sync::{broadcast, oneshot};

use crate::limits::MAX_TEXT;
use crate::session::fill_random;
use crate::store::{ContactId, Direction, Message};
use crate::transport::PeerAddress;
use crate::wire::Text;

use super::command::Command;
use super::peer::OutText;
use super::store_handle::StoreHandle;
use super::{Event, NodeError, NodeHandle};

/// The [`NodeError::Invalid`] reason of a text over [`MAX_TEXT`] bytes.
pub const MESSAGE_TOO_LONG: &str = "longer than 16 KiB";

impl NodeHandle {
    /// Subscribes to the event bus.
    pub fn events(&self) -> broadcast::Receiver<Event> {
        self.inner.events.subscribe()
    }

    /// The store, for reads by front ends (history, contacts, outbox).
    pub fn store(&self) -> StoreHandle {
        self.inner.store.clone()
    }

    /// The address peers reach this node at (an identifier: never log it).
    pub fn address(&self) -> &PeerAddress {
        &self.inner.address
    }

    /// Queues a Text to `contact` (stored with id and seq before this
    /// returns) and sends it as soon as a connection is Ready. An empty or
    /// whitespace-only text, or one over [`MAX_TEXT`] bytes, is refused.
    pub async fn send_text(&self, contact: ContactId, body: &str) -> Result<Message, NodeError> {
        if body.len() > MAX_TEXT {
            return Err(NodeError::Invalid {
                what: "message",
                reason: MESSAGE_TOO_LONG,
            });
        }
        // A blank line on the peer's screen is never what the user meant.
        if body.trim().is_empty() {
            return Err(NodeError::Invalid {
                what: "message",
                reason: "it is empty",
            });
        }
        if self.inner.shutdown.is_cancelled() {
            return Err(NodeError::ShuttingDown);
        }
        let mut msg_id = [0u8; 16];
        fill_random(&mut msg_id);
        let sent_at = crate::time::now_secs();
        let body = body.to_owned();
        let m = self
            .inner
            .store
            .run(move |s| -> Result<Message, NodeError> {
                if s.session_for_contact(contact)?.is_none() {
                    return Err(NodeError::NoSession);
                }
                Ok(s.enqueue_message(contact, msg_id, sent_at, &body)?)
            })
            .await??;
        let out = OutText {
            message: m.id,
            text: Text {
                id: m.msg_id,
                seq: m.seq,
                sent_at: m.sent_at,
                body: m.body.clone(),
            },
        };
        self.inner.command(contact, Command::Queue(vec![out]));
        Ok(m)
    }

    /// Marks everything received from `contact` as read and, unless
    /// [`NodeConfig::read_receipts`](super::NodeConfig::read_receipts) is
    /// off, tells the contact with a Receipt if a connection is up (receipts
    /// are cumulative and best effort).
    pub async fn mark_read(&self, contact: ContactId) -> Result<usize, NodeError> {
        let (n, upto) = self
            .inner
            .store
            .run(move |s| -> Result<_, crate::store::Error> {
                let upto = s.highest_seq(contact, Direction::Incoming)?;
                Ok((s.mark_read(contact, Direction::Incoming, upto)?, upto))
            })
            .await??;
        if upto > 0
            && self.inner.config.read_receipts
            && let Some(cmds) = self.inner.cmds(contact)
        {
            let _ = cmds.send(Command::Receipt(upto));
        }
        Ok(n)
    }

    /// Ends the session with `contact`: EndSession is sent if a connection
    /// is Ready, then both chain keys are erased and undelivered messages
    /// marked failed.
    pub async fn end(&self, contact: ContactId) -> Result<(), NodeError> {
        if let Some(cmds) = self.inner.cmds(contact) {
            let (tx, rx) = oneshot::channel();
            if cmds.send(Command::End(tx)).is_ok()
                && tokio::time::timeout(self.inner.config.hello_timeout, rx)
                    .await
                    .is_ok_and(|r| r.is_ok())
            {
                self.inner.wake(contact);
                return Ok(());
            }
        }
        let ended = self
            .inner
            .store
            .run(move |s| s.end_session_with(contact))
            .await??;
        if !ended.existed {
            return Err(NodeError::NoSession);
        }
        self.inner.report_ended(contact, ended, false);
        self.inner.wake(contact);
        Ok(())
    }

    /// What keeps failing with `contact`'s connection, if anything (for a
    /// hint to the user: PROTOCOL.md §12.2).
    pub fn trouble(&self, contact: ContactId) -> Option<super::Trouble> {
        self.inner.trouble(contact)
    }

    /// Whether a connection to `contact` is currently open.
    pub fn is_connected(&self, contact: ContactId) -> bool {
        self.inner.table(|t| t.registry.is_connected(contact))
    }

    /// Stops the node gracefully: connections send `Presence(GoingOffline)`
    /// and close, every task is awaited.
    pub async fn shutdown(self) {
        self.inner.shutdown.cancel();
        let mut set = {
            let mut guard = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *guard)
        };
        while set.join_next().await.is_some() {}
    }

    /// Stops every task at its next await point without any goodbye, as a
    /// crash would (for tests). Store transactions in flight complete or
    /// roll back, as after `kill -9`.
    pub async fn abort(self) {
        self.inner.shutdown.cancel();
        let mut set = {
            let mut guard = self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut *guard)
        };
        set.abort_all();
        while set.join_next().await.is_some() {}
    }
}
