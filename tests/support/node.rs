//! Shared helpers of the node integration tests: stores with fresh
//! identities, fast timer settings, and bounded waits on node events.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use secrecy::SecretString;
use tempfile::TempDir;
use tokio::sync::broadcast;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use umbra::identity::{Identity, PublicCert, Username};
use umbra::node::store_handle::StoreHandle;
use umbra::node::{Event, Mailbox, MemoryMailbox, Node, NodeConfig, NodeHandle};
use umbra::session::Session;
use umbra::store::{ContactId, Direction, KdfParams, Message, OwnIdentity, Store};
use umbra::transport::{BoxedStream, Transport};
use umbra::wire::{Frame, Hello, PeerMessage};
use zeroize::Zeroizing;

/// Generous bound for any single wait (the suite runs on 2 shared cores).
pub const WAIT: Duration = Duration::from_secs(60);

pub fn pw() -> SecretString {
    SecretString::from("node test passphrase".to_owned())
}

/// Timers scaled down so reconnects and heartbeats happen within a test.
pub fn fast_config() -> NodeConfig {
    NodeConfig {
        heartbeat: Duration::from_millis(300),
        dead_after: Duration::from_secs(5),
        hello_timeout: Duration::from_secs(5),
        ack_timeout: Duration::from_secs(2),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(300),
        window: 256,
        mailbox_poll: Duration::from_millis(50),
        max_inbound: 64,
        event_capacity: 8192,
        ..NodeConfig::default()
    }
}

/// A user: data dir, identity and public cert.
pub struct User {
    pub dir: TempDir,
    pub name: String,
    pub cert: PublicCert,
}

impl User {
    pub fn new(name: &str) -> User {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let username = Username::parse(name).unwrap();
        let identity = Identity::generate(&username).unwrap();
        let store = Store::create(&path, &pw(), KdfParams::insecure_for_tests()).unwrap();
        store
            .set_identity(&OwnIdentity {
                username: username.as_str().to_owned(),
                fingerprint: identity.fingerprint().to_hex(),
                secret_cert: Zeroizing::new(identity.to_secret_bytes().unwrap().to_vec()),
                created_at: 1,
            })
            .unwrap();
        store.close().unwrap();
        User {
            dir,
            name: username.as_str().to_owned(),
            cert: identity.public_cert().unwrap(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn open(&self) -> Store {
        Store::open(&self.path(), &pw()).unwrap()
    }

    pub async fn start<T: Transport + 'static>(
        &self,
        transport: T,
        mailbox: &MemoryMailbox,
    ) -> NodeHandle
    where
        T::Listener: 'static,
    {
        self.start_with(fast_config(), transport, mailbox).await
    }

    pub async fn start_with<T: Transport + 'static>(
        &self,
        config: NodeConfig,
        transport: T,
        mailbox: &MemoryMailbox,
    ) -> NodeHandle
    where
        T::Listener: 'static,
    {
        mailbox.register(self.cert.clone());
        let mb: Arc<dyn Mailbox> = Arc::new(mailbox.clone());
        Node::start(config, self.open(), transport, Some(mb))
            .await
            .unwrap()
    }
}

/// Waits for an event matching `pred`, at most `WAIT`.
pub async fn wait_event<F>(rx: &mut broadcast::Receiver<Event>, pred: F) -> Event
where
    F: FnMut(&Event) -> bool,
{
    wait_event_for(rx, WAIT, pred).await
}

/// Waits for an event matching `pred`, at most `limit`.
pub async fn wait_event_for<F>(
    rx: &mut broadcast::Receiver<Event>,
    limit: Duration,
    mut pred: F,
) -> Event
where
    F: FnMut(&Event) -> bool,
{
    tokio::time::timeout(limit, async {
        loop {
            match rx.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("event bus closed"),
            }
        }
    })
    .await
    .expect("timed out waiting for an event")
}

