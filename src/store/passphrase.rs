//! Where the store passphrase comes from: `--passphrase-file FILE`, the
//! `UMBRA_PASSPHRASE` environment variable, or an interactive prompt without echo.
//!
//! Every passphrase is returned as a [`SecretString`] (zeroized on drop, no `Debug`
//! output). Intermediate buffers (the file contents, the prompt's line) are zeroized too.
//! The environment variable is convenient for scripts and tests but is visible to
//! other processes of the same user (`/proc/PID/environ`); prefer a file or the prompt.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::err::{Error, io};

/// Environment variable holding the passphrase.
pub const ENV_PASSPHRASE: &str = "UMBRA_PASSPHRASE";

/// Environment variable holding a *new* store passphrase (for `umbra passwd` in scripts).
pub const ENV_NEW_PASSPHRASE: &str = "UMBRA_NEW_PASSPHRASE";

/// Environment variable holding the passphrase of an identity backup file (for
/// `umbra export-identity` / `import-identity` in scripts).
pub const ENV_BACKUP_PASSPHRASE: &str = "UMBRA_BACKUP_PASSPHRASE";

/// Largest passphrase file accepted.
const MAX_FILE_LEN: u64 = 64 * 1024;

/// Where a passphrase is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PassphraseSource {
    /// The first line of a file (a trailing `\n` or `\r\n` is removed).
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// An interactive prompt on the terminal, without echo.
    Prompt,
}

impl PassphraseSource {
    /// The usual choice: the file if given, else `UMBRA_PASSPHRASE` if set, else a prompt.
    pub fn choose(passphrase_file: Option<&Path>) -> Self {
        Self::choose_with(passphrase_file, ENV_PASSPHRASE)
    }

    /// Like [`PassphraseSource::choose`] with a different environment variable.
    pub fn choose_with(passphrase_file: Option<&Path>, env_var: &str) -> Self {
        if let Some(f) = passphrase_file {
            PassphraseSource::File(f.to_path_buf())
        } else if std::env::var_os(env_var).is_some() {
            PassphraseSource::Env(env_var.to_owned())
        } else {
            PassphraseSource::Prompt
        }
    }

    /// Read an existing passphrase; `prompt` is shown when asking interactively.
    pub fn read(&self, prompt: &str) -> Result<SecretString, Error> {
        let p = match self {
            PassphraseSource::File(path) => read_file(path)?,
            PassphraseSource::Env(var) => read_env(var)?,
            PassphraseSource::Prompt => read_prompt(prompt)?,
        };
        non_empty(p)
    }

    /// Read a new passphrase. Interactively it is asked twice and must match.
    pub fn read_new(&self, prompt: &str, confirm: &str) -> Result<SecretString, Error> {
        match self {
            PassphraseSource::Prompt => {
                let a = non_empty(read_prompt(prompt)?)?;
                let b = read_prompt(confirm)?;
                if a.expose_secret().as_bytes() != b.expose_secret().as_bytes() {
                    return Err(Error::PassphraseMismatch);
                }
                Ok(a)
            }
            _ => self.read(prompt),
        }
    }
}

fn non_empty(p: SecretString) -> Result<SecretString, Error> {
    if p.expose_secret().is_empty() {
        Err(Error::EmptyPassphrase)
    } else {
        Ok(p)
    }
}

/// Read a passphrase file: its first line, without the line ending.
pub fn read_file(path: &Path) -> Result<SecretString, Error> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(io("open passphrase file", path))?;
    let mut buf = Zeroizing::new(Vec::with_capacity(256));
    f.take(MAX_FILE_LEN)
        .read_to_end(&mut buf)
        .map_err(io("read passphrase file", path))?;
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let mut line = &buf[..line_end];
    if let Some(stripped) = line.strip_suffix(b"\r") {
        line = stripped;
    }
    let s = std::str::from_utf8(line).map_err(|_| Error::NoPassphrase {
        reason: format!("{} is not valid UTF-8", path.display()),
    })?;
    Ok(SecretString::from(s.to_owned()))
}

fn read_env(var: &str) -> Result<SecretString, Error> {
    match std::env::var(var) {
        Ok(v) => Ok(SecretString::from(v)),
        Err(std::env::VarError::NotPresent) => Err(Error::NoPassphrase {
            reason: format!("{var} is not set"),
        }),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::NoPassphrase {
            reason: format!("{var} is not valid UTF-8"),
        }),
    }
}

fn read_prompt(prompt: &str) -> Result<SecretString, Error> {
    if !std::io::stdin().is_terminal() {
        return Err(Error::NoPassphrase {
            reason: "standard input is not a terminal, so it cannot be asked for".into(),
        });
    }
    let line = rpassword::prompt_password(prompt).map_err(|e| Error::NoPassphrase {
        reason: format!("cannot read from the terminal: {e}"),
    })?;
    Ok(SecretString::from(line))
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn file_first_line_without_newline() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("pw");
        for (content, want) in [
            (&b"hunter2\n"[..], "hunter2"),
            (b"hunter2\r\nsecond line\n", "hunter2"),
            (b"  spaced pass  ", "  spaced pass  "),
        ] {
            std::fs::write(&f, content).unwrap();
            let src = PassphraseSource::File(f.clone());
            assert_eq!(src.read("x").unwrap().expose_secret(), want);
        }
        std::fs::write(&f, b"\n").unwrap();
        let e = PassphraseSource::File(f.clone()).read("x").unwrap_err();
        assert!(matches!(e, Error::EmptyPassphrase));
        let e = PassphraseSource::File(tmp.path().join("missing"))
            .read("x")
            .unwrap_err();
        assert_eq!(e.kind(), super::super::ErrorKind::Io);
    }

    #[test]
    fn env_source() {
        // A variable name unique to this test, so parallel tests do not interfere.
        let var = "UMBRA_TEST_PASSPHRASE_ENV_SOURCE";
        assert!(matches!(
            PassphraseSource::Env(var.into()).read("x").unwrap_err(),
            Error::NoPassphrase { .. }
        ));
        assert_eq!(
            PassphraseSource::choose_with(None, var),
            PassphraseSource::Prompt
        );
        assert_eq!(
            PassphraseSource::choose_with(Some(Path::new("/f")), var),
            PassphraseSource::File("/f".into())
        );
    }
}
