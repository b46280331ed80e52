//! Repeated, crossing and re-key requests (PROTOCOL.md §12.2): whatever the
//! interleaving, both sides end with one session they both hold, and
//! messages flow both ways. Before §12.2, a second request (or a request
//! between contacts) followed by an accept left the two sides with
//! different sessions for good (UX-2026-11 B1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use proptest::prelude::*;
use umbra::node::{MemoryMailbox, NodeError, NodeHandle};
use umbra::store::ContactId;
use umbra::transport::memory::{MemoryNetwork, MemoryTransport};

use crate::support::{self, User, incoming, wait_store};

/// alice and bob on one memory network and mailbox (see `support::start_pair`).
struct Pair {
    net: MemoryNetwork,
    mailbox: MemoryMailbox,
    alice: User,
    bob: User,
    a: Option<NodeHandle>,
    b: Option<NodeHandle>,
}

impl Pair {
    async fn new() -> Pair {
        Pair::with_config(support::fast_config()).await
    }

    /// alice with `a_config`, bob with the fast test settings.
    async fn with_config(a_config: umbra::node::NodeConfig) -> Pair {
        let support::Started {
            net,
            mailbox,
            alice,
            bob,
            a,
            b,
        } = support::start_pair(a_config, support::fast_config()).await;
        Pair {
            net,
            mailbox,
            alice,
            bob,
            a: Some(a),
            b: Some(b),
        }
    }

    fn a(&self) -> &NodeHandle {
        self.a.as_ref().unwrap()
    }

    fn b(&self) -> &NodeHandle {
        self.b.as_ref().unwrap()
    }

    async fn restart_a(&mut self) {
        self.a.take().unwrap().shutdown().await;
        self.a = Some(
            self.alice
                .start(MemoryTransport::new(&self.net, "alice-hs"), &self.mailbox)
                .await,
        );
    }

    async fn restart_b(&mut self) {
        self.b.take().unwrap().shutdown().await;
        self.b = Some(
            self.bob
                .start(MemoryTransport::new(&self.net, "bob-hs"), &self.mailbox)
                .await,
        );
    }

    async fn shutdown(self) {
        self.a.unwrap().shutdown().await;
        self.b.unwrap().shutdown().await;
    }
}

/// `who` asks `whom` (`rekey`: also when they are connected).
async fn ask(who: &NodeHandle, whom: &User, rekey: bool) -> Result<ContactId, NodeError> {
    who.request_opts(&whom.cert, "hi", false, rekey).await
}

/// `who` polls its mailbox and accepts the request listed from `from`, if
/// any. Returns whether it accepted one.
async fn accept_from(who: &NodeHandle, from: &str) -> bool {
    who.poll_mailbox().await.unwrap();
    let reqs = who.requests().await.unwrap();
    let listed: Vec<_> = reqs.iter().filter(|r| r.from == from).collect();
    assert!(
        listed.len() <= 1,
        "one request per person: {}",
        listed.len()
    );
    match listed.first() {
        // A crossing may resolve between listing and accepting: the
        // request is then a leftover and gone (PROTOCOL.md §12.2 rule 4).
        Some(r) => match who.accept(&r.request_id).await {
            Ok(_) => true,
            Err(NodeError::NotFound { .. }) => false,
            Err(e) => panic!("accept failed: {e}"),
        },
        None => false,
    }
}

/// The session id `node` holds for the contact named `name`, if any.
async fn session_of(node: &NodeHandle, name: &'static str) -> Option<[u8; 16]> {
    node.store()
        .run(move |s| {
            let c = s.contact_by_username(name).unwrap()?;
            s.session_for_contact(c.id).unwrap().map(|r| r.session_id)
        })
        .await
        .unwrap()
}

async fn contact_id(node: &NodeHandle, name: &'static str) -> ContactId {
    node.store()
        .run(move |s| s.contact_by_username(name).unwrap().unwrap().id)
        .await
        .unwrap()
}

/// Waits until both hold the same session and are connected, polling the
/// mailboxes meanwhile (Rejects and late requests travel there).
async fn converged(p: &Pair) -> [u8; 16] {
    converged_polling(p, true).await
}

