//! The receiving side of [`FileLink`]: offers, chunks (stored through
//! [`super::parts`]), incoming lanes.

use std::time::Instant;

use zeroize::Zeroizing;

use super::FileLink;
use super::engine::{
    OfferDecision, Progress, answer_repeated_offer, by_transfer, cancel, check_offer, decide_offer,
    media_from_wire,
};
use super::lanes::LaneEntry;
use super::parts::{Stored, accept_incoming, drop_part, store_chunks};
use crate::files::{FilePolicy, reason};
use crate::node::{Event, NodeError};
use crate::store::{Direction, NewTransfer, TransferState};
use crate::wire::{FileChunk, FileOffer, LaneKey, PeerMessage};

impl FileLink {
    pub(super) async fn complete_empty(
        &mut self,
        id: [u8; 16],
    ) -> Result<Vec<PeerMessage>, NodeError> {
        let ok = self
            .store
            .run(move |s| -> Result<bool, crate::store::Error> {
                let Some(t) = s.transfer(&id)? else {
                    return Ok(false);
                };
                let empty: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest([]).into();
                drop_part(s, &id)?;
                if t.sha256 == empty {
                    s.set_transfer_state(&id, TransferState::Completed)?;
                    Ok(true)
                } else {
                    s.finish_transfer(&id, TransferState::Failed, Some(reason::HASH_MISMATCH))?;
                    Ok(false)
                }
            })
            .await??;
        if ok {
            self.completed(id, 0, None);
            Ok(vec![PeerMessage::FileDone { transfer_id: id }])
        } else {
            self.cancelled(id, reason::HASH_MISMATCH, false);
            Ok(vec![cancel(id, reason::HASH_MISMATCH)])
        }
    }

    pub(super) async fn on_offer(&mut self, o: FileOffer) -> Result<Vec<PeerMessage>, NodeError> {
        let id = o.transfer_id;
        let contact = self.contact;
        if let Err(r) = check_offer(&o) {
            return Ok(vec![cancel(id, r)]); // refused before anything is stored
        }
        let policy: FilePolicy = self.ctx.policy.clone();
        let name = crate::files::sanitize(&o.name);
        // Decide and record in one store call (the flood count stays exact).
        let decided = self
            .store
            .run(
                move |s| -> Result<Result<OfferDecision, Vec<PeerMessage>>, NodeError> {
                    if let Some(t) = s.transfer(&id)? {
                        let active = t.state == TransferState::Active;
                        let have = if active {
                            Some(s.chunks_have(&id)?)
                        } else {
                            None
                        };
                        return Ok(Err(answer_repeated_offer(&o, &t, contact, || have)));
                    }
                    let verified = s.contact(contact)?.is_some_and(|c| c.verified);
                    let decision =
                        decide_offer(&policy, o.size, s.pending_offers(contact)?, verified);
                    if decision == OfferDecision::Flooded {
                        return Ok(Ok(decision));
                    }
                    s.add_transfer(&NewTransfer {
                        transfer_id: id,
                        contact,
                        direction: Direction::Incoming,
                        name,
                        size: o.size,
                        sha256: o.sha256,
                        chunk_size: o.chunk_size,
                        media: media_from_wire(o.media),
                        local_path: None,
                    })?;
                    match decision {
                        OfferDecision::TooLarge => s.finish_transfer(
                            &id,
                            TransferState::Cancelled,
                            Some(reason::TOO_LARGE),
                        )?,
                        OfferDecision::Accept => accept_incoming(s, &id)?,
                        OfferDecision::Ask | OfferDecision::Flooded => {}
                    }
                    Ok(Ok(decision))
                },
            )
            .await??;
        let decision = match decided {
            Ok(d) => d,
            Err(answer) => {
                if matches!(answer.first(), Some(PeerMessage::FileAccept(_))) {
                    self.announced.mark(id);
                }
                return Ok(answer);
            }
        };
        match decision {
            OfferDecision::TooLarge => {
                self.cancelled(id, reason::TOO_LARGE, false);
                Ok(vec![cancel(id, reason::TOO_LARGE)])
            }
            OfferDecision::Flooded => Ok(vec![cancel(id, reason::DECLINED)]),
            OfferDecision::Ask | OfferDecision::Accept => {
                let auto_accepted = decision == OfferDecision::Accept;
                self.emit(Event::FileOffered {
                    contact,
                    transfer: id,
                    auto_accepted,
                });
                if auto_accepted {
                    self.announce().await
                } else {
                    Ok(Vec::new())
                }
            }
        }
    }

    /// Stores a run of chunks, per transfer (see [`parts`]): FileAck (if
    /// `ack`: session-stream chunks), FileDone when complete.
    pub(super) async fn on_chunks(
        &mut self,
        chunks: Vec<FileChunk>,
        ack: bool,
    ) -> Result<Vec<PeerMessage>, NodeError> {
        let mut out = Vec::new();
        for (id, chunks) in by_transfer(chunks) {
            let downloads = self.ctx.policy.downloads_dir.clone();
            let stored = store_chunks(&self.store, self.contact, id, chunks, downloads).await?;
            match stored {
                Stored::Unknown => out.push(cancel(id, reason::UNKNOWN)),
                Stored::Ignored => {}
                Stored::Refused(r) => {
                    self.throttle.forget(&id);
                    self.cancelled(id, r, false);
                    out.push(cancel(id, r));
                }
                Stored::Progress {
                    next,
                    have,
                    size,
                    chunk_size,
                } => {
                    if self.throttle.due(id, Instant::now(), false) {
                        let done = have.saturating_mul(u64::from(chunk_size)).min(size);
                        self.report(id, Progress { done, size });
                    }
                    if ack {
                        out.push(PeerMessage::FileAck {
                            transfer_id: id,
                            next,
                        });
                    }
                }
                Stored::Complete { next, size, saved } => {
                    self.completed(id, size, saved);
                    if ack {
                        out.push(PeerMessage::FileAck {
                            transfer_id: id,
                            next,
                        });
                    }
                    out.push(PeerMessage::FileDone { transfer_id: id });
                }
            }
        }
        Ok(out)
    }

    /// Receiver: a lane was announced; its stream may come.
    pub(super) fn on_lane(&mut self, lane_id: [u8; 16], key: LaneKey) {
        if !self.lanes_in.announced(lane_id) {
            return; // a peer opening lanes without end
        }
        let ok = self.ctx.lanes.insert(LaneEntry {
            key: Zeroizing::new(*key.expose()),
            id: lane_id,
            cmds: self.ctx.own_cmds.clone(),
            owner: self.link_id,
        });
        if !ok {
            self.lanes_in.forget(&lane_id);
        }
    }

    /// Receiver: chunks that arrived on a lane (acknowledged per lane with
    /// FileLaneAck, first, not with FileAck).
    pub async fn on_lane_chunks(
        &mut self,
        lane_id: [u8; 16],
        chunks: Vec<FileChunk>,
    ) -> Result<Vec<PeerMessage>, NodeError> {
        if !self.lanes_in.knows(&lane_id) {
            return Ok(Vec::new());
        }
        let n = chunks.len() as u64;
        let mut out = self.on_chunks(chunks, false).await?;
        let Some(count) = self.lanes_in.stored(lane_id, n) else {
            return Ok(out);
        };
        out.insert(0, PeerMessage::FileLaneAck { lane_id, count });
        Ok(out)
    }
}
