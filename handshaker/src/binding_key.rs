//! The Handshaker's binding key (PROTOCOL.md §17.11): created at first start,
//! kept in `binding.key` in the data directory (owner-only, hex seed), and
//! never changed by the server itself. Clients pin its public half; an
//! operator who loses the file makes every client refuse the new key until
//! its user confirms it, so it belongs in the backups with the database.

use std::io::Write;
use std::path::{Path, PathBuf};

use umbra_proto::handshaker_api::binding::BindingSigner;
use zeroize::Zeroizing;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "binding.key";

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// Reading or writing the file failed.
    #[error("cannot use the binding key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not hold a key.
    #[error("the binding key file {path} is damaged (expected 64 hex digits)")]
    Damaged {
        /// The file.
        path: PathBuf,
    },
}

/// Loads the key from `data_dir`, creating it (owner-only) at first start.
pub fn load_or_create(data_dir: &Path) -> Result<BindingSigner, KeyFileError> {
    let path = data_dir.join(KEY_FILE);
    let io = |source| KeyFileError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let seed = Zeroizing::new(
                hex::decode(text.trim())
                    .map_err(|_| KeyFileError::Damaged { path: path.clone() })?,
            );
            BindingSigner::from_seed(&seed)
                .map_err(|_| KeyFileError::Damaged { path: path.clone() })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let signer = BindingSigner::generate();
            let text = Zeroizing::new(format!("{}\n", hex::encode(signer.seed().as_ref())));
            // Written beside the final name, then renamed: a crash leaves
            // either no key or a whole one.
            let tmp = data_dir.join(format!("{KEY_FILE}.tmp"));
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts.open(&tmp).map_err(io)?;
            f.write_all(text.as_bytes()).map_err(io)?;
            f.sync_all().map_err(io)?;
            drop(f);
            std::fs::rename(&tmp, &path).map_err(io)?;
            tracing::info!("created a new binding key");
            Ok(signer)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn created_once_then_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path()).unwrap();
        let b = load_or_create(dir.path()).unwrap();
        assert_eq!(a.public(), b.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "owner-only");
        }
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(KEY_FILE), "not hex\n").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(KeyFileError::Damaged { .. })
        ));
        std::fs::write(dir.path().join(KEY_FILE), "abcd\n").unwrap();
        assert!(matches!(
            load_or_create(dir.path()),
            Err(KeyFileError::Damaged { .. })
        ));
    }
}
