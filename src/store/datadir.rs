//! The data directory: where it is, creating it owner-only, and refusing unsafe ones.
//!
//! Resolution order: `--data-dir DIR`, then `UMBRA_HOME`, then `$XDG_DATA_HOME/umbra`,
//! then `~/.local/share/umbra`. Two users (or two test identities) on one machine simply
//! use two data directories.
//!
//! Permission policy (in the spirit of arti's `fs-mistrust`): the data directory must be
//! owned by the current user and not writable by group or others; every ancestor must be
//! owned by us or root and, if group/other-writable, carry the sticky bit (like `/tmp`).
//! Directories we create get mode 0700 and files 0600.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::err::{Error, io};

/// Name of the encrypted database file.
pub const DB_FILE: &str = umbra_control::STORE_FILE;
/// Name of the non-secret KDF header file.
pub const HEADER_FILE: &str = "store.header";
/// Name of the header written during a passphrase change, before it is committed.
pub const NEW_HEADER_FILE: &str = "store.header.new";
/// Directory reserved for the onion service's keys and Arti state.
pub const HS_DIR: &str = "hs";

/// Environment variable naming the data directory.
pub const ENV_HOME: &str = umbra_control::ENV_HOME;

/// A data directory whose ownership and permissions have been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    path: PathBuf,
}

/// Pick the data directory from the CLI flag, the environment, or the XDG default.
pub fn resolve(cli: Option<&Path>) -> Result<PathBuf, Error> {
    resolve_with(cli, |k| std::env::var_os(k))
}

