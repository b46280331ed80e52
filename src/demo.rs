//! The offline demo (`umbra demo`): what happens between two users, step by
//! step, with real OpenPGP envelopes and real session frames, all in this
//! process. The networked demo (local Tor network, Handshaker, two nodes)
//! extends this once the daemon exists.

use std::io::Write;

use crate::envelope::Freshness;
use crate::handshake::{self, Answer, MemorySeen, TrustAnchor};
use crate::handshaker_api::binding::BindingSigner;
use crate::identity::{Identity, Username};
use crate::time::now_secs;
use crate::wire::{PeerMessage, Text};

/// Errors of the demo.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// A step of the flow failed.
    #[error("demo step failed: {step}")]
    Step {
        /// Which step.
        step: &'static str,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Writing to the output failed.
    #[error("cannot write demo output")]
    Output(#[from] std::io::Error),
}

fn step<T, E: std::error::Error + Send + Sync + 'static>(
    step: &'static str,
    r: Result<T, E>,
) -> Result<T, DemoError> {
    r.map_err(|e| DemoError::Step {
        step,
        source: Box::new(e),
    })
}

/// Runs the demo, narrating to `out`.
pub fn run(out: &mut dyn Write) -> Result<(), DemoError> {
    let alice_name = step("username", Username::parse("alice"))?;
    let bob_name = step("username", Username::parse("bob"))?;
    writeln!(
        out,
        "1. Generating OpenPGP v4 identities (Ed25519 + Cv25519)…"
    )?;
    let alice = step("generate alice", Identity::generate(&alice_name))?;
    let bob = step("generate bob", Identity::generate(&bob_name))?;
    writeln!(out, "   {alice_name}  {}", alice.fingerprint())?;
    writeln!(out, "   {bob_name}    {}", bob.fingerprint())?;
    let alice_pub = step("public cert", alice.public_cert())?;
    let bob_pub = step("public cert", bob.public_cert())?;
    // The Handshaker's part, in memory: it signs "@alice is this key" and
    // Bob pinned its signing key when he registered.
    const HANDSHAKER: &str = "http://handshaker.example:8080";
    let directory = BindingSigner::generate();
    let anchor = TrustAnchor {
        address: HANDSHAKER.to_owned(),
        key: directory.public(),
    };
    let alice_binding = step(
        "binding",
        directory.issue(&alice_name, &alice.fingerprint(), HANDSHAKER, now_secs()),
    )?;

    writeln!(
        out,
        "2. {alice_name} sends {bob_name} a signed+encrypted connection request…"
    )?;
    let (request, pending) = step(
        "make request",
        handshake::make_request(
            &alice,
            &bob_pub,
            &bob_name,
            "alice.example:7777",
            "hi, it's Alice",
            &alice_binding,
        ),
    )?;
    writeln!(
        out,
        "   envelope: {} bytes of armored OpenPGP",
        request.len()
    )?;

    writeln!(
        out,
        "3. {bob_name} opens it and checks the signature and the Handshaker's binding…"
    )?;
    let mut seen = MemorySeen::default();
    let (req, signer) = step(
        "open request",
        handshake::open_request(
            request.as_bytes(),
            &bob,
            &anchor,
            &mut seen,
            Freshness::default(),
        ),
    )?;
    writeln!(
        out,
        "   from {}, signer {}, note: {:?}",
        req.from_username,
        signer.fingerprint(),
        req.note
    )?;
    let replay = handshake::open_request(
        request.as_bytes(),
        &bob,
        &anchor,
        &mut seen,
        Freshness::default(),
    );
    writeln!(
        out,
        "   the same request again: {}",
        replay
            .err()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "accepted (BUG)".into())
    )?;

    writeln!(
        out,
        "4. {bob_name} accepts; both sides derive the session (HKDF over both halves + X25519)…"
    )?;
    let (accept, mut bob_session) = step(
        "make accept",
        handshake::make_accept(&bob, &alice_pub, &req, "bob.example:7777"),
    )?;
    let mut pending = Some(pending);
    let answer = step(
        "open accept",
        handshake::open_answer(
            accept.as_bytes(),
            &alice,
            &bob_pub,
            &mut |_| pending.take(),
            Freshness::default(),
        ),
    )?;
    let Answer::Accepted {
        session: mut alice_session,
        ..
    } = answer
    else {
        return Err(DemoError::Step {
            step: "open accept",
            source: "request was rejected".into(),
        });
    };

    writeln!(
        out,
        "5. Chatting over AES-256-GCM frames with a forward-secret ratchet…"
    )?;
    for (i, (from, text)) in [
        ("alice", "Hello Bob!"),
        ("bob", "Hi Alice, keys check out."),
        ("alice", "Great."),
    ]
    .into_iter()
    .enumerate()
    {
        let msg = PeerMessage::Text(Text {
            id: [i as u8; 16],
            seq: i as u64 + 1,
            sent_at: crate::time::now_secs(),
            body: text.into(),
        });
        let plain = step("encode", msg.encode())?;
        let (sender, receiver): (&mut crate::session::Session, &mut crate::session::Session) =
            if from == "alice" {
                (&mut *alice_session, &mut bob_session)
            } else {
                (&mut bob_session, &mut *alice_session)
            };
        let frame = step("seal", sender.seal(&plain))?;
        let opened = step("open", receiver.open(&frame))?;
        let decoded = step("decode", PeerMessage::decode(&opened))?;
        if let PeerMessage::Text(t) = decoded {
            writeln!(
                out,
                "   @{from}: {}   ({} byte sealed frame, message #{})",
                t.body,
                frame.len(),
                t.seq
            )?;
        }
        let replayed = receiver.open(&frame);
        if replayed.is_ok() {
            return Err(DemoError::Step {
                step: "replay check",
                source: "replayed frame accepted".into(),
            });
        }
    }
    writeln!(out, "6. Ending the session: keys erased on both sides.")?;
    alice_session.end();
    bob_session.end();
    writeln!(out, "Done.")?;
    Ok(())
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn demo_runs_and_narrates() {
        let mut out = Vec::new();
        super::run(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("@bob: Hi Alice, keys check out."), "{text}");
        assert!(text.contains("replayed connection request"), "{text}");
        assert!(text.ends_with("Done.\n"));
    }
}
