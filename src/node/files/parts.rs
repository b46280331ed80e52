//! A receiver's part files and the store records beside them (PROTOCOL.md §14.2).
//!
//! Storing a batch of chunks takes the store lock only for short bookkeeping steps:
//! the part-file writes and sync, the whole-file hash and the export to the downloads
//! folder run outside it, so one large transfer does not stall every other connection.
//! Each locked step re-checks that the transfer is still active: a cancel from the
//! user in between wins, and nothing is recorded for it.

use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::engine::{chunks_fit, layout};
use crate::error::HasKind;
use crate::files::{FileError, Layout, PartFile, new_part, reason, sanitize, unused_in};
use crate::node::NodeError;
use crate::node::store_handle::StoreHandle;
use crate::store::{ContactId, Direction, FileTransfer, Store, TransferState};
use crate::wire::FileChunk;

/// The files directory of the store's data dir.
pub(crate) fn files_dir(s: &Store) -> PathBuf {
    s.data_dir().join("files")
}

/// Deletes a transfer's part file and forgets its key (best effort on the file).
pub(crate) fn drop_part(s: &Store, id: &[u8; 16]) -> Result<(), crate::store::Error> {
    if let Some((name, _key)) = s.part_key(id)? {
        remove_file(&files_dir(s).join(&name));
    }
    s.clear_part(id)
}

fn remove_file(p: &Path) {
    if let Err(e) = std::fs::remove_file(p)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e.kind(), "could not delete a part file");
    }
}

/// Ends an incoming transfer as failed with `r` if it is still active: its
/// partial data is deleted. Returns whether it was.
fn fail_if_active(s: &Store, id: &[u8; 16], r: u8) -> Result<bool, crate::store::Error> {
    if s.transfer(id)?
        .is_none_or(|t| t.state != TransferState::Active)
    {
        return Ok(false);
    }
    drop_part(s, id)?;
    s.finish_transfer(id, TransferState::Failed, Some(r))?;
    Ok(true)
}

/// Opens the part file of an incoming transfer.
pub(crate) fn open_part(s: &Store, t: &FileTransfer) -> Result<Option<PartFile>, FileError> {
    let Ok(Some((name, key))) = s.part_key(&t.transfer_id) else {
        return Ok(None);
    };
    PartFile::open(&files_dir(s), &name, &key, t.transfer_id, layout(t)).map(Some)
}

/// Incoming transfer: accept it (part file and key), state active.
pub(crate) fn accept_incoming(s: &Store, id: &[u8; 16]) -> Result<(), crate::store::Error> {
    let (name, key) = new_part();
    s.accept_transfer(id, &name, &key)
}

/// What storing a batch of chunks of one transfer gave.
#[derive(Debug)]
pub(super) enum Stored {
    /// Not an incoming transfer of this contact.
    Unknown,
    /// Finished or cancelled meanwhile: late chunks, nothing done.
    Ignored,
    /// The transfer failed with this reason (partial data deleted).
    Refused(u8),
    /// Recorded; `have` chunks held of the transfer.
    Progress {
        next: u64,
        have: u64,
        size: u64,
        chunk_size: u32,
    },
    /// Every chunk held and the SHA-256 matches; saved to the downloads
    /// folder if one is configured.
    Complete {
        next: u64,
        size: u64,
        saved: Option<PathBuf>,
    },
}

/// What the first locked step hands to the unlocked write.
struct Target {
    t: FileTransfer,
    dir: PathBuf,
    name: String,
    key: Zeroizing<[u8; 32]>,
    /// Indexes of the batch not held yet.
    missing: Vec<u64>,
    chunks: Vec<FileChunk>,
}

/// Stores a batch of chunks of transfer `id` from `contact`: checked against the
/// offer, written and synced to the part file, then recorded (O(batch)); when
/// the last one is in, the file is hashed and (with `downloads`) exported.
pub(super) async fn store_chunks(
    store: &StoreHandle,
    contact: ContactId,
    id: [u8; 16],
    chunks: Vec<FileChunk>,
    downloads: Option<PathBuf>,
) -> Result<Stored, NodeError> {
    let indexes: Vec<u64> = chunks.iter().map(|c| c.index).collect();
    let next = indexes
        .iter()
        .map(|i| i.saturating_add(1))
        .max()
        .unwrap_or(0);
    let checked = store
        .run(move |s| -> Result<Result<Target, Stored>, NodeError> {
            let Some(t) = s.transfer(&id)? else {
                return Ok(Err(Stored::Unknown));
            };
            if t.contact != contact || t.direction != Direction::Incoming {
                return Ok(Err(Stored::Unknown));
            }
            if t.state != TransferState::Active {
                return Ok(Err(Stored::Ignored));
            }
            // Every chunk must fit the offer: index and exact length.
            if !chunks_fit(&layout(&t), &chunks) {
                fail_if_active(s, &id, reason::PROTOCOL)?;
                return Ok(Err(Stored::Refused(reason::PROTOCOL)));
            }
            let Some((name, key)) = s.part_key(&id)? else {
                return Ok(Err(Stored::Ignored));
            };
            let missing = s.missing_chunks(&id, &indexes)?;
            Ok(Ok(Target {
                t,
                dir: files_dir(s),
                name,
                key,
                missing,
                chunks,
            }))
        })
        .await??;
    let target = match checked {
        Ok(t) => t,
        Err(stored) => return Ok(stored),
    };
    let lay = layout(&target.t);
    let written = blocking(move || write_chunks(&target, lay)).await?;
    let Some(written) = written else {
        return refuse(store, id, reason::TOO_LARGE).await;
    };
    let (size, chunk_size, total) = (lay.size, lay.chunk_size, lay.chunks());
    let recorded = store
        .run(move |s| s.record_chunks(&id, &written.indexes))
        .await??;
    let Some(have) = recorded else {
        // Cancelled while we wrote: what we wrote goes too.
        remove_file(&written.path);
        return Ok(Stored::Ignored);
    };
    if have < total {
        return Ok(Stored::Progress {
            next,
            have,
            size,
            chunk_size,
        });
    }
    finish(store, id, written.path, downloads)
        .await
        .map(|saved| match saved {
            Finished::Ok(saved) => Stored::Complete { next, size, saved },
            Finished::Mismatch => Stored::Refused(reason::HASH_MISMATCH),
            Finished::Gone => Stored::Ignored,
        })
}