/// [`resolve`] with an explicit environment lookup (for tests).
pub fn resolve_with(
    cli: Option<&Path>,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<PathBuf, Error> {
    if let Some(p) = cli {
        return Ok(p.to_path_buf());
    }
    umbra_control::default_data_dir(env).ok_or_else(|| Error::NotInitialized {
        dir: PathBuf::from("$HOME/.local/share/umbra (HOME is not set)"),
    })
}

fn unsafe_perm(path: &Path, problem: impl Into<String>) -> Error {
    Error::UnsafePermissions {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

impl DataDir {
    /// Create the directory (and missing parents) with mode 0700 if needed, then check it.
    pub fn create(path: &Path) -> Result<DataDir, Error> {
        if !path.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(io("create directory", path))?;
        }
        Self::open(path)
    }

    /// Check an existing directory; [`Error::NotInitialized`] if it does not exist.
    pub fn open(path: &Path) -> Result<DataDir, Error> {
        let meta = match fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotInitialized {
                    dir: path.to_path_buf(),
                });
            }
            Err(e) => return Err(io("inspect", path)(e)),
        };
        if !meta.is_dir() {
            return Err(unsafe_perm(path, "it is not a directory"));
        }
        let canonical = fs::canonicalize(path).map_err(io("resolve", path))?;
        check_dir(&canonical)?;
        Ok(DataDir { path: canonical })
    }

    /// The directory's (canonical) path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's mode if group or others can read or enter it. Not
    /// refused (the files in it are 0600 and the database is encrypted),
    /// but it tells others that Umbra is used and when the files change.
    pub fn visible_to_others(&self) -> Option<u32> {
        let mode = fs::metadata(&self.path).ok()?.permissions().mode() & 0o777;
        (mode & 0o077 != 0).then_some(mode)
    }

    /// Path of the encrypted database.
    pub fn db_path(&self) -> PathBuf {
        self.path.join(DB_FILE)
    }

    /// Path of the KDF header.
    pub fn header_path(&self) -> PathBuf {
        self.path.join(HEADER_FILE)
    }

    /// Path of the uncommitted header of an interrupted passphrase change.
    pub fn new_header_path(&self) -> PathBuf {
        self.path.join(NEW_HEADER_FILE)
    }

    /// Directory for the onion service keys and Arti state, created 0700 on demand.
    pub fn hs_dir(&self) -> Result<PathBuf, Error> {
        let p = self.path.join(HS_DIR);
        if !p.exists() {
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&p)
                .map_err(io("create directory", &p))?;
        }
        check_dir(&p)?;
        Ok(p)
    }

    /// Create an empty owner-only (0600) file; fails if it exists.
    pub(crate) fn create_private_file(&self, name: &str) -> Result<File, Error> {
        let p = self.path.join(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .map_err(io("create", &p))
    }

    /// Durably and atomically replace `name` with `contents` (mode 0600):
    /// write `name.tmp`, fsync it, rename over `name`, fsync the directory.
    pub(crate) fn write_atomic(&self, name: &str, contents: &[u8]) -> Result<(), Error> {
        let target = self.path.join(name);
        let tmp = self.path.join(format!("{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(contents).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        drop(f);
        fs::rename(&tmp, &target).map_err(io("rename into place", &target))?;
        self.sync()
    }

    /// Atomically rename `from` to `to` inside the directory and make it durable.
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        let target = self.path.join(to);
        fs::rename(self.path.join(from), &target).map_err(io("rename into place", &target))?;
        self.sync()
    }

    /// fsync the directory itself, making renames and creations durable.
    pub(crate) fn sync(&self) -> Result<(), Error> {
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(io("sync directory", &self.path))
    }
}

/// Check `dir` (must be canonical) and its ancestors.
fn check_dir(dir: &Path) -> Result<(), Error> {
    let me = rustix::process::geteuid().as_raw();
    let meta = fs::metadata(dir).map_err(io("inspect", dir))?;
    if meta.uid() != me {
        return Err(unsafe_perm(
            dir,
            format!("it is owned by uid {}, not by you (uid {me})", meta.uid()),
        ));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(unsafe_perm(
            dir,
            format!(
                "group or others can write to it (mode {:o})",
                meta.permissions().mode() & 0o777
            ),
        ));
    }
    for anc in dir.ancestors().skip(1) {
        let m = fs::metadata(anc).map_err(io("inspect", anc))?;
        if m.uid() != me && m.uid() != 0 {
            return Err(unsafe_perm(
                anc,
                format!(
                    "a parent directory is owned by another user (uid {})",
                    m.uid()
                ),
            ));
        }
        let mode = m.permissions().mode();
        if mode & 0o022 != 0 && mode & 0o1000 == 0 {
            return Err(unsafe_perm(
                anc,
                format!(
                    "others can write to a parent directory without the sticky bit (mode {:o})",
                    mode & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::ffi::OsString;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn resolution_order() {
        let all = [
            ("UMBRA_HOME", "/u"),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h"),
        ];
        let cli = Path::new("/c");
        assert_eq!(resolve_with(Some(cli), env(&all)).unwrap(), cli);
        assert_eq!(resolve_with(None, env(&all)).unwrap(), Path::new("/u"));
        assert_eq!(
            resolve_with(None, env(&all[1..])).unwrap(),
            Path::new("/x/umbra")
        );
        assert_eq!(
            resolve_with(None, env(&[("XDG_DATA_HOME", "rel"), ("HOME", "/h")])).unwrap(),
            Path::new("/h/.local/share/umbra")
        );
        assert_eq!(
            resolve_with(None, env(&[("UMBRA_HOME", ""), ("HOME", "/h")])).unwrap(),
            Path::new("/h/.local/share/umbra")
        );
        assert!(resolve_with(None, env(&[])).is_err());
    }

    #[test]
    fn creates_owner_only_and_refuses_writable() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("a").join("umbra");
        let d = DataDir::create(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(d.path(), fs::canonicalize(&p).unwrap());
        let hs = d.hs_dir().unwrap();
        assert_eq!(
            fs::metadata(&hs).unwrap().permissions().mode() & 0o777,
            0o700
        );

        d.write_atomic("f", b"hello").unwrap();
        let m = fs::metadata(p.join("f")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);

        for mode in [0o720, 0o702, 0o777] {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
            let e = DataDir::open(&p).unwrap_err();
            assert_eq!(
                e.kind(),
                super::super::ErrorKind::UnsafePermissions,
                "{mode:o}"
            );
            assert!(e.to_string().contains("group or others can write"), "{e}");
        }
        fs::set_permissions(&p, fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(DataDir::open(&p).unwrap().visible_to_others(), None);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(DataDir::open(&p).unwrap().visible_to_others(), Some(0o750));
        DataDir::open(&p).unwrap();

        // A group-writable parent without the sticky bit is refused too.
        fs::set_permissions(tmp.path().join("a"), fs::Permissions::from_mode(0o770)).unwrap();
        let e = DataDir::open(&p).unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::UnsafePermissions);
        fs::set_permissions(tmp.path().join("a"), fs::Permissions::from_mode(0o1770)).unwrap();
        DataDir::open(&p).unwrap();
    }

    #[test]
    fn missing_dir_is_not_initialized() {
        let tmp = tempfile::tempdir().unwrap();
        let e = DataDir::open(&tmp.path().join("nope")).unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::NotInitialized);
    }
}
