//! The onion service's identity key (`hsid`), held outside Arti's on-disk
//! keystore.
//!
//! Arti's native keystore writes every onion-service key as a plain
//! OpenSSH-format file under `<state>/keystore/`. The onion address is the
//! public half of the identity key, so that file tells anyone holding the
//! disk who the user is on Tor, and lets them run the service. With
//! [`ServiceKey::InMemory`](super::ServiceKey::InMemory) the key comes from
//! the caller (Umbra's encrypted store) and Arti keeps it, and every key it
//! derives from it, in an in-memory keystore only.
//!
//! [`take_keystore_key`] moves a key that an older version left in the
//! native keystore out of it (the caller stores it, then calls
//! [`remove_keystore`]), so the address survives the change.

use std::path::{Path, PathBuf};

use fs_mistrust::Mistrust;
use safelog::DisplayRedacted;
use tor_hscrypto::pk::{HsIdKey, HsIdKeypair};
use tor_hsservice::{HsIdKeypairSpecifier, HsNickname};
use tor_keymgr::{ArtiNativeKeystore, KeyMgrBuilder};
use tor_llcrypto::pk::ed25519;
use zeroize::Zeroizing;

use super::ArtiOptions;
use crate::{Error, PeerAddress};

/// Length of [`OnionServiceKey::secret_bytes`].
pub const SERVICE_KEY_LEN: usize = 64;

/// An onion service identity key: an expanded Ed25519 secret key (scalar
/// followed by hash prefix, 64 bytes, Arti's `HsIdKeypair`). Zeroized on
/// drop; `Debug` prints nothing about it, not even the address.
pub struct OnionServiceKey {
    secret: Zeroizing<[u8; SERVICE_KEY_LEN]>,
}

impl std::fmt::Debug for OnionServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnionServiceKey([scrubbed])")
    }
}

impl OnionServiceKey {
    /// A fresh key from the operating system's random generator.
    pub fn generate() -> Result<Self, Error> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut seed[..]).map_err(|e| Error::Config {
            reason: format!("no randomness for the onion service key: {e}"),
        })?;
        let kp = ed25519::Keypair::from_bytes(&seed);
        Ok(Self::from_expanded(&ed25519::ExpandedKeypair::from(&kp)))
    }

    /// A key from its 64 secret bytes, as given by
    /// [`OnionServiceKey::secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, Error> {
        let bad = || Error::Config {
            reason: "the stored onion service key is malformed".into(),
        };
        let arr: &[u8; SERVICE_KEY_LEN] = bytes.try_into().map_err(|_| bad())?;
        // Validate (and normalise) through Arti's own parser.
        let kp = ed25519::ExpandedKeypair::from_secret_key_bytes(*arr).ok_or_else(bad)?;
        Ok(Self::from_expanded(&kp))
    }

    fn from_expanded(kp: &ed25519::ExpandedKeypair) -> Self {
        let mut secret = Zeroizing::new([0u8; SERVICE_KEY_LEN]);
        let mut bytes = kp.to_secret_key_bytes();
        secret.copy_from_slice(&bytes);
        zeroize::Zeroize::zeroize(&mut bytes);
        Self { secret }
    }

    /// The 64 secret bytes, for storing (encrypted!).
    pub fn secret_bytes(&self) -> &[u8; SERVICE_KEY_LEN] {
        &self.secret
    }

    /// Arti's form of the key.
    pub(crate) fn to_hsid_keypair(&self) -> HsIdKeypair {
        let kp = ed25519::ExpandedKeypair::from_secret_key_bytes(*self.secret)
            // Every constructor went through `from_secret_key_bytes` or
            // `to_secret_key_bytes`, which round-trip.
            .unwrap_or_else(|| unreachable!("validated at construction"));
        HsIdKeypair::from(kp)
    }

    /// The `.onion` address this key serves.
    pub fn onion_address(&self) -> PeerAddress {
        let id = HsIdKey::from(&self.to_hsid_keypair()).id();
        PeerAddress::new(id.display_unredacted().to_string())
    }

    /// The public half (32 bytes): the onion address is its base32 encoding
    /// plus a checksum. Used by tests that scan a data directory.
    pub fn public_bytes(&self) -> [u8; 32] {
        *HsIdKey::from(&self.to_hsid_keypair()).id().as_ref()
    }
}

