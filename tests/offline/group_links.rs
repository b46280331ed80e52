//! Invite links and join streams (PROTOCOL.md §20.7.2–§20.7.3, issue 17)
//! over the in-memory transport, with real nodes (real OpenPGP, real
//! encrypted stores, real sessions): a stranger joins by link and chats
//! with the members (the owner restarted between creating the link and its
//! use); used-up, expired, revoked, wrongly keyed, mis-signed and forged
//! links are refused with the owner's state unchanged and the owner's user
//! told why; links never grant more than member; and join streams from
//! strangers are bounded (rate per link and overall, concurrency, deadline).

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use umbra::group::{GroupError, InviteLink, JoinMessage, LinkSecret, Role};
use umbra::identity::{Identity, Username};
use umbra::node::{Event, GroupEvent, JoinLimits, MemoryMailbox, NodeError, NodeHandle};
use umbra::store::{GroupStatus, Store};
use umbra::transport::memory::{MemoryNetwork, MemoryTransport};
use umbra::transport::{BoxedStream, Listener, PeerAddress, Transport};
use umbra::wire::Frame;

use crate::support::{User, WAIT, connect_pair, fast_config, wait_event, wait_store};

struct Member {
    user: User,
    node: NodeHandle,
    hs: String,
}

struct Net {
    net: MemoryNetwork,
    mailbox: MemoryMailbox,
}

impl Net {
    fn new() -> Net {
        Net {
            net: MemoryNetwork::new(),
            mailbox: MemoryMailbox::new(),
        }
    }

    async fn start_with(&self, name: &str, joins: JoinLimits) -> Member {
        let user = User::new(name);
        let hs = format!("{name}-hs");
        let node = self.run(&user, &hs, joins).await;
        Member { user, node, hs }
    }

    async fn start(&self, name: &str) -> Member {
        self.start_with(name, JoinLimits::default()).await
    }

    async fn run(&self, user: &User, hs: &str, joins: JoinLimits) -> NodeHandle {
        let config = umbra::node::NodeConfig {
            joins,
            ..fast_config()
        };
        user.start_with(config, MemoryTransport::new(&self.net, hs), &self.mailbox)
            .await
    }

    /// A raw stream to `m`'s address, as a stranger's join stream.
    async fn raw(&self, m: &Member) -> Framed<BoxedStream, LengthDelimitedCodec> {
        let t = MemoryTransport::new(&self.net, "stranger");
        let s = t.connect(&PeerAddress::new(m.hs.as_str())).await.unwrap();
        Framed::new(s, umbra::wire::codec())
    }
}

fn fpr(m: &Member) -> String {
    m.user.cert.fingerprint().to_hex()
}

async fn until<F>(m: &Member, what: &str, cond: F)
where
    F: Fn(&mut Store) -> bool + Send + Sync + Clone + 'static,
{
    let mut ev = m.node.events();
    wait_store(&m.node, &mut ev, what, cond).await;
}

fn status(s: &Store, g: [u8; 32]) -> Option<GroupStatus> {
    s.group(&g).unwrap().map(|r| r.status)
}

fn member_count(s: &Store, g: [u8; 32]) -> usize {
    s.group_members(&g).unwrap().len()
}

fn texts(s: &Store, g: [u8; 32]) -> Vec<String> {
    s.group_history(&g, 1000)
        .unwrap()
        .into_iter()
        .filter_map(|m| m.body)
        .collect()
}

/// The owner's log length and members: what a refused join must not change.
async fn snapshot(m: &Member, g: [u8; 32]) -> (u64, Vec<(String, String)>) {
    let rec = m.node.group(g).await.unwrap();
    let members = m
        .node
        .group_members(g)
        .await
        .unwrap()
        .into_iter()
        .map(|x| (x.fingerprint, x.role))
        .collect();
    (rec.head_seq, members)
}

async fn link(owner: &Member, g: [u8; 32], role: Role, uses: u16, secs: u64) -> String {
    use secrecy::ExposeSecret;
    let c = owner
        .node
        .group_link_create(g, role, uses, umbra::time::now_secs() + secs)
        .await
        .unwrap();
    c.uri.expose_secret().to_owned()
}

