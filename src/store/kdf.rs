//! Argon2id key derivation and the non-secret header file that records its parameters.
//!
//! The database key is never typed by the user: it is derived from the passphrase with
//! Argon2id, using a random salt and cost parameters stored in `store.header` next to
//! the database. The header holds nothing secret; it exists so that the parameters can
//! be raised later (a new header is written on `rekey`) without a format change.
//!
//! Defaults: m = 64 MiB, t = 3, p = 1 (about 270 ms on the reference machine, see
//! `shared/CRYPTO.md`). p = 2 gives no speed-up without the argon2 crate's `parallel`
//! feature, so it would only make an attacker's job cheaper relative to ours.
//!
//! The header also holds a *key check*: SHA-256 over a domain string and the derived
//! key. A wrong passphrase is detected against it before the database is touched at
//! all (opening a WAL database, even with the wrong key, may update the reader marks
//! in its `-shm` file while another process has it open). It gives an attacker no
//! shortcut: SQLCipher's per-page HMAC already lets anyone holding the file test a
//! guessed key, and each guess still costs one Argon2id run.

use std::fmt;
use std::path::Path;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::err::Error;

/// Length of the Argon2id salt written into new headers.
pub const SALT_LEN: usize = 16;

/// Length of a derived key (AES-256 / SQLCipher raw key).
pub const KEY_LEN: usize = 32;

/// Upper bounds accepted when reading a header or backup (refuses absurd parameters
/// that would make opening exhaust memory or time).
const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
const MAX_T_COST: u32 = 64;
const MAX_P_COST: u32 = 16;

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory cost in KiB. Default 65536 (64 MiB).
    pub m_cost_kib: u32,
    /// Number of passes. Default 3.
    pub t_cost: u32,
    /// Degree of parallelism. Default 1.
    pub p_cost: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        KdfParams {
            m_cost_kib: 64 * 1024,
            t_cost: 3,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Very cheap parameters (1 MiB, t = 1): for tests only, never for real stores.
    pub fn insecure_for_tests() -> Self {
        KdfParams {
            m_cost_kib: 1024,
            t_cost: 1,
            p_cost: 1,
        }
    }

    /// Check the parameters against Argon2's limits and our sanity bounds.
    pub fn validate(&self) -> Result<(), String> {
        if self.p_cost == 0 || self.p_cost > MAX_P_COST {
            return Err(format!(
                "p_cost {} out of range 1..={MAX_P_COST}",
                self.p_cost
            ));
        }
        if self.t_cost == 0 || self.t_cost > MAX_T_COST {
            return Err(format!(
                "t_cost {} out of range 1..={MAX_T_COST}",
                self.t_cost
            ));
        }
        let min_m = 8 * self.p_cost;
        if self.m_cost_kib < min_m || self.m_cost_kib > MAX_M_COST_KIB {
            return Err(format!(
                "m_cost_kib {} out of range {min_m}..={MAX_M_COST_KIB}",
                self.m_cost_kib
            ));
        }
        Ok(())
    }
}

/// A 256-bit key derived from a passphrase. Zeroized on drop; no `Debug`/`Display`.
pub struct DerivedKey(Zeroizing<[u8; KEY_LEN]>);

impl DerivedKey {
    /// The raw key bytes.
    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key check value stored in the header: SHA-256(domain || key).
    fn check_value(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(b"umbra/v1/store-key-check\0");
        h.update(&self.0[..]);
        h.finalize().into()
    }

    /// The key as the SQLCipher raw-key literal `x'<64 hex>'`, in a zeroizing string.
    ///
    /// Built without intermediate allocations so no stray copy of the hex key is left
    /// behind (the string's capacity is reserved up front).
    pub(crate) fn sqlcipher_pragma(&self, pragma: &str) -> Zeroizing<String> {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = Zeroizing::new(String::with_capacity(pragma.len() + 16 + 2 * KEY_LEN));
        s.push_str("PRAGMA ");
        s.push_str(pragma);
        s.push_str(" = \"x'");
        for b in self.0.iter() {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
        s.push_str("'\";");
        s
    }
}

impl fmt::Debug for DerivedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DerivedKey(--- secret ---)")
    }
}

/// Run Argon2id over `passphrase` and `salt` with `params`.
pub fn derive_key(
    passphrase: &SecretString,
    salt: &[u8],
    params: &KdfParams,
) -> Result<DerivedKey, Error> {
    params.validate().map_err(|reason| Error::Kdf { reason })?;
    let p = argon2::Params::new(
        params.m_cost_kib,
        params.t_cost,
        params.p_cost,
        Some(KEY_LEN),
    )
    .map_err(|e| Error::Kdf {
        reason: e.to_string(),
    })?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(passphrase.expose_secret().as_bytes(), salt, &mut out[..])
        .map_err(|e| Error::Kdf {
            reason: e.to_string(),
        })?;
    Ok(DerivedKey(out))
}

/// Fill a fresh random salt.
pub fn random_salt() -> Result<[u8; SALT_LEN], Error> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|e| Error::Kdf {
        reason: format!("no randomness for the salt: {e}"),
    })?;
    Ok(salt)
}

/// Current header format version.
pub const HEADER_VERSION: u32 = 1;

/// The contents of `store.header`: the non-secret parameters needed to derive the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHeader {
    /// Argon2id parameters.
    pub params: KdfParams,
    /// Argon2id salt.
    pub salt: Vec<u8>,
    /// SHA-256 over a domain string and the derived key (see the module docs).
    pub key_check: [u8; 32],
}

