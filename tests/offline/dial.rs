//! Dialing and lifetimes: reconnects back off whatever the peer does
//! (SECURITY-2026-11 M1), expired requests and accepts are swept at start
//! (L1), the configured limits take effect, and a panic under a connection
//! costs only that connection.
//!
//! The redial counts are measured over a fixed window: the quantity under
//! test is a rate. The bounds are loose (the backoff is 5 s, the window 3 s)
//! and before the fix the counts were in the hundreds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use umbra::node::{Event, MemoryMailbox, NodeConfig};
use umbra::store::{ContactId, DeliveryState, PendingRequest};
use umbra::transport::memory::{MemoryNetwork, MemoryTransport};
use umbra::transport::{BoxedStream, Listener, PeerAddress, Transport};

use crate::support::{self, Counting, Hooked, ReadHook, User, connect_pair};

/// Timers of `fast_config`, but PROTOCOL.md's 5 s initial backoff.
fn slow_backoff() -> NodeConfig {
    NodeConfig {
        backoff_initial: Duration::from_secs(5),
        backoff_max: Duration::from_secs(300),
        ..support::fast_config()
    }
}

/// alice and bob with a session; both stopped. Returns alice's contact id
/// for bob.
async fn pair_then_both_stop(net: &MemoryNetwork, alice: &User, bob: &User) -> ContactId {
    let mailbox = MemoryMailbox::new();
    let a = alice.start(MemoryTransport::new(net, "a"), &mailbox).await;
    let b = bob.start(MemoryTransport::new(net, "b"), &mailbox).await;
    let (ab, _) = connect_pair(&a, &b, &bob.cert).await;
    a.shutdown().await;
    b.shutdown().await;
    ab
}

/// Counts accepted streams at `name`, dropping each at once (after the
/// first frame, so the dialer gets as far as its Hello).
async fn accept_and_drop(
    net: &MemoryNetwork,
    name: &str,
) -> (Arc<AtomicUsize>, tokio::sync::mpsc::Receiver<()>) {
    let mut listener = MemoryTransport::new(net, name).listen().await.unwrap();
    let count = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let c = count.clone();
    tokio::spawn(async move {
        while let Ok(s) = listener.accept().await {
            let mut framed = Framed::new(s, LengthDelimitedCodec::new());
            let _ = framed.next().await;
            c.fetch_add(1, Ordering::SeqCst);
            let _ = tx.try_send(());
        }
    });
    (count, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_accepts_and_drops_is_redialed_with_backoff() {
    let net = MemoryNetwork::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let ab = pair_then_both_stop(&net, &alice, &bob).await;
    support::set_address(&alice, ab, "trap");
    let (count, mut first) = accept_and_drop(&net, "trap").await;
    let a = alice
        .start_with(
            slow_backoff(),
            MemoryTransport::new(&net, "a"),
            &MemoryMailbox::new(),
        )
        .await;
    tokio::time::timeout(support::WAIT, first.recv())
        .await
        .expect("alice dials her contact");
    let at_first = count.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let more = count.load(Ordering::SeqCst) - at_first;
    assert!(
        more <= 1,
        "{more} redials within 3 s of a dropped connection"
    );
    a.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_cannot_be_dialled_is_retried_with_backoff() {
    let net = MemoryNetwork::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let ab = pair_then_both_stop(&net, &alice, &bob).await;
    support::set_address(&alice, ab, "nobody-listens-here");
    let transport = Counting::new(MemoryTransport::new(&net, "a"));
    let a = alice
        .start_with(slow_backoff(), transport.clone(), &MemoryMailbox::new())
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let dials = transport.dials();
    assert!(
        (1..=2).contains(&dials),
        "{dials} dials in 3 s to an unusable address"
    );
    a.shutdown().await;
}

/// PROTOCOL.md §11.1: our request expires unanswered after its window; its
/// secrets are erased when the node starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_request_of_ours_is_erased_at_start() {
    let net = MemoryNetwork::new();
    let alice = User::new("alice");
    let eight_days = 8 * 24 * 3600;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    {
        let s = alice.open();
        for (id, created_at) in [(1u8, now - eight_days), (2, now - 60)] {
            s.add_pending_request(&PendingRequest {
                request_id: [id; 16],
                to_username: "bob".into(),
                session_half: zeroize::Zeroizing::new(vec![id; 32]),
                ephemeral_secret: zeroize::Zeroizing::new(vec![id; 32]),
                created_at,
            })
            .unwrap();
        }
        s.close().unwrap();
    }
    let a = alice
        .start(MemoryTransport::new(&net, "a"), &MemoryMailbox::new())
        .await;
    let left: Vec<[u8; 16]> = a
        .store()
        .run(|s| s.pending_requests().unwrap())
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.request_id)
        .collect();
    assert_eq!(left, vec![[2u8; 16]], "only the fresh request is kept");
    a.shutdown().await;
}

/// PROTOCOL.md §11.3: an Accept the requester never confirmed within the
/// request's window is dropped with its session, and never dialed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_accept_ends_its_session_and_is_not_dialed() {
    let net = MemoryNetwork::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let ab = pair_then_both_stop(&net, &alice, &bob).await;
    support::set_address(&alice, ab, "bob-gone");
    {
        let s = alice.open();
        s.put_pending_accept(ab, "-----BEGIN PGP MESSAGE-----", 1)
            .unwrap();
        s.close().unwrap();
    }
    let transport = Counting::new(MemoryTransport::new(&net, "a"));
    let a = alice
        .start_with(slow_backoff(), transport.clone(), &MemoryMailbox::new())
        .await;
    let (session, accepts) = a
        .store()
        .run(move |s| {
            (
                s.session_for_contact(ab).unwrap().is_some(),
                s.pending_accepts().unwrap().len(),
            )
        })
        .await
        .unwrap();
    assert!(!session, "the Accepting session ended");
    assert_eq!(accepts, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(transport.dials(), 0, "nothing to dial");
    a.shutdown().await;
}

/// `limits.max_connections`: further inbound streams are refused while the
/// cap is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbound_cap_refuses_further_streams() {
    let net = MemoryNetwork::new();
    let bob = User::new("bob");
    let config = NodeConfig {
        max_inbound: 2,
        ..support::fast_config()
    };
    let b = bob
        .start_with(
            config,
            MemoryTransport::new(&net, "b"),
            &MemoryMailbox::new(),
        )
        .await;
    let mallory = MemoryTransport::new(&net, "mallory");
    let mut held = Vec::new();
    for _ in 0..2 {
        let s = mallory.connect(&PeerAddress::new("b")).await.unwrap();
        held.push(Framed::new(s, LengthDelimitedCodec::new()));
    }
    let third = mallory.connect(&PeerAddress::new("b")).await.unwrap();
    let mut third = Framed::new(third, LengthDelimitedCodec::new());
    let closed = tokio::time::timeout(Duration::from_secs(4), third.next()).await;
    assert!(
        matches!(closed, Ok(None | Some(Err(_)))),
        "the third stream is refused"
    );
    for s in &mut held {
        assert!(
            futures::FutureExt::now_or_never(s.next()).is_none(),
            "the first two wait for their Hello"
        );
    }
    b.shutdown().await;
}