async fn join(m: &Member, uri: &str) -> Result<[u8; 32], NodeError> {
    m.node.group_join_link(uri, |_| {}).await
}

/// Waits for a group warning on `m` whose reason contains `needle`.
async fn warned(ev: &mut tokio::sync::broadcast::Receiver<Event>, needle: &str) {
    wait_event(ev, |e| {
        matches!(e, Event::Group { event: GroupEvent::Warning { reason }, .. } if reason.contains(needle))
    })
    .await;
}

async fn send_join(f: &mut Framed<BoxedStream, LengthDelimitedCodec>, m: &JoinMessage) {
    let body = Frame::group_join(&m.encode().unwrap()).unwrap();
    f.send(Bytes::from(body)).await.unwrap();
}

/// The next join message, `None` when the owner closed the stream.
async fn recv_join(f: &mut Framed<BoxedStream, LengthDelimitedCodec>) -> Option<JoinMessage> {
    let body = tokio::time::timeout(WAIT, f.next())
        .await
        .expect("the owner neither answered nor closed")?
        .ok()?;
    match Frame::decode(&body).unwrap() {
        Frame::GroupJoin(m) => Some(JoinMessage::decode(m).unwrap()),
        other => panic!("not a join frame: {other:?}"),
    }
}

fn hello(l: &InviteLink) -> JoinMessage {
    JoinMessage::Hello {
        version: 1,
        group: l.group,
        link_id: l.link_id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_joins_by_link_after_an_owner_restart_and_chats_with_the_members() {
    let net = Net::new();
    let mut a = net.start("alice").await;
    let b = net.start("bob").await;
    let d = net.start("dave").await;
    let (ab, _) = connect_pair(&a.node, &b.node, &b.user.cert).await;
    let g = a.node.group_create("Night shift", "", 0).await.unwrap();
    a.node.group_invite(g, ab, Role::Member).await.unwrap();
    until(&b, "bob's invite", move |s| {
        s.group_invites().unwrap().iter().any(|i| i.incoming)
    })
    .await;
    b.node.group_answer(g, true).await.unwrap();
    until(&b, "bob is in", move |s| member_count(s, g) == 2).await;

    // A two-use link; alice restarts before anyone uses it: the secret
    // is in her encrypted store, the link in her log.
    let uri = link(&a, g, Role::Member, 2, 3600).await;
    assert!(uri.starts_with("umbra:group#") && uri.len() < 1000, "{uri}");
    until(&b, "bob sees the OpenLink", move |s| {
        s.group(&g).unwrap().unwrap().head_seq == 2
    })
    .await;
    a.node.clone().shutdown().await;
    a.node = net.run(&a.user, &a.hs, JoinLimits::default()).await;

    // dave is nobody's contact: the link is all he has.
    let steps = std::sync::Mutex::new(Vec::new());
    let joined = d
        .node
        .group_join_link(&uri, |s| steps.lock().unwrap().push(s))
        .await
        .unwrap();
    assert_eq!(joined, g);
    assert_eq!(
        steps.into_inner().unwrap(),
        [
            umbra::node::JoinStep::Dialling,
            umbra::node::JoinStep::Connected,
            umbra::node::JoinStep::Proving
        ]
    );
    until(&d, "dave holds the log with his Add", move |s| {
        status(s, g) == Some(GroupStatus::Active) && member_count(s, g) == 3
    })
    .await;
    let dave = fpr(&d);
    let roles = d.node.group_members(g).await.unwrap();
    assert!(
        roles
            .iter()
            .any(|m| m.fingerprint == dave && m.role == "member")
    );
    // dave became alice's contact (the session carries the group), and
    // nobody else's.
    let da = d.node.contact_by_fingerprint(&fpr(&a)).await.unwrap();
    assert!(da.is_some(), "the owner is dave's contact");
    assert!(
        b.node
            .contact_by_fingerprint(&dave)
            .await
            .unwrap()
            .is_none(),
        "dave is not bob's contact"
    );
    let links = a.node.group_links(g).await.unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!((links[0].info.uses, links[0].info.max_uses), (1, 2));

    // Traffic flows as for a directly invited member (bob and dave through
    // alice's relay).
    d.node.group_send(g, "hi, I am dave").await.unwrap();
    b.node.group_send(g, "welcome dave").await.unwrap();
    until(&b, "bob gets dave's message", move |s| {
        texts(s, g).contains(&"hi, I am dave".to_owned())
    })
    .await;
    until(&d, "dave gets bob's message", move |s| {
        texts(s, g).contains(&"welcome dave".to_owned())
    })
    .await;
    // Joining again is refused before anything goes on the wire.
    assert!(matches!(
        join(&d, &uri).await,
        Err(NodeError::Group(GroupError::AlreadyMember))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn used_up_expired_revoked_wrong_secret_mis_signed_and_forged_links_are_refused() {
    let net = Net::new();
    let a = net.start("alice").await;
    let e = net.start("erin").await;
    let f = net.start("frank").await;
    let g = a.node.group_create("Lab", "", 0).await.unwrap();
    let mut aev = a.node.events();

    // One use: erin joins, frank's replay of the same link is refused.
    let once = link(&a, g, Role::Member, 1, 3600).await;
    join(&e, &once).await.unwrap();
    until(&a, "erin added", move |s| member_count(s, g) == 2).await;
    let before = snapshot(&a, g).await;
    assert!(matches!(join(&f, &once).await, Err(NodeError::JoinRefused)));
    warned(&mut aev, "used up").await;
    assert_eq!(snapshot(&a, g).await, before, "owner state unchanged");
    // frank keeps nothing of the attempt: no contact, no pending request.
    let fs = f.node.store();
    let left = fs
        .run(move |s| {
            (
                s.contacts().unwrap().len(),
                s.pending_requests().unwrap().len(),
            )
        })
        .await
        .unwrap();
    assert_eq!(left, (0, 0));

    // Revoked: refused from then on.
    let revoked = link(&a, g, Role::Member, 5, 3600).await;
    let rl = InviteLink::parse(&revoked).unwrap();
    a.node.group_link_revoke(g, rl.link_id).await.unwrap();
    let before = snapshot(&a, g).await;
    assert!(matches!(
        join(&f, &revoked).await,
        Err(NodeError::JoinRefused)
    ));
    warned(&mut aev, "revoked").await;
    assert_eq!(snapshot(&a, g).await, before);

    // A wrong secret (the rest of the link genuine).
    let good = link(&a, g, Role::Member, 5, 3600).await;
    let mut wrong = InviteLink::parse(&good).unwrap();
    wrong.secret = LinkSecret::random();
    let wrong = secrecy::ExposeSecret::expose_secret(&wrong.to_uri().unwrap()).to_owned();
    let before = snapshot(&a, g).await;
    assert!(matches!(
        join(&f, &wrong).await,
        Err(NodeError::JoinRefused)
    ));
    warned(&mut aev, "join proof is wrong").await;
    assert_eq!(snapshot(&a, g).await, before);

    // A link whose signed part was changed (a later expiry): the joiner
    // refuses it once it sees the owner's certificate.
    let mut tampered = InviteLink::parse(&good).unwrap();
    tampered.expires_at += 365 * 86_400;
    let tampered = secrecy::ExposeSecret::expose_secret(&tampered.to_uri().unwrap()).to_owned();
    assert!(matches!(
        join(&f, &tampered).await,
        Err(NodeError::Group(GroupError::BadSignature { .. }))
    ));
    // A forged owner: the link is alice's, but whoever answers at its
    // address presents mallory's certificate, not the one the link pins.
    let mallory = Identity::generate(&Username::parse("mallory").unwrap()).unwrap();
    let mallory_cert = mallory.public_cert().unwrap().to_bytes().unwrap();
    let mut listener = MemoryTransport::new(&net.net, "mallory-hs")
        .listen()
        .await
        .unwrap();
    let impostor = tokio::spawn(async move {
        let s = listener.accept().await.unwrap();
        let mut f = Framed::new(s, umbra::wire::codec());
        assert!(matches!(
            recv_join(&mut f).await,
            Some(JoinMessage::Hello { .. })
        ));
        send_join(
            &mut f,
            &JoinMessage::Challenge {
                nonce: [3; 32],
                owner_cert: mallory_cert,
            },
        )
        .await;
        // The joiner hangs up instead of proving anything.
        recv_join(&mut f).await.is_none()
    });
    let mut forged = InviteLink::parse(&good).unwrap();
    forged.owner_address = "mallory-hs".into();
    let forged = secrecy::ExposeSecret::expose_secret(&forged.to_uri().unwrap()).to_owned();
    assert!(matches!(
        join(&f, &forged).await,
        Err(NodeError::Group(GroupError::BadSignature { .. }))
    ));
    assert!(impostor.await.unwrap(), "no proof reached the impostor");
    assert_eq!(snapshot(&a, g).await, before);
    let left = fs
        .run(move |s| {
            (
                s.contacts().unwrap().len(),
                s.pending_requests().unwrap().len(),
            )
        })
        .await
        .unwrap();
    assert_eq!(left, (0, 0), "a refused link leaves nothing on the joiner");

    // Expired: the joiner refuses it locally; a stranger who tries anyway
    // gets Result 1 and the owner is told.
    let short = link(&a, g, Role::Member, 5, 1).await;
    let sl = InviteLink::parse(&short).unwrap();
    let before = snapshot(&a, g).await;
    while umbra::time::now_secs() <= sl.expires_at {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(matches!(
        join(&f, &short).await,
        Err(NodeError::Group(GroupError::LinkExpired))
    ));
    let mut raw = net.raw(&a).await;
    send_join(&mut raw, &hello(&sl)).await;
    assert!(matches!(
        recv_join(&mut raw).await,
        Some(JoinMessage::Result { code: 1 })
    ));
    warned(&mut aev, "expired").await;
    assert_eq!(snapshot(&a, g).await, before);
    // And frank still joins with a good link.
    join(&f, &good).await.unwrap();
    until(&a, "frank added", move |s| member_count(s, g) == 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_never_grants_more_than_member() {
    let net = Net::new();
    let a = net.start("alice").await;
    let r = net.start("rita").await;
    let g = a
        .node
        .group_create("Announcements", "", 0x01)
        .await
        .unwrap();
    let before = snapshot(&a, g).await;
    // No admin or owner links: refused before anything is appended.
    for role in [Role::Admin, Role::Owner] {
        assert!(
            a.node
                .group_link_create(g, role, 1, umbra::time::now_secs() + 60)
                .await
                .is_err(),
            "{role:?}"
        );
    }
    assert_eq!(snapshot(&a, g).await, before);
    assert!(a.node.group_links(g).await.unwrap().is_empty());
    // The role comes from the owner's log, never from the joiner: a
    // read-only link makes a read-only member.
    let ro = link(&a, g, Role::ReadOnly, 1, 600).await;
    join(&r, &ro).await.unwrap();
    until(&r, "rita is in", move |s| {
        status(s, g) == Some(GroupStatus::Active)
    })
    .await;
    let rita = fpr(&r);
    let m = a.node.group_members(g).await.unwrap();
    assert!(
        m.iter()
            .any(|x| x.fingerprint == rita && x.role == "read-only")
    );
    assert!(matches!(
        r.node.group_send(g, "can I post?").await,
        Err(NodeError::Group(GroupError::CannotPost(_)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_streams_from_strangers_are_rate_limited_per_link_and_overall() {
    let net = Net::new();
    let limits = JoinLimits {
        burst: 5,
        refill: Duration::from_secs(3600),
        per_link_burst: 3,
        per_link_refill: Duration::from_secs(3600),
        ..JoinLimits::default()
    };
    let a = net.start_with("alice", limits).await;
    let g = a.node.group_create("Busy", "", 0).await.unwrap();
    let l1 = InviteLink::parse(&link(&a, g, Role::Member, 10, 3600).await).unwrap();
    let l2 = InviteLink::parse(&link(&a, g, Role::Member, 10, 3600).await).unwrap();
    let before = snapshot(&a, g).await;
    let mut aev = a.node.events();

    // Garbage in a join frame: refused, no token spent.
    let mut raw = net.raw(&a).await;
    raw.send(Bytes::from_static(&[1, 4, 0xff, 0xff]))
        .await
        .unwrap();
    assert!(matches!(
        recv_join(&mut raw).await,
        Some(JoinMessage::Result { code: 1 })
    ));

    // One stream after the other: a Hello, and a wrong proof after a
    // Challenge. Returns whether a Challenge came.
    async fn attempt(net: &Net, a: &Member, l: &InviteLink) -> bool {
        let mut raw = net.raw(a).await;
        send_join(&mut raw, &hello(l)).await;
        match recv_join(&mut raw).await {
            Some(JoinMessage::Challenge { .. }) => {
                send_join(
                    &mut raw,
                    &JoinMessage::Proof {
                        joiner: [7; 20],
                        proof: [0; 32],
                        request: b"not a request".to_vec(),
                    },
                )
                .await;
                assert!(matches!(
                    recv_join(&mut raw).await,
                    Some(JoinMessage::Result { code: 1 })
                ));
                true
            }
            Some(JoinMessage::Result { code: 1 }) => false,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let mut challenged = Vec::new();
    for _ in 0..4 {
        challenged.push(attempt(&net, &a, &l1).await);
    }
    // Three per link; the fourth is refused and the owner told.
    assert_eq!(challenged, [true, true, true, false]);
    warned(&mut aev, "rate limit").await;
    // Five Hellos overall (the refused fourth counted too): the second
    // link gets the one left.
    let mut challenged = Vec::new();
    for _ in 0..3 {
        challenged.push(attempt(&net, &a, &l2).await);
    }
    assert_eq!(challenged, [true, false, false]);
    assert_eq!(snapshot(&a, g).await, before, "nothing changed");
    let uses: Vec<u16> = a
        .node
        .group_links(g)
        .await
        .unwrap()
        .iter()
        .map(|l| l.info.uses)
        .collect();
    assert_eq!(uses, [0, 0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_join_stream_ends_at_its_deadline_and_holds_at_most_its_slot() {
    let net = Net::new();
    let limits = JoinLimits {
        concurrent: 1,
        deadline: Duration::from_secs(2),
        ..JoinLimits::default()
    };
    let a = net.start_with("alice", limits).await;
    let g = a.node.group_create("Slow", "", 0).await.unwrap();
    let l = InviteLink::parse(&link(&a, g, Role::Member, 1, 3600).await).unwrap();
    let before = snapshot(&a, g).await;
    // s1 takes the only slot and goes silent after the Challenge.
    let mut s1 = net.raw(&a).await;
    send_join(&mut s1, &hello(&l)).await;
    assert!(matches!(
        recv_join(&mut s1).await,
        Some(JoinMessage::Challenge { .. })
    ));
    // s2 is refused at once: no slot.
    let mut s2 = net.raw(&a).await;
    send_join(&mut s2, &hello(&l)).await;
    assert!(matches!(
        recv_join(&mut s2).await,
        Some(JoinMessage::Result { code: 1 })
    ));
    // s1 is refused and closed at the deadline.
    assert!(matches!(
        recv_join(&mut s1).await,
        Some(JoinMessage::Result { code: 1 })
    ));
    assert!(
        recv_join(&mut s1).await.is_none(),
        "closed after the refusal"
    );
    assert_eq!(snapshot(&a, g).await, before);
    // The slot is free again: a real joiner gets in.
    let j = net.start("judy").await;
    let uri = secrecy::ExposeSecret::expose_secret(&l.to_uri().unwrap()).to_owned();
    join(&j, &uri).await.unwrap();
    until(&a, "judy added", move |s| member_count(s, g) == 2).await;
}
