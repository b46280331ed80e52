//! Passphrase-protected backup of the identity and contacts (`umbra export-identity`).
//!
//! This replaces a server-side password reset: whoever holds the file and its
//! passphrase can restore the identity on a new device.
//!
//! # File format, version 1
//! ```text
//! magic      8 bytes  "UMBRABK\0"
//! version    u8       1
//! m_cost     u32 BE   Argon2id memory, KiB
//! t_cost     u32 BE   Argon2id passes
//! p_cost     u32 BE   Argon2id lanes
//! salt_len   u8       16
//! salt       salt_len bytes
//! nonce      12 bytes random
//! ciphertext ...      AES-256-GCM(key, nonce, aad = every byte above, plaintext) || tag(16)
//! ```
//! key = Argon2id(passphrase, salt) with its own fresh salt (independent of the store
//! key). The plaintext is UTF-8 JSON (`{"version":1,"identity":{..},"contacts":[..]}`)
//! with binary fields in base64. Plaintext buffers are zeroized; the JSON is written
//! into a buffer sized exactly beforehand so it never reallocates.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::err::{Error, db, io};
use super::kdf::{KdfParams, derive_key, random_salt};
use super::{ContactState, NewContact, OwnIdentity, Result, Store, normalize_fingerprint};

const MAGIC: &[u8; 8] = b"UMBRABK\0";
const VERSION: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Largest backup file accepted (contacts' certs are a few KB each).
const MAX_FILE: u64 = 64 * 1024 * 1024;

/// A contact as kept in a backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupContact {
    /// The contact's fields.
    pub contact: NewContact,
    /// When they were last seen.
    pub last_seen: Option<u64>,
}

/// The decrypted contents of a backup.
#[derive(Debug)]
pub struct Backup {
    /// Our identity (secret cert included).
    pub identity: OwnIdentity,
    /// Our contacts.
    pub contacts: Vec<BackupContact>,
}

// ---- JSON payload (private; the secret-bearing parts zeroize on drop) ----

#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
#[serde(deny_unknown_fields)]
struct PayloadIdentity {
    username: String,
    fingerprint: String,
    /// base64 of the secret cert.
    secret_cert: String,
    created_at: u64,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadContact {
    username: String,
    fingerprint: String,
    public_cert: String,
    onion_address: Option<String>,
    state: String,
    verified: bool,
    last_seen: Option<u64>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    version: u32,
    identity: PayloadIdentity,
    contacts: Vec<PayloadContact>,
}

/// Counts bytes written (to size the real buffer exactly).
struct Counter(usize);

impl Write for Counter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len();
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub(crate) fn encode_payload(b: &Backup) -> Result<Zeroizing<Vec<u8>>> {
    let mut cert_b64 = Zeroizing::new(String::with_capacity(
        b.identity.secret_cert.len() * 4 / 3 + 8,
    ));
    B64.encode_string(&b.identity.secret_cert[..], &mut cert_b64);
    let payload = Payload {
        version: 1,
        identity: PayloadIdentity {
            username: b.identity.username.clone(),
            fingerprint: b.identity.fingerprint.clone(),
            secret_cert: std::mem::take(&mut cert_b64),
            created_at: b.identity.created_at,
        },
        contacts: b
            .contacts
            .iter()
            .map(|c| PayloadContact {
                username: c.contact.username.clone(),
                fingerprint: c.contact.fingerprint.clone(),
                public_cert: B64.encode(&c.contact.public_cert),
                onion_address: c.contact.onion_address.clone(),
                state: c.contact.state.as_str().to_owned(),
                verified: c.contact.verified,
                last_seen: c.last_seen,
            })
            .collect(),
    };
    let enc_err = |_| Error::Encryption {
        action: "encoding the backup",
    };
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, &payload).map_err(enc_err)?;
    let mut buf = Zeroizing::new(Vec::with_capacity(counter.0 + TAG_LEN));
    serde_json::to_writer(&mut *buf, &payload).map_err(enc_err)?;
    Ok(buf)
}

