//! Shared helpers of the daemon tests: real `umbra` and `umbra-handshaker`
//! processes, users with their own data directory and configuration, and
//! bounded waits on control-socket events.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use umbra::control::Client;
use umbra::control::proto::Event;

/// Generous bound for any single wait (2 shared cores; onion descriptors).
pub const WAIT: Duration = Duration::from_secs(120);

/// Kills (SIGKILL) and reaps a child on drop.
pub struct Proc(pub Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads `child`'s stdout lines until `pred` matches one (bounded by `WAIT`).
fn wait_line(
    child: &mut Child,
    what: &str,
    pred: impl Fn(&str) -> Option<String> + Send + 'static,
) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut found = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !found && let Some(v) = pred(&line) {
                found = true;
                let _ = tx.send(v);
            }
        }
    });
    rx.recv_timeout(WAIT).unwrap_or_else(|e| match e {
        mpsc::RecvTimeoutError::Timeout => {
            panic!("{what} did not announce itself within {WAIT:?}")
        }
        mpsc::RecvTimeoutError::Disconnected => {
            let status = child.wait().ok();
            panic!("{what} closed its output without announcing itself (exit: {status:?})")
        }
    })
}

/// The `umbra-handshaker` binary next to the `umbra` one.
pub fn handshaker_bin() -> PathBuf {
    let umbra = PathBuf::from(env!("CARGO_BIN_EXE_umbra"));
    let p = umbra.with_file_name("umbra-handshaker");
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p umbra-handshaker` (cargo test --workspace builds it)",
        p.display()
    );
    p
}

/// A running Handshaker.
pub struct Handshaker {
    /// Its address for clients.
    pub address: String,
    _proc: Proc,
    _dir: tempfile::TempDir,
}

impl Handshaker {
    /// Over direct TCP on 127.0.0.1.
    pub fn direct() -> Handshaker {
        Self::direct_at("127.0.0.1:0")
    }

    /// Over direct TCP on 127.0.0.1:`port`, with a fresh data directory (and
    /// so a fresh binding key).
    pub fn direct_on(port: u16) -> Handshaker {
        Self::direct_at(&format!("127.0.0.1:{port}"))
    }

    fn direct_at(listen: &str) -> Handshaker {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(handshaker_bin())
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", listen, "--no-onion", "--pow-difficulty", "8"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let port = wait_line(&mut child, "the handshaker", |l| {
            l.trim()
                .rsplit(':')
                .next()
                .and_then(|p| p.parse::<u16>().ok())
                .map(|p| p.to_string())
        });
        Handshaker {
            address: format!("http://127.0.0.1:{port}"),
            _proc: Proc(Some(child)),
            _dir: dir,
        }
    }

    /// As an onion service of the local Tor network whose Arti config is at `arti_cfg`.
    pub fn onion(arti_cfg: &Path) -> Handshaker {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(handshaker_bin())
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--arti-network-config")
            .arg(arti_cfg)
            .args(["--pow-difficulty", "8"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let onion = wait_line(&mut child, "the onion handshaker", |l| {
            l.strip_prefix("onion service: ").map(str::to_owned)
        });
        Handshaker {
            address: onion,
            _proc: Proc(Some(child)),
            _dir: dir,
        }
    }
}

/// A port for a user's daemon that is free now and stays free across its
/// restarts: taken below Linux's ephemeral range (32768 and up), so no
/// outgoing connection is given it while the daemon is down, and handed out
/// once per process (from an offset of the process id, so two test
/// processes rarely meet).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id() % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    for _ in 0..SPAN {
        let port = u16::try_from(FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN).unwrap();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {FIRST}..{}", FIRST + SPAN)
}

/// How a user's daemon reaches others.
#[derive(Clone)]
pub enum Net {
    /// Direct TCP on 127.0.0.1 (not anonymous; fast).
    Direct,
    /// The local Tor network (Arti config file).
    Local(PathBuf),
}

/// A user: data directory, config, passphrase file, maybe a running daemon.
pub struct User {
    /// `@name`.
    pub name: String,
    /// The data directory.
    pub dir: PathBuf,
    cfg: PathBuf,
    pw: PathBuf,
    daemon: Proc,
}

/// When a test fails, the end of each of its daemons' logs (umbra's own
/// lines) goes to the test output: a CI failure then says what the daemons
/// were doing.
impl Drop for User {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        // Umbra's own lines, and a panic's message (the line after "panicked at").
        let lines: Vec<&str> = log.lines().collect();
        let ours: Vec<&str> = lines
            .iter()
            .enumerate()
            .filter(|(i, l)| {
                l.contains(" umbra::")
                    || l.contains(" umbra_")
                    || l.contains("panicked at")
                    || (*i > 0 && lines[i - 1].contains("panicked at"))
            })
            .map(|(_, l)| *l)
            .collect();
        let tail = &ours[ours.len().saturating_sub(LOG_TAIL)..];
        eprintln!(
            "---- last {} umbra log lines of {} ----\n{}",
            tail.len(),
            self.name,
            tail.join("\n")
        );
    }
}

/// Log lines [`User`] prints when a test fails.
const LOG_TAIL: usize = 60;

impl User {
    /// Creates the user under `root` (`umbra init`), configured for `net`
    /// and the Handshaker at `handshaker`.
    pub fn new(root: &Path, name: &str, net: &Net, handshaker: &str) -> User {
        // The home directory does not carry the username, so that log and
        // file scans for the name are not fooled by paths.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let home = root.join(format!("home{n}"));
        std::fs::create_dir_all(&home).unwrap();
        let dir = home.join("data");
        let cfg = home.join("config.toml");
        let pw = home.join("pw");
        std::fs::write(&pw, format!("passphrase of {name}\n")).unwrap();
        let network = match net {
            // A fixed port per user, like an onion address that stays the
            // same across restarts.
            Net::Direct => format!(
                "kind = \"direct\"\ndirect_listen = \"127.0.0.1:{}\"\n",
                free_port()
            ),
            Net::Local(p) => format!(
                "kind = \"local\"\nlocal_network = \"{}\"\ndangerously_trust_everyone = true\n",
                p.display()
            ),
        };
        std::fs::write(
            &cfg,
            format!("[network]\n{network}\n[handshaker]\naddress = \"{handshaker}\"\n"),
        )
        .unwrap();
        let u = User {
            name: format!("@{name}"),
            dir,
            cfg,
            pw,
            daemon: Proc(None),
        };
        let out = u.cmd(&["init", "--name", name]).output().unwrap();
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        u
    }

    /// `umbra ARGS --data-dir … --config … --passphrase-file …`.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_umbra"));
        for (k, _) in std::env::vars() {
            if k.starts_with("UMBRA_") {
                c.env_remove(k);
            }
        }
        c.args(args)
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--config")
            .arg(&self.cfg)
            .arg("--passphrase-file")
            .arg(&self.pw)
            .stdin(Stdio::null());
        c
    }

    /// The full argv of `umbra ARGS` for this user (for tmux).
    pub fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![env!("CARGO_BIN_EXE_umbra").to_owned()];
        v.extend(args.iter().map(|a| (*a).to_owned()));
        for (flag, path) in [
            ("--data-dir", &self.dir),
            ("--config", &self.cfg),
            ("--passphrase-file", &self.pw),
        ] {
            v.push(flag.to_owned());
            v.push(path.display().to_string());
        }
        v
    }

    /// Runs a command with `--json`, asserts success, returns its output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cmd(&a).output().unwrap();
        assert!(
            out.status.success(),
            "{} {args:?} failed ({:?}): {}",
            self.name,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{args:?}: not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Runs a command expected to fail; returns (exit code, the `--json` error).
    pub fn fails(&self, args: &[&str]) -> (i32, Value) {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.cmd(&a).output().unwrap();
        assert!(!out.status.success(), "{args:?} unexpectedly succeeded");
        let err = serde_json::from_slice(&out.stderr).unwrap_or_else(|e| {
            panic!(
                "{args:?}: stderr not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), err)
    }

    /// Starts `umbra up` and waits for its ready line.
    pub fn up(&mut self) {
        assert!(self.daemon.0.is_none(), "already up");
        // Debug logs go to a file next to the data dir, for the log scans.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap();
        let mut child = self
            .cmd(&["up", "--json"])
            .env("UMBRA_LOG", "debug,tor_netdir=error")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap();
        let name = self.name.clone();
        let log_path = self.log_path();
        let line = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_line(&mut child, &name, |l| {
                l.contains("\"ready\":true").then(|| l.to_owned())
            })
        }))
        .unwrap_or_else(|p| {
            // Say why: the end of the daemon's log.
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            let msg = p
                .downcast_ref::<String>()
                .cloned()
                .unwrap_or_else(|| "no ready line".into());
            panic!("{msg}; end of its log:\n{}", tail.join("\n"))
        });
        assert!(line.contains(&self.name), "{line}");
        self.daemon = Proc(Some(child));
    }

    /// The daemon's log file (all runs appended).
    pub fn log_path(&self) -> PathBuf {
        self.dir.with_file_name("daemon.log")
    }

    /// Stops the daemon with SIGTERM and asserts a clean exit.
    pub fn down(&mut self) {
        let mut child = self.daemon.0.take().expect("daemon running");
        let pid = child.id().to_string();
        let st = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(st.success());
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        let status = rx
            .recv_timeout(WAIT)
            .expect("the daemon exits after SIGTERM")
            .unwrap();
        assert!(status.success(), "daemon exit: {status:?}");
        // A log file gets no colour codes (UX-2026-11 A7).
        let log = std::fs::read_to_string(self.log_path()).unwrap();
        assert!(!log.contains('\x1b'), "ANSI escapes in {}", self.name);
    }

    /// The running daemon's process id.
    pub fn pid(&self) -> u32 {
        self.daemon.0.as_ref().expect("daemon running").id()
    }

    /// Kills the daemon with SIGKILL (a crash).
    pub fn kill(&mut self) {
        let mut child = self.daemon.0.take().expect("daemon running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// A subscribed control client.
    pub async fn events(&self) -> Client {
        let mut c = Client::connect(&self.dir).await.unwrap();
        c.subscribe().await.unwrap();
        c
    }
}

/// Waits (bounded) for an event matching `pred`.
pub async fn wait_event(c: &mut Client, what: &str, pred: impl Fn(&Event) -> bool) -> Event {
    tokio::time::timeout(WAIT, async {
        loop {
            match c.next_event().await.unwrap() {
                Some(e) if pred(&e) => return e,
                Some(_) => {}
                None => panic!("daemon closed the event stream while waiting for {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

/// Peak resident memory (VmHWM) of process `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Every file under `dir` (recursively).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Asserts that no file under `dir` contains any of `needles` (bytes).
pub fn assert_no_plaintext(dir: &Path, needles: &[&str]) {
    for f in files(dir) {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "{} contains the plaintext {n:?}",
                f.display()
            );
        }
    }
}

