//! The identity lifecycle as the CLI calls it: `init`, `status`, `passwd`,
//! `export-identity`, `import-identity`. The CLI only gathers arguments and
//! passphrases (see [`super::passphrase`]) and prints the results.

use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Serialize;

use super::backup;
use super::{Error, KdfParams, OwnIdentity, Result, Store};

/// What `umbra status` reports (serializable for `--json`; nothing secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    /// The data directory.
    pub data_dir: PathBuf,
    /// Our `@name`, if an identity exists.
    pub username: Option<String>,
    /// Our fingerprint, if an identity exists.
    pub fingerprint: Option<String>,
    /// Number of contacts.
    pub contacts: usize,
    /// Database schema version.
    pub schema_version: u32,
    /// Argon2id parameters of the store key.
    pub kdf: KdfParams,
    /// Where the onion service keys live.
    pub hs_dir: PathBuf,
}

/// Create a store in `dir`, store `identity` in it and prepare the onion service key
/// directory. Fails with [`Error::AlreadyInitialized`] if a store with an identity
/// exists. A store left without an identity by an interrupted `init` (same
/// passphrase) is completed instead.
pub fn init(
    dir: &Path,
    passphrase: &SecretString,
    params: KdfParams,
    identity: &OwnIdentity,
) -> Result<Store> {
    let store = match Store::create(dir, passphrase, params) {
        Ok(s) => s,
        Err(exists @ Error::AlreadyInitialized { .. }) => match Store::open(dir, passphrase) {
            Ok(s) if s.identity()?.is_none() => s,
            _ => return Err(exists),
        },
        Err(e) => return Err(e),
    };
    store.set_identity(identity)?;
    store.dir().hs_dir()?;
    Ok(store)
}

/// Summarize an unlocked store.
pub fn status(store: &Store) -> Result<StoreStatus> {
    let id = store.identity()?;
    Ok(StoreStatus {
        data_dir: store.data_dir().to_path_buf(),
        username: id.as_ref().map(|i| i.username.clone()),
        fingerprint: id.as_ref().map(|i| i.fingerprint.clone()),
        contacts: store.contacts()?.len(),
        schema_version: store.schema_version()?,
        kdf: store.kdf_params(),
        hs_dir: store.data_dir().join(super::datadir::HS_DIR),
    })
}

/// Change the store passphrase (`umbra passwd`).
pub fn change_passphrase(dir: &Path, old: &SecretString, new: &SecretString) -> Result<()> {
    let mut store = Store::open(dir, old)?;
    store.rekey(new, None)?;
    store.close()
}

/// Write a backup of the identity and contacts to `file` (`umbra export-identity`).
pub fn export_identity(
    store: &Store,
    file: &Path,
    backup_passphrase: &SecretString,
    params: KdfParams,
) -> Result<()> {
    let b = store.export_backup()?;
    backup::write_file(file, &b, backup_passphrase, params)
}

/// Restore a backup (`umbra import-identity`): into the existing store in `dir` if
/// there is one (same identity only), else into a new store created with
/// `store_passphrase` and `params`. Returns the store, the fingerprint and how many
/// contacts were added.
pub fn import_identity(
    dir: &Path,
    store_passphrase: &SecretString,
    params: KdfParams,
    file: &Path,
    backup_passphrase: &SecretString,
) -> Result<(Store, String, usize)> {
    // Decrypt first: a wrong backup passphrase must not leave a new empty store behind.
    let b = backup::read_file(file, backup_passphrase)?;
    let mut store = match Store::open(dir, store_passphrase) {
        Ok(s) => s,
        Err(Error::NotInitialized { .. }) => Store::create(dir, store_passphrase, params)?,
        Err(e) => return Err(e),
    };
    let added = store.import_backup(&b)?;
    store.dir().hs_dir()?;
    let fpr = super::normalize_fingerprint(&b.identity.fingerprint)?;
    Ok((store, fpr, added))
}

/// Resolve the data directory and the passphrase the usual way (flag, environment,
/// prompt) and unlock the store: what every CLI command that needs the store does.
///
/// Fails with [`Error::NotInitialized`] before asking for a passphrase if there is no
/// store.
pub fn unlock(data_dir: Option<&Path>, passphrase_file: Option<&Path>) -> Result<Store> {
    let dir = super::datadir::resolve(data_dir)?;
    let checked = super::DataDir::open(&dir)?;
    if !checked.db_path().exists() {
        return Err(Error::NotInitialized { dir });
    }
    let pass =
        super::passphrase::PassphraseSource::choose(passphrase_file).read("Umbra passphrase: ")?;
    Store::open(&dir, &pass)
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn interrupted_init_is_completed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let pass = SecretString::from("p".to_owned());
        // Crash between creating the store and storing the identity.
        Store::create(&dir, &pass, KdfParams::insecure_for_tests())
            .unwrap()
            .close()
            .unwrap();
        let id = OwnIdentity {
            username: "@me".into(),
            fingerprint: "B".repeat(40),
            secret_cert: zeroize::Zeroizing::new(vec![1]),
            created_at: 0,
        };
        let other = SecretString::from("q".to_owned());
        let e = init(&dir, &other, KdfParams::insecure_for_tests(), &id).unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::AlreadyExists);
        let s = init(&dir, &pass, KdfParams::insecure_for_tests(), &id).unwrap();
        assert_eq!(s.identity().unwrap().unwrap().fingerprint, "B".repeat(40));
    }

    #[test]
    fn unlock_with_passphrase_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let pwfile = tmp.path().join("pw");
        std::fs::write(&pwfile, "file pass\n").unwrap();
        let e = unlock(Some(&dir), Some(&pwfile)).unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::NotInitialized);
        let id = OwnIdentity {
            username: "@me".into(),
            fingerprint: "A".repeat(40),
            secret_cert: zeroize::Zeroizing::new(vec![1]),
            created_at: 0,
        };
        let pass = SecretString::from("file pass".to_owned());
        init(&dir, &pass, KdfParams::insecure_for_tests(), &id)
            .unwrap()
            .close()
            .unwrap();
        let e = init(&dir, &pass, KdfParams::insecure_for_tests(), &id).unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::AlreadyExists);
        let s = unlock(Some(&dir), Some(&pwfile)).unwrap();
        let st = status(&s).unwrap();
        assert_eq!(st.username.as_deref(), Some("@me"));
        assert!(st.hs_dir.is_dir());
        let json = serde_json::to_string(&st).unwrap();
        assert!(json.contains("\"fingerprint\":\"AAAA"), "{json}");
        std::fs::write(&pwfile, "other\n").unwrap();
        let e = unlock(Some(&dir), Some(&pwfile)).unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::WrongPassphrase);
    }
}
