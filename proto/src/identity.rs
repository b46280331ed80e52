//! OpenPGP identities: the user's own secret certificate, contacts' public
//! certificates, fingerprints and usernames.
//!
//! Every Umbra identity is an OpenPGP **v4** certificate (RFC 4880 profile,
//! so that GnuPG 2.2 reads it) with an Ed25519 primary key for certification
//! and signing, a Cv25519 subkey for encryption, no expiry, and the single
//! user ID `@name`.
//!
//! Secret key material stays inside sequoia's `Protected` buffers, which are
//! zeroized on drop; serializations of secrets are returned in
//! [`Zeroizing`] buffers. [`Identity`] has no `Debug`/`Display` that could
//! print a secret.

use std::fmt;
use std::io::Write;
use std::sync::LazyLock;
use std::time::SystemTime;

use sequoia_openpgp as openpgp;

use openpgp::cert::prelude::*;
use openpgp::crypto::{KeyPair, Password};
use openpgp::packet::Packet;
use openpgp::parse::Parse;
use openpgp::parse::stream::{
    DetachedVerifierBuilder, MessageLayer, MessageStructure, VerificationHelper,
};
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Armorer, Message, Signer};
use openpgp::serialize::{Serialize, SerializeInto};
use openpgp::types::{Features, KeyFlags, SignatureType};
use openpgp::{Cert, KeyHandle};
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{ErrorKind, HasKind};
use crate::limits::MAX_CERT;

/// The one OpenPGP policy used everywhere in Umbra.
pub(crate) static POLICY: LazyLock<StandardPolicy<'static>> = LazyLock::new(StandardPolicy::new);

/// Errors from creating, parsing or using identities.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The username does not follow the rules in docs/PROTOCOL.md.
    #[error(
        "invalid username: {reason} (use 3–32 characters a–z, 0–9 or _, starting with a letter)"
    )]
    InvalidUsername {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The certificate could not be parsed or is not usable by Umbra.
    #[error("unusable OpenPGP certificate: {reason}")]
    BadCert {
        /// What is wrong with it.
        reason: String,
    },
    /// A certificate larger than the limit was offered.
    #[error("certificate too large: {len} bytes (limit {limit})")]
    CertTooLarge {
        /// Offered size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The passphrase does not unlock the protected identity.
    #[error("wrong passphrase for the identity backup: check it and try again")]
    WrongPassphrase,
    /// A detached signature did not verify with the expected key.
    #[error("signature does not verify with the expected key")]
    BadSignature,
    /// A fingerprint string is not 40 hex digits.
    #[error("invalid fingerprint: expected 40 hexadecimal digits")]
    BadFingerprint,
    /// sequoia failed in an unexpected way.
    #[error("OpenPGP operation failed while {action}")]
    Crypto {
        /// What we were doing.
        action: &'static str,
        /// The underlying error.
        #[source]
        source: anyhow::Error,
    },
}

impl HasKind for IdentityError {
    fn kind(&self) -> ErrorKind {
        match self {
            IdentityError::InvalidUsername { .. }
            | IdentityError::BadCert { .. }
            | IdentityError::BadFingerprint => ErrorKind::InvalidInput,
            IdentityError::CertTooLarge { .. } => ErrorKind::TooLarge,
            IdentityError::WrongPassphrase => ErrorKind::Decryption,
            IdentityError::BadSignature => ErrorKind::BadSignature,
            IdentityError::Crypto { .. } => ErrorKind::Crypto,
        }
    }
}

/// Runs a sequoia parse behind a panic barrier: sequoia 2.4.2 has at least
/// one `unwrap` reachable from hostile bytes (see `envelope::open`), and no
/// input may crash Umbra. A panic becomes `None`.
pub(crate) fn no_panic<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// Parses a certificate (public or secret) behind the panic barrier.
fn parse_cert(bytes: &[u8]) -> Result<Cert, IdentityError> {
    no_panic(|| Cert::from_bytes(bytes))
        .unwrap_or_else(|| Err(anyhow::anyhow!("parser panicked")))
        .map_err(|e| IdentityError::BadCert {
            reason: format!("cannot parse: {e}"),
        })
}

fn crypto(action: &'static str) -> impl FnOnce(anyhow::Error) -> IdentityError {
    move |source| IdentityError::Crypto { action, source }
}

// ---------------------------------------------------------------------------
// Usernames

/// Usernames nobody may register (they would impersonate operators).
pub const RESERVED_USERNAMES: &[&str] = &["admin", "root", "handshaker", "support", "umbra"];

/// A validated, case-folded username, displayed as `@name`.
///
/// Rules: 3–32 ASCII characters from `a–z`, `0–9`, `_`, starting with a
/// letter; input is folded to lower case and a leading `@` is optional.
/// Restricting names to ASCII makes confusable look-alikes impossible.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Username(String);

impl Username {
    /// Parses and case-folds `input` (`"@Alice"` → `@alice`).
    pub fn parse(input: &str) -> Result<Self, IdentityError> {
        let bare = input.strip_prefix('@').unwrap_or(input);
        if bare.len() < 3 {
            return Err(IdentityError::InvalidUsername {
                reason: "too short",
            });
        }
        if bare.len() > 32 {
            return Err(IdentityError::InvalidUsername { reason: "too long" });
        }
        if !bare.is_ascii() {
            return Err(IdentityError::InvalidUsername {
                reason: "only ASCII letters, digits and _ are allowed",
            });
        }
        let folded = bare.to_ascii_lowercase();
        if !folded
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            return Err(IdentityError::InvalidUsername {
                reason: "only letters, digits and _ are allowed",
            });
        }
        if !folded.as_bytes()[0].is_ascii_lowercase() {
            return Err(IdentityError::InvalidUsername {
                reason: "must start with a letter",
            });
        }
        Ok(Username(folded))
    }

    /// The folded name without the `@`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the name is reserved for operators.
    pub fn is_reserved(&self) -> bool {
        RESERVED_USERNAMES.contains(&self.0.as_str())
    }

    /// The OpenPGP user ID for this name (`@name`).
    pub fn user_id(&self) -> String {
        format!("@{}", self.0)
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

impl fmt::Debug for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Usernames are identifiers: keep them out of debug logs.
        f.write_str("Username([scrubbed])")
    }
}

