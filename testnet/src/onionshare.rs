//! OnionShare (`onionshare-cli`, Debian package `onionshare-cli`) sharing a
//! file through a [`CTorClient`] of the test network: the peer Umbra's file
//! transfer is compared with.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::Error;
use crate::client::CTorClient;
use crate::node::tail_lines;
use crate::owned::{self, GroupChild};

/// How long [`OnionShare::start`] waits for the share URL (OnionShare's own
/// `--connect-timeout` default).
pub const ONIONSHARE_START_TIMEOUT: Duration = Duration::from_secs(120);

/// A running `onionshare-cli --public --no-autostop-sharing FILE` whose
/// onion service is hosted by a [`CTorClient`].
///
/// Dropping it kills its whole process group. As a safety net it also exits
/// within about a second after the network's owning process has died.
#[derive(Debug)]
pub struct OnionShare {
    child: GroupChild,
    url: String,
    output: PathBuf,
    startup: Duration,
}

impl OnionShare {
    /// [`OnionShare::start_within`] with [`ONIONSHARE_START_TIMEOUT`].
    pub fn start(host: &CTorClient, file: &Path, scratch: &Path) -> Result<OnionShare, Error> {
        Self::start_within(host, file, scratch, ONIONSHARE_START_TIMEOUT)
    }

