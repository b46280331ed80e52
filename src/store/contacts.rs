//! Contacts: the people we exchange messages with, and their pinned certs.

use rusqlite::{OptionalExtension, Row, params};

use super::err::db;
use super::{
    Contact, ContactId, ContactState, Error, NewContact, Result, Store, normalize_fingerprint, now,
    validate_username,
};

const COLUMNS: &str =
    "id, username, fingerprint, public_cert, onion_address, state, verified, last_seen, created_at";

fn row_to_contact(r: &Row<'_>) -> rusqlite::Result<Contact> {
    Ok(Contact {
        id: ContactId(r.get(0)?),
        username: r.get(1)?,
        fingerprint: r.get(2)?,
        public_cert: r.get(3)?,
        onion_address: r.get(4)?,
        state: r.get(5)?,
        verified: r.get(6)?,
        last_seen: r.get(7)?,
        created_at: r.get(8)?,
    })
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

impl Store {
    /// Add a contact. [`Error::Conflict`] if the username or fingerprint is already known.
    pub fn add_contact(&self, c: &NewContact) -> Result<ContactId> {
        validate_username(&c.username)?;
        let fpr = normalize_fingerprint(&c.fingerprint)?;
        let res = self.conn.execute(
            "INSERT INTO contacts (username, fingerprint, public_cert, onion_address, state, verified, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![c.username, fpr, c.public_cert, c.onion_address, c.state, c.verified, now()],
        );
        match res {
            Ok(_) => Ok(ContactId(self.conn.last_insert_rowid())),
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict { what: "contact" }),
            Err(e) => Err(db("adding a contact")(e)),
        }
    }

    /// A contact by id.
    pub fn contact(&self, id: ContactId) -> Result<Option<Contact>> {
        self.contact_where("id = ?1", &id.0)
    }

    /// A contact by username.
    pub fn contact_by_username(&self, username: &str) -> Result<Option<Contact>> {
        self.contact_where("username = ?1", &username)
    }

    /// A contact by fingerprint (any case).
    pub fn contact_by_fingerprint(&self, fingerprint: &str) -> Result<Option<Contact>> {
        let fpr = normalize_fingerprint(fingerprint)?;
        self.contact_where("fingerprint = ?1", &fpr)
    }

    fn contact_where(&self, cond: &str, arg: &dyn rusqlite::ToSql) -> Result<Option<Contact>> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM contacts WHERE {cond}"),
                [arg],
                row_to_contact,
            )
            .optional()
            .map_err(db("reading a contact"))
    }

    /// All contacts, by username.
    pub fn contacts(&self) -> Result<Vec<Contact>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM contacts ORDER BY username"))
            .map_err(db("listing contacts"))?;
        let rows = st
            .query_map([], row_to_contact)
            .map_err(db("listing contacts"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(db("listing contacts"))
    }

    /// Overwrite a contact's mutable fields (everything but id and created_at).
    pub fn update_contact(&self, c: &Contact) -> Result<()> {
        validate_username(&c.username)?;
        let fpr = normalize_fingerprint(&c.fingerprint)?;
        let res = self.conn.execute(
            "UPDATE contacts SET username = ?2, fingerprint = ?3, public_cert = ?4, onion_address = ?5,
                 state = ?6, verified = ?7, last_seen = ?8 WHERE id = ?1",
            params![c.id.0, c.username, fpr, c.public_cert, c.onion_address, c.state, c.verified, c.last_seen],
        );
        match res {
            Ok(0) => Err(Error::NotFound { what: "contact" }),
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(Error::Conflict { what: "contact" }),
            Err(e) => Err(db("updating a contact")(e)),
        }
    }

    /// Set a contact's relationship state.
    pub fn set_contact_state(&self, id: ContactId, state: ContactState) -> Result<()> {
        self.update_one(
            "UPDATE contacts SET state = ?2 WHERE id = ?1",
            params![id.0, state],
        )
    }

    /// Mark a contact's fingerprint as verified (or not).
    pub fn set_contact_verified(&self, id: ContactId, verified: bool) -> Result<()> {
        self.update_one(
            "UPDATE contacts SET verified = ?2 WHERE id = ?1",
            params![id.0, verified],
        )
    }

    /// Record when a contact was last seen online.
    pub fn set_contact_last_seen(&self, id: ContactId, at: u64) -> Result<()> {
        self.update_one(
            "UPDATE contacts SET last_seen = ?2 WHERE id = ?1",
            params![id.0, at],
        )
    }

    fn update_one(&self, sql: &str, p: impl rusqlite::Params) -> Result<()> {
        match self
            .conn
            .execute(sql, p)
            .map_err(db("updating a contact"))?
        {
            0 => Err(Error::NotFound { what: "contact" }),
            _ => Ok(()),
        }
    }

    /// Delete a contact with its sessions (keys wiped first), messages and transfers.
    pub fn delete_contact(&mut self, id: ContactId) -> Result<()> {
        let tx = self.conn.transaction().map_err(db("deleting a contact"))?;
        super::sessions::wipe_sessions(&tx, "contact_id = ?1", &id.0)?;
        let n = tx
            .execute("DELETE FROM contacts WHERE id = ?1", [id.0])
            .map_err(db("deleting a contact"))?;
        if n == 0 {
            return Err(Error::NotFound { what: "contact" });
        }
        tx.commit().map_err(db("deleting a contact"))?;
        self.checkpoint()
    }
}