// ---------------------------------------------------------------------------
// Fingerprints

/// A v4 OpenPGP fingerprint (20 bytes).
///
/// `Display` shows 10 groups of 4 hex digits for humans; [`Fingerprint::to_hex`]
/// gives the compact form used on the wire and in URLs. `Debug` is redacted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 20]);

impl Fingerprint {
    /// Wraps raw fingerprint bytes.
    pub fn from_bytes(bytes: [u8; 20]) -> Self {
        Fingerprint(bytes)
    }

    /// Parses 40 hex digits (spaces allowed, optional `0x`).
    pub fn from_hex(s: &str) -> Result<Self, IdentityError> {
        let s = s.trim();
        let s = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.len() != 40 {
            return Err(IdentityError::BadFingerprint);
        }
        let mut out = [0u8; 20];
        hex::decode_to_slice(&compact, &mut out).map_err(|_| IdentityError::BadFingerprint)?;
        Ok(Fingerprint(out))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }

    /// 40 upper-case hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode_upper(self.0)
    }

    /// Constant-time equality (fingerprints gate trust decisions).
    pub fn ct_eq(&self, other: &Fingerprint) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    fn of(cert: &Cert) -> Result<Self, IdentityError> {
        match cert.fingerprint() {
            openpgp::Fingerprint::V4(b) => Ok(Fingerprint(b)),
            _ => Err(IdentityError::BadCert {
                reason: "not a v4 certificate".into(),
            }),
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.to_hex();
        for (i, chunk) in hex.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str(if i == 5 { "  " } else { " " })?;
            }
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprint([scrubbed])")
    }
}

// ---------------------------------------------------------------------------
// Public certificates

/// A contact's public OpenPGP certificate, checked to be usable by Umbra:
/// v4, no secret key material, a valid signing-capable primary key and an
/// encryption-capable subkey under the standard policy.
#[derive(Clone)]
pub struct PublicCert {
    cert: Cert,
    fingerprint: Fingerprint,
}