/// Decodes the decrypted contents of a backup.
pub(crate) fn decode_payload(plain: &[u8], path: &Path) -> Result<Backup> {
    let bad = |reason: String| Error::BadBackup {
        path: path.to_path_buf(),
        reason,
    };
    let p: Payload = serde_json::from_slice(plain).map_err(|e| bad(format!("contents: {e}")))?;
    if p.version != 1 {
        return Err(bad(format!("unsupported contents version {}", p.version)));
    }
    let mut secret_cert = Zeroizing::new(Vec::with_capacity(p.identity.secret_cert.len()));
    B64.decode_vec(&p.identity.secret_cert, &mut secret_cert)
        .map_err(|e| bad(format!("secret cert: {e}")))?;
    let identity = OwnIdentity {
        username: p.identity.username.clone(),
        fingerprint: p.identity.fingerprint.clone(),
        secret_cert,
        created_at: p.identity.created_at,
    };
    let contacts = p
        .contacts
        .iter()
        .map(|c| {
            Ok(BackupContact {
                contact: NewContact {
                    username: c.username.clone(),
                    fingerprint: c.fingerprint.clone(),
                    public_cert: B64
                        .decode(&c.public_cert)
                        .map_err(|e| bad(format!("contact cert: {e}")))?,
                    onion_address: c.onion_address.clone(),
                    state: ContactState::parse(&c.state)
                        .ok_or_else(|| bad(format!("contact state {:?}", c.state)))?,
                    verified: c.verified,
                },
                last_seen: c.last_seen,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Backup { identity, contacts })
}

/// Encrypt `backup` under `passphrase` into the version-1 file format.
pub fn seal(backup: &Backup, passphrase: &SecretString, params: KdfParams) -> Result<Vec<u8>> {
    let salt = random_salt()?;
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| Error::Encryption {
        action: "generating a nonce",
    })?;
    let mut header = Vec::with_capacity(64);
    header.extend_from_slice(MAGIC);
    header.push(VERSION);
    header.extend_from_slice(&params.m_cost_kib.to_be_bytes());
    header.extend_from_slice(&params.t_cost.to_be_bytes());
    header.extend_from_slice(&params.p_cost.to_be_bytes());
    header.push(salt.len() as u8);
    header.extend_from_slice(&salt);
    header.extend_from_slice(&nonce);

    let key = derive_key(passphrase, &salt, &params)?;
    let cipher = Aes256Gcm::new_from_slice(key.bytes()).map_err(|_| Error::Encryption {
        action: "initialising AES-256-GCM",
    })?;
    let mut buf = encode_payload(backup)?;
    let tag = cipher
        .encrypt_inout_detached(&nonce.into(), &header, InOutBuf::from(&mut buf[..]))
        .map_err(|_| Error::Encryption {
            action: "encrypting the backup",
        })?;
    let mut out = header;
    out.reserve(buf.len() + TAG_LEN);
    out.extend_from_slice(&buf); // now ciphertext
    out.extend_from_slice(&tag);
    Ok(out)
}

/// The plain header of a backup file, as read before any key is derived.
pub(crate) struct Header<'a> {
    /// Argon2id parameters (validated: bounded cost).
    pub(crate) params: KdfParams,
    /// Argon2id salt (at least 16 bytes).
    pub(crate) salt: &'a [u8],
    /// AES-256-GCM nonce.
    pub(crate) nonce: [u8; NONCE_LEN],
    /// The header bytes (the AAD).
    pub(crate) bytes: &'a [u8],
    /// Ciphertext followed by the tag (at least [`TAG_LEN`] bytes).
    pub(crate) body: &'a [u8],
}

/// Parses the plain header of a backup file's bytes; `path` is for error
/// messages. Nothing is derived or decrypted yet.
pub(crate) fn parse_header<'a>(bytes: &'a [u8], path: &Path) -> Result<Header<'a>> {
    let bad = |reason: &str| Error::BadBackup {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    };
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("not an Umbra backup file"))?;
    let (&version, rest) = rest.split_first().ok_or_else(|| bad("truncated"))?;
    if version != VERSION {
        return Err(bad("unsupported backup version (newer Umbra?)"));
    }
    let u32_at = |i: usize| -> Result<u32> {
        rest.get(i..i + 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_be_bytes)
            .ok_or_else(|| bad("truncated"))
    };
    let params = KdfParams {
        m_cost_kib: u32_at(0)?,
        t_cost: u32_at(4)?,
        p_cost: u32_at(8)?,
    };
    params
        .validate()
        .map_err(|r| bad(&format!("bad key-derivation parameters: {r}")))?;
    let salt_len = usize::from(*rest.get(12).ok_or_else(|| bad("truncated"))?);
    if salt_len < 16 {
        return Err(bad("salt too short"));
    }
    let salt_end = 13 + salt_len;
    let nonce_end = salt_end + NONCE_LEN;
    if rest.len() < nonce_end + TAG_LEN {
        return Err(bad("truncated"));
    }
    let salt = &rest[13..salt_end];
    let nonce: [u8; NONCE_LEN] = rest[salt_end..nonce_end]
        .try_into()
        .map_err(|_| bad("truncated"))?;
    let (header, body) = bytes.split_at(MAGIC.len() + 1 + nonce_end);
    Ok(Header {
        params,
        salt,
        nonce,
        bytes: header,
        body,
    })
}

