//! Connection requests beyond the happy path, over the in-memory transport:
//! received requests and Accepts survive restarts; rejects (silent and
//! notified); a key change is never accepted silently; read receipts, and
//! their absence when turned off.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::support;

use futures::future::BoxFuture;
use support::{
    User, connect_pair, fast_config, memory_pair, wait_event, wait_store, with_user_ids,
};
use umbra::envelope;
use umbra::handshake::{ConnectionRequest, HandshakeMessage};
use umbra::handshaker_api::binding::{BindingKey, SignedBinding};
use umbra::identity::{Identity, PublicCert, Username};
use umbra::node::{Event, MemoryMailbox, NodeConfig, NodeError};
use umbra::node::{MailBatch, Mailbox, MailboxError, Node};
use umbra::session::{KeyShare, fill_random};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use umbra::store::{ContactState, DeliveryState, Direction};
use umbra::transport::memory::{MemoryNetwork, MemoryTransport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_and_accepts_survive_restarts() {
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let a = alice
        .start(MemoryTransport::new(&net, "alice-hs"), &mailbox)
        .await;
    let b = bob
        .start(MemoryTransport::new(&net, "bob-hs"), &mailbox)
        .await;
    let ab = a.request(&bob.cert, "remember me").await.unwrap();
    b.poll_mailbox().await.unwrap();
    assert_eq!(mailbox.pending("bob"), 0, "stored, then acked");
    // alice goes offline: the Accept cannot be delivered yet.
    a.shutdown().await;

    // bob restarts: the request is still there, with alice's fingerprint.
    b.shutdown().await;
    let b = bob
        .start(MemoryTransport::new(&net, "bob-hs"), &mailbox)
        .await;
    let reqs = b.requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].from, "alice");
    assert_eq!(reqs[0].note, "remember me");
    assert!(reqs[0].fingerprint.ct_eq(&alice.cert.fingerprint()));
    assert!(!reqs[0].key_changed);
    // Polling again does not duplicate it.
    b.poll_mailbox().await.unwrap();
    assert_eq!(b.requests().await.unwrap().len(), 1);

    let ba = b.accept(&reqs[0].request_id).await.unwrap();
    assert!(b.requests().await.unwrap().is_empty());
    let again = b.accept(&reqs[0].request_id).await.unwrap_err();
    assert!(matches!(again, NodeError::NotFound { .. }), "{again:?}");
    // bob restarts before alice is back: the Accept is still delivered.
    b.shutdown().await;
    let b = bob
        .start(MemoryTransport::new(&net, "bob-hs"), &mailbox)
        .await;
    let a = alice
        .start(MemoryTransport::new(&net, "alice-hs"), &mailbox)
        .await;
    let mut a_events = a.events();
    wait_store(&a, &mut a_events, "alice has the session", move |s| {
        s.session_for_contact(ab).unwrap().is_some()
    })
    .await;
    let mut b_events = b.events();
    a.send_text(ab, "got your accept").await.unwrap();
    wait_event(
        &mut b_events,
        |e| matches!(e, Event::MessageReceived { contact, seq: 1, .. } if *contact == ba),
    )
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_silently_or_with_notice() {
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (alice, bob, carol) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let a = alice
        .start(MemoryTransport::new(&net, "alice-hs"), &mailbox)
        .await;
    let b = bob
        .start(MemoryTransport::new(&net, "bob-hs"), &mailbox)
        .await;
    let c = carol
        .start(MemoryTransport::new(&net, "carol-hs"), &mailbox)
        .await;
    a.request(&bob.cert, "").await.unwrap();
    let cb = c.request(&bob.cert, "").await.unwrap();
    b.poll_mailbox().await.unwrap();
    let reqs = b.requests().await.unwrap();
    assert_eq!(reqs.len(), 2);
    let from = |name: &str| reqs.iter().find(|r| r.from == name).unwrap().request_id;

    // Silent: nothing goes back to alice.
    b.reject(&from("alice"), false).await.unwrap();
    assert_eq!(mailbox.pending("alice"), 0);
    // Notified: carol learns it.
    let mut c_events = c.events();
    b.reject(&from("carol"), true).await.unwrap();
    assert_eq!(mailbox.pending("carol"), 1);
    c.poll_mailbox().await.unwrap();
    wait_event(
        &mut c_events,
        |e| matches!(e, Event::RequestAnswered { contact, accepted: false } if *contact == cb),
    )
    .await;
    let state = c
        .store()
        .run(move |s| s.contact(cb).unwrap().unwrap().state)
        .await
        .unwrap();
    assert_eq!(state, ContactState::Rejected);
    assert!(b.requests().await.unwrap().is_empty());
    // A replay of alice's request from the mailbox stays rejected.
    let err = b.accept(&from("alice")).await.unwrap_err();
    assert!(matches!(err, NodeError::NotFound { .. }), "{err:?}");
    for n in [a, b, c] {
        n.shutdown().await;
    }
}