impl PublicCert {
    /// Parses an armored or binary public certificate (at most
    /// [`MAX_CERT`] bytes) and checks that Umbra can use it.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        if bytes.len() > MAX_CERT {
            return Err(IdentityError::CertTooLarge {
                len: bytes.len(),
                limit: MAX_CERT,
            });
        }
        let cert = parse_cert(bytes)?;
        if cert.is_tsk() {
            return Err(IdentityError::BadCert {
                reason: "contains secret key material; send only the public certificate".into(),
            });
        }
        Self::from_cert(cert)
    }

    pub(crate) fn from_cert(cert: Cert) -> Result<Self, IdentityError> {
        let fingerprint = Fingerprint::of(&cert)?;
        let valid = cert
            .with_policy(&*POLICY, None)
            .map_err(|e| IdentityError::BadCert {
                reason: format!("not valid under policy: {e}"),
            })?;
        valid.alive().map_err(|_| IdentityError::BadCert {
            reason: "expired or not yet valid".into(),
        })?;
        if let openpgp::types::RevocationStatus::Revoked(_) = valid.revocation_status() {
            return Err(IdentityError::BadCert {
                reason: "revoked".into(),
            });
        }
        if valid.keys().for_signing().next().is_none() {
            return Err(IdentityError::BadCert {
                reason: "no signing-capable key".into(),
            });
        }
        if valid
            .keys()
            .alive()
            .revoked(false)
            .for_transport_encryption()
            .next()
            .is_none()
        {
            return Err(IdentityError::BadCert {
                reason: "no encryption-capable subkey".into(),
            });
        }
        Ok(PublicCert { cert, fingerprint })
    }

    /// The certificate's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The certificate's Umbra username: its one `@name` user ID, which must
    /// carry a valid self-signature under the standard policy and be in
    /// canonical (folded) form. A certificate with any other `@` user ID,
    /// bound or not, has no username: otherwise a key registered as
    /// `@mallory` could also claim `@alice` (SECURITY-2026-11 H1).
    pub fn username(&self) -> Result<Username, IdentityError> {
        let bad = |reason: &str| IdentityError::BadCert {
            reason: reason.to_owned(),
        };
        let at_ids = self
            .cert
            .userids()
            .filter(|u| u.userid().value().starts_with(b"@"))
            .count();
        if at_ids != 1 {
            return Err(bad(if at_ids == 0 {
                "no @name user ID"
            } else {
                "more than one @name user ID; exactly one is allowed"
            }));
        }
        let valid = self
            .cert
            .with_policy(&*POLICY, None)
            .map_err(|_| bad("not valid under policy"))?;
        let bound = valid
            .userids()
            .find(|u| u.userid().value().starts_with(b"@"))
            .ok_or_else(|| bad("the @name user ID has no valid self-signature"))?;
        let text = std::str::from_utf8(bound.userid().value())
            .map_err(|_| bad("the @name user ID is not UTF-8"))?;
        let name =
            Username::parse(text).map_err(|_| bad("the @name user ID is not a valid username"))?;
        if name.user_id() != text {
            return Err(bad(
                "the @name user ID is not in canonical (lower-case) form",
            ));
        }
        Ok(name)
    }

    /// ASCII-armored serialization.
    pub fn to_armored(&self) -> Result<String, IdentityError> {
        let bytes = self
            .cert
            .armored()
            .to_vec()
            .map_err(crypto("armoring a certificate"))?;
        String::from_utf8(bytes).map_err(|e| IdentityError::Crypto {
            action: "armoring a certificate",
            source: e.into(),
        })
    }

    /// Binary serialization.
    pub fn to_bytes(&self) -> Result<Vec<u8>, IdentityError> {
        self.cert
            .to_vec()
            .map_err(crypto("serializing a certificate"))
    }

    /// A copy stripped to the packets Umbra needs (as hagrid does): the
    /// primary key, valid `@name` user IDs with their self-signatures, and
    /// subkeys; third-party certifications and user attributes are dropped.
    pub fn stripped(&self) -> Result<PublicCert, IdentityError> {
        let primary_fpr = self.cert.fingerprint();
        let cert = self
            .cert
            .clone()
            .retain_userids(|u| u.userid().value().starts_with(b"@"))
            .retain_user_attributes(|_| false);
        // Drop third-party certifications on user IDs.
        let packets: Vec<Packet> = cert
            .into_packets()
            .filter(|p| match p {
                Packet::Signature(sig) => match sig.typ() {
                    SignatureType::GenericCertification
                    | SignatureType::PersonaCertification
                    | SignatureType::CasualCertification
                    | SignatureType::PositiveCertification => {
                        sig.issuer_fingerprints().any(|f| *f == primary_fpr)
                    }
                    _ => true,
                },
                _ => true,
            })
            .collect();
        let cert = Cert::from_packets(packets.into_iter()).map_err(|e| IdentityError::BadCert {
            reason: format!("after stripping: {e}"),
        })?;
        Self::from_cert(cert)
    }

    /// Verifies an armored or binary detached signature over `data` made by
    /// this certificate's signing key; returns the signature creation time.
    pub fn verify_detached(
        &self,
        data: &[u8],
        signature: &[u8],
    ) -> Result<SystemTime, IdentityError> {
        if signature.len() > MAX_CERT {
            return Err(IdentityError::BadSignature);
        }
        no_panic(|| {
            let helper = DetachedHelper {
                cert: &self.cert,
                created: None,
            };
            let mut v = DetachedVerifierBuilder::from_bytes(signature)
                .map_err(|_| IdentityError::BadSignature)?
                .with_policy(&*POLICY, None, helper)
                .map_err(|_| IdentityError::BadSignature)?;
            v.verify_bytes(data)
                .map_err(|_| IdentityError::BadSignature)?;
            v.into_helper().created.ok_or(IdentityError::BadSignature)
        })
        .unwrap_or(Err(IdentityError::BadSignature))
    }

    pub(crate) fn cert(&self) -> &Cert {
        &self.cert
    }
}

