//! Commands from the node's API to a running connection task.

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::peer::OutText;

/// A command from the node to a running connection.
#[derive(Debug)]
pub enum Command {
    /// New outbox Texts to send.
    Queue(Vec<OutText>),
    /// End the session: send EndSession if Ready, erase the keys, close.
    End(oneshot::Sender<()>),
    /// Tell the peer we read its messages up to this seq.
    Receipt(u64),
    /// Transfers changed (new offer, accepted by the user): announce them.
    Files,
    /// A transfer was cancelled locally: tell the peer, stop sending it.
    FileCancel([u8; 16], u8),
    /// Chunks read from an incoming lane (PROTOCOL.md §14.3); the permit
    /// bounds how many batches a lane reader has waiting.
    LaneChunks {
        /// The lane.
        lane_id: [u8; 16],
        /// Its chunks, in order.
        chunks: Vec<crate::wire::FileChunk>,
        /// Released once stored.
        permit: OwnedSemaphorePermit,
    },
    /// Group outbox entries wait for this contact: write them.
    GroupFlush,
    /// An outgoing lane's writer ended.
    LaneDone {
        /// The lane.
        lane_id: [u8; 16],
        /// Whether it ended without an error.
        ok: bool,
    },
}
