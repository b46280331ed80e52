//! A C tor client node of the test network, and downloads through it with
//! `curl`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::Error;
use crate::node::tail_lines;

/// How long [`crate::TestNet::c_client`] waits for the client to bootstrap.
pub const CLIENT_BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(120);

/// How long [`CTorClient::fetch`] keeps retrying.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// A C tor client (not a relay) of a [`crate::TestNet`], with a SocksPort and
/// a ControlPort (cookie authentication) on 127.0.0.1.
///
/// Dropping it kills and reaps the tor process. Its data directory lives
/// inside the network's directory, so drop it before the network. Like the
/// relays, it runs with `__OwningControllerProcess` and exits by itself when
/// the network's owning process has died.
#[derive(Debug)]
pub struct CTorClient {
    name: String,
    child: Option<Child>,
    socks_port: u16,
    control_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    owner_pid: u32,
    bootstrap: Duration,
}

/// Where and how a client will run.
#[derive(Debug)]
pub(crate) struct ClientPlan<'a> {
    pub(crate) name: &'a str,
    pub(crate) data_dir: PathBuf,
    pub(crate) socks_port: u16,
    pub(crate) control_port: u16,
    pub(crate) owner_pid: u32,
    pub(crate) tor_binary: &'a Path,
    pub(crate) dirauth_lines: &'a [String],
}

/// One successful download by [`CTorClient::fetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetch {
    /// Bytes written to the output file.
    pub bytes: u64,
    /// Duration of the successful attempt: curl's whole run, including the
    /// SOCKS connect (descriptor lookup, introduction, rendezvous) and the
    /// transfer.
    pub elapsed: Duration,
    /// Time from the start of the successful attempt to the first response
    /// byte (curl's `time_starttransfer`), so that `elapsed - first_byte` is
    /// the time spent transferring the body.
    pub first_byte: Duration,
    /// How many times curl was run, the successful attempt included.
    pub attempts: u32,
}

impl Fetch {
    /// Throughput of the body in MiB/s over `elapsed - first_byte`.
    pub fn body_mib_per_s(&self) -> f64 {
        let secs = self.elapsed.saturating_sub(self.first_byte).as_secs_f64();
        mib_per_s(self.bytes, secs)
    }

    /// Throughput in MiB/s over the whole attempt (`elapsed`).
    pub fn mib_per_s(&self) -> f64 {
        mib_per_s(self.bytes, self.elapsed.as_secs_f64())
    }
}

fn mib_per_s(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / (1024.0 * 1024.0) / secs
    } else {
        f64::INFINITY
    }
}

impl CTorClient {
    /// Write the torrc, start tor and wait until it has bootstrapped.
    pub(crate) fn spawn(plan: ClientPlan<'_>, timeout: Duration) -> Result<CTorClient, Error> {
        let started = Instant::now();
        crate::keys::create_private_dir(&plan.data_dir)?;
        let log = plan.data_dir.join("notice.log");
        let torrc_path = plan.data_dir.join("torrc");
        std::fs::write(&torrc_path, torrc(&plan, &log)).map_err(|source| Error::Io {
            action: "write a torrc",
            path: torrc_path.clone(),
            source,
        })?;
        let child = crate::node::spawn_tor(
            plan.tor_binary,
            &torrc_path,
            &plan.data_dir,
            "start a tor client",
        )?;
        let mut client = CTorClient {
            name: plan.name.to_owned(),
            child: Some(child),
            socks_port: plan.socks_port,
            control_port: plan.control_port,
            data_dir: plan.data_dir,
            log,
            owner_pid: plan.owner_pid,
            bootstrap: Duration::ZERO,
        };
        // On error, `client` is dropped and kills tor.
        client.wait_bootstrapped(started + timeout)?;
        client.bootstrap = started.elapsed();
        Ok(client)
    }