/// Re-checks `cond` on the node's store after every event until it holds,
/// at most `WAIT` (no fixed sleeps: events are the clock).
pub async fn wait_store<F>(
    node: &NodeHandle,
    rx: &mut broadcast::Receiver<Event>,
    what: &str,
    cond: F,
) where
    F: Fn(&mut Store) -> bool + Send + Sync + Clone + 'static,
{
    let store = node.store();
    let res = tokio::time::timeout(WAIT, async {
        loop {
            let c = cond.clone();
            if store.run(move |s| c(s)).await.unwrap() {
                return;
            }
            // Any event (or a quiet half second) triggers a re-check.
            if let Ok(Err(broadcast::error::RecvError::Closed)) =
                tokio::time::timeout(Duration::from_millis(500), rx.recv()).await
            {
                panic!("event bus closed");
            }
        }
    })
    .await;
    assert!(res.is_ok(), "timed out waiting for: {what}");
}

/// Incoming messages from `contact`, in display (seq) order.
pub fn incoming(s: &Store, contact: ContactId) -> Vec<Message> {
    let mut v: Vec<Message> = s
        .history(contact, u32::MAX)
        .unwrap()
        .into_iter()
        .filter(|m| m.direction == Direction::Incoming)
        .collect();
    v.sort_by_key(|m| m.seq);
    v
}

/// Requests `b` from `a`, accepts on `b`, waits until both connected.
/// Returns (a's contact id for b, b's contact id for a).
pub async fn connect_pair(
    a: &NodeHandle,
    b: &NodeHandle,
    b_cert: &PublicCert,
) -> (ContactId, ContactId) {
    let mut a_events = a.events();
    let mut b_events = b.events();
    let a_contact = a.request(b_cert, "hello from a test").await.unwrap();
    b.poll_mailbox().await.unwrap();
    let Event::RequestReceived { request_id, .. } = wait_event(&mut b_events, |e| {
        matches!(e, Event::RequestReceived { .. })
    })
    .await
    else {
        unreachable!()
    };
    let b_contact = b.accept(request_id.expose()).await.unwrap();
    wait_event(&mut a_events, |e| {
        matches!(e, Event::PresenceChanged { contact, online: true, .. } if *contact == a_contact)
    })
    .await;
    wait_event(&mut b_events, |e| {
        matches!(e, Event::PresenceChanged { contact, online: true, .. } if *contact == b_contact)
    })
    .await;
    (a_contact, b_contact)
}

/// alice and bob on one in-memory network and mailbox, started and
/// connected with [`connect_pair`].
pub struct MemoryPair {
    pub net: umbra::transport::memory::MemoryNetwork,
    pub mailbox: MemoryMailbox,
    pub alice: User,
    pub bob: User,
    pub a: NodeHandle,
    pub b: NodeHandle,
    /// alice's contact id for bob.
    pub ab: ContactId,
    /// bob's contact id for alice.
    pub ba: ContactId,
}

impl MemoryPair {
    /// The nodes and contact ids `(a, b, ab, ba)`; the pair keeps the
    /// users' directories and the network alive, so keep it in scope.
    pub fn nodes(&self) -> (NodeHandle, NodeHandle, ContactId, ContactId) {
        (self.a.clone(), self.b.clone(), self.ab, self.ba)
    }
}

/// A [`MemoryPair`], alice with [`fast_config`], bob with `b_config`.
pub async fn memory_pair(b_config: NodeConfig) -> MemoryPair {
    memory_pair_with(fast_config(), b_config).await
}

/// alice and bob started on one in-memory network ("alice-hs",
/// "bob-hs") and mailbox, not yet connected.
pub struct Started {
    pub net: umbra::transport::memory::MemoryNetwork,
    pub mailbox: MemoryMailbox,
    pub alice: User,
    pub bob: User,
    pub a: NodeHandle,
    pub b: NodeHandle,
}

/// [`Started`] with each node's settings.
pub async fn start_pair(a_config: NodeConfig, b_config: NodeConfig) -> Started {
    use umbra::transport::memory::{MemoryNetwork, MemoryTransport};
    let net = MemoryNetwork::new();
    let mailbox = MemoryMailbox::new();
    let (alice, bob) = (User::new("alice"), User::new("bob"));
    let a = alice
        .start_with(a_config, MemoryTransport::new(&net, "alice-hs"), &mailbox)
        .await;
    let b = bob
        .start_with(b_config, MemoryTransport::new(&net, "bob-hs"), &mailbox)
        .await;
    Started {
        net,
        mailbox,
        alice,
        bob,
        a,
        b,
    }
}

