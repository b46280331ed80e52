//! Flood benchmark (issue #16): honest clients register, look up, deposit
//! and fetch while an attacker floods the Handshaker over loopback, one
//! attack at a time, each for a bounded time. Prints the honest success
//! rate and p50/p99 latency per scenario next to the same honest load with
//! no attack. Goal: ≥ 99 % success and p99 < 1 s in every scenario.
//!
//! The server runs with its default limits (only the proof-of-work
//! difficulty is lowered, for honest clients and attacker alike), on SQLite
//! or, with `UMBRA_BENCH_DATABASE=postgres://…`, on PostgreSQL.
//!
//! Run: `cargo bench -p umbra-handshaker --bench flood` (release) or with
//! `--profile dev`. `UMBRA_FLOOD_SECS` sets the length of each scenario
//! (default 8). Never run by the tests or CI.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use umbra::handshaker_client::HandshakerClient;
use umbra::handshaker_client::pow::{Purpose, solve};
use umbra::identity::{Identity, Username};
use umbra::transport::Listener as _;
use umbra::transport::Transport;
use umbra::transport::tcp::TcpTransport;
use umbra_handshaker::{AppState, Config, PgStore, SqliteStore, Store};

/// PoW difficulty for everyone in the benchmark (the attacker's cost is
/// not what is measured).
const DIFFICULTY: u32 = 8;
/// Honest client tasks, each doing one operation every `HONEST_PAUSE`.
const HONEST: usize = 4;
const HONEST_PAUSE: Duration = Duration::from_millis(100);
/// Registered honest users whose mailboxes get deposits and are fetched.
const POOL: usize = 40;
/// Attacker connections (keep-alive) for the request floods.
const ATTACKERS: usize = 16;
/// Slow sockets in the slowloris scenario.
const SLOW: usize = 1000;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[derive(Clone, Copy, Debug)]
enum Attack {
    None,
    Garbage,
    Challenges,
    SlowSockets,
    DepositFlood,
    Enumeration,
}

impl Attack {
    fn name(self) -> &'static str {
        match self {
            Attack::None => "no attack (baseline)",
            Attack::Garbage => "garbage bodies",
            Attack::Challenges => "challenge flood",
            Attack::SlowSockets => "1,000 slow sockets",
            Attack::DepositFlood => "deposit flood at one target",
            Attack::Enumeration => "search enumeration",
        }
    }
}

/// One HTTP/1.1 exchange on a keep-alive connection; the status.
async fn exchange(
    conn: &mut BufReader<TcpStream>,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<u16> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // One write: head and body in separate segments would wait for a
    // delayed ACK (Nagle) and measure that instead.
    let mut req = head.into_bytes();
    req.extend_from_slice(body);
    conn.get_mut().write_all(&req).await?;
    let mut line = String::new();
    if conn.read_line(&mut line).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut len = 0usize;
    loop {
        line.clear();
        conn.read_line(&mut line).await?;
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0u8; len];
    conn.read_exact(&mut body).await?;
    Ok(status)
}

