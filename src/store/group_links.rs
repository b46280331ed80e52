//! Invite link secrets of the groups we own (PROTOCOL.md §20.7.2). The log
//! registers each link (OpenLink: role, uses, expiry, revocation); only its
//! 32-byte secret lives here, in the encrypted store, never in the log.
//! A revoked link's secret is deleted.

use rusqlite::{OptionalExtension, params};
use zeroize::Zeroizing;

use super::err::db;
use super::{Result, Store, now};

impl Store {
    /// Keeps the secret of link `link_id` of `group_id` (a group we hold).
    pub fn put_group_link(
        &self,
        group_id: &[u8; 32],
        link_id: &[u8; 16],
        secret: &[u8; 32],
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO group_links (group_id, link_id, secret, created_at)
                 VALUES (?1, ?2, ?3, ?4)",
                params![&group_id[..], &link_id[..], &secret[..], now()],
            )
            .map_err(db("storing an invite link secret"))?;
        Ok(())
    }

    /// The secret of link `link_id` of `group_id`, if we keep it.
    pub fn group_link_secret(
        &self,
        group_id: &[u8; 32],
        link_id: &[u8; 16],
    ) -> Result<Option<Zeroizing<[u8; 32]>>> {
        let found: Option<Zeroizing<Vec<u8>>> = self
            .conn
            .query_row(
                "SELECT secret FROM group_links WHERE group_id = ?1 AND link_id = ?2",
                params![&group_id[..], &link_id[..]],
                |r| r.get::<_, Vec<u8>>(0).map(Zeroizing::new),
            )
            .optional()
            .map_err(db("reading an invite link secret"))?;
        Ok(found.and_then(|v| {
            let mut out = Zeroizing::new([0u8; 32]);
            (v.len() == 32).then(|| {
                out.copy_from_slice(&v);
                out
            })
        }))
    }

    /// Forgets the secret of a link (revoked). Returns whether it was kept.
    pub fn delete_group_link(&self, group_id: &[u8; 32], link_id: &[u8; 16]) -> Result<bool> {
        let n = self
            .conn
            .execute(
                "DELETE FROM group_links WHERE group_id = ?1 AND link_id = ?2",
                params![&group_id[..], &link_id[..]],
            )
            .map_err(db("deleting an invite link secret"))?;
        Ok(n > 0)
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use crate::store::GroupWrite;
    use crate::store::test_support::{group_record, temp_store};

    #[test]
    fn secrets_are_kept_per_link_and_deleted_on_revoke() {
        let (_dir, mut s) = temp_store();
        let g = [7u8; 32];
        // A secret needs its group (foreign key).
        assert!(s.put_group_link(&g, &[1; 16], &[9; 32]).is_err());
        let rec = group_record(7);
        s.group_write(
            &g,
            &GroupWrite {
                group: Some(rec),
                ..GroupWrite::default()
            },
        )
        .unwrap();
        s.put_group_link(&g, &[1; 16], &[9; 32]).unwrap();
        // One secret per link id.
        assert!(s.put_group_link(&g, &[1; 16], &[8; 32]).is_err());
        assert_eq!(
            *s.group_link_secret(&g, &[1; 16]).unwrap().unwrap(),
            [9; 32]
        );
        assert!(s.group_link_secret(&g, &[2; 16]).unwrap().is_none());
        assert!(s.delete_group_link(&g, &[1; 16]).unwrap());
        assert!(!s.delete_group_link(&g, &[1; 16]).unwrap());
        assert!(s.group_link_secret(&g, &[1; 16]).unwrap().is_none());
    }
}
