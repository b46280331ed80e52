//! Interoperability with the real GnuPG (`gpg` from Debian's gnupg package).
//!
//! Umbra's envelopes are plain OpenPGP: a user must be able to check them
//! with GnuPG, and GnuPG-made messages must open (or be refused) exactly as
//! Umbra-made ones.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

use secrecy::SecretString;
use umbra::envelope::{self, EnvelopeError, Freshness};
use umbra::identity::{Identity, PublicCert, Username};

struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let home = tempfile::tempdir().unwrap();
        std::fs::set_permissions(
            home.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        std::fs::write(
            home.path().join("gpg-agent.conf"),
            "allow-loopback-pinentry\n",
        )
        .unwrap();
        Gpg { home }
    }

    fn run(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args([
                "--batch",
                "--no-tty",
                "--pinentry-mode",
                "loopback",
                "--passphrase",
                "pw",
            ])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gpg must be installed (apt-get install gnupg)");
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let out = self.run(args, stdin);
        assert!(
            out.status.success(),
            "gpg {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// Generates an ed25519/cv25519 key in gpg and returns its public cert.
    fn generate(&self, uid: &str) -> PublicCert {
        self.ok(
            &["--quick-gen-key", uid, "future-default", "default", "never"],
            b"",
        );
        // "=" asks gpg for an exact user ID match ("@x" alone means an e-mail part).
        let armored = self.ok(&["--armor", "--export", &format!("={uid}")], b"");
        PublicCert::from_bytes(&armored).unwrap()
    }
}

fn ident(name: &str) -> Identity {
    Identity::generate(&Username::parse(name).unwrap()).unwrap()
}

#[test]
fn gpg_reads_umbra_certs_and_envelopes() {
    let gpg = Gpg::new();
    let (alice, bob) = (ident("alice"), ident("bob"));
    let alice_pub = alice.public_cert().unwrap().to_armored().unwrap();
    // gpg imports Alice's public cert and Bob's (passphrase-protected) secret key.
    gpg.ok(&["--import"], alice_pub.as_bytes());
    let bob_secret = bob.to_protected_armored(&SecretString::from("pw")).unwrap();
    gpg.ok(&["--import"], &bob_secret);
    let listed = String::from_utf8(gpg.ok(&["--with-colons", "--list-keys"], b"")).unwrap();
    assert!(listed.contains(&alice.fingerprint().to_hex()), "{listed}");

    let sealed = envelope::seal(b"hello from umbra", &alice, &bob.public_cert().unwrap()).unwrap();
    let out = gpg.run(&["--status-fd", "2", "--decrypt"], sealed.as_bytes());
    let status = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{status}");
    assert_eq!(out.stdout, b"hello from umbra");
    assert!(status.contains("[GNUPG:] GOODSIG"), "{status}");
    assert!(
        status.contains(&format!("VALIDSIG {}", alice.fingerprint().to_hex())),
        "{status}"
    );
    assert!(status.contains("DECRYPTION_OKAY"), "{status}");
}

#[test]
fn umbra_opens_gpg_envelopes_from_the_right_signer_only() {
    let gpg = Gpg::new();
    let bob = ident("bob");
    let bob_pub = bob.public_cert().unwrap();
    gpg.ok(&["--import"], bob_pub.to_armored().unwrap().as_bytes());
    let sender = gpg.generate("@gpgsender");
    let other = gpg.generate("@gpgother");
    let bob_fpr = bob.fingerprint().to_hex();

    let encrypt_compressed = |signer: &PublicCert, compress: &str| {
        gpg.ok(
            &[
                "--trust-model",
                "always",
                "--armor",
                "--compress-algo",
                compress,
                "--local-user",
                &signer.fingerprint().to_hex(),
                "--recipient",
                &bob_fpr,
                "--sign",
                "--encrypt",
            ],
            b"hello from gnupg",
        )
    };
    // Umbra never compresses and refuses compressed envelopes (PROTOCOL.md
    // §4.2): GnuPG users pass --compress-algo none.
    let encrypt_as = |signer: &PublicCert| encrypt_compressed(signer, "none");

    // Signed by the expected sender: accepted, with the right signer.
    let msg = encrypt_as(&sender);
    let opened = envelope::open(&msg, &bob, &sender, Freshness::default()).unwrap();
    assert_eq!(&opened.payload[..], b"hello from gnupg");
    assert_eq!(opened.signer, sender.fingerprint());

    // The same, compressed as GnuPG does by default: refused before
    // anything is inflated (SECURITY-2026-11 M2).
    for algo in ["zlib", "zip", "bzip2"] {
        let msg = encrypt_compressed(&sender, algo);
        let refused = envelope::open(&msg, &bob, &sender, Freshness::default());
        assert!(
            matches!(refused, Err(EnvelopeError::Compressed)),
            "{algo}: {:?}",
            refused.err()
        );
    }

    // Signed by a different gpg key: refused as an unexpected signer.
    let msg = encrypt_as(&other);
    assert!(matches!(
        envelope::open(&msg, &bob, &sender, Freshness::default()),
        Err(EnvelopeError::UnknownSigner)
    ));

    // Encrypted but unsigned: refused as unsigned.
    let unsigned = gpg.ok(
        &[
            "--trust-model",
            "always",
            "--armor",
            "--compress-algo",
            "none",
            "--recipient",
            &bob_fpr,
            "--encrypt",
        ],
        b"no signature",
    );
    assert!(matches!(
        envelope::open(&unsigned, &bob, &sender, Freshness::default()),
        Err(EnvelopeError::Unsigned)
    ));

    // Signed but not encrypted: refused as not encrypted.
    let signed_only = gpg.ok(
        &[
            "--armor",
            "--compress-algo",
            "none",
            "--local-user",
            &sender.fingerprint().to_hex(),
            "--sign",
        ],
        b"cleartext",
    );
    assert!(matches!(
        envelope::open(&signed_only, &bob, &sender, Freshness::default()),
        Err(EnvelopeError::NotEncrypted)
    ));
}