/// [`converged`]; `poll: false` leaves the mailboxes to the nodes' own
/// pollers.
async fn converged_polling(p: &Pair, poll: bool) -> [u8; 16] {
    let res = tokio::time::timeout(support::WAIT, async {
        loop {
            if poll {
                let _ = p.a().poll_mailbox().await;
                let _ = p.b().poll_mailbox().await;
            }
            let (sa, sb) = (
                session_of(p.a(), "bob").await,
                session_of(p.b(), "alice").await,
            );
            if let (Some(x), Some(y)) = (sa, sb)
                && x == y
            {
                let (ab, ba) = (
                    contact_id(p.a(), "bob").await,
                    contact_id(p.b(), "alice").await,
                );
                if p.a().is_connected(ab) && p.b().is_connected(ba) {
                    return x;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    match res {
        Ok(s) => s,
        Err(_) => panic!(
            "no common session: alice holds {:?}, bob holds {:?}",
            session_of(p.a(), "bob").await.map(hex::encode),
            session_of(p.b(), "alice").await.map(hex::encode)
        ),
    }
}

/// A message each way arrives.
async fn messages_flow(p: &Pair, tag: &str) {
    let (ab, ba) = (
        contact_id(p.a(), "bob").await,
        contact_id(p.b(), "alice").await,
    );
    let (to_bob, to_alice) = (format!("to bob {tag}"), format!("to alice {tag}"));
    p.a().send_text(ab, &to_bob).await.unwrap();
    p.b().send_text(ba, &to_alice).await.unwrap();
    let mut b_ev = p.b().events();
    let want = to_bob.clone();
    wait_store(p.b(), &mut b_ev, "bob got alice's message", move |s| {
        incoming(s, ba).iter().any(|m| m.body == want)
    })
    .await;
    let mut a_ev = p.a().events();
    let want = to_alice.clone();
    wait_store(p.a(), &mut a_ev, "alice got bob's message", move |s| {
        incoming(s, ab).iter().any(|m| m.body == want)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_request_is_listed_once_and_accepting_it_works() {
    let p = Pair::new().await;
    ask(p.a(), &p.bob, false).await.unwrap();
    ask(p.a(), &p.bob, false).await.unwrap();
    assert!(accept_from(p.b(), "alice").await);
    assert!(
        p.b().requests().await.unwrap().is_empty(),
        "nothing left over"
    );
    converged(&p).await;
    messages_flow(&p, "after a repeated request").await;
    p.shutdown().await;
}

/// bob accepted the first copy before the second arrived: the second is a
/// re-key, and accepting it too still converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepting_both_copies_of_a_repeated_request_converges() {
    let p = Pair::new().await;
    ask(p.a(), &p.bob, false).await.unwrap();
    assert!(accept_from(p.b(), "alice").await);
    // Whether bob's Accept reached alice before she asked again or not (a
    // race here), the second request is made; `rekey` only matters once
    // she holds the session.
    ask(p.a(), &p.bob, true).await.unwrap();
    p.b().poll_mailbox().await.unwrap();
    let reqs = p.b().requests().await.unwrap();
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].rekey, "listed as a re-key");
    p.b().accept(&reqs[0].request_id).await.unwrap();
    converged(&p).await;
    messages_flow(&p, "after two accepts").await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contacts_re_key_only_when_asked_and_then_hold_one_new_session() {
    let p = Pair::new().await;
    ask(p.a(), &p.bob, false).await.unwrap();
    assert!(accept_from(p.b(), "alice").await);
    let first = converged(&p).await;
    messages_flow(&p, "before").await;
    let refused = ask(p.a(), &p.bob, false).await.unwrap_err();
    assert!(
        matches!(refused, NodeError::AlreadyConnected),
        "{refused:?}"
    );
    ask(p.a(), &p.bob, true).await.unwrap();
    assert!(accept_from(p.b(), "alice").await);
    let second = converged(&p).await;
    assert_ne!(first, second, "new keys");
    messages_flow(&p, "after the re-key").await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossing_requests_accepted_on_both_sides_end_in_one_session() {
    let p = Pair::new().await;
    ask(p.a(), &p.bob, false).await.unwrap();
    ask(p.b(), &p.alice, false).await.unwrap();
    let (x, y) = tokio::join!(accept_from(p.a(), "bob"), accept_from(p.b(), "alice"));
    assert!(x || y, "someone accepted");
    converged(&p).await;
    messages_flow(&p, "after crossing").await;
    p.shutdown().await;
}

/// A crossing where the requester hears the Accept before it fetches the
/// other side's crossing request from the mailbox: that request is a
/// leftover (made before the Accept) and must not be listed, or accepting
/// it replaces the session with one the other side may have erased
/// (PROTOCOL.md §12.2 rule 4). Before the fix it was listed as a re-key,
/// and accepting it split the two sides for good whenever bob's
/// fingerprint was the higher (about half of all key pairs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crossing_request_fetched_after_the_accept_is_a_leftover() {
    // alice fetches her mailbox only when told to.
    let p = Pair::with_config(umbra::node::NodeConfig {
        mailbox_poll: Duration::from_secs(3600),
        ..support::fast_config()
    })
    .await;
    ask(p.a(), &p.bob, false).await.unwrap();
    ask(p.b(), &p.alice, false).await.unwrap();
    assert!(accept_from(p.b(), "alice").await);
    // alice gets bob's Accept directly, before she fetches her mailbox.
    let first = converged_polling(&p, false).await;
    p.a().poll_mailbox().await.unwrap();
    let listed = p.a().requests().await.unwrap();
    assert!(
        listed.iter().all(|r| r.from != "bob"),
        "bob's crossing request is a leftover of the accepted crossing"
    );
    assert_eq!(converged(&p).await, first);
    messages_flow(&p, "after the crossing").await;
    p.shutdown().await;
}

/// One step of an interleaving.
#[derive(Debug, Clone, Copy)]
enum Step {
    AliceAsks,
    BobAsks,
    AliceAccepts,
    BobAccepts,
    RestartAlice,
    RestartBob,
    /// Wait until both hold one session and are connected (if a session
    /// exists anywhere), so that later steps hit a live conversation.
    Settle,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::AliceAsks),
        2 => Just(Step::BobAsks),
        3 => Just(Step::AliceAccepts),
        3 => Just(Step::BobAccepts),
        1 => Just(Step::RestartAlice),
        1 => Just(Step::RestartBob),
        2 => Just(Step::Settle),
    ]
}

/// Runs `steps`, then makes sure someone accepted something, and checks
/// that both converge on one session with messages flowing.
async fn interleaving(steps: Vec<Step>) {
    let mut p = Pair::new().await;
    for s in &steps {
        match s {
            Step::AliceAsks => {
                ask(p.a(), &p.bob, true).await.unwrap();
            }
            Step::BobAsks => {
                ask(p.b(), &p.alice, true).await.unwrap();
            }
            Step::AliceAccepts => {
                accept_from(p.a(), "bob").await;
            }
            Step::BobAccepts => {
                accept_from(p.b(), "alice").await;
            }
            Step::RestartAlice => p.restart_a().await,
            Step::RestartBob => p.restart_b().await,
            Step::Settle => {
                if session_of(p.a(), "bob").await.is_some()
                    || session_of(p.b(), "alice").await.is_some()
                {
                    converged(&p).await;
                }
            }
        }
    }
    // A session must exist somewhere for the property to mean anything.
    if session_of(p.a(), "bob").await.is_none() && session_of(p.b(), "alice").await.is_none() {
        ask(p.a(), &p.bob, true).await.unwrap();
        accept_from(p.b(), "alice").await;
    }
    converged(&p).await;
    messages_flow(&p, "after the interleaving").await;
    p.shutdown().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, failure_persistence: None, ..ProptestConfig::default() })]

    /// Any interleaving of requests (repeated, crossing, re-keys), accepts
    /// and restarts ends with one session both sides hold.
    ///
    /// It used to fail about 1 run in 12 (e.g. BobAsks, AliceAsks,
    /// RestartAlice, BobAsks, BobAccepts×4, AliceAccepts): a crossing
    /// request fetched after its Accept was listed and could be accepted
    /// (see `a_crossing_request_fetched_after_the_accept_is_a_leftover`).
    /// 30 runs in a row (960 interleavings) passed after the fix; ~5 s.
    #[test]
    fn every_interleaving_converges(steps in proptest::collection::vec(step(), 1..10)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(interleaving(steps));
    }
}