/// A ConnectionRequest to @bob signed by `from`, carrying `cert` and
/// `binding`, claiming to be `claimed`, made `ahead` seconds in the future
/// (by the signer's clock).
fn request_as(
    from: &Identity,
    cert: &PublicCert,
    binding: &SignedBinding,
    claimed: &str,
    to: &PublicCert,
    ahead: u64,
) -> String {
    let share = KeyShare::generate();
    let mut request_id = [0u8; 16];
    fill_random(&mut request_id);
    let at = umbra::time::now_secs() + ahead;
    let request = HandshakeMessage::Request(ConnectionRequest {
        request_id,
        from_username: claimed.into(),
        from_fingerprint: *from.fingerprint().as_bytes(),
        from_cert: cert.to_bytes().unwrap(),
        binding: binding.encode().unwrap(),
        to_username: "bob".into(),
        onion_address: "somewhere-hs".into(),
        session_half: share.half(),
        ephemeral_public: share.ephemeral_public(),
        note: "it's me, new number".into(),
        created_at: at,
    });
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(at);
    envelope::seal_at(&request.encode().unwrap(), from, to, when).unwrap()
}

/// SECURITY-2026-11 H1 and H2: registered as @mallory, Mallory cannot make
/// Bob see a request "from @alice" — not with a certificate that also
/// carries `@alice`, not with a second key named `@alice` and Alice's
/// (public) binding, not with that key and her own binding. The real Alice
/// is not flagged as a key change afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_another_users_name_is_refused_and_never_shown() {
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let b = bob
        .start(MemoryTransport::new(&net, "bob-hs"), &mailbox)
        .await;
    let mallory = Identity::generate(&Username::parse("mallory").unwrap()).unwrap();
    mailbox.register(mallory.public_cert().unwrap());
    mailbox.register(alice.cert.clone());
    let mallorys = mailbox.binding_of("mallory").unwrap();
    let alices = mailbox.binding_of("alice").unwrap();
    let extra_ids = with_user_ids(&mallory, &["@alice", "@admin"]);
    for claimed in ["alice", "admin", "mallory"] {
        let forged = request_as(&mallory, &extra_ids, &mallorys, claimed, &bob.cert, 0);
        mailbox.inject("bob", forged);
    }
    let fake_alice = Identity::generate(&Username::parse("alice").unwrap()).unwrap();
    let fake_cert = fake_alice.public_cert().unwrap();
    for binding in [&alices, &mallorys] {
        let forged = request_as(&fake_alice, &fake_cert, binding, "alice", &bob.cert, 0);
        mailbox.inject("bob", forged);
    }
    b.poll_mailbox().await.unwrap();
    assert!(b.requests().await.unwrap().is_empty(), "nothing shown");
    assert_eq!(
        mailbox.pending("bob"),
        0,
        "forgeries are dropped on purpose"
    );

    let a = alice
        .start(MemoryTransport::new(&net, "alice-hs"), &mailbox)
        .await;
    a.request(&bob.cert, "hi bob").await.unwrap();
    b.poll_mailbox().await.unwrap();
    let reqs = b.requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].from, "alice");
    assert!(reqs[0].fingerprint.ct_eq(&alice.cert.fingerprint()));
    assert!(!reqs[0].key_changed, "the real alice is not flagged");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_change_is_never_accepted_silently() {
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let a = alice
        .start(MemoryTransport::new(&net, "alice-hs"), &mailbox)
        .await;
    let b = bob
        .start(MemoryTransport::new(&net, "bob-hs"), &mailbox)
        .await;
    let (ab, _) = connect_pair(&a, &b, &bob.cert).await;
    a.store()
        .run(move |s| s.set_contact_verified(ab, true).unwrap())
        .await
        .unwrap();
    b.shutdown().await;

    // Someone else registers as @bob with a new key and asks alice.
    let impostor = User::new("bob");
    let i = impostor
        .start(MemoryTransport::new(&net, "impostor-hs"), &mailbox)
        .await;
    // alice asking the new @bob key is refused without an override.
    let err = a.request(&impostor.cert, "").await.unwrap_err();
    assert!(matches!(err, NodeError::KeyChanged), "{err:?}");
    i.request(&alice.cert, "it's me, new phone").await.unwrap();
    let mut a_events = a.events();
    a.poll_mailbox().await.unwrap();
    let Event::RequestReceived { key_changed, .. } = wait_event(&mut a_events, |e| {
        matches!(e, Event::RequestReceived { .. })
    })
    .await
    else {
        unreachable!()
    };
    assert!(key_changed);
    let reqs = a.requests().await.unwrap();
    assert!(reqs[0].key_changed);
    let err = a.accept(&reqs[0].request_id).await.unwrap_err();
    assert!(matches!(err, NodeError::KeyChanged), "{err:?}");
    // Nothing changed: the old key is still pinned and verified, the request waits.
    let (fpr, verified, session) = a
        .store()
        .run(move |s| {
            let c = s.contact(ab).unwrap().unwrap();
            (
                c.fingerprint,
                c.verified,
                s.session_for_contact(ab).unwrap().is_some(),
            )
        })
        .await
        .unwrap();
    assert_eq!(fpr, bob.cert.fingerprint().to_hex());
    assert!(verified);
    assert!(session);
    assert_eq!(a.requests().await.unwrap().len(), 1);

    // With the explicit override (after checking out of band): re-pinned,
    // no longer verified, the old session ended.
    let id = a.accept_with(&reqs[0].request_id, true).await.unwrap();
    assert_eq!(id, ab, "same contact row: the history stays");
    wait_event(
        &mut a_events,
        |e| matches!(e, Event::SessionEnded { contact, by_peer: false } if *contact == ab),
    )
    .await;
    let (fpr, verified) = a
        .store()
        .run(move |s| {
            let c = s.contact(ab).unwrap().unwrap();
            (c.fingerprint, c.verified)
        })
        .await
        .unwrap();
    assert_eq!(fpr, impostor.cert.fingerprint().to_hex());
    assert!(!verified);
    a.shutdown().await;
    i.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_receipts_reach_the_sender() {
    let pair = memory_pair(fast_config()).await;
    let (a, b, ab, ba) = pair.nodes();
    let mut a_events = a.events();
    let mut b_events = b.events();
    for i in 1..=3 {
        a.send_text(ab, &format!("read me {i}")).await.unwrap();
    }
    wait_event(&mut b_events, |e| {
        matches!(e, Event::MessageReceived { seq: 3, .. })
    })
    .await;
    assert_eq!(b.mark_read(ba).await.unwrap(), 3);
    wait_event(&mut a_events, |e| {
        matches!(e, Event::DeliveryChanged { contact, upto: 3, state: DeliveryState::Read } if *contact == ab)
    })
    .await;
    wait_store(&a, &mut a_events, "all three read", move |s| {
        s.history(ab, 10)
            .unwrap()
            .iter()
            .all(|m| m.state == DeliveryState::Read)
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}

/// `privacy.read_receipts = false` (UX-2026-11 A8): reading sends no
/// Receipt, so the sender's messages stay delivered, not read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_read_receipts_the_sender_sees_only_delivered() {
    let quiet = NodeConfig {
        read_receipts: false,
        ..fast_config()
    };
    let pair = memory_pair(quiet).await;
    let (a, b, ab, ba) = pair.nodes();
    let mut a_events = a.events();
    let mut b_events = b.events();
    a.send_text(ab, "read me quietly").await.unwrap();
    wait_event(&mut b_events, |e| {
        matches!(e, Event::MessageReceived { seq: 1, .. })
    })
    .await;
    wait_event(&mut a_events, |e| {
        matches!(e, Event::DeliveryChanged { contact, upto: 1, state: DeliveryState::Delivered } if *contact == ab)
    })
    .await;
    assert_eq!(b.mark_read(ba).await.unwrap(), 1);
    // Frames on a connection arrive in order: once bob's next Text is in,
    // a Receipt sent before it would have been applied.
    b.send_text(ba, "after reading").await.unwrap();
    wait_event(
        &mut a_events,
        |e| matches!(e, Event::MessageReceived { contact, seq: 1, .. } if *contact == ab),
    )
    .await;
    let states: Vec<_> = a
        .store()
        .run(move |s| s.history(ab, 10).unwrap())
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Outgoing)
        .map(|m| m.state)
        .collect();
    assert_eq!(states, vec![DeliveryState::Delivered]);
    a.shutdown().await;
    b.shutdown().await;
}

/// A Mailbox that records every call; its binding key cannot be fetched
/// while `failing` is set (a Handshaker that is briefly unreachable), and
/// its acks wait for a permit of `gate` (a slow one), saying when one is
/// waiting.
struct Recorder {
    inner: MemoryMailbox,
    calls: Mutex<Vec<&'static str>>,
    failing: AtomicBool,
    gate: tokio::sync::Semaphore,
    waiting: tokio::sync::Notify,
}

impl Recorder {
    fn new(inner: &MemoryMailbox, failing: bool, open: bool) -> Arc<Recorder> {
        let permits = if open {
            tokio::sync::Semaphore::MAX_PERMITS
        } else {
            0
        };
        Arc::new(Recorder {
            inner: inner.clone(),
            calls: Mutex::new(Vec::new()),
            failing: AtomicBool::new(failing),
            gate: tokio::sync::Semaphore::new(permits),
            waiting: tokio::sync::Notify::new(),
        })
    }

    fn record(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }

    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }
}

