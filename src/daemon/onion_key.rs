//! The onion service's identity key: kept in the encrypted store, handed to
//! Arti in memory (`ServiceKey::InMemory`), never written to Arti's plain
//! on-disk keystore.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::DaemonError;
use crate::store::{OnionKeyOrigin, OnionKeyRecord, Store};
use crate::transport::arti::{
    ArtiOptions, OnionServiceKey, ServiceKey, remove_keystore_dir, take_keystore_key,
};

/// What [`onion_service_key`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnionKeySource {
    /// The store already held the key.
    Stored,
    /// Moved from Arti's on-disk keystore (an earlier version's data
    /// directory) into the store; the keystore was then deleted. The
    /// address is unchanged.
    Migrated,
    /// Generated and stored (first start).
    Generated,
}

/// The onion service identity key of the store's user, and where it came
/// from:
///
/// 1. the store's key, if it has one;
/// 2. else the key an earlier version left in Arti's keystore under
///    `<data_dir>/arti/state/keystore/` (`opts.nickname`), stored first
///    and then the whole keystore deleted, so the address does not change;
/// 3. else a new key, stored.
///
/// In every case Arti's on-disk keystore is deleted once the key is safely in
/// the store (committed): it holds nothing Umbra reads any more, and every
/// file in it (identity, blinded identity, descriptor signing and
/// introduction point keys) would identify the user.
pub fn onion_service_key(
    store: &Store,
    opts: &ArtiOptions,
) -> Result<(OnionServiceKey, OnionKeySource), DaemonError> {
    let (key, source) = match store.onion_key()? {
        Some(rec) => (
            OnionServiceKey::from_secret_bytes(&rec.secret)?,
            OnionKeySource::Stored,
        ),
        None => {
            let (key, origin, source) = match take_keystore_key(opts)? {
                Some(k) => (k, OnionKeyOrigin::Migrated, OnionKeySource::Migrated),
                None => (
                    OnionServiceKey::generate()?,
                    OnionKeyOrigin::Generated,
                    OnionKeySource::Generated,
                ),
            };
            store.set_onion_key(&OnionKeyRecord {
                secret: Zeroizing::new(key.secret_bytes().to_vec()),
                origin,
                created_at: crate::time::now_secs(),
            })?;
            (key, source)
        }
    };
    if remove_keystore_dir(&opts.data_dir)? {
        tracing::info!(
            "deleted Arti's on-disk keystore; the onion service key is in the encrypted store"
        );
    }
    Ok((key, source))
}

/// Set `opts` to hand the store's onion service key to Arti in memory
/// (see [`onion_service_key`]).
pub fn use_stored_onion_key(
    store: &Store,
    opts: &mut ArtiOptions,
) -> Result<OnionKeySource, DaemonError> {
    let (key, source) = onion_service_key(store, opts)?;
    opts.service_key = ServiceKey::InMemory(Arc::new(key));
    Ok(source)
}
