//! The onion service's identity key (v7): the secret from which the user's
//! `.onion` address derives, kept here (encrypted with the rest of the
//! store) instead of in Arti's plain on-disk keystore. The daemon hands it
//! to Arti in memory at start (`daemon::onion_service_key`).

use rusqlite::{OptionalExtension, params};

use super::err::db;
use super::{Error, OnionKeyRecord, Result, Store, secret_column};

/// Length of the stored secret (an expanded Ed25519 secret key).
pub const ONION_KEY_LEN: usize = 64;

impl Store {
    /// The onion service identity key, if one has been stored.
    pub fn onion_key(&self) -> Result<Option<OnionKeyRecord>> {
        self.conn
            .query_row(
                "SELECT secret, origin, created_at FROM onion_key WHERE id = 1",
                [],
                |r| {
                    Ok(OnionKeyRecord {
                        secret: secret_column(r, 0)?,
                        origin: r.get(1)?,
                        created_at: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(db("reading the onion service key"))
    }

    /// Store the onion service identity key. Fails with [`Error::Conflict`]
    /// if one is already stored: the key *is* the user's address, so it is
    /// never silently replaced.
    pub fn set_onion_key(&self, key: &OnionKeyRecord) -> Result<()> {
        if key.secret.len() != ONION_KEY_LEN {
            return Err(Error::Invalid {
                what: "onion service key",
                reason: format!("must be {ONION_KEY_LEN} bytes"),
            });
        }
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO onion_key (id, secret, origin, created_at)
                 VALUES (1, ?1, ?2, ?3)",
                params![&key.secret[..], key.origin, key.created_at],
            )
            .map_err(db("storing the onion service key"))?;
        if n == 0 {
            return Err(Error::Conflict {
                what: "onion service key",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use zeroize::Zeroizing;

    use super::*;
    use crate::store::{KdfParams, OnionKeyOrigin};

    #[test]
    fn stored_once_read_back_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("d");
        let pass = secrecy::SecretString::from("pw");
        let s = Store::create(&data, &pass, KdfParams::insecure_for_tests()).unwrap();
        assert!(s.onion_key().unwrap().is_none());
        let rec = OnionKeyRecord {
            secret: Zeroizing::new(vec![7; ONION_KEY_LEN]),
            origin: OnionKeyOrigin::Migrated,
            created_at: 42,
        };
        s.set_onion_key(&rec).unwrap();
        let other = OnionKeyRecord {
            secret: Zeroizing::new(vec![8; ONION_KEY_LEN]),
            origin: OnionKeyOrigin::Generated,
            created_at: 43,
        };
        assert!(matches!(
            s.set_onion_key(&other),
            Err(Error::Conflict { .. })
        ));
        let short = OnionKeyRecord {
            secret: Zeroizing::new(vec![8; 32]),
            origin: OnionKeyOrigin::Generated,
            created_at: 43,
        };
        assert!(matches!(
            s.set_onion_key(&short),
            Err(Error::Invalid { .. })
        ));
        let back = s.onion_key().unwrap().unwrap();
        assert_eq!(&back.secret[..], &rec.secret[..]);
        assert_eq!(back.origin, OnionKeyOrigin::Migrated);
        assert_eq!(back.created_at, 42);
        assert!(!format!("{back:?}").contains("7, 7"));
    }
}