impl Mailbox for Recorder {
    fn deposit<'a>(
        &'a self,
        to: &'a str,
        envelope: String,
    ) -> BoxFuture<'a, Result<(), MailboxError>> {
        self.record("deposit");
        self.inner.deposit(to, envelope)
    }
    fn fetch<'a>(&'a self, me: &'a str) -> BoxFuture<'a, Result<MailBatch, MailboxError>> {
        self.record("fetch");
        self.inner.fetch(me)
    }
    fn ack<'a>(&'a self, me: &'a str, id: u64) -> BoxFuture<'a, Result<(), MailboxError>> {
        self.record("ack");
        Box::pin(async move {
            self.waiting.notify_one();
            let _permit = self.gate.acquire().await;
            self.inner.ack(me, id).await
        })
    }
    fn address(&self) -> Option<String> {
        self.inner.address()
    }
    fn binding_key(&self) -> BoxFuture<'_, Result<Option<BindingKey>, MailboxError>> {
        self.record("binding_key");
        let failing = self.failing.load(Ordering::SeqCst);
        let key = self.inner.binding_key();
        Box::pin(async move {
            if failing {
                return Err(MailboxError::Unavailable {
                    reason: "Handshaker unreachable (test)".into(),
                });
            }
            Ok(Some(key))
        })
    }
}