impl fmt::Debug for PublicCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicCert([scrubbed])")
    }
}

struct DetachedHelper<'a> {
    cert: &'a Cert,
    created: Option<SystemTime>,
}

impl VerificationHelper for DetachedHelper<'_> {
    fn get_certs(&mut self, _ids: &[KeyHandle]) -> openpgp::Result<Vec<Cert>> {
        Ok(vec![self.cert.clone()])
    }

    fn check(&mut self, structure: MessageStructure) -> openpgp::Result<()> {
        for layer in structure.into_iter() {
            if let MessageLayer::SignatureGroup { results } = layer {
                for r in results.into_iter().flatten() {
                    if r.ka.cert().fingerprint() == self.cert.fingerprint() {
                        self.created = r.sig.signature_creation_time();
                        return Ok(());
                    }
                }
            }
        }
        Err(anyhow::anyhow!("no good signature by the expected key"))
    }
}

// ---------------------------------------------------------------------------
// Own identity

/// The user's own identity: a certificate with secret keys.
///
/// No `Debug`, `Display` or `Serialize`: the only ways out are the explicit
/// serializers, which return zeroizing buffers.
pub struct Identity {
    cert: Cert,
    fingerprint: Fingerprint,
    username: Username,
}

impl Identity {
    /// Generates a new identity for `username`.
    pub fn generate(username: &Username) -> Result<Self, IdentityError> {
        Self::generate_at(username, SystemTime::now())
    }

    /// [`Identity::generate`] with an explicit key creation time (tests
    /// that need keys older than a freshness window).
    pub fn generate_at(username: &Username, created: SystemTime) -> Result<Self, IdentityError> {
        let (cert, _revocation) = CertBuilder::new()
            .set_creation_time(created)
            .set_profile(openpgp::Profile::RFC4880)
            .map_err(crypto("selecting the v4 profile"))?
            .set_cipher_suite(CipherSuite::Cv25519)
            // Advertise SEIPDv1 only: GnuPG 2.2 cannot read SEIPDv2, and
            // sequoia would otherwise pick it for messages to this cert.
            .set_features(Features::empty().set_seipdv1())
            .map_err(crypto("setting features"))?
            .set_primary_key_flags(KeyFlags::empty().set_certification().set_signing())
            .add_userid(username.user_id())
            .add_subkey(
                KeyFlags::empty()
                    .set_transport_encryption()
                    .set_storage_encryption(),
                None,
                None,
            )
            .set_validity_period(None)
            .generate()
            .map_err(crypto("generating a key"))?;
        Self::from_cert(cert)
    }

    fn from_cert(cert: Cert) -> Result<Self, IdentityError> {
        if !cert.is_tsk() {
            return Err(IdentityError::BadCert {
                reason: "no secret key material".into(),
            });
        }
        // Must be usable as a public certificate too.
        let public = PublicCert::from_cert(cert.clone().strip_secret_key_material())?;
        let username = public.username()?;
        Ok(Identity {
            fingerprint: public.fingerprint,
            cert,
            username,
        })
    }