/// A [`MemoryPair`] with each node's settings.
pub async fn memory_pair_with(a_config: NodeConfig, b_config: NodeConfig) -> MemoryPair {
    let Started {
        net,
        mailbox,
        alice,
        bob,
        a,
        b,
    } = start_pair(a_config, b_config).await;
    let (ab, ba) = connect_pair(&a, &b, &bob.cert).await;
    MemoryPair {
        net,
        mailbox,
        alice,
        bob,
        a,
        b,
        ab,
        ba,
    }
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}

/// A peer driven by hand: a real session's keys (taken from a stopped
/// node's store) over a raw stream, to send what a well-behaved node never
/// would, or to hold a connection open at a chosen moment.
pub struct Raw {
    pub io: Framed<BoxedStream, LengthDelimitedCodec>,
    pub session: Session,
}

impl Raw {
    /// The session of `contact` as stored in `store` (its node stopped),
    /// over `stream`.
    pub async fn from_store(store: &StoreHandle, contact: ContactId, stream: BoxedStream) -> Raw {
        let rec = store
            .run(move |s| s.session_for_contact(contact).unwrap().unwrap())
            .await
            .unwrap();
        let session = Session::from_chains(
            rec.session_id,
            (&rec.send.chain_key, rec.send.seq),
            (&rec.recv.chain_key, rec.recv.seq),
        )
        .unwrap();
        Raw::new(stream, session)
    }

    /// `session` over `stream`.
    pub fn new(stream: BoxedStream, session: Session) -> Raw {
        Raw {
            io: Framed::new(stream, LengthDelimitedCodec::new()),
            session,
        }
    }

    pub fn seal(&mut self, m: &PeerMessage) -> Vec<u8> {
        self.session.seal(&m.encode().unwrap()).unwrap()
    }

    pub async fn send(&mut self, m: &PeerMessage) {
        let f = self.seal(m);
        self.io.send(Bytes::from(f)).await.unwrap();
    }

    /// Sends the protocol-1 Hello.
    pub async fn hello(&mut self) {
        self.send(&PeerMessage::Hello(Hello {
            protocol: 1,
            last_received: 0,
        }))
        .await;
    }

    /// The next message from the node, whatever it is; `None` on close.
    pub async fn next_any(&mut self) -> Option<PeerMessage> {
        let f = tokio::time::timeout(Duration::from_secs(20), self.io.next())
            .await
            .expect("the node answers or closes")?
            .ok()?;
        let Frame::Sealed(_) = Frame::decode(&f).unwrap() else {
            panic!("unexpected envelope")
        };
        let pt = self.session.open(&f).unwrap();
        Some(PeerMessage::decode(&pt).unwrap())
    }

    /// The next message from the node, skipping presence; `None` on close.
    pub async fn recv(&mut self) -> Option<PeerMessage> {
        loop {
            match self.next_any().await? {
                PeerMessage::Presence(_) | PeerMessage::Hello(_) => continue,
                m => return Some(m),
            }
        }
    }

    /// The next message that is not a FileAck.
    pub async fn answer(&mut self) -> Option<PeerMessage> {
        loop {
            match self.recv().await? {
                PeerMessage::FileAck { .. } => continue,
                m => return Some(m),
            }
        }
    }
}

/// alice ("a") and bob ("b") connected over `net`, then alice's node
/// stopped with a goodbye, and bob has seen her go offline.
pub struct AliceLeft {
    /// bob's node, still running.
    pub b: NodeHandle,
    /// alice's store (kept open by the handle), for [`Raw::from_store`].
    pub a_store: StoreHandle,
    /// alice's contact id for bob.
    pub ab: ContactId,
    /// bob's contact id for alice.
    pub ba: ContactId,
    /// bob's events, subscribed before alice left.
    pub b_events: broadcast::Receiver<Event>,
}

pub async fn pair_then_alice_leaves(
    net: &umbra::transport::memory::MemoryNetwork,
    mailbox: &MemoryMailbox,
    alice: &User,
    bob: &User,
) -> AliceLeft {
    pair_then_alice_leaves_with(net, mailbox, alice, bob, fast_config()).await
}

