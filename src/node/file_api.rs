//! The node's API for file transfers (PROTOCOL.md §14): offer, accept,
//! cancel, save. The engine that moves the chunks is `files.rs`.

use crate::session::fill_random;
use crate::store::{ContactId, Direction};

use super::command::Command;
use super::files;
use super::{Event, NodeError, NodeHandle};

impl NodeHandle {
    /// Offers the file at `path` to `contact` (PROTOCOL.md §14): hashes it,
    /// records the transfer, and offers it as soon as a connection is Ready
    /// (it waits like an outbox message while the contact is offline). `path`
    /// should be absolute; the file is read from there while it is sent.
    pub async fn send_file(
        &self,
        contact: ContactId,
        path: &std::path::Path,
        media: crate::store::FileKind,
    ) -> Result<crate::store::FileTransfer, NodeError> {
        if self.inner.shutdown.is_cancelled() {
            return Err(NodeError::ShuttingDown);
        }
        let has_session = self
            .inner
            .store
            .run(move |s| s.session_for_contact(contact))
            .await??
            .is_some();
        if !has_session {
            return Err(NodeError::NoSession);
        }
        let p = path.to_path_buf();
        let (size, sha256) = tokio::task::spawn_blocking(move || crate::files::Source::hash(&p))
            .await
            .map_err(|_| NodeError::Internal {
                what: "a file task panicked",
            })?
            .map_err(NodeError::File)?;
        let name = path
            .file_name()
            .map(|n| crate::files::sanitize(&n.to_string_lossy()))
            .unwrap_or_else(|| "file".to_owned());
        let mut transfer_id = [0u8; 16];
        fill_random(&mut transfer_id);
        let new = crate::store::NewTransfer {
            transfer_id,
            contact,
            direction: Direction::Outgoing,
            name,
            size,
            sha256,
            chunk_size: crate::files::CHUNK_SIZE,
            media,
            local_path: Some(path.to_string_lossy().into_owned()),
        };
        let t = self
            .inner
            .store
            .run(move |s| -> Result<_, crate::store::Error> {
                s.add_transfer(&new)?;
                s.transfer(&transfer_id)?
                    .ok_or(crate::store::Error::NotFound { what: "transfer" })
            })
            .await??;
        self.notify_files(contact);
        Ok(t)
    }

    fn notify_files(&self, contact: ContactId) {
        self.inner.command(contact, Command::Files);
    }

    /// Every transfer, oldest first.
    pub async fn transfers(&self) -> Result<Vec<crate::store::FileTransfer>, NodeError> {
        Ok(self.inner.store.run(|s| s.all_transfers()).await??)
    }

    /// Accepts an incoming file offer: chunks start flowing when connected.
    pub async fn accept_file(&self, transfer_id: [u8; 16]) -> Result<(), NodeError> {
        let t = self
            .inner
            .store
            .run(move |s| -> Result<_, NodeError> {
                let t = s
                    .transfer(&transfer_id)?
                    .filter(|t| t.direction == Direction::Incoming)
                    .ok_or(NodeError::NotFound { what: "transfer" })?;
                if t.state != crate::store::TransferState::Offered {
                    return Err(NodeError::Invalid {
                        what: "transfer",
                        reason: "it is not waiting for a decision",
                    });
                }
                files::accept_incoming(s, &transfer_id)?;
                Ok(t)
            })
            .await??;
        self.notify_files(t.contact);
        Ok(())
    }

    /// Declines an incoming offer or cancels any unfinished transfer; the
    /// peer is told now if connected, otherwise when it next re-offers.
    pub async fn cancel_file(&self, transfer_id: [u8; 16]) -> Result<(), NodeError> {
        let (contact, r) = self
            .inner
            .store
            .run(move |s| -> Result<_, NodeError> {
                let t = s
                    .transfer(&transfer_id)?
                    .ok_or(NodeError::NotFound { what: "transfer" })?;
                if !matches!(
                    t.state,
                    crate::store::TransferState::Offered | crate::store::TransferState::Active
                ) {
                    return Err(NodeError::Invalid {
                        what: "transfer",
                        reason: "it is already finished",
                    });
                }
                let r = if t.direction == Direction::Incoming
                    && t.state == crate::store::TransferState::Offered
                {
                    crate::files::reason::DECLINED
                } else {
                    crate::files::reason::UNSPECIFIED
                };
                files::drop_part(s, &transfer_id)?;
                s.finish_transfer(
                    &transfer_id,
                    crate::store::TransferState::Cancelled,
                    Some(r),
                )?;
                Ok((t.contact, r))
            })
            .await??;
        if let Some(cmds) = self.inner.cmds(contact) {
            let _ = cmds.send(Command::FileCancel(transfer_id, r));
        }
        let _ = self.inner.events.send(Event::FileCancelled {
            contact,
            transfer: transfer_id,
            reason: r,
            by_peer: false,
        });
        Ok(())
    }

    /// Decrypts a completed incoming file to `dest` (a new file; an existing
    /// directory means "in it, under the sanitised name"), verifying its
    /// SHA-256 on the way. Returns the path written. The encrypted copy is
    /// deleted afterwards.
    pub async fn save_file(
        &self,
        transfer_id: [u8; 16],
        dest: &std::path::Path,
    ) -> Result<std::path::PathBuf, NodeError> {
        let dest = dest.to_path_buf();
        let store = &self.inner.store;
        // Under the store lock only to read and to record: decrypting and
        // hashing a large file must not stall every connection.
        let (t, part) = store
            .run(move |s| -> Result<_, NodeError> {
                let t = s
                    .transfer(&transfer_id)?
                    .filter(|t| t.direction == Direction::Incoming)
                    .ok_or(NodeError::NotFound { what: "transfer" })?;
                if t.state != crate::store::TransferState::Completed {
                    return Err(NodeError::Invalid {
                        what: "transfer",
                        reason: "it is not complete",
                    });
                }
                let part = if t.size == 0 {
                    None
                } else {
                    Some(files::open_part(s, &t).map_err(NodeError::File)?.ok_or(
                        NodeError::Invalid {
                            what: "transfer",
                            reason: "its file was already saved and removed from the data dir",
                        },
                    )?)
                };
                Ok((t, part))
            })
            .await??;
        let target = tokio::task::spawn_blocking(move || -> Result<_, NodeError> {
            let target = if dest.is_dir() {
                crate::files::unused_in(&dest, &crate::files::sanitize(&t.name))
            } else {
                dest
            };
            match part {
                Some(part) => part.export(&target, &t.sha256).map_err(NodeError::File)?,
                None => {
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .open(&target)
                        .map_err(|e| {
                            NodeError::File(crate::files::FileError::Io {
                                what: "creating the destination file",
                                source: e,
                            })
                        })?;
                }
            }
            Ok(target)
        })
        .await
        .map_err(|_| NodeError::Internal {
            what: "a file task panicked",
        })??;
        let path = target.clone();
        store
            .run(move |s| -> Result<(), NodeError> {
                s.set_saved_path(&transfer_id, &path.to_string_lossy())?;
                files::drop_part(s, &transfer_id)?;
                Ok(())
            })
            .await??;
        Ok(target)
    }
}
