//! Key generation for every node, in parallel.
//!
//! Relay identities come from `tor --list-fingerprint`; authorities also get
//! a v3 authority identity and signing key from `tor-gencert`.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::node::{Plan, Role};
use crate::{Error, TestNetOptions};

/// The identities of one node.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// RSA relay identity fingerprint, hex.
    pub(crate) rsa: String,
    /// Ed25519 relay identity, unpadded base64.
    pub(crate) ed: String,
    /// For authorities: the v3 identity fingerprint, hex.
    pub(crate) v3ident: Option<String>,
}

/// Generate the keys of every planned node, one thread per node.
pub(crate) fn generate_all(opts: &TestNetOptions, plans: &[Plan]) -> Result<Vec<Identity>, Error> {
    std::thread::scope(|s| {
        let handles: Vec<_> = plans
            .iter()
            .map(|p| s.spawn(move || generate(opts, p)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Error::ToolFailed {
                        action: "generate keys",
                        detail: "key generation thread panicked".into(),
                    })
                })
            })
            .collect()
    })
}

fn generate(opts: &TestNetOptions, plan: &Plan) -> Result<Identity, Error> {
    let dir = &plan.datadir;
    create_private_dir(&dir.join("keys"))?;
    let out = Command::new(&opts.tor_binary)
        .args(["--quiet", "--ignore-missing-torrc", "-f"])
        .arg(dir.join("nonexistent-torrc"))
        .args(["--defaults-torrc"])
        .arg(dir.join("nonexistent-defaults-torrc"))
        .args(["--list-fingerprint", "--orport", "1", "--dirserver"])
        .arg("x 127.0.0.1:1 ffffffffffffffffffffffffffffffffffffffff")
        .arg("--datadirectory")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::Spawn {
            action: "run `tor --list-fingerprint`",
            source,
        })?;
    check_status("generate relay keys with tor", &out)?;
    let rsa = second_token(&dir.join("fingerprint"))?;
    let ed = second_token(&dir.join("fingerprint-ed25519"))?;

    let v3ident = if plan.role == Role::Authority {
        let keys = dir.join("keys");
        let mut child = Command::new(&opts.gencert_binary)
            .args(["--create-identity-key", "--passphrase-fd", "0", "-i"])
            .arg(keys.join("authority_identity_key"))
            .arg("-s")
            .arg(keys.join("authority_signing_key"))
            .arg("-c")
            .arg(keys.join("authority_certificate"))
            .args(["-m", "12", "-a"])
            .arg(format!("127.0.0.1:{}", plan.dirport))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| Error::Spawn {
                action: "run `tor-gencert`",
                source,
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A throwaway passphrase: these keys only live as long as the test.
            stdin
                .write_all(b"umbra-testnet\n")
                .map_err(|source| Error::Spawn {
                    action: "pass the passphrase to `tor-gencert`",
                    source,
                })?;
        }
        let out = child.wait_with_output().map_err(|source| Error::Spawn {
            action: "wait for `tor-gencert`",
            source,
        })?;
        check_status("generate authority keys with tor-gencert", &out)?;
        let cert_path = keys.join("authority_certificate");
        let cert = read(&cert_path)?;
        let fp = cert
            .lines()
            .find_map(|l| l.strip_prefix("fingerprint "))
            .ok_or_else(|| Error::ToolFailed {
                action: "read the authority certificate",
                detail: "no fingerprint line".into(),
            })?;
        Some(fp.trim().to_owned())
    } else {
        None
    };
    Ok(Identity { rsa, ed, v3ident })
}

fn check_status(action: &'static str, out: &std::process::Output) -> Result<(), Error> {
    if out.status.success() {
        return Ok(());
    }
    let mut detail = format!("{}; ", out.status);
    detail.push_str(&String::from_utf8_lossy(&out.stderr));
    detail.push_str(&String::from_utf8_lossy(&out.stdout));
    Err(Error::ToolFailed { action, detail })
}

fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

/// Files like `fingerprint` hold `NICKNAME VALUE`.
fn second_token(path: &Path) -> Result<String, Error> {
    read(path)?
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
        .ok_or_else(|| Error::ToolFailed {
            action: "read a relay fingerprint",
            detail: format!("unexpected contents in {}", path.display()),
        })
}

/// Create a directory (and parents) readable only by us, as tor demands.
pub(crate) fn create_private_dir(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| Error::Io {
            action: "create a private directory",
            path: path.to_owned(),
            source,
        })
}