/// Where Arti's native keystore lives for a data directory.
pub(crate) fn keystore_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("arti").join("state").join("keystore")
}

/// Read the identity key of the onion service (`opts.nickname`) from Arti's
/// native keystore under `<opts.data_dir>/arti/state/keystore/`, if there is
/// one, with the permission checks Arti would apply. Nothing is created or
/// removed; see [`remove_keystore`].
pub fn take_keystore_key(opts: &ArtiOptions) -> Result<Option<OnionServiceKey>, Error> {
    let dir = keystore_dir(&opts.data_dir);
    if !dir.exists() {
        return Ok(None);
    }
    let nick: HsNickname = opts.nickname.parse().map_err(|e| Error::Config {
        reason: format!("invalid onion service nickname: {e}"),
    })?;
    let config = opts.client_config()?;
    let mistrust: &Mistrust = config.fs_mistrust();
    let keystore_err = |e: tor_keymgr::Error| Error::ServiceKey {
        action: "read the onion service key from Arti's old keystore",
        source: Box::new(e),
    };
    let store = ArtiNativeKeystore::from_path_and_mistrust(&dir, mistrust).map_err(keystore_err)?;
    let keymgr = KeyMgrBuilder::default()
        .primary_store(Box::new(store))
        .build()
        .map_err(|e| Error::ServiceKey {
            action: "open Arti's old keystore",
            source: Box::new(e),
        })?;
    let kp: Option<HsIdKeypair> = keymgr
        .get(&HsIdKeypairSpecifier::new(nick))
        .map_err(keystore_err)?;
    Ok(kp.map(|kp| {
        let expanded: ed25519::ExpandedKeypair = kp.into();
        OnionServiceKey::from_expanded(&expanded)
    }))
}

/// Delete Arti's native keystore under `<data_dir>/arti/state/keystore/`
/// (every onion-service key in it: identity, blinded identities, descriptor
/// signing and introduction point keys). Call only once its identity key is
/// stored elsewhere. Returns whether there was one.
///
/// This unlinks the files; their blocks may survive on the disk (file
/// system journal, flash wear levelling) until overwritten.
pub fn remove_keystore(data_dir: &Path) -> Result<bool, Error> {
    let dir = keystore_dir(data_dir);
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::ServiceKey {
            action: "delete Arti's old onion service keystore",
            source: Box::new(e),
        }),
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_derives_a_v3_address() {
        let k = OnionServiceKey::generate().unwrap();
        let again = OnionServiceKey::from_secret_bytes(k.secret_bytes()).unwrap();
        assert_eq!(k.secret_bytes(), again.secret_bytes());
        let addr = k.onion_address();
        assert_eq!(addr, again.onion_address());
        assert!(addr.is_onion());
        assert_eq!(addr.as_str().len(), 56 + ".onion".len());
        assert_ne!(
            k.onion_address(),
            OnionServiceKey::generate().unwrap().onion_address()
        );
        assert!(OnionServiceKey::from_secret_bytes(&[0u8; 63]).is_err());
        assert_eq!(format!("{k:?}"), "OnionServiceKey([scrubbed])");
    }

    #[test]
    fn no_keystore_means_no_key_and_nothing_created() {
        let d = tempfile::tempdir().unwrap();
        let mut o = ArtiOptions::new(super::super::ArtiNetwork::Tor, d.path());
        o.nickname = "umbra".into();
        assert!(take_keystore_key(&o).unwrap().is_none());
        assert!(!d.path().join("arti").exists());
        assert!(!remove_keystore(d.path()).unwrap());
    }
}