/// Runs `attack` until `stop`; counts the attacker's requests.
async fn attacker(
    port: u16,
    attack: Attack,
    id: usize,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) {
    match attack {
        Attack::None => {}
        Attack::SlowSockets => {
            // Keep SLOW / ATTACKERS sockets open, each with one header line
            // and nothing more; reopen those the server closes.
            let mut socks = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                socks.retain(|s: &TcpStream| {
                    let mut b = [0u8; 1];
                    !matches!(s.try_read(&mut b), Ok(0) | Ok(1))
                });
                while socks.len() < SLOW / ATTACKERS {
                    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)).await else {
                        break;
                    };
                    if s.write_all(b"GET /v1/health HTTP/1.1\r\n").await.is_ok() {
                        socks.push(s);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        _ => {
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let Ok(s) = TcpStream::connect(("127.0.0.1", port)).await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let _ = s.set_nodelay(true);
                let mut conn = BufReader::new(s);
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let target = format!("user{}", (n as usize + id) % POOL);
                    let res = match attack {
                        Attack::Garbage => {
                            let junk: &[u8] = match n % 3 {
                                0 => b"{}",
                                1 => b"not json at all",
                                _ => br#"{"message":"-----BEGIN PGP MESSAGE-----\nx\n-----END PGP MESSAGE-----","pow":{"ts":1,"nonce":"0123456789abcdef0123456789abcdef"}}"#,
                            };
                            let path = if n.is_multiple_of(2) {
                                "/v1/register".to_owned()
                            } else {
                                format!("/v1/mailbox/{target}")
                            };
                            exchange(&mut conn, "POST", &path, junk).await
                        }
                        Attack::Challenges => {
                            exchange(
                                &mut conn,
                                "POST",
                                &format!("/v1/mailbox/{target}/challenge"),
                                b"",
                            )
                            .await
                        }
                        Attack::DepositFlood => {
                            let stamp = solve(
                                Purpose::Deposit,
                                "user0",
                                DIFFICULTY,
                                umbra::time::now_secs(),
                                &mut |_| {},
                            );
                            let body = serde_json::json!({
                                "message": format!("-----BEGIN PGP MESSAGE-----\n\nflood {id} {n}\n-----END PGP MESSAGE-----\n"),
                                "pow": stamp,
                            });
                            exchange(
                                &mut conn,
                                "POST",
                                "/v1/mailbox/user0",
                                body.to_string().as_bytes(),
                            )
                            .await
                        }
                        Attack::Enumeration => {
                            let p: String = (0..3)
                                .map(|k| {
                                    (b'a' + ((n as usize * 7 + id + k * 13) % 26) as u8) as char
                                })
                                .collect();
                            exchange(
                                &mut conn,
                                "GET",
                                &format!("/v1/search?prefix={p}&limit=20"),
                                b"",
                            )
                            .await
                        }
                        Attack::None | Attack::SlowSockets => Ok(0),
                    };
                    sent.fetch_add(1, Ordering::Relaxed);
                    if res.is_err() {
                        break;
                    }
                }
            }
        }
    }
}

/// Honest users' operations until `stop`: (latency, ok) per operation.
async fn honest(
    url: String,
    worker: usize,
    owners: Arc<Vec<Identity>>,
    fresh: Vec<Identity>,
    stop: Arc<AtomicBool>,
) -> Vec<(Duration, bool, &'static str)> {
    let client = HandshakerClient::new(&url).unwrap();
    let mut out = Vec::new();
    let mut fresh = fresh.into_iter();
    let mut i = worker;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let t = Instant::now();
        let (what, ok) = match i % 10 {
            0 => match fresh.next() {
                Some(id) => ("register", client.register(&id).await.is_ok()),
                None => ("lookup", client.lookup(owners[0].username()).await.is_ok()),
            },
            1 | 2 => {
                // Not user0: the flood's target (its own budget is the attacker's).
                let to = &owners[1 + (i * 7 + worker) % (POOL - 1)];
                let msg = format!(
                    "-----BEGIN PGP MESSAGE-----\n\nhonest {worker} {i}\n-----END PGP MESSAGE-----\n"
                );
                ("deposit", client.deposit(to.username(), &msg).await.is_ok())
            }
            3 => {
                let me = &owners[(i * 3 + worker) % POOL];
                let ok = match client.fetch(me).await {
                    Ok(got) => {
                        let ids: Vec<String> = got.items.iter().map(|x| x.id.clone()).collect();
                        client
                            .ack(me.username(), &got.ack_token, &ids)
                            .await
                            .is_ok()
                    }
                    Err(_) => false,
                };
                ("fetch+ack", ok)
            }
            _ => {
                let who = &owners[(i * 11 + worker) % POOL];
                (
                    "lookup",
                    matches!(client.lookup(who.username()).await, Ok(Some(_))),
                )
            }
        };
        out.push((t.elapsed(), ok, what));
        tokio::time::sleep(HONEST_PAUSE).await;
    }
    out
}