/// Runs blocking file work on the blocking pool.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| NodeError::Internal {
            what: "a file task panicked",
        })
}

/// Fails the transfer with `r` (if still active) and reports it.
async fn refuse(store: &StoreHandle, id: [u8; 16], r: u8) -> Result<Stored, NodeError> {
    let failed = store.run(move |s| fail_if_active(s, &id, r)).await??;
    Ok(if failed {
        Stored::Refused(r)
    } else {
        Stored::Ignored
    })
}

/// Chunks written and synced to a part file.
struct Written {
    path: PathBuf,
    indexes: Vec<u64>,
}

/// Writes the missing chunks of a batch and syncs (no store lock held). None
/// if the part file cannot be opened or written (disk full, say).
fn write_chunks(target: &Target, lay: Layout) -> Option<Written> {
    let part = PartFile::open(
        &target.dir,
        &target.name,
        &target.key,
        target.t.transfer_id,
        lay,
    )
    .map_err(|e| tracing::warn!(kind = ?e.kind(), "cannot open a part file"))
    .ok()?;
    let mut indexes = Vec::with_capacity(target.missing.len());
    for c in &target.chunks {
        if !target.missing.contains(&c.index) || indexes.contains(&c.index) {
            continue;
        }
        if let Err(e) = part.write_chunk(c.index, &c.data) {
            tracing::warn!(kind = ?e.kind(), "cannot write a part file");
            return None;
        }
        indexes.push(c.index);
    }
    if let Err(e) = part.sync() {
        tracing::warn!(kind = ?e.kind(), "cannot sync a part file");
        return None;
    }
    Some(Written {
        path: part.path().to_path_buf(),
        indexes,
    })
}

/// How verifying a complete file ended.
enum Finished {
    Ok(Option<PathBuf>),
    Mismatch,
    /// Cancelled meanwhile.
    Gone,
}

/// Every chunk is in: hash the part file (and export it to `downloads`)
/// outside the store lock, then record the outcome if still active.
async fn finish(
    store: &StoreHandle,
    id: [u8; 16],
    path: PathBuf,
    downloads: Option<PathBuf>,
) -> Result<Finished, NodeError> {
    let part = store
        .run(
            move |s| -> Result<Option<(FileTransfer, Option<PartFile>)>, NodeError> {
                let Some(t) = s
                    .transfer(&id)?
                    .filter(|t| t.state == TransferState::Active)
                else {
                    return Ok(None);
                };
                let part = open_part(s, &t).ok().flatten();
                Ok(Some((t, part)))
            },
        )
        .await??;
    let Some((t, part)) = part else {
        remove_file(&path);
        return Ok(Finished::Gone);
    };
    let sha256 = t.sha256;
    let name = t.name.clone();
    // Err: the part file is missing or does not match the offered SHA-256.
    let verdict = blocking(move || -> Result<Option<PathBuf>, ()> {
        let part = part.ok_or(())?;
        let h = part.sha256().map_err(|_| ())?;
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&h[..], &sha256[..])) {
            return Err(());
        }
        let Some(dir) = downloads else {
            return Ok(None);
        };
        let dest = unused_in(&dir, &sanitize(&name));
        match part.export(&dest, &sha256) {
            Ok(()) => Ok(Some(dest)),
            Err(e) => {
                tracing::warn!(kind = ?e.kind(), "could not save a file to the downloads folder; it stays in the data dir");
                Ok(None)
            }
        }
    })
    .await?;
    store
        .run(move |s| -> Result<Finished, NodeError> {
            let active = s
                .transfer(&id)?
                .is_some_and(|t| t.state == TransferState::Active);
            if !active {
                return Ok(Finished::Gone);
            }
            match verdict {
                Ok(saved) => {
                    s.set_transfer_state(&id, TransferState::Completed)?;
                    if let Some(dest) = &saved {
                        s.set_saved_path(&id, &dest.to_string_lossy())?;
                        drop_part(s, &id)?;
                    }
                    Ok(Finished::Ok(saved))
                }
                Err(()) => {
                    fail_if_active(s, &id, reason::HASH_MISMATCH)?;
                    Ok(Finished::Mismatch)
                }
            }
        })
        .await?
}
