//! File transfers (PROTOCOL.md §14): metadata, state, which chunks the receiver holds
//! (so transfers resume after a restart), and the key of the receiver's encrypted part
//! file. The chunk bytes themselves live in that part file, outside the database.

use rusqlite::{OptionalExtension, Row, params};
use zeroize::Zeroizing;

use super::err::db;
use super::sessions::save_chain_tx;
use super::{
    ChainState, ChunkSet, ContactId, Error, FileTransfer, NewTransfer, Result, Store,
    TransferState, now,
};

const COLUMNS: &str = "transfer_id, contact_id, direction, name, size, sha256, chunk_size, \
                       chunks_count, local_path, state, created_at, updated_at, media, reason, \
                       part_file, chunks_sent";

/// States after which nothing more happens to a transfer.
const FINISHED: &str = "('completed', 'cancelled', 'failed')";

fn row_to_transfer(r: &Row<'_>) -> rusqlite::Result<FileTransfer> {
    Ok(FileTransfer {
        transfer_id: r.get(0)?,
        contact: ContactId(r.get(1)?),
        direction: r.get(2)?,
        name: r.get(3)?,
        size: r.get(4)?,
        sha256: r.get(5)?,
        chunk_size: r.get(6)?,
        have_count: r.get(7)?,
        local_path: r.get(8)?,
        state: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
        media: r.get(12)?,
        reason: r.get(13)?,
        part_file: r.get(14)?,
        chunks_sent: r.get(15)?,
    })
}