/// Decrypt a backup file's bytes; `path` is for error messages.
pub fn open(bytes: &[u8], passphrase: &SecretString, path: &Path) -> Result<Backup> {
    let header = parse_header(bytes, path)?;
    let truncated = || Error::BadBackup {
        path: path.to_path_buf(),
        reason: "truncated".to_owned(),
    };
    let (ct, tag) = header.body.split_at(header.body.len() - TAG_LEN);
    let key = derive_key(passphrase, header.salt, &header.params)?;
    let cipher = Aes256Gcm::new_from_slice(key.bytes()).map_err(|_| Error::Encryption {
        action: "initialising AES-256-GCM",
    })?;
    let tag = aes_gcm::Tag::try_from(tag).map_err(|_| truncated())?;
    let mut buf = Zeroizing::new(ct.to_vec());
    cipher
        .decrypt_inout_detached(
            &header.nonce.into(),
            header.bytes,
            InOutBuf::from(&mut buf[..]),
            &tag,
        )
        .map_err(|_| Error::BackupWrongPassphrase {
            path: path.to_path_buf(),
        })?;
    decode_payload(&buf, path)
}

/// Write an encrypted backup to a new file `path` (mode 0600; never overwrites).
pub fn write_file(
    path: &Path,
    backup: &Backup,
    passphrase: &SecretString,
    params: KdfParams,
) -> Result<()> {
    let bytes = seal(backup, passphrase, params)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create backup file", path))?;
    f.write_all(&bytes).map_err(io("write backup file", path))?;
    f.sync_all().map_err(io("sync backup file", path))
}

/// Read and decrypt a backup file.
pub fn read_file(path: &Path, passphrase: &SecretString) -> Result<Backup> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(io("open backup file", path))?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(io("read backup file", path))?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(Error::BadBackup {
            path: path.to_path_buf(),
            reason: "file too large".into(),
        });
    }
    open(&bytes, passphrase, path)
}

impl Store {
    /// Collect the identity and all contacts for a backup.
    pub fn export_backup(&self) -> Result<Backup> {
        let identity = self
            .identity()?
            .ok_or(Error::NotFound { what: "identity" })?;
        let contacts = self
            .contacts()?
            .into_iter()
            .map(|c| BackupContact {
                contact: NewContact {
                    username: c.username,
                    fingerprint: c.fingerprint,
                    public_cert: c.public_cert,
                    onion_address: c.onion_address,
                    state: c.state,
                    verified: c.verified,
                },
                last_seen: c.last_seen,
            })
            .collect();
        Ok(Backup { identity, contacts })
    }