/// bob's node on `mailbox` (over `memory`), and a registered alice.
async fn bob_on(
    memory: &MemoryMailbox,
    mailbox: Arc<Recorder>,
) -> (User, umbra::node::NodeHandle, Identity) {
    let net = MemoryNetwork::new();
    let bob = User::new("bob");
    memory.register(bob.cert.clone());
    let mb: Arc<dyn Mailbox> = mailbox;
    let b = Node::start(
        fast_config(),
        bob.open(),
        MemoryTransport::new(&net, "bob-hs"),
        Some(mb),
    )
    .await
    .unwrap();
    let alice = Identity::generate(&Username::parse("alice").unwrap()).unwrap();
    memory.register(alice.public_cert().unwrap());
    (bob, b, alice)
}

/// A request from `who` (registered at `memory`) to bob, `ahead` seconds
/// in the future.
fn request_from(memory: &MemoryMailbox, who: &Identity, bob: &User, ahead: u64) -> String {
    let binding = memory.binding_of(who.username().as_str()).unwrap();
    let cert = who.public_cert().unwrap();
    let name = who.username().as_str();
    request_as(who, &cert, &binding, name, &bob.cert, ahead)
}

/// SECURITY-2026-11 L6: a request signed a little "in the future" by the
/// receiver's clock, or one that arrives while the Handshaker's key could
/// not be fetched for its first use, stays in the mailbox and is delivered
/// by a later poll; neither is acked and lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skewed_or_unlucky_requests_are_delivered_later_not_lost() {
    let memory = MemoryMailbox::new();
    let flaky = Recorder::new(&memory, true, true);
    let (bob, b, alice) = bob_on(&memory, flaky.clone()).await;

    // The Handshaker's key cannot be fetched to pin it: kept, not acked.
    memory.inject("bob", request_from(&memory, &alice, &bob, 0));
    assert!(b.poll_mailbox().await.is_err(), "the poll says it failed");
    assert!(b.requests().await.unwrap().is_empty());
    assert_eq!(memory.pending("bob"), 1, "kept for the next poll");
    flaky.failing.store(false, Ordering::SeqCst);
    b.poll_mailbox().await.unwrap();
    assert_eq!(b.requests().await.unwrap().len(), 1, "delivered later");
    assert_eq!(memory.pending("bob"), 0);

    // Signed 4 s beyond the 300 s skew allowance: kept until the receiver's
    // clock catches up, then delivered (bounded retries, no fixed sleep).
    let carol = Identity::generate(&Username::parse("carol").unwrap()).unwrap();
    memory.register(carol.public_cert().unwrap());
    memory.inject("bob", request_from(&memory, &carol, &bob, 304));
    b.poll_mailbox().await.unwrap();
    assert_eq!(memory.pending("bob"), 1, "from the future: kept, not acked");
    assert_eq!(b.requests().await.unwrap().len(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while b.requests().await.unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        b.poll_mailbox().await.unwrap();
    }
    assert_eq!(memory.pending("bob"), 0);
    b.shutdown().await;
}

