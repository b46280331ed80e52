//! Two `umbra-handshaker` front ends on one PostgreSQL directory, as behind
//! one onion address (handshaker/README.md): what one front end writes or
//! spends, the other sees at once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use umbra::handshaker_client::pow::{Purpose, solve};
use umbra::handshaker_client::wire::{DepositRequest, fetch_statement};
use umbra::handshaker_client::{
    ConnectFuture, Connector, HandshakerAddress, HandshakerClient, Isolation, TcpConnector,
};

use crate::support::{Backend, Opts, Server, ident, rt};

/// Dials one front end whatever address the client signs for (the onion
/// address both front ends serve).
struct Via(HandshakerAddress);

impl Connector for Via {
    fn connect<'a>(&'a self, _: &'a HandshakerAddress, isolation: Isolation) -> ConnectFuture<'a> {
        TcpConnector.connect(&self.0, isolation)
    }
}

#[test]
fn two_front_ends_share_one_directory() {
    let a = Server::with(Opts::on(Backend::Postgres));
    let b = a.second_front_end();
    let on_a = HandshakerClient::new(&a.url()).unwrap();
    let via_b = std::sync::Arc::new(Via(HandshakerAddress::parse(&b.url()).unwrap()));
    let on_b = HandshakerClient::with_connector(&a.url(), via_b).unwrap();
    let (alice, bob) = (ident("alice"), ident("bob"));
    rt().block_on(async {
        // Register on A; B serves the entry, signed with the same key.
        on_a.register(&alice).await.unwrap();
        on_b.register(&bob).await.unwrap();
        assert_eq!(
            on_a.info().await.unwrap().binding_key,
            on_b.info().await.unwrap().binding_key
        );
        let found = on_b.lookup(alice.username()).await.unwrap().unwrap();
        assert_eq!(found.fingerprint, alice.fingerprint());
        assert_eq!(on_a.search("bob", 5).await.unwrap().len(), 1);

        // Deposit through B, fetch through A, ack through B.
        let msg = "-----BEGIN PGP MESSAGE-----\n\nhi\n-----END PGP MESSAGE-----\n";
        on_b.deposit(alice.username(), msg).await.unwrap();
        let got = on_a.fetch(&alice).await.unwrap();
        assert_eq!(got.items.len(), 1);
        let ids = [got.items[0].id.clone()];
        assert_eq!(
            on_b.ack(alice.username(), &got.ack_token, &ids)
                .await
                .unwrap(),
            1
        );
        assert!(on_a.fetch(&alice).await.unwrap().items.is_empty());
    });

    // A stamp spent on one front end is spent on the other.
    let stamp = solve(
        Purpose::Deposit,
        "alice",
        8,
        umbra::time::now_secs(),
        &mut |_| {},
    );
    let body = serde_json::to_string(&DepositRequest {
        message: "-----BEGIN PGP MESSAGE-----\n\nx\n-----END PGP MESSAGE-----\n".into(),
        pow: Some(stamp),
    })
    .unwrap();
    assert_eq!(a.raw("POST", "/v1/mailbox/alice", body.as_bytes()).0, 202);
    let (status, reply) = b.raw("POST", "/v1/mailbox/alice", body.as_bytes());
    assert_eq!(status, 422, "{reply}");
    assert!(reply.contains("pow_reused"), "{reply}");

    // A challenge from A is good on B, once.
    let (status, reply) = a.raw("POST", "/v1/mailbox/alice/challenge", b"");
    assert_eq!(status, 200, "{reply}");
    let challenge = serde_json::from_str::<serde_json::Value>(&reply).unwrap()["challenge"]
        .as_str()
        .unwrap()
        .to_owned();
    let statement = fetch_statement(alice.username(), &a.url(), &challenge);
    let fetch = serde_json::json!({
        "challenge": challenge,
        "signature": alice.sign_detached(statement.as_bytes()).unwrap(),
    })
    .to_string();
    let (status, reply) = b.raw("POST", "/v1/mailbox/alice/fetch", fetch.as_bytes());
    assert_eq!(status, 200, "{reply}");
    let (status, reply) = a.raw("POST", "/v1/mailbox/alice/fetch", fetch.as_bytes());
    assert_eq!(status, 401, "a challenge used on B is used on A: {reply}");
}