/// alice and bob under `root`, daemons up, registered at `hs`, bob's
/// request accepted by alice and the Accept received by bob.
pub fn connected_pair(
    root: &Path,
    net: &Net,
    hs: &str,
    rt: &tokio::runtime::Runtime,
) -> (User, User) {
    let mut alice = User::new(root, "alice", net, hs);
    let mut bob = User::new(root, "bob", net, hs);
    alice.up();
    bob.up();
    alice.json(&["register"]);
    bob.json(&["register"]);
    let mut b_events = rt.block_on(bob.events());
    bob.json(&["request", "@alice"]);
    alice.json(&["requests"]);
    alice.json(&["accept", "@bob"]);
    rt.block_on(wait_event(&mut b_events, "the accept", |e| {
        matches!(e, Event::RequestAnswered { accepted: true, .. })
    }));
    (alice, bob)
}

/// The shared local Tor network (`umbra_testnet::shared`) and an onion
/// Handshaker on it: the users' root directory (it holds the Arti config),
/// the config for [`Net::Local`], and the Handshaker.
pub fn onion_setup() -> (tempfile::TempDir, PathBuf, Handshaker) {
    let net = umbra_testnet::shared();
    let root = tempfile::tempdir().unwrap();
    let cfg = root.path().join("arti-network.toml");
    net.write_arti_config(&cfg).unwrap();
    let hs = Handshaker::onion(&cfg);
    (root, cfg, hs)
}

/// A multi-threaded runtime for the event clients of a test.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What must outlive a [`direct_pair`]: the Handshaker process and the
/// users' directories.
pub struct Keep {
    pub hs: Handshaker,
    pub root: tempfile::TempDir,
}

/// A Handshaker on direct TCP, and alice and bob connected through it
/// ([`connected_pair`]), with a runtime for their event clients.
pub fn direct_pair() -> (Keep, tokio::runtime::Runtime, User, User) {
    let hs = Handshaker::direct();
    let root = tempfile::tempdir().unwrap();
    let rt = rt();
    let (alice, bob) = connected_pair(root.path(), &Net::Direct, &hs.address, &rt);
    (Keep { hs, root }, rt, alice, bob)
}