/// SECURITY-2026-11 H2: receiving requests asks the Handshaker nothing
/// that depends on them. Every call bob's node makes while requests from
/// two people arrive is a fetch or an ack of its own mailbox, plus one
/// fetch of the binding key to pin it (first use); none names a sender.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiving_a_request_asks_the_handshaker_nothing_about_its_sender() {
    let memory = MemoryMailbox::new();
    let recorder = Recorder::new(&memory, false, true);
    let (bob, b, alice) = bob_on(&memory, recorder.clone()).await;
    let carol = Identity::generate(&Username::parse("carol").unwrap()).unwrap();
    memory.register(carol.public_cert().unwrap());
    memory.inject("bob", request_from(&memory, &alice, &bob, 0));
    memory.inject("bob", request_from(&memory, &carol, &bob, 0));
    b.poll_mailbox().await.unwrap();
    let reqs = b.requests().await.unwrap();
    assert_eq!(reqs.len(), 2, "both delivered");
    assert!(
        reqs.iter()
            .any(|r| r.from == "alice" && r.fingerprint.ct_eq(&alice.fingerprint()))
    );
    let calls = recorder.calls();
    assert!(
        calls
            .iter()
            .all(|c| matches!(*c, "fetch" | "ack" | "binding_key")),
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| **c == "binding_key").count(),
        1,
        "{calls:?}"
    );
    assert_eq!(
        calls.iter().filter(|c| **c == "ack").count(),
        2,
        "{calls:?}"
    );
    b.shutdown().await;
}

/// An explicit poll returns only once every item fetched so far was
/// handled, also items a background poll was still opening: before, it
/// skipped them and returned at once, and a request could be listed only
/// after the caller had looked (seen as a flaky "a repeated request is
/// listed once" test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_poll_waits_for_the_items_a_background_poll_is_handling() {
    let memory = MemoryMailbox::new();
    let gated = Recorder::new(&memory, false, false);
    let (bob, b, alice) = bob_on(&memory, gated.clone()).await;
    memory.inject("bob", request_from(&memory, &alice, &bob, 0));
    // The background poll has the item and waits for the Handshaker.
    tokio::time::timeout(support::WAIT, gated.waiting.notified())
        .await
        .expect("the background poll acks the item");

    {
        let explicit = b.poll_mailbox();
        tokio::pin!(explicit);
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(500), &mut explicit)
                .await
                .is_err(),
            "the explicit poll returned while an item was still being handled"
        );
        gated.gate.add_permits(1000);
        tokio::time::timeout(support::WAIT, explicit)
            .await
            .expect("the poll ends once the Handshaker answers")
            .unwrap();
    }
    assert_eq!(b.requests().await.unwrap().len(), 1, "listed on return");
    b.shutdown().await;
}