    /// Restore a backup into this store, in one transaction.
    ///
    /// The identity is stored if the store has none; if it has the same identity
    /// (fingerprint), that is fine; a different one is [`Error::Conflict`]. Contacts
    /// whose fingerprint is already known are left alone. Returns how many contacts
    /// were added.
    pub fn import_backup(&mut self, b: &Backup) -> Result<usize> {
        let fpr = normalize_fingerprint(&b.identity.fingerprint)?;
        let existing = self.identity()?;
        let tx = self.conn.transaction().map_err(db("importing a backup"))?;
        match existing {
            Some(id) if id.fingerprint == fpr => {}
            Some(_) => {
                return Err(Error::Conflict {
                    what: "a different identity",
                });
            }
            None => {
                super::validate_username(&b.identity.username)?;
                tx.execute(
                    "INSERT INTO identity (id, username, fingerprint, secret_cert, created_at)
                     VALUES (1, ?1, ?2, ?3, ?4)",
                    rusqlite::params![
                        b.identity.username,
                        fpr,
                        &b.identity.secret_cert[..],
                        b.identity.created_at
                    ],
                )
                .map_err(db("importing the identity"))?;
            }
        }
        let mut added = 0;
        for c in &b.contacts {
            let cf = normalize_fingerprint(&c.contact.fingerprint)?;
            super::validate_username(&c.contact.username)?;
            added += tx
                .execute(
                    "INSERT OR IGNORE INTO contacts
                     (username, fingerprint, public_cert, onion_address, state, verified, last_seen, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    rusqlite::params![
                        c.contact.username,
                        cf,
                        c.contact.public_cert,
                        c.contact.onion_address,
                        c.contact.state,
                        c.contact.verified,
                        c.last_seen,
                        super::now()
                    ],
                )
                .map_err(db("importing a contact"))?;
        }
        tx.commit().map_err(db("importing a backup"))?;
        Ok(added)
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Arbitrary bytes, with or without a valid-looking header, never panic.
        #[test]
        fn open_never_panics(tail in proptest::collection::vec(any::<u8>(), 0..200), with_header in any::<bool>()) {
            let mut bytes = Vec::new();
            if with_header {
                bytes.extend_from_slice(MAGIC);
                bytes.push(VERSION);
                for v in [1024u32, 1, 1] {
                    bytes.extend_from_slice(&v.to_be_bytes());
                }
                bytes.push(16);
            }
            bytes.extend_from_slice(&tail);
            let pw = SecretString::from("p".to_owned());
            prop_assert!(open(&bytes, &pw, Path::new("b")).is_err());
        }
    }

    fn sample() -> Backup {
        Backup {
            identity: OwnIdentity {
                username: "@alice".into(),
                fingerprint: "0123456789ABCDEF0123456789ABCDEF01234567".into(),
                secret_cert: Zeroizing::new(vec![1, 2, 3, 250]),
                created_at: 17,
            },
            contacts: vec![BackupContact {
                contact: NewContact {
                    username: "@bob".into(),
                    fingerprint: "89ABCDEF0123456789ABCDEF0123456789ABCDEF".into(),
                    public_cert: b"cert".to_vec(),
                    onion_address: Some("x.onion".into()),
                    state: ContactState::Accepted,
                    verified: true,
                },
                last_seen: Some(5),
            }],
        }
    }

    #[test]
    fn seal_open_roundtrip_and_tamper() {
        let pw = SecretString::from("backup pass".to_owned());
        let p = Path::new("b");
        let sealed = seal(&sample(), &pw, KdfParams::insecure_for_tests()).unwrap();
        let back = open(&sealed, &pw, p).unwrap();
        assert_eq!(back.identity.fingerprint, sample().identity.fingerprint);
        assert_eq!(&back.identity.secret_cert[..], &[1, 2, 3, 250]);
        assert_eq!(back.contacts, sample().contacts);
        // The plaintext is not visible.
        assert!(!sealed.windows(4).any(|w| w == b"@bob"));

        let wrong = SecretString::from("other".to_owned());
        let e = open(&sealed, &wrong, p).unwrap_err();
        assert!(matches!(e, Error::BackupWrongPassphrase { .. }), "{e}");
        // Any flipped byte (header included, as it is the AAD) is detected.
        for i in [9, 20, sealed.len() / 2, sealed.len() - 1] {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert!(open(&t, &pw, p).is_err(), "byte {i}");
        }
        assert!(matches!(
            open(&sealed[..20], &pw, p).unwrap_err(),
            Error::BadBackup { .. }
        ));
        assert!(matches!(
            open(b"not a backup", &pw, p).unwrap_err(),
            Error::BadBackup { .. }
        ));
    }
}