    /// The identity's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The identity's username.
    pub fn username(&self) -> &Username {
        &self.username
    }

    /// The public half of this identity.
    pub fn public_cert(&self) -> Result<PublicCert, IdentityError> {
        PublicCert::from_cert(self.cert.clone().strip_secret_key_material())
    }

    /// Serializes the certificate *with unencrypted secret keys*, for the
    /// encrypted local store only.
    pub fn to_secret_bytes(&self) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
        let mut out = Zeroizing::new(Vec::with_capacity(1024));
        self.cert
            .as_tsk()
            .serialize(&mut *out)
            .map_err(crypto("serializing the identity"))?;
        Ok(out)
    }

    /// Parses the output of [`Identity::to_secret_bytes`].
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let cert = parse_cert(bytes)?;
        Self::from_cert(cert)
    }

    /// Serializes the certificate with every secret key encrypted under
    /// `passphrase` (OpenPGP S2K), armored, as GnuPG would export it.
    pub fn to_protected_armored(
        &self,
        passphrase: &SecretString,
    ) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
        let password = Password::from(passphrase.expose_secret());
        let mut packets: Vec<Packet> = Vec::new();
        for ka in self.cert.keys().secret() {
            let key = ka
                .key()
                .clone()
                .encrypt_secret(&password)
                .map_err(crypto("protecting a secret key"))?;
            if ka.primary() {
                packets.push(key.role_into_primary().into());
            } else {
                packets.push(key.role_into_subordinate().into());
            }
        }
        let (protected, _) = self
            .cert
            .clone()
            .insert_packets(packets)
            .map_err(crypto("protecting the identity"))?;
        let mut out = Zeroizing::new(Vec::new());
        let mut w = openpgp::armor::Writer::new(&mut *out, openpgp::armor::Kind::SecretKey)
            .map_err(|e| IdentityError::Crypto {
                action: "armoring the identity",
                source: e.into(),
            })?;
        protected
            .as_tsk()
            .serialize(&mut w)
            .map_err(crypto("serializing the identity"))?;
        w.finalize().map_err(|e| IdentityError::Crypto {
            action: "armoring the identity",
            source: e.into(),
        })?;
        Ok(out)
    }

    /// Parses the output of [`Identity::to_protected_armored`] and removes
    /// the passphrase protection.
    pub fn from_protected(bytes: &[u8], passphrase: &SecretString) -> Result<Self, IdentityError> {
        let cert = parse_cert(bytes)?;
        let password = Password::from(passphrase.expose_secret());
        let mut packets: Vec<Packet> = Vec::new();
        for ka in cert.keys().secret() {
            let key = ka.key().clone();
            let key = if key.has_unencrypted_secret() {
                key
            } else {
                key.decrypt_secret(&password)
                    .map_err(|_| IdentityError::WrongPassphrase)?
            };
            if ka.primary() {
                packets.push(key.role_into_primary().into());
            } else {
                packets.push(key.role_into_subordinate().into());
            }
        }
        let (cert, _) = cert
            .insert_packets(packets)
            .map_err(crypto("unprotecting the identity"))?;
        Self::from_cert(cert)
    }

    /// An armored detached signature by the primary key over `data`.
    pub fn sign_detached(&self, data: &[u8]) -> Result<String, IdentityError> {
        let sink = self.sign_detached_into(data, true)?;
        String::from_utf8(sink).map_err(|e| IdentityError::Crypto {
            action: "armoring a signature",
            source: e.into(),
        })
    }

    /// A binary (unarmored) detached signature by the primary key over
    /// `data`: the compact form carried inside binary protocol objects
    /// (group ops and messages, PROTOCOL.md §20). [`PublicCert::verify_detached`]
    /// verifies both forms.
    pub fn sign_detached_binary(&self, data: &[u8]) -> Result<Vec<u8>, IdentityError> {
        self.sign_detached_into(data, false)
    }

    fn sign_detached_into(&self, data: &[u8], armor: bool) -> Result<Vec<u8>, IdentityError> {
        let keypair = self.signing_keypair()?;
        let mut sink = Vec::new();
        {
            let mut message = Message::new(&mut sink);
            if armor {
                message = Armorer::new(message)
                    .kind(openpgp::armor::Kind::Signature)
                    .build()
                    .map_err(crypto("armoring a signature"))?;
            }
            let mut signer = Signer::new(message, keypair)
                .map_err(crypto("signing"))?
                .detached()
                .build()
                .map_err(crypto("signing"))?;
            signer.write_all(data).map_err(|e| IdentityError::Crypto {
                action: "signing",
                source: e.into(),
            })?;
            signer.finalize().map_err(crypto("signing"))?;
        }
        Ok(sink)
    }

    pub(crate) fn cert(&self) -> &Cert {
        &self.cert
    }

    /// The signing key pair (the primary key).
    pub(crate) fn signing_keypair(&self) -> Result<KeyPair, IdentityError> {
        let key = self
            .cert
            .with_policy(&*POLICY, None)
            .map_err(crypto("validating the own certificate"))?
            .keys()
            .secret()
            .for_signing()
            .next()
            .ok_or(IdentityError::BadCert {
                reason: "no secret signing key".into(),
            })?
            .key()
            .clone();
        key.into_keypair()
            .map_err(crypto("unlocking the signing key"))
    }

    /// The decryption key pairs (encryption-capable secret subkeys).
    pub(crate) fn decryption_keypairs(&self) -> Result<Vec<KeyPair>, IdentityError> {
        let valid = self
            .cert
            .with_policy(&*POLICY, None)
            .map_err(crypto("validating the own certificate"))?;
        valid
            .keys()
            .secret()
            .for_transport_encryption()
            .map(|ka| {
                ka.key()
                    .clone()
                    .into_keypair()
                    .map_err(crypto("unlocking a decryption key"))
            })
            .collect()
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn usernames_fold_and_validate() {
        assert_eq!(Username::parse("@Alice_1").unwrap().as_str(), "alice_1");
        assert_eq!(Username::parse("bob").unwrap().to_string(), "@bob");
        for bad in [
            "",
            "@ab",
            "1abc",
            "_abc",
            "al ice",
            "alicé",
            "a-b-c",
            &"x".repeat(33),
            "аlice",
        ] {
            assert!(Username::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Username::parse("admin").unwrap().is_reserved());
    }

    #[test]
    fn fingerprint_groups_and_parses() {
        let f = Fingerprint::from_bytes([0xAB; 20]);
        assert_eq!(
            f.to_string(),
            "ABAB ABAB ABAB ABAB ABAB  ABAB ABAB ABAB ABAB ABAB"
        );
        assert_eq!(Fingerprint::from_hex(&f.to_string()).unwrap(), f);
        assert_eq!(
            Fingerprint::from_hex(&format!("0x{}", f.to_hex().to_lowercase())).unwrap(),
            f
        );
        assert!(Fingerprint::from_hex("abcd").is_err());
        assert!(Fingerprint::from_hex(&"zz".repeat(20)).is_err());
        assert_eq!(format!("{f:?}"), "Fingerprint([scrubbed])");
    }

    #[test]
    fn generated_identity_is_v4_cv25519_without_expiry() {
        let name = Username::parse("alice").unwrap();
        let id = Identity::generate(&name).unwrap();
        let cert = id.cert();
        assert_eq!(cert.primary_key().key().version(), 4);
        assert_eq!(
            cert.primary_key().key().pk_algo(),
            openpgp::types::PublicKeyAlgorithm::EdDSA
        );
        let valid = cert.with_policy(&*POLICY, None).unwrap();
        assert!(valid.primary_key().key_expiration_time().is_none());
        assert!(!valid.features().unwrap().supports_seipdv2());
        let enc: Vec<_> = valid.keys().subkeys().for_transport_encryption().collect();
        assert_eq!(enc.len(), 1);
        assert_eq!(
            enc[0].key().pk_algo(),
            openpgp::types::PublicKeyAlgorithm::ECDH
        );
        assert_eq!(id.public_cert().unwrap().username().unwrap(), name);
        assert!(!id.public_cert().unwrap().cert().is_tsk());
    }

    /// `id`'s public certificate plus `extra` user IDs, self-signed if
    /// `bound`.
    fn with_user_ids(id: &Identity, extra: &[&str], bound: bool) -> PublicCert {
        use openpgp::packet::{UserID, signature::SignatureBuilder};
        let mut signer = id.signing_keypair().unwrap();
        let mut packets: Vec<Packet> = Vec::new();
        for name in extra {
            let uid = UserID::from(*name);
            let sig = bound.then(|| {
                uid.bind(
                    &mut signer,
                    id.cert(),
                    SignatureBuilder::new(SignatureType::PositiveCertification),
                )
                .unwrap()
            });
            packets.push(uid.into());
            packets.extend(sig.map(Into::into));
        }
        let (cert, _) = id.cert().clone().insert_packets(packets).unwrap();
        PublicCert::from_cert(cert.strip_secret_key_material()).unwrap()
    }

    #[test]
    fn a_certificate_speaks_for_exactly_one_username() {
        let id = Identity::generate(&Username::parse("mallory").unwrap()).unwrap();
        let mallory = Username::parse("mallory").unwrap();
        assert_eq!(id.public_cert().unwrap().username().unwrap(), mallory);
        // Another self-signed @ user ID, reserved or not: no username at all.
        for extra in ["@alice", "@admin"] {
            let two = with_user_ids(&id, &[extra], true);
            assert!(two.username().is_err(), "{extra}");
            assert!(two.stripped().unwrap().username().is_err(), "{extra}");
        }
        // An unbound @ user ID counts too.
        assert!(with_user_ids(&id, &["@alice"], false).username().is_err());
        // A non-@ user ID beside the name is fine (stripping drops it).
        let mail = with_user_ids(&id, &["Mallory <m@example.org>"], true);
        assert_eq!(mail.username().unwrap(), mallory);
        assert_eq!(mail.stripped().unwrap().username().unwrap(), mallory);
    }

    #[test]
    fn secret_round_trip_and_passphrase_protection() {
        let id = Identity::generate(&Username::parse("carol").unwrap()).unwrap();
        let plain = id.to_secret_bytes().unwrap();
        assert_eq!(
            Identity::from_secret_bytes(&plain).unwrap().fingerprint(),
            id.fingerprint()
        );

        let pass = SecretString::from("correct horse battery staple");
        let protected = id.to_protected_armored(&pass).unwrap();
        let text = std::str::from_utf8(&protected).unwrap();
        assert!(text.starts_with("-----BEGIN PGP PRIVATE KEY BLOCK-----"));
        let back = Identity::from_protected(&protected, &pass).unwrap();
        assert_eq!(back.fingerprint(), id.fingerprint());
        let wrong = Identity::from_protected(&protected, &SecretString::from("nope"));
        assert!(matches!(wrong, Err(IdentityError::WrongPassphrase)));
        // Every secret key in the protected export is encrypted.
        let cert = Cert::from_bytes(&protected[..]).unwrap();
        assert!(
            cert.keys()
                .secret()
                .all(|k| !k.key().has_unencrypted_secret())
        );
    }

    #[test]
    fn public_cert_rejects_secret_and_garbage() {
        let id = Identity::generate(&Username::parse("dave").unwrap()).unwrap();
        assert!(matches!(
            PublicCert::from_bytes(&id.to_secret_bytes().unwrap()),
            Err(IdentityError::BadCert { .. })
        ));
        assert!(PublicCert::from_bytes(b"garbage").is_err());
        assert!(matches!(
            PublicCert::from_bytes(&vec![b'A'; MAX_CERT + 1]),
            Err(IdentityError::CertTooLarge { .. })
        ));
        let armored = id.public_cert().unwrap().to_armored().unwrap();
        let parsed = PublicCert::from_bytes(armored.as_bytes()).unwrap();
        assert_eq!(parsed.fingerprint(), id.fingerprint());
        assert_eq!(parsed.stripped().unwrap().fingerprint(), id.fingerprint());
    }

    #[test]
    fn detached_signatures_verify_only_with_the_signer() {
        let a = Identity::generate(&Username::parse("erin").unwrap()).unwrap();
        let b = Identity::generate(&Username::parse("frank").unwrap()).unwrap();
        let sig = a.sign_detached(b"statement").unwrap();
        let pa = a.public_cert().unwrap();
        assert!(pa.verify_detached(b"statement", sig.as_bytes()).is_ok());
        assert!(pa.verify_detached(b"statemenT", sig.as_bytes()).is_err());
        assert!(
            b.public_cert()
                .unwrap()
                .verify_detached(b"statement", sig.as_bytes())
                .is_err()
        );
        assert!(pa.verify_detached(b"statement", b"junk").is_err());
    }
}