    /// Poll the log until tor reports `Bootstrapped 100%`.
    fn wait_bootstrapped(&mut self, deadline: Instant) -> Result<(), Error> {
        loop {
            let text = std::fs::read(&self.log).unwrap_or_default();
            let text = String::from_utf8_lossy(&text);
            let last = text.lines().rev().find(|l| l.contains("Bootstrapped "));
            if last.is_some_and(|l| l.contains("Bootstrapped 100%")) {
                return Ok(());
            }
            let last = last.unwrap_or("no bootstrap progress yet").to_owned();
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(self.not_ready(format!("tor exited: {status}")));
            }
            if Instant::now() >= deadline {
                return Err(self.not_ready(format!("timed out; last: {last}")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn not_ready(&self, last: String) -> Error {
        Error::ClientNotReady {
            name: self.name.clone(),
            last,
            log_tail: self.log_tail(15),
        }
    }

    /// The name given to [`crate::TestNet::c_client`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// SocksPort on 127.0.0.1 (`IsolateSOCKSAuth` is on, tor's default, so
    /// every SOCKS username gets its own circuits).
    pub fn socks_port(&self) -> u16 {
        self.socks_port
    }

    /// ControlPort on 127.0.0.1 (cookie authentication; the cookie is
    /// `control_auth_cookie` in [`CTorClient::data_dir`]).
    pub fn control_port(&self) -> u16 {
        self.control_port
    }

    /// The client's data directory (holds `torrc` and `notice.log`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Process id of the tor process.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How long starting and bootstrapping took.
    pub fn bootstrap_time(&self) -> Duration {
        self.bootstrap
    }

    /// The last `lines` lines of the client's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut all = tail_lines(&self.log, lines);
        all.extend(crate::node::output_tail(&self.data_dir, lines));
        let mut out = all.join("\n");
        out.push('\n');
        out
    }

    /// The pid whose death makes this client (and what runs on it) exit.
    pub(crate) fn owner_pid(&self) -> u32 {
        self.owner_pid
    }

    /// [`CTorClient::fetch_within`] with a deadline of [`FETCH_TIMEOUT`].
    pub fn fetch(&self, url: &str, out: &Path, isolation: &str) -> Result<Fetch, Error> {
        self.fetch_within(url, out, isolation, FETCH_TIMEOUT)
    }

    /// Download `url` into `out` with `curl` through this client's SocksPort
    /// (`--socks5-hostname`, so `.onion` names resolve in tor).
    ///
    /// `isolation` is sent as the SOCKS username: a value not used before on
    /// this client gets fresh circuits (including a fresh rendezvous
    /// circuit). Failures that can be transient (SOCKS errors such as an
    /// onion descriptor not yet published, connection resets, stalls) are
    /// retried with a short backoff until `timeout` has passed since the
    /// call; HTTP errors and local errors are not. The returned
    /// [`Fetch::elapsed`] covers the successful attempt only.
    pub fn fetch_within(
        &self,
        url: &str,
        out: &Path,
        isolation: &str,
        timeout: Duration,
    ) -> Result<Fetch, Error> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut attempts = 0;
        let mut backoff = Duration::from_millis(250);
        loop {
            attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            let attempt_start = Instant::now();
            let output = Command::new("curl")
                .args(["--silent", "--show-error", "--fail"])
                .arg("--socks5-hostname")
                .arg(format!("127.0.0.1:{}", self.socks_port))
                .arg("--proxy-user")
                .arg(format!("{isolation}:x"))
                // Bound the SOCKS handshake (descriptor fetch, introduction,
                // rendezvous) by the deadline, and give up on a stalled body.
                .arg("--connect-timeout")
                .arg(remaining.as_secs().max(1).to_string())
                .args(["--speed-limit", "1", "--speed-time", "30"])
                .args(["--write-out", "%{time_starttransfer}"])
                .arg(url)
                .arg("-o")
                .arg(out)
                .stdin(Stdio::null())
                .output()
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::NotFound => Error::NotInstalled {
                        program: "curl",
                        package: "curl",
                    },
                    _ => Error::Spawn {
                        action: "run curl",
                        source,
                    },
                })?;
            let elapsed = attempt_start.elapsed();
            if output.status.success() {
                let bytes = std::fs::metadata(out)
                    .map_err(|source| Error::Io {
                        action: "read the downloaded file",
                        path: out.to_owned(),
                        source,
                    })?
                    .len();
                let first_byte = String::from_utf8_lossy(&output.stdout)
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .unwrap_or(elapsed)
                    .min(elapsed);
                return Ok(Fetch {
                    bytes,
                    elapsed,
                    first_byte,
                    attempts,
                });
            }
            let code = output.status.code();
            let detail = format!(
                "curl {}: {}{}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim(),
                socks_hint(&String::from_utf8_lossy(&output.stderr)),
            );
            let now = Instant::now();
            if !retryable(code) || now + backoff >= deadline {
                return Err(Error::Fetch {
                    url: url.to_owned(),
                    attempts,
                    waited: started.elapsed(),
                    detail,
                });
            }
            tracing::debug!(url, attempts, %detail, "fetch failed, retrying");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

impl Drop for CTorClient {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Can a curl failure with this exit code go away by itself?
fn retryable(code: Option<i32>) -> bool {
    // 7 connect failed, 18 partial file, 28 timeout or stall, 52 empty reply,
    // 55/56 send/receive error, 97 SOCKS error (e.g. onion descriptor not
    // yet published or introduction failed).
    matches!(code, Some(7 | 18 | 28 | 52 | 55 | 56 | 97))
}

/// Explain tor's extended SOCKS5 error codes (`ExtendedErrors`) that curl
/// prints as a bare number.
fn socks_hint(stderr: &str) -> &'static str {
    const HINTS: [(&str, &str); 8] = [
        ("(240)", " [tor: onion service descriptor not found]"),
        ("(241)", " [tor: onion service descriptor invalid]"),
        ("(242)", " [tor: onion service introduction failed]"),
        ("(243)", " [tor: onion service rendezvous failed]"),
        ("(244)", " [tor: onion service needs client authorization]"),
        ("(245)", " [tor: onion service client authorization wrong]"),
        ("(246)", " [tor: bad onion address]"),
        ("(247)", " [tor: onion service introduction timed out]"),
    ];
    HINTS
        .iter()
        .find(|(code, _)| stderr.contains(code))
        .map_or("", |(_, hint)| hint)
}

/// The torrc of a client node: the options every relay has that matter to a
/// client, and the network's authorities. The consensus parameters
/// (`cbtdisabled`, `hsdir_interval`, ...) reach it through the consensus.
fn torrc(plan: &ClientPlan<'_>, log: &Path) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "TestingTorNetwork 1\n\
         DataDirectory {d}\n\
         RunAsDaemon 0\n\
         __OwningControllerProcess {owner}\n\
         ShutdownWaitLength 0\n\
         Log notice file {log}\n\
         SocksPort 127.0.0.1:{sp} ExtendedErrors IsolateSOCKSAuth\n\
         ControlPort 127.0.0.1:{cp}\n\
         CookieAuthentication 1\n\
         ClientUseIPv6 0\n\
         PathsNeededToBuildCircuits 0.67\n",
        d = plan.data_dir.display(),
        owner = plan.owner_pid,
        log = log.display(),
        sp = plan.socks_port,
        cp = plan.control_port,
    );
    for l in plan.dirauth_lines {
        s.push_str(l);
        s.push('\n');
    }
    s
}

/// Check a client name: it becomes part of a directory name.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn client_torrc() {
        let lines = vec!["DirAuthority a orport=1 no-v2 v3ident=X 127.0.0.1:2 Y".to_owned()];
        let plan = ClientPlan {
            name: "c1",
            data_dir: PathBuf::from("/tmp/x/client-c1"),
            socks_port: 9050,
            control_port: 9051,
            owner_pid: 42,
            tor_binary: Path::new("tor"),
            dirauth_lines: &lines,
        };
        let t = torrc(&plan, Path::new("/tmp/x/client-c1/notice.log"));
        for needle in [
            "TestingTorNetwork 1\n",
            "DataDirectory /tmp/x/client-c1\n",
            "SocksPort 127.0.0.1:9050 ExtendedErrors IsolateSOCKSAuth\n",
            "ControlPort 127.0.0.1:9051\n",
            "CookieAuthentication 1\n",
            "ClientUseIPv6 0\n",
            "PathsNeededToBuildCircuits 0.67\n",
            "__OwningControllerProcess 42\n",
            "RunAsDaemon 0\n",
            "Log notice file /tmp/x/client-c1/notice.log\n",
            "DirAuthority a orport=1",
        ] {
            assert!(t.contains(needle), "{needle:?} missing in {t}");
        }
        // A client, not a relay.
        assert!(!t.contains("ORPort"));
    }

    #[test]
    fn names_and_hints() {
        assert!(valid_name("host-1_a"));
        assert!(!valid_name(""));
        assert!(!valid_name("../x"));
        assert!(!valid_name("a b"));
        assert!(retryable(Some(97)));
        assert!(!retryable(Some(22)));
        assert!(!retryable(None));
        assert!(
            socks_hint("curl: (97) Can't complete SOCKS5 connection to x.onion. (240)")
                .contains("descriptor not found")
        );
        assert_eq!(socks_hint("curl: (22) 404"), "");
    }

    #[test]
    fn throughput() {
        let f = Fetch {
            bytes: 10 * 1024 * 1024,
            elapsed: Duration::from_secs(3),
            first_byte: Duration::from_secs(1),
            attempts: 1,
        };
        assert!((f.body_mib_per_s() - 5.0).abs() < 1e-9);
        assert!((f.mib_per_s() - 10.0 / 3.0).abs() < 1e-9);
    }
}
