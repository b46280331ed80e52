//! One tor process of the network: its torrc, its child process, its log.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::{Error, TestNetOptions};

/// What a node does in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// A v3 directory authority (also a relay).
    Authority,
    /// An exit relay.
    Exit,
    /// A middle relay.
    Middle,
}

impl Role {
    /// Nickname prefix.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Role::Authority => "auth",
            Role::Exit => "exit",
            Role::Middle => "mid",
        }
    }
}

/// Where and how a node will run, before it has keys.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) nickname: String,
    pub(crate) role: Role,
    pub(crate) orport: u16,
    pub(crate) dirport: u16,
    pub(crate) controlport: u16,
    pub(crate) datadir: PathBuf,
}

/// Public facts about a running node.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct NodeInfo {
    /// Nickname, e.g. `auth00`, `exit03`, `mid05`.
    pub nickname: String,
    /// Role in the network.
    pub role: Role,
    /// ORPort on 127.0.0.1.
    pub orport: u16,
    /// DirPort on 127.0.0.1.
    pub dirport: u16,
    /// ControlPort on 127.0.0.1.
    pub controlport: u16,
    /// Process id of the tor process.
    pub pid: u32,
    /// Data directory.
    pub datadir: PathBuf,
    /// Log file (notice level).
    pub log: PathBuf,
}

/// A running tor child process. Dropping it kills and reaps the process.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) info: NodeInfo,
    child: Option<Child>,
}

impl Node {
    /// Write the torrc for `plan` and start tor in the foreground.
    pub(crate) fn spawn(
        opts: &TestNetOptions,
        plan: Plan,
        dirauth_lines: &[String],
    ) -> Result<Node, Error> {
        let log = plan.datadir.join("notice.log");
        let torrc_path = plan.datadir.join("torrc");
        let torrc = torrc(&plan, &log, opts.owner_pid, dirauth_lines);
        std::fs::write(&torrc_path, torrc).map_err(|source| Error::Io {
            action: "write a torrc",
            path: torrc_path.clone(),
            source,
        })?;
        let child = spawn_tor(&opts.tor_binary, &torrc_path, &plan.datadir, "start tor")?;
        Ok(Node {
            info: NodeInfo {
                nickname: plan.nickname,
                role: plan.role,
                orport: plan.orport,
                dirport: plan.dirport,
                controlport: plan.controlport,
                pid: child.id(),
                datadir: plan.datadir,
                log,
            },
            child: Some(child),
        })
    }

    /// Fail if the tor process has exited.
    pub(crate) fn check_alive(&mut self) -> Result<(), Error> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Err(Error::NodeDied {
                    nickname: self.info.nickname.clone(),
                    status: status.to_string(),
                    log_tail: self.log_tail(15).join("\n"),
                })
            }
            Ok(None) | Err(_) => Ok(()),
        }
    }

    /// The last `n` lines of this node's log, followed by what tor printed
    /// before its log file was open (empty if unreadable).
    pub(crate) fn log_tail(&self, n: usize) -> Vec<String> {
        let mut lines = tail_lines(&self.info.log, n);
        lines.extend(output_tail(&self.info.datadir, n));
        lines
    }

    /// Send SIGKILL without waiting.
    pub(crate) fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// File in a data directory that receives tor's standard output and error.
///
/// Tor reports problems found while it parses its configuration and binds
/// its ports (e.g. "Could not bind to 127.0.0.1:P: Address already in use")
/// on stdout, before the `Log … file` of the torrc is open; without this file
/// such a failure leaves no trace.
pub(crate) const OUTPUT_FILE: &str = "tor-output.log";

/// Start `tor -f torrc` in the foreground with its output in
/// [`OUTPUT_FILE`] inside `datadir`.
pub(crate) fn spawn_tor(
    tor_binary: &std::path::Path,
    torrc_path: &std::path::Path,
    datadir: &std::path::Path,
    action: &'static str,
) -> Result<Child, Error> {
    let (output, errors) = output_file(&datadir.join(OUTPUT_FILE), "create tor's output file")?;
    Command::new(tor_binary)
        .arg("-f")
        .arg(torrc_path)
        .arg("--defaults-torrc")
        .arg(datadir.join("nonexistent-defaults-torrc"))
        .arg("--ignore-missing-torrc")
        .stdin(Stdio::null())
        .stdout(Stdio::from(output))
        .stderr(Stdio::from(errors))
        .spawn()
        .map_err(|source| Error::Spawn { action, source })
}