/// Streams that panic on read while `armed`: a bug under a connection (in our
/// code or a dependency's stream) must cost that connection, not the contact.
#[derive(Clone)]
struct Panicky {
    inner: MemoryTransport,
    armed: Arc<AtomicBool>,
    panics: Arc<AtomicUsize>,
}

struct PanickyListener {
    inner: <MemoryTransport as Transport>::Listener,
    armed: Arc<AtomicBool>,
    panics: Arc<AtomicUsize>,
}

impl Panicky {
    fn wrap(inner: BoxedStream, armed: Arc<AtomicBool>, panics: Arc<AtomicUsize>) -> BoxedStream {
        Box::new(Hooked {
            inner,
            hook: Box::new(move |_| {
                if armed.load(Ordering::SeqCst) {
                    panics.fetch_add(1, Ordering::SeqCst);
                    panic!("injected: a transport stream panicked");
                }
                ReadHook::Pass
            }),
        })
    }
}

impl Transport for Panicky {
    type Listener = PanickyListener;

    fn kind(&self) -> umbra::transport::TransportKind {
        self.inner.kind()
    }

    async fn listen(&self) -> Result<PanickyListener, umbra::transport::Error> {
        Ok(PanickyListener {
            inner: self.inner.listen().await?,
            armed: self.armed.clone(),
            panics: self.panics.clone(),
        })
    }

    async fn connect(&self, addr: &PeerAddress) -> Result<BoxedStream, umbra::transport::Error> {
        let s = self.inner.connect(addr).await?;
        Ok(Panicky::wrap(s, self.armed.clone(), self.panics.clone()))
    }
}

impl Listener for PanickyListener {
    fn address(&self) -> &PeerAddress {
        self.inner.address()
    }

    async fn accept(&mut self) -> Result<BoxedStream, umbra::transport::Error> {
        let s = self.inner.accept().await?;
        Ok(Panicky::wrap(s, self.armed.clone(), self.panics.clone()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_under_a_connection_costs_the_connection_not_the_contact() {
    let net = MemoryNetwork::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let ab = pair_then_both_stop(&net, &alice, &bob).await;
    let panicky = Panicky {
        inner: MemoryTransport::new(&net, "a"),
        armed: Arc::new(AtomicBool::new(true)),
        panics: Arc::default(),
    };
    let mailbox = MemoryMailbox::new();
    let b = bob.start(MemoryTransport::new(&net, "b"), &mailbox).await;
    let a = alice.start(panicky.clone(), &mailbox).await;
    let mut a_events = a.events();
    // Something to deliver, so that alice dials.
    a.send_text(ab, "after a panic").await.unwrap();
    tokio::time::timeout(support::WAIT, async {
        while panicky.panics.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("alice's connection read and panicked");
    panicky.armed.store(false, Ordering::SeqCst);
    support::wait_event(&mut a_events, |e| {
        matches!(e, Event::DeliveryChanged { contact, upto: 1, state: DeliveryState::Delivered } if *contact == ab)
    })
    .await;
    a.shutdown().await;
    b.shutdown().await;
}