impl Store {
    /// Record a new transfer (state `offered`, no chunks).
    pub fn add_transfer(&self, t: &NewTransfer) -> Result<()> {
        if t.chunk_size == 0 {
            return Err(Error::Invalid {
                what: "chunk size",
                reason: "must be positive".into(),
            });
        }
        let ts = now();
        let res = self.conn.execute(
            "INSERT INTO file_transfers (transfer_id, contact_id, direction, name, size, sha256, \
             chunk_size, local_path, state, created_at, updated_at, media) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11)",
            params![
                t.transfer_id,
                t.contact.0,
                t.direction,
                t.name,
                t.size,
                t.sha256,
                t.chunk_size,
                t.local_path,
                TransferState::Offered,
                ts,
                t.media,
            ],
        );
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(Error::Conflict {
                    what: "transfer id (or unknown contact)",
                })
            }
            Err(e) => Err(db("recording a transfer")(e)),
        }
    }

    /// A transfer by id.
    pub fn transfer(&self, transfer_id: &[u8; 16]) -> Result<Option<FileTransfer>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM file_transfers WHERE transfer_id = ?1"),
                [transfer_id],
                row_to_transfer,
            )
            .optional()
            .map_err(db("reading a transfer"))
    }

    fn query_transfers(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<FileTransfer>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM file_transfers {filter} ORDER BY created_at, rowid"
            ))
            .map_err(db("listing transfers"))?;
        let rows = st
            .query_map(args, row_to_transfer)
            .map_err(db("listing transfers"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db("listing transfers"))
    }

    /// All transfers with a contact, oldest first.
    pub fn transfers(&self, contact: ContactId) -> Result<Vec<FileTransfer>> {
        self.query_transfers("WHERE contact_id = ?1", [contact.0])
    }

    /// Every transfer, oldest first.
    pub fn all_transfers(&self) -> Result<Vec<FileTransfer>> {
        self.query_transfers("", [])
    }

    /// Transfers with a contact that are not completed, cancelled or failed.
    pub fn unfinished_transfers(&self, contact: ContactId) -> Result<Vec<FileTransfer>> {
        self.query_transfers(
            &format!("WHERE contact_id = ?1 AND state NOT IN {FINISHED}"),
            [contact.0],
        )
    }

    /// Number of incoming transfers of a contact still waiting for a decision.
    pub fn pending_offers(&self, contact: ContactId) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT count(*) FROM file_transfers
                 WHERE contact_id = ?1 AND direction = 'in' AND state = 'offered'",
                [contact.0],
                |r| r.get(0),
            )
            .map_err(db("counting offers"))
    }

    /// The chunks of `transfer_id` the receiver holds (O(chunks held); for
    /// announcing a resume, not for the per-batch path).
    pub fn chunks_have(&self, transfer_id: &[u8; 16]) -> Result<ChunkSet> {
        let mut st = self
            .conn
            .prepare_cached("SELECT idx FROM file_chunks WHERE transfer_id = ?1 ORDER BY idx")
            .map_err(db("reading chunks"))?;
        let rows = st
            .query_map([transfer_id], |r| r.get::<_, u64>(0))
            .map_err(db("reading chunks"))?;
        let mut have = ChunkSet::new();
        for i in rows {
            have.insert(i.map_err(db("reading chunks"))?);
        }
        Ok(have)
    }

    /// Of `indexes`, those not recorded for `transfer_id` yet (O(batch)).
    pub fn missing_chunks(&self, transfer_id: &[u8; 16], indexes: &[u64]) -> Result<Vec<u64>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT 1 FROM file_chunks WHERE transfer_id = ?1 AND idx = ?2")
            .map_err(db("reading chunks"))?;
        let mut out = Vec::new();
        for &i in indexes {
            if !st
                .exists(params![transfer_id, i])
                .map_err(db("reading chunks"))?
            {
                out.push(i);
            }
        }
        Ok(out)
    }

    /// Record verified chunks of an active incoming transfer in one
    /// transaction, at a cost of O(batch) whatever chunks came before.
    /// Returns how many chunks are held now, or `None` if the transfer is no
    /// longer active (cancelled meanwhile: nothing is recorded).
    pub fn record_chunks(
        &mut self,
        transfer_id: &[u8; 16],
        indexes: &[u64],
    ) -> Result<Option<u64>> {
        let tx = self.conn.transaction().map_err(db("recording chunks"))?;
        let row: Option<(u64, u32, TransferState)> = tx
            .query_row(
                "SELECT size, chunk_size, state FROM file_transfers \
                 WHERE transfer_id = ?1 AND direction = 'in'",
                [transfer_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(db("recording chunks"))?;
        let (size, chunk_size, state) = row.ok_or(Error::NotFound { what: "transfer" })?;
        if state != TransferState::Active {
            return Ok(None);
        }
        let count = size.div_ceil(u64::from(chunk_size.max(1)));
        let mut added = 0u64;
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO file_chunks (transfer_id, idx) VALUES (?1, ?2)",
                )
                .map_err(db("recording chunks"))?;
            for &i in indexes {
                if i >= count {
                    return Err(Error::Invalid {
                        what: "chunk index",
                        reason: format!("{i} is past the last chunk ({count} chunks)"),
                    });
                }
                added += st
                    .execute(params![transfer_id, i])
                    .map_err(db("recording chunks"))? as u64;
            }
        }
        let have: u64 = tx
            .query_row(
                "UPDATE file_transfers SET chunks_count = chunks_count + ?2, updated_at = ?3 \
                 WHERE transfer_id = ?1 RETURNING chunks_count",
                params![transfer_id, added, now()],
                |r| r.get(0),
            )
            .map_err(db("recording chunks"))?;
        tx.commit().map_err(db("recording chunks"))?;
        Ok(Some(have))
    }

    /// Set a transfer's state (and, for cancelled or failed, the reason).
    pub fn set_transfer_state(&self, transfer_id: &[u8; 16], state: TransferState) -> Result<()> {
        self.finish_transfer(transfer_id, state, None)
    }

    /// Set a transfer's state with a FileCancel reason.
    pub fn finish_transfer(
        &self,
        transfer_id: &[u8; 16],
        state: TransferState,
        reason: Option<u8>,
    ) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE file_transfers SET state = ?2, reason = coalesce(?3, reason), \
                 updated_at = ?4 WHERE transfer_id = ?1",
                params![transfer_id, state, reason, now()],
            )
            .map_err(db("updating a transfer"))?;
        if n == 0 {
            return Err(Error::NotFound { what: "transfer" });
        }
        Ok(())
    }

    /// Incoming transfer accepted: record its part file and key, state `active`.
    pub fn accept_transfer(
        &self,
        transfer_id: &[u8; 16],
        part_file: &str,
        key: &[u8; 32],
    ) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE file_transfers SET state = 'active', part_file = ?2, part_key = ?3, \
                 updated_at = ?4 WHERE transfer_id = ?1 AND direction = 'in' AND state = 'offered'",
                params![transfer_id, part_file, &key[..], now()],
            )
            .map_err(db("accepting a transfer"))?;
        if n == 0 {
            return Err(Error::NotFound {
                what: "transfer waiting for a decision",
            });
        }
        Ok(())
    }

    /// The part file name and key of an incoming transfer, if it has one.
    pub fn part_key(
        &self,
        transfer_id: &[u8; 16],
    ) -> Result<Option<(String, Zeroizing<[u8; 32]>)>> {
        let row: Option<(Option<String>, Option<Vec<u8>>)> = self
            .conn
            .query_row(
                "SELECT part_file, part_key FROM file_transfers WHERE transfer_id = ?1",
                [transfer_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db("reading a part key"))?;
        let Some((Some(file), Some(key))) = row else {
            return Ok(None);
        };
        let key = Zeroizing::new(key);
        let arr: [u8; 32] = key.as_slice().try_into().map_err(|_| Error::Invalid {
            what: "part key",
            reason: "not 32 bytes".into(),
        })?;
        Ok(Some((file, Zeroizing::new(arr))))
    }

    /// Forget the part file and its key (after the file was saved or dropped).
    pub fn clear_part(&self, transfer_id: &[u8; 16]) -> Result<()> {
        self.conn
            .execute(
                "UPDATE file_transfers SET part_file = NULL, part_key = NULL, updated_at = ?2 \
                 WHERE transfer_id = ?1",
                params![transfer_id, now()],
            )
            .map_err(db("clearing a part file"))?;
        Ok(())
    }

    /// Record where an incoming file was saved.
    pub fn set_saved_path(&self, transfer_id: &[u8; 16], path: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE file_transfers SET local_path = ?2, updated_at = ?3 WHERE transfer_id = ?1",
                params![transfer_id, path, now()],
            )
            .map_err(db("recording a saved file"))?;
        Ok(())
    }

    /// Persist the advanced send chain and count `chunks` chunk frames of
    /// `transfer_id` as sent, in one transaction (PROTOCOL.md §7.3).
    pub fn record_sent_chunks(
        &mut self,
        session_id: &[u8; 16],
        send: &ChainState,
        transfer_id: &[u8; 16],
        chunks: u64,
    ) -> Result<()> {
        let tx = self.conn.transaction().map_err(db("recording chunks"))?;
        save_chain_tx(&tx, session_id, send, "send")?;
        tx.execute(
            "UPDATE file_transfers SET chunks_sent = chunks_sent + ?2, \
             state = CASE WHEN state = 'offered' THEN 'active' ELSE state END \
             WHERE transfer_id = ?1",
            params![transfer_id, chunks],
        )
        .map_err(db("recording chunks"))?;
        tx.commit().map_err(db("recording chunks"))
    }

    /// Count `chunks` chunk frames of `transfer_id` as sent on lane streams,
    /// before they are written (they do not advance the session chain).
    pub fn add_chunks_sent(&self, transfer_id: &[u8; 16], chunks: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE file_transfers SET chunks_sent = chunks_sent + ?2 WHERE transfer_id = ?1",
                params![transfer_id, chunks],
            )
            .map_err(db("recording chunks"))?;
        Ok(())
    }

    /// Take back `chunks` of a lane writer's advance count that it did not
    /// use (never below zero).
    pub fn return_chunks_sent(&self, transfer_id: &[u8; 16], chunks: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE file_transfers SET chunks_sent = MAX(chunks_sent - ?2, 0) \
                 WHERE transfer_id = ?1",
                params![transfer_id, chunks],
            )
            .map_err(db("recording chunks"))?;
        Ok(())
    }

    /// Forget a transfer; returns whether it existed.
    pub fn delete_transfer(&self, transfer_id: &[u8; 16]) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "DELETE FROM file_transfers WHERE transfer_id = ?1",
                [transfer_id],
            )
            .map_err(db("deleting a transfer"))?;
        Ok(n > 0)
    }
}