/// A new file at `path` and a second handle to it, for a child's stdout and
/// stderr.
pub(crate) fn output_file(
    path: &std::path::Path,
    action: &'static str,
) -> Result<(std::fs::File, std::fs::File), Error> {
    let io = |source| Error::Io {
        action,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::create(path).map_err(io)?;
    let second = file.try_clone().map_err(io)?;
    Ok((file, second))
}

/// The last `n` lines tor printed on stdout/stderr, each marked as such
/// (empty if it printed nothing).
pub(crate) fn output_tail(datadir: &std::path::Path, n: usize) -> Vec<String> {
    tail_lines(&datadir.join(OUTPUT_FILE), n)
        .into_iter()
        .map(|l| format!("(stdout) {l}"))
        .collect()
}

/// Whether a tor's log tail says one of its ports was taken by someone else
/// between choosing it and binding it.
pub(crate) fn port_conflict(log_tail: &str) -> bool {
    log_tail.contains("Address already in use") || log_tail.contains("Could not bind")
}

/// The last `n` lines of a text file (empty if unreadable).
pub(crate) fn tail_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| (*l).to_owned())
        .collect()
}

/// The torrc of one node (options from TESTNET.md).
fn torrc(plan: &Plan, log: &std::path::Path, owner_pid: u32, dirauth_lines: &[String]) -> String {
    let mut s = String::new();
    let d = plan.datadir.display();
    let _ = write!(
        s,
        "TestingTorNetwork 1\n\
         DataDirectory {d}\n\
         Nickname {nick}\n\
         RunAsDaemon 0\n\
         __OwningControllerProcess {owner_pid}\n\
         ShutdownWaitLength 0\n\
         Log notice file {log}\n\
         SocksPort 0\n\
         ControlPort 127.0.0.1:{cp}\n\
         PathsNeededToBuildCircuits 0.67\n\
         TestingDirAuthVoteExit *\n\
         TestingDirAuthVoteHSDir *\n\
         TestingDirAuthVoteGuard *\n\
         V3AuthNIntervalsValid 2\n\
         TestingMinExitFlagThreshold 0\n\
         Address 127.0.0.1\n\
         ORPort 127.0.0.1:{op}\n\
         DirPort 127.0.0.1:{dp}\n\
         AssumeReachable 1\n\
         ContactInfo umbra-testnet <nobody@localhost>\n\
         DoSCircuitCreationEnabled 0\n\
         DoSConnectionEnabled 0\n\
         DoSRefuseSingleHopClientRendezvous 0\n\
         ServerDNSDetectHijacking 0\n\
         ServerDNSTestAddresses\n\
         ServerDNSAllowBrokenConfig 1\n\
         ServerDNSResolvConfFile /dev/null\n",
        nick = plan.nickname,
        log = log.display(),
        cp = plan.controlport,
        op = plan.orport,
        dp = plan.dirport,
    );
    for l in dirauth_lines {
        s.push_str(l);
        s.push('\n');
    }
    match plan.role {
        Role::Authority => s.push_str(
            "AuthoritativeDirectory 1\n\
             V3AuthoritativeDirectory 1\n\
             ExitRelay 0\n\
             ExitPolicy reject *:*\n\
             AuthDirTestReachability 0\n\
             TestingV3AuthInitialVotingInterval 20\n\
             TestingV3AuthInitialVoteDelay 4\n\
             TestingV3AuthInitialDistDelay 4\n\
             V3AuthVotingInterval 20\n\
             V3AuthVoteDelay 4\n\
             V3AuthDistDelay 4\n\
             ConsensusParams hsdir_interval=8 guard-min-filtered-sample-size=3 \
             cbtdisabled=1 cbtinitialtimeout=10000\n",
        ),
        Role::Exit => s.push_str(
            "ExitRelay 1\n\
             ExitPolicyRejectPrivate 0\n\
             ExitPolicy accept *:*\n",
        ),
        Role::Middle => s.push_str(
            "ExitRelay 0\n\
             ExitPolicy reject *:*\n",
        ),
    }
    s
}