/// On-disk JSON form of the header.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderFile {
    /// Always `"umbra-store"`.
    format: String,
    /// [`HEADER_VERSION`].
    version: u32,
    /// Always `"argon2id"` in version 1.
    kdf: String,
    /// Cost parameters.
    params: KdfParams,
    /// Salt, lowercase hex.
    salt: String,
    /// Always `"sqlcipher4-raw-key"` in version 1.
    cipher: String,
    /// Key check value, lowercase hex.
    key_check: String,
}

impl StoreHeader {
    /// A new header with a fresh random salt for `passphrase`, and the key it derives.
    pub fn generate(
        params: KdfParams,
        passphrase: &SecretString,
    ) -> Result<(Self, DerivedKey), Error> {
        let salt = random_salt()?.to_vec();
        let key = derive_key(passphrase, &salt, &params)?;
        let header = StoreHeader {
            params,
            salt,
            key_check: key.check_value(),
        };
        Ok((header, key))
    }

    /// Derive the key for `passphrase`; `None` if it does not match the key check
    /// (wrong passphrase).
    pub fn unlock(&self, passphrase: &SecretString) -> Result<Option<DerivedKey>, Error> {
        let key = derive_key(passphrase, &self.salt, &self.params)?;
        let ok: bool = key.check_value().ct_eq(&self.key_check).into();
        Ok(ok.then_some(key))
    }

    /// Serialize to the on-disk JSON form.
    pub fn to_json(&self) -> Result<String, Error> {
        let file = HeaderFile {
            format: "umbra-store".into(),
            version: HEADER_VERSION,
            kdf: "argon2id".into(),
            params: self.params,
            salt: hex::encode(&self.salt),
            cipher: "sqlcipher4-raw-key".into(),
            key_check: hex::encode(self.key_check),
        };
        let mut s = serde_json::to_string_pretty(&file).map_err(|e| Error::Kdf {
            reason: format!("cannot encode the header: {e}"),
        })?;
        s.push('\n');
        Ok(s)
    }

    /// Parse and validate the on-disk JSON form; `path` is for error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<Self, Error> {
        let bad = |reason: String| Error::BadHeader {
            path: path.to_path_buf(),
            reason,
        };
        let file: HeaderFile = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if file.format != "umbra-store" {
            return Err(bad(format!("unknown format {:?}", file.format)));
        }
        if file.version != HEADER_VERSION {
            return Err(bad(format!(
                "unsupported header version {} (this Umbra reads {HEADER_VERSION})",
                file.version
            )));
        }
        if file.kdf != "argon2id" || file.cipher != "sqlcipher4-raw-key" {
            return Err(bad(format!(
                "unsupported kdf/cipher {}/{}",
                file.kdf, file.cipher
            )));
        }
        file.params.validate().map_err(bad)?;
        let salt = hex::decode(&file.salt).map_err(|e| bad(format!("salt: {e}")))?;
        if salt.len() < SALT_LEN {
            return Err(bad(format!("salt shorter than {SALT_LEN} bytes")));
        }
        let key_check = hex::decode(&file.key_check)
            .ok()
            .and_then(|v| <[u8; 32]>::try_from(v).ok())
            .ok_or_else(|| bad("key_check must be 64 hex digits".into()))?;
        Ok(StoreHeader {
            params: file.params,
            salt,
            key_check,
        })
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn pw(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn header_roundtrip_and_strictness() {
        let (h, key) = StoreHeader::generate(KdfParams::insecure_for_tests(), &pw("a")).unwrap();
        let p = Path::new("store.header");
        assert_eq!(h.unlock(&pw("a")).unwrap().unwrap().bytes(), key.bytes());
        assert!(h.unlock(&pw("b")).unwrap().is_none());
        assert_eq!(StoreHeader::from_json(&h.to_json().unwrap(), p).unwrap(), h);
        let extra = h.to_json().unwrap().replacen('{', "{\"x\": 1,", 1);
        assert!(StoreHeader::from_json(&extra, p).is_err());
        let v2 = h
            .to_json()
            .unwrap()
            .replace("\"version\": 1", "\"version\": 2");
        assert!(StoreHeader::from_json(&v2, p).is_err());
        let weak = h
            .to_json()
            .unwrap()
            .replace("\"t_cost\": 1", "\"t_cost\": 0");
        assert!(StoreHeader::from_json(&weak, p).is_err());
    }

    proptest::proptest! {
        #[test]
        fn header_parse_never_panics(text in ".{0,300}") {
            let _ = StoreHeader::from_json(&text, Path::new("h"));
        }
    }

    #[test]
    fn derivation_depends_on_everything() {
        let params = KdfParams::insecure_for_tests();
        let salt = [7u8; SALT_LEN];
        let a = derive_key(&pw("correct horse"), &salt, &params).unwrap();
        let b = derive_key(&pw("correct horse"), &salt, &params).unwrap();
        let c = derive_key(&pw("correct hors3"), &salt, &params).unwrap();
        let d = derive_key(&pw("correct horse"), &[8u8; SALT_LEN], &params).unwrap();
        let mut p2 = params;
        p2.t_cost = 2;
        let e = derive_key(&pw("correct horse"), &salt, &p2).unwrap();
        assert_eq!(a.bytes(), b.bytes());
        for other in [&c, &d, &e] {
            assert_ne!(a.bytes(), other.bytes());
        }
    }

    #[test]
    fn pragma_literal_is_hex_of_key() {
        let k = derive_key(&pw("x"), &[1u8; SALT_LEN], &KdfParams::insecure_for_tests()).unwrap();
        let s = k.sqlcipher_pragma("key");
        assert_eq!(
            *s,
            format!("PRAGMA key = \"x'{}'\";", hex::encode(k.bytes()))
        );
        assert_eq!(format!("{k:?}"), "DerivedKey(--- secret ---)");
    }
}