fn main() {
    let secs: u64 = std::env::var("UMBRA_FLOOD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let database = std::env::var("UMBRA_BENCH_DATABASE").ok();
    let profile = if cfg!(debug_assertions) {
        "dev"
    } else {
        "release"
    };
    println!(
        "umbra-handshaker flood benchmark — profile {profile}, {} store, {secs} s per scenario, \
         {HONEST} honest clients (one operation each per {} ms), {ATTACKERS} attacker connections, PoW {DIFFICULTY} bits",
        if database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        HONEST_PAUSE.as_millis()
    );
    let tmp = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = match &database {
        Some(url) => Arc::new(PgStore::open(url).unwrap()),
        None => Arc::new(SqliteStore::open(&tmp.path().join("flood.db")).unwrap()),
    };
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (port, url) = {
        let listener = server_rt.block_on(async {
            TcpTransport::new("127.0.0.1:0".parse().unwrap())
                .listen()
                .await
                .unwrap()
        });
        let addr = listener.address().as_str().to_owned();
        let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
        let mut cfg = Config::default();
        cfg.pow.difficulty = DIFFICULTY;
        let url = format!("http://{addr}");
        let state = Arc::new(AppState::new(cfg, store, url.clone()).unwrap());
        server_rt.spawn(umbra_handshaker::serve(
            listener,
            state,
            std::future::pending::<()>(),
        ));
        (port, url)
    };
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let owners: Vec<Identity> = (0..POOL)
        .map(|i| Identity::generate(&Username::parse(&format!("user{i}")).unwrap()).unwrap())
        .collect();
    client_rt.block_on(async {
        let c = HandshakerClient::new(&url).unwrap();
        for o in &owners {
            c.register(o).await.unwrap();
        }
    });
    let owners = Arc::new(owners);
    println!(
        "{:<30} {:>9} {:>10} {:>9} {:>9} {:>14}",
        "scenario", "honest", "success", "p50", "p99", "attack req/s"
    );
    for (n, attack) in [
        Attack::None,
        Attack::Garbage,
        Attack::Challenges,
        Attack::SlowSockets,
        Attack::DepositFlood,
        Attack::Enumeration,
    ]
    .into_iter()
    .enumerate()
    {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let attackers: Vec<_> = (0..ATTACKERS)
            .map(|i| client_rt.spawn(attacker(port, attack, i, stop.clone(), sent.clone())))
            .collect();
        let honest_tasks: Vec<_> = (0..HONEST)
            .map(|w| {
                let fresh: Vec<Identity> = (0..(secs as usize * 2))
                    .map(|k| {
                        Identity::generate(&Username::parse(&format!("h{n}w{w}n{k}")).unwrap())
                            .unwrap()
                    })
                    .collect();
                client_rt.spawn(honest(url.clone(), w, owners.clone(), fresh, stop.clone()))
            })
            .collect();
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        let attack_secs = start.elapsed().as_secs_f64();
        let mut results = Vec::new();
        client_rt.block_on(async {
            for h in honest_tasks {
                results.extend(h.await.unwrap());
            }
            for a in attackers {
                let _ = tokio::time::timeout(Duration::from_secs(10), a).await;
            }
        });
        let ok = results.iter().filter(|r| r.1).count();
        let mut lat: Vec<Duration> = results.iter().map(|r| r.0).collect();
        lat.sort();
        let failed: Vec<&str> = results.iter().filter(|r| !r.1).map(|r| r.2).collect();
        println!(
            "{:<30} {:>9} {:>9.2}% {:>7.1}ms {:>7.1}ms {:>14.0}{}",
            attack.name(),
            results.len(),
            100.0 * ok as f64 / results.len().max(1) as f64,
            pct(&lat, 0.5).as_secs_f64() * 1e3,
            pct(&lat, 0.99).as_secs_f64() * 1e3,
            sent.load(Ordering::Relaxed) as f64 / attack_secs,
            if failed.is_empty() {
                String::new()
            } else {
                format!("  failed: {failed:?}")
            }
        );
    }
}
