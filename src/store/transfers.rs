//! File transfers: metadata and which chunks are done, so transfers resume after a restart.

use rusqlite::{OptionalExtension, Row, params};

use super::err::db;
use super::{
    ChunkSet, ContactId, Error, FileTransfer, NewTransfer, Result, Store, TransferState, now,
};

const COLUMNS: &str = "transfer_id, contact_id, direction, name, size, sha256, chunk_size, \
                       chunks_have, local_path, state, created_at, updated_at";

fn row_to_transfer(r: &Row<'_>) -> rusqlite::Result<FileTransfer> {
    let have_bytes = r.get_ref(7)?.as_blob()?;
    let have = ChunkSet::from_bytes(have_bytes).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            7,
            rusqlite::types::Type::Blob,
            "malformed chunk ranges".into(),
        )
    })?;
    Ok(FileTransfer {
        transfer_id: r.get(0)?,
        contact: ContactId(r.get(1)?),
        direction: r.get(2)?,
        name: r.get(3)?,
        size: r.get(4)?,
        sha256: r.get(5)?,
        chunk_size: r.get(6)?,
        have,
        local_path: r.get(8)?,
        state: r.get(9)?,
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
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
            &format!("INSERT INTO file_transfers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)"),
            params![
                t.transfer_id,
                t.contact.0,
                t.direction,
                t.name,
                t.size,
                t.sha256,
                t.chunk_size,
                ChunkSet::new().to_bytes(),
                t.local_path,
                TransferState::Offered,
                ts
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

    /// All transfers with a contact, oldest first.
    pub fn transfers(&self, contact: ContactId) -> Result<Vec<FileTransfer>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {COLUMNS} FROM file_transfers WHERE contact_id = ?1 ORDER BY created_at, rowid"
            ))
            .map_err(db("listing transfers"))?;
        let rows = st
            .query_map([contact.0], row_to_transfer)
            .map_err(db("listing transfers"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db("listing transfers"))
    }

    /// Record verified chunks (one transaction) and return the updated set.
    pub fn mark_chunks_done(
        &mut self,
        transfer_id: &[u8; 16],
        indexes: &[u64],
    ) -> Result<ChunkSet> {
        let tx = self.conn.transaction().map_err(db("recording chunks"))?;
        let t = tx
            .query_row(
                &format!("SELECT {COLUMNS} FROM file_transfers WHERE transfer_id = ?1"),
                [transfer_id],
                row_to_transfer,
            )
            .optional()
            .map_err(db("recording chunks"))?
            .ok_or(Error::NotFound { what: "transfer" })?;
        let count = t.chunk_count();
        let mut have = t.have;
        for &i in indexes {
            if i >= count {
                return Err(Error::Invalid {
                    what: "chunk index",
                    reason: format!("{i} is past the last chunk ({count} chunks)"),
                });
            }
            have.insert(i);
        }
        tx.execute(
            "UPDATE file_transfers SET chunks_have = ?2, updated_at = ?3 WHERE transfer_id = ?1",
            params![transfer_id, have.to_bytes(), now()],
        )
        .map_err(db("recording chunks"))?;
        tx.commit().map_err(db("recording chunks"))?;
        Ok(have)
    }

    /// Set a transfer's state.
    pub fn set_transfer_state(&self, transfer_id: &[u8; 16], state: TransferState) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE file_transfers SET state = ?2, updated_at = ?3 WHERE transfer_id = ?1",
                params![transfer_id, state, now()],
            )
            .map_err(db("updating a transfer"))?;
        if n == 0 {
            return Err(Error::NotFound { what: "transfer" });
        }
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
