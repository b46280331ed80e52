//! Starting the daemon (`umbra up`) and creating an identity (`umbra init`)
//! for the data directory, as child processes of the `umbra` binary.
//!
//! The passphrase goes to the child over a pipe (`--passphrase-file
//! /dev/stdin`), never on the command line or in the environment (both are
//! visible to other processes of the user); the window's copy is zeroized
//! when written. Start-up progress is read from `umbra up`'s standard error
//! (the same lines a person sees when running it without a terminal): the
//! control socket only opens once Tor is up.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use zeroize::Zeroizing;

/// How to run the `umbra` binary for one data directory.
#[derive(Debug, Clone)]
pub struct Umbra {
    /// The `umbra` executable.
    pub bin: PathBuf,
    /// The data directory (`--data-dir`).
    pub data_dir: PathBuf,
    /// A configuration file (`--config`), if not the default.
    pub config: Option<PathBuf>,
}

/// Progress of a start or an init.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Joining the Tor network, percent.
    Bootstrap(u8),
    /// Tor is up; the onion service is being launched.
    Launching,
    /// The daemon is up: connect to its control socket.
    Ready,
    /// `umbra init` created the identity with this grouped fingerprint.
    Created {
        /// The grouped fingerprint, for reading aloud.
        fingerprint: String,
    },
    /// It failed; the text is `umbra`'s own error message.
    Failed(String),
}

/// Most lines of `umbra`'s standard error kept for an error message.
const ERROR_LINES: usize = 6;
/// Longest line kept from the child's output, in bytes.
const MAX_LINE: usize = 4096;

impl Umbra {
    /// The `umbra` binary next to this executable if there is one (an
    /// installation or a cargo target directory), else `umbra` from `PATH`.
    pub fn default_bin() -> PathBuf {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|d| d.join("umbra")))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("umbra"))
    }

    /// Whether an identity exists (the encrypted store is there).
    pub fn has_identity(&self) -> bool {
        self.data_dir.join(umbra_control::STORE_FILE).exists()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        // The passphrase only ever comes through the pipe.
        c.env_remove("UMBRA_PASSPHRASE")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--passphrase-file")
            .arg("/dev/stdin");
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Starts `umbra up`; progress arrives on the returned channel and
    /// `wake` is called after each step. The daemon runs in a process group
    /// of its own, so it keeps running when the window closes (stop it with
    /// the control API's `shutdown`).
    pub fn start(
        &self,
        passphrase: Zeroizing<String>,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> std::io::Result<mpsc::Receiver<Progress>> {
        let mut c = self.command();
        c.arg("up").process_group(0);
        let child = spawn_with_passphrase(c, passphrase)?;
        Ok(watch(child, wake, false))
    }

    /// Runs `umbra init --name NAME` with a new passphrase.
    pub fn init(
        &self,
        name: &str,
        passphrase: Zeroizing<String>,
        wake: impl Fn() + Send + Sync + 'static,
    ) -> std::io::Result<mpsc::Receiver<Progress>> {
        let mut c = self.command();
        c.args(["--json", "init", "--name", name]);
        let child = spawn_with_passphrase(c, passphrase)?;
        Ok(watch(child, wake, true))
    }
}

fn spawn_with_passphrase(mut c: Command, passphrase: Zeroizing<String>) -> std::io::Result<Child> {
    let mut child = c.spawn()?;
    // Sized up front: a growing String would leave a copy behind.
    let mut line = Zeroizing::new(String::with_capacity(passphrase.len() + 1));
    line.push_str(&passphrase);
    line.push('\n');
    drop(passphrase);
    if let Some(mut stdin) = child.stdin.take() {
        // A child that exits at once (bad arguments) closes the pipe: its
        // error message is on standard error.
        let _ = stdin.write_all(line.as_bytes());
    }
    drop(line);
    Ok(child)
}

/// Reads the child's output on two threads and reports [`Progress`].
fn watch(
    mut child: Child,
    wake: impl Fn() + Send + Sync + 'static,
    init: bool,
) -> mpsc::Receiver<Progress> {
    let (tx, rx) = mpsc::channel();
    let wake = std::sync::Arc::new(wake);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let (etx, erx) = mpsc::channel::<String>();
    let (t2, w2) = (tx.clone(), wake.clone());
    let errors = std::thread::spawn(move || {
        for line in lines(stderr) {
            if let Some(p) = parse_progress(&line) {
                let _ = t2.send(p);
                (*w2)();
            }
            let _ = etx.send(line);
        }
    });
    std::thread::spawn(move || {
        let mut out = String::new();
        for line in lines(stdout) {
            if !init && line.starts_with("Umbra is up") {
                let _ = tx.send(Progress::Ready);
                (*wake)();
            }
            if init && out.len() < 64 * 1024 {
                out.push_str(&line);
            }
        }
        let status = child.wait();
        // Every line of standard error, up to its end.
        let _ = errors.join();
        let errors: Vec<String> = erx.try_iter().collect();
        let tail = errors[errors.len().saturating_sub(ERROR_LINES)..].join("\n");
        let p = match status {
            Ok(s) if s.success() && init => match created_fingerprint(&out) {
                Some(fingerprint) => Progress::Created { fingerprint },
                None => Progress::Failed("umbra init printed no fingerprint".into()),
            },
            Ok(s) if s.success() => Progress::Failed("the Umbra daemon stopped".into()),
            Ok(_) if tail.is_empty() => Progress::Failed("the Umbra daemon stopped".into()),
            Ok(_) => Progress::Failed(tail),
            Err(e) => Progress::Failed(format!("umbra: {e}")),
        };
        let _ = tx.send(p);
        (*wake)();
    });
    rx
}

/// Lines of a child's pipe, each cut at [`MAX_LINE`] bytes, as valid UTF-8.
fn lines(pipe: Option<impl std::io::Read>) -> impl Iterator<Item = String> {
    pipe.into_iter().flat_map(|p| {
        BufReader::new(p)
            .split(b'\n')
            .map_while(Result::ok)
            .map(|l| {
                let l = &l[..l.len().min(MAX_LINE)];
                String::from_utf8_lossy(l).trim_end().to_owned()
            })
    })
}

/// The progress a line of `umbra up`'s standard error reports.
pub fn parse_progress(line: &str) -> Option<Progress> {
    if let Some(rest) = line.strip_prefix("joining the Tor network: ") {
        let pct = rest.trim_end_matches('%').trim().parse::<u8>().ok()?;
        return Some(Progress::Bootstrap(pct.min(100)));
    }
    if line.starts_with("Tor is up") {
        return Some(Progress::Launching);
    }
    None
}

/// The grouped fingerprint of `umbra --json init`'s output.
fn created_fingerprint(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get("fingerprint_grouped")?.as_str().map(str::to_owned)
}

/// Whether `path` is an absolute path to an existing regular file.
pub fn is_sendable(path: &Path) -> bool {
    path.is_absolute() && path.is_file()
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn progress_lines() {
        assert_eq!(
            parse_progress("joining the Tor network: 42%"),
            Some(Progress::Bootstrap(42))
        );
        assert_eq!(
            parse_progress("Tor is up; launching the onion service"),
            Some(Progress::Launching)
        );
        assert_eq!(parse_progress("joining the Tor network: lots%"), None);
        assert_eq!(parse_progress("warning: something"), None);
        assert_eq!(
            created_fingerprint(r#"{"username":"@a","fingerprint_grouped":"ABCD EF01"}"#),
            Some("ABCD EF01".into())
        );
        assert_eq!(created_fingerprint("not json"), None);
    }
}