    /// Share `file` publicly (no client authorization) with OnionShare,
    /// using `host`'s ControlPort to create the onion service and its
    /// SocksPort.
    ///
    /// `scratch` (created if needed) becomes OnionShare's `HOME`: it holds
    /// the settings file `onionshare.json`, OnionShare's own state under
    /// `.config/onionshare/` (onion key, a gzip copy of the file) and its
    /// output `onionshare.log`. Returns as soon as OnionShare prints its
    /// `http://….onion` URL; the onion descriptor may still be on its way to
    /// the HSDirs, so the first fetch should retry ([`CTorClient::fetch`]
    /// does).
    pub fn start_within(
        host: &CTorClient,
        file: &Path,
        scratch: &Path,
        timeout: Duration,
    ) -> Result<OnionShare, Error> {
        let started = Instant::now();
        let program = owned::find_program("onionshare-cli").ok_or(Error::NotInstalled {
            program: "onionshare-cli",
            package: "onionshare-cli",
        })?;
        std::fs::metadata(file).map_err(|source| Error::Io {
            action: "find the file to share",
            path: file.to_owned(),
            source,
        })?;
        std::fs::create_dir_all(scratch).map_err(|source| Error::Io {
            action: "create OnionShare's scratch directory",
            path: scratch.to_owned(),
            source,
        })?;
        let config = scratch.join("onionshare.json");
        write(&config, &settings(host.control_port(), host.socks_port()))?;
        let output = scratch.join("onionshare.log");
        let (log, log2) = crate::node::output_file(&output, "create OnionShare's output file")?;
        let child = owned::command(host.owner_pid(), &program)
            .arg("--config")
            .arg(&config)
            .args(["--public", "--no-autostop-sharing"])
            .arg(file)
            .env("HOME", scratch)
            .env("XDG_CONFIG_HOME", scratch.join(".config"))
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|source| Error::Spawn {
                action: "start onionshare-cli",
                source,
            })?;
        let mut child = GroupChild::new(child);
        let deadline = started + timeout;
        loop {
            // On error, `child` is dropped and its process group killed.
            let text = std::fs::read(&output).unwrap_or_default();
            if let Some(url) = parse_share_url(&String::from_utf8_lossy(&text)) {
                return Ok(OnionShare {
                    child,
                    url,
                    output,
                    startup: started.elapsed(),
                });
            }
            let detail = if let Some(status) = child.exited() {
                Some(format!(
                    "onionshare-cli exited ({status}) before printing a URL"
                ))
            } else if Instant::now() >= deadline {
                Some(format!("no .onion URL after {timeout:?}"))
            } else {
                None
            };
            if let Some(detail) = detail {
                return Err(Error::OnionShare {
                    detail,
                    output_tail: tail_lines(&output, 15).join("\n"),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The share URL, `http://<56 chars>.onion` (the page listing the file).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL that downloads the shared file itself (`<url>/download`).
    pub fn download_url(&self) -> String {
        format!("{}/download", self.url)
    }

    /// Process id of `onionshare-cli` (also its process group id).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// From the call of [`OnionShare::start`] to the URL being known.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The last `lines` lines of OnionShare's output (stdout and stderr,
    /// including the request log of its web server).
    pub fn output_tail(&self, lines: usize) -> String {
        let mut out = tail_lines(&self.output, lines).join("\n");
        out.push('\n');
        out
    }
}

/// OnionShare's settings: use an existing tor through its ControlPort
/// (stem finds and reads the auth cookie itself) and its SocksPort.
fn settings(control_port: u16, socks_port: u16) -> String {
    let json = serde_json::json!({
        "connection_type": "control_port",
        "control_port_address": "127.0.0.1",
        "control_port_port": control_port,
        "socks_address": "127.0.0.1",
        "socks_port": socks_port,
        "auth_type": "no_auth",
    });
    format!("{json}\n")
}

fn write(path: &Path, contents: &str) -> Result<(), Error> {
    std::fs::write(path, contents).map_err(|source| Error::Io {
        action: "write OnionShare's settings",
        path: path.to_owned(),
        source,
    })
}

/// Find the share URL in OnionShare's output: the first `http://` URL whose
/// host is a v3 onion address (56 base32 characters). Other URLs, such as
/// the local `http://127.0.0.1:PORT` of its web server, are ignored.
pub(crate) fn parse_share_url(output: &str) -> Option<String> {
    output.match_indices("http://").find_map(|(i, _)| {
        let rest = &output[i + "http://".len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
            .unwrap_or(rest.len());
        let host = rest[..end].to_ascii_lowercase();
        let label = host.strip_suffix(".onion")?;
        let v3 = label.len() == 56
            && label
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'2'..=b'7'));
        v3.then(|| format!("http://{host}"))
    })
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Real output (stdout and stderr together) of `onionshare-cli` 2.6 with
    /// `--public --no-autostop-sharing`, captured on the local network.
    const PUBLIC: &str = include_str!("../testdata/onionshare-2.6-public.txt");
    /// The same without `--public`: a private share, with a client-auth key.
    const PRIVATE: &str = include_str!("../testdata/onionshare-2.6-private.txt");

    #[test]
    fn parses_real_output() {
        assert_eq!(
            parse_share_url(PUBLIC).as_deref(),
            Some("http://oixxnr55sx5xqgrmav2oria5j227epbhkldzvzur5anrnhj5btz3g3yd.onion")
        );
        assert_eq!(
            parse_share_url(PRIVATE).as_deref(),
            Some("http://6bfbflpyjahwvxcfwbdzngbfkjm7kw5tpb333mv4bmmy3hsvmvkbwtad.onion")
        );
    }

    #[test]
    fn ignores_other_urls_and_partial_output() {
        // Output before the URL is printed: only the local server URL.
        let early = PUBLIC.split("Give this address").next().unwrap();
        assert!(early.contains("http://127.0.0.1:"));
        assert_eq!(parse_share_url(early), None);
        assert_eq!(parse_share_url("see https://onionshare.org/"), None);
        // A v2-length or non-base32 label is not a v3 address.
        assert_eq!(parse_share_url("http://expyuzz4wqqyqhjn.onion/"), None);
        let bad = format!("http://{}.onion", "1".repeat(56));
        assert_eq!(parse_share_url(&bad), None);
        // A line cut in the middle of the address (output still being
        // written) must not yield a URL.
        let full = parse_share_url(PUBLIC).unwrap();
        assert_eq!(parse_share_url(&full[..full.len() - 10]), None);
        // Trailing path and uppercase are tolerated.
        let upper = format!(
            "{}/download",
            full.to_ascii_uppercase().replace("HTTP", "http")
        );
        assert_eq!(parse_share_url(&upper), Some(full));
    }

    #[test]
    fn settings_json() {
        let v: serde_json::Value = serde_json::from_str(&settings(9051, 9050)).unwrap();
        assert_eq!(v["connection_type"], "control_port");
        assert_eq!(v["control_port_address"], "127.0.0.1");
        assert_eq!(v["control_port_port"], 9051);
        assert_eq!(v["socks_address"], "127.0.0.1");
        assert_eq!(v["socks_port"], 9050);
        assert_eq!(v["auth_type"], "no_auth");
    }
}