/// [`pair_then_alice_leaves`] with bob's node running `bob_config`.
pub async fn pair_then_alice_leaves_with(
    net: &umbra::transport::memory::MemoryNetwork,
    mailbox: &MemoryMailbox,
    alice: &User,
    bob: &User,
    bob_config: NodeConfig,
) -> AliceLeft {
    use umbra::transport::memory::MemoryTransport;
    let a = alice.start(MemoryTransport::new(net, "a"), mailbox).await;
    let b = bob
        .start_with(bob_config, MemoryTransport::new(net, "b"), mailbox)
        .await;
    let (ab, ba) = connect_pair(&a, &b, &bob.cert).await;
    let mut b_events = b.events();
    let a_store = a.store();
    a.shutdown().await;
    wait_event(
        &mut b_events,
        |e| matches!(e, Event::PresenceChanged { contact, online: false, .. } if *contact == ba),
    )
    .await;
    AliceLeft {
        b,
        a_store,
        ab,
        ba,
        b_events,
    }
}

/// A transport that counts its dials (both `connect` and `connect_isolated`).
#[derive(Clone)]
pub struct Counting<T> {
    pub inner: T,
    pub dials: Arc<std::sync::atomic::AtomicUsize>,
}

impl<T> Counting<T> {
    pub fn new(inner: T) -> Self {
        Counting {
            inner,
            dials: Arc::default(),
        }
    }

    pub fn dials(&self) -> usize {
        self.dials.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl<T: Transport> Transport for Counting<T> {
    type Listener = T::Listener;

    fn kind(&self) -> umbra::transport::TransportKind {
        self.inner.kind()
    }

    async fn listen(&self) -> Result<T::Listener, umbra::transport::Error> {
        self.inner.listen().await
    }

    async fn connect(
        &self,
        addr: &umbra::transport::PeerAddress,
    ) -> Result<BoxedStream, umbra::transport::Error> {
        self.dials.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.connect(addr).await
    }
}

/// Sets the stored address of `contact` (to simulate a contact whose
/// address cannot be dialled, or points at a hostile listener).
pub fn set_address(user: &User, contact: ContactId, address: &str) {
    let s = user.open();
    let mut c = s.contact(contact).unwrap().unwrap();
    c.onion_address = Some(address.to_owned());
    s.update_contact(&c).unwrap();
    s.close().unwrap();
}

/// `who`'s public certificate with more self-signed user IDs, e.g. a second
/// `@name` (SECURITY-2026-11 H1: a key that tries to speak for two names).
pub fn with_user_ids(who: &Identity, extra: &[&str]) -> PublicCert {
    use sequoia_openpgp::packet::{UserID, signature::SignatureBuilder};
    use sequoia_openpgp::parse::Parse;
    use sequoia_openpgp::serialize::SerializeInto;
    use sequoia_openpgp::types::SignatureType;
    let tsk = sequoia_openpgp::Cert::from_bytes(&who.to_secret_bytes().unwrap()[..]).unwrap();
    let mut signer = tsk
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .unwrap()
        .into_keypair()
        .unwrap();
    let mut packets: Vec<sequoia_openpgp::Packet> = Vec::new();
    for name in extra {
        let uid = UserID::from(*name);
        let sig = uid
            .bind(
                &mut signer,
                &tsk,
                SignatureBuilder::new(SignatureType::PositiveCertification),
            )
            .unwrap();
        packets.push(uid.into());
        packets.push(sig.into());
    }
    let (cert, _) = tsk.insert_packets(packets).unwrap();
    PublicCert::from_bytes(&cert.strip_secret_key_material().to_vec().unwrap()).unwrap()
}

/// What a [`Hooked`] stream's read hook decided.
pub enum ReadHook {
    /// The hook filled the buffer: the read returns it.
    Answered,
    /// Read from the stream.
    Pass,
}

/// A stream whose reads go through `hook` first (to replay a byte already
/// read, or to fail like a broken dependency); writes go straight through.
pub struct Hooked {
    pub inner: BoxedStream,
    pub hook: Box<dyn FnMut(&mut tokio::io::ReadBuf<'_>) -> ReadHook + Send + Unpin>,
}

impl tokio::io::AsyncRead for Hooked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match (self.hook)(buf) {
            ReadHook::Answered => std::task::Poll::Ready(Ok(())),
            ReadHook::Pass => std::pin::Pin::new(&mut self.inner).poll_read(cx, buf),
        }
    }
}

impl tokio::io::AsyncWrite for Hooked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
