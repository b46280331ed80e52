//! The test harness: a real `umbra-handshaker` process on TCP loopback, on
//! SQLite or on a PostgreSQL server this test binary starts itself (in a
//! temp dir, Unix socket only: never a mock, never the system service).

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use umbra::identity::{Identity, Username};

/// A fresh identity for `@name`.
pub fn ident(name: &str) -> Identity {
    Identity::generate(&Username::parse(name).unwrap()).unwrap()
}

/// A runtime for the async client.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Which store a server under test uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `handshaker.sqlite` in the data directory (the default).
    Sqlite,
    /// A fresh database on this binary's PostgreSQL server.
    Postgres,
}

/// What a server is started with.
#[derive(Debug, Clone)]
pub struct Opts {
    /// The store.
    pub backend: Backend,
    /// Extra configuration file content (TOML), if any.
    pub config: Option<String>,
    /// Where stderr goes (a log file, or nowhere).
    pub log: Option<PathBuf>,
    /// The database URL to use instead of a fresh one (a second front end).
    pub database: Option<String>,
}

impl Opts {
    /// SQLite, default configuration.
    pub fn sqlite() -> Opts {
        Opts::on(Backend::Sqlite)
    }

    /// `backend`, default configuration.
    pub fn on(backend: Backend) -> Opts {
        Opts {
            backend,
            config: None,
            log: None,
            database: None,
        }
    }

    /// With this configuration file content.
    pub fn config(mut self, toml: &str) -> Opts {
        self.config = Some(toml.to_owned());
        self
    }

    /// Logging to `path`.
    pub fn log(mut self, path: &Path) -> Opts {
        self.log = Some(path.to_owned());
        self
    }
}

/// A running `umbra-handshaker`; killed on drop.
pub struct Server {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    opts: Opts,
    /// The PostgreSQL database it uses, if any.
    pub database: Option<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// SQLite, default configuration, no log.
    pub fn start() -> Server {
        Self::with(Opts::sqlite())
    }

    /// A server as `opts` says.
    pub fn with(opts: Opts) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let database = match (&opts.database, opts.backend) {
            (Some(url), _) => Some(url.clone()),
            (None, Backend::Postgres) => Some(pg().new_database()),
            (None, Backend::Sqlite) => None,
        };
        let mut server = Server {
            child: Command::new("true").spawn().unwrap(),
            port: 0,
            dir,
            opts,
            database,
        };
        server.spawn();
        server
    }

    /// A second front end on the same directory (PostgreSQL only): same
    /// database, same binding key, proofs bound to `self`'s address.
    pub fn second_front_end(&self) -> Server {
        let url = self
            .database
            .clone()
            .expect("a second front end needs PostgreSQL");
        let mut config = self.opts.config.clone().unwrap_or_default();
        config.push_str(&format!(
            "\n[network]\npublic_address = \"{}\"\n",
            self.url()
        ));
        let opts = Opts {
            backend: Backend::Postgres,
            config: Some(config),
            log: None,
            database: Some(url),
        };
        // Once it answers, its binding key exists.
        assert_eq!(self.raw("GET", "/v1/health", b"").0, 200);
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(
            self.dir.path().join("binding.key"),
            dir.path().join("binding.key"),
        )
        .unwrap();
        let mut server = Server {
            child: Command::new("true").spawn().unwrap(),
            port: 0,
            dir,
            opts,
            database: self.database.clone(),
        };
        server.spawn();
        server
    }

    /// Stops the server (SIGKILL) and starts it again on the same data dir
    /// and database.
    pub fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.spawn();
    }

    fn spawn(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_umbra-handshaker"));
        cmd.arg("--data-dir").arg(self.dir.path()).args([
            "--listen",
            "127.0.0.1:0",
            "--no-onion",
            "--pow-difficulty",
            "8",
        ]);
        if let Some(toml) = &self.opts.config {
            let path = self.dir.path().join("test-config.toml");
            std::fs::write(&path, toml).unwrap();
            cmd.arg("--config").arg(path);
        }
        if let Some(url) = &self.database {
            cmd.arg("--database").arg(url);
        }
        let stderr = match &self.opts.log {
            Some(p) => Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .unwrap(),
            ),
            None => Stdio::null(),
        };
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
        // The first stdout line names the address (no sleeps: we block on it).
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        self.child = child;
        self.port = port;
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A raw HTTP/1.1 request; returns (status, body). Status 0: the
    /// server closed the connection without an answer.
    pub fn raw(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let head = write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        if head.is_err() {
            return (0, String::new());
        }
        // The server may answer (413) and close before reading a large body:
        // a failed write is expected then, and the answer is still readable.
        let _ = s.write_all(body);
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let resp = String::from_utf8_lossy(&raw).into_owned();
        let status = resp
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    }
}

/// Generates one `#[test]` per backend for each listed function
/// `fn name(backend: Backend)`: the same API suite runs on SQLite and on
/// PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name($crate::support::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name($crate::support::Backend::Postgres) } )*
        }
    };
}

/// This test binary's PostgreSQL server.
pub struct Pg {
    /// Directory of the Unix socket (and the data directory).
    dir: PathBuf,
    /// Databases created so far (names are `t<n>`).
    next: AtomicU32,
    /// `/usr/lib/postgresql/<version>/bin`.
    bin: PathBuf,
    /// `setpriv` arguments that drop to an unprivileged user (when root:
    /// PostgreSQL refuses to run as root).
    drop_privileges: Vec<String>,
}

/// The shared server, started on first use. It dies with this process: it
/// gets SIGQUIT (immediate shutdown) when the thread that started it, which
/// lives as long as the process, is gone.
pub fn pg() -> &'static Pg {
    static PG: OnceLock<Pg> = OnceLock::new();
    PG.get_or_init(Pg::start)
}

impl Pg {
    fn start() -> Pg {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL is not installed: run scripts/install-deps.sh")
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v: u32 = e.file_name().to_str()?.parse().ok()?;
                Some((v, e.path().join("bin")))
            })
            .max()
            .map(|(_, p)| p)
            .expect("no /usr/lib/postgresql/<version>/bin");
        Self::remove_stale();
        let dir = PathBuf::from(format!("/tmp/umbra-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let drop_privileges = match unprivileged_ids() {
            Some((uid, gid)) => {
                std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
                vec![
                    format!("--reuid={uid}"),
                    format!("--regid={gid}"),
                    "--clear-groups".into(),
                ]
            }
            None => Vec::new(),
        };
        let data = dir.join("data");
        let out = Command::new("setpriv")
            .args(&drop_privileges)
            .arg("--")
            .arg(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "umbra", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .args(["--no-sync", "--no-instructions"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let (tx, rx) = std::sync::mpsc::channel();
        let (dir2, bin2, privs) = (dir.clone(), bin.clone(), drop_privileges.clone());
        // This thread lives as long as the process (it waits for the
        // server), so the server's parent-death signal fires only when
        // the test process is gone.
        std::thread::spawn(move || {
            let mut child = Command::new("setpriv")
                .args(&privs)
                .args(["--pdeathsig", "QUIT", "--"])
                .arg(bin2.join("postgres"))
                .arg("-D")
                .arg(dir2.join("data"))
                .arg("-k")
                .arg(&dir2)
                .args(["-c", "listen_addresses=", "-c", "fsync=off"])
                .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
                .args(["-c", "max_connections=400", "-c", "logging_collector=off"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            tx.send(child.stderr.take().unwrap()).unwrap();
            let _ = child.wait();
        });
        let stderr = rx.recv().unwrap();
        let mut lines = BufReader::new(stderr).lines();
        let mut log = String::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    log.push_str(&line);
                    log.push('\n');
                    if line.contains("ready to accept connections") {
                        break;
                    }
                }
                _ => panic!("PostgreSQL did not start:\n{log}"),
            }
        }
        // Keep draining its log so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Pg {
            dir,
            next: AtomicU32::new(0),
            bin,
            drop_privileges,
        }
    }

    /// Removes the directories of servers whose test process is gone.
    fn remove_stale() {
        let Ok(entries) = std::fs::read_dir("/tmp") else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("umbra-pg-"))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if !Path::new(&format!("/proc/{pid}")).exists() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }

    /// A new, empty database; its URL.
    pub fn new_database(&self) -> String {
        let name = format!("t{}", self.next.fetch_add(1, Ordering::Relaxed));
        let out = Command::new(self.bin.join("createdb"))
            .arg("-h")
            .arg(&self.dir)
            .args(["-U", "umbra", &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "createdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url(&name)
    }

    /// The path of PostgreSQL's program `name` (e.g. `psql`).
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// `psql` arguments reaching the database of `url` (made by [`Pg::url`]).
    pub fn psql_args(&self, url: &str) -> Vec<String> {
        let name = url.rsplit('/').next().unwrap_or_default();
        vec![
            "-h".into(),
            self.dir.to_str().unwrap().into(),
            "-U".into(),
            "umbra".into(),
            "-d".into(),
            name.into(),
            "-v".into(),
            "ON_ERROR_STOP=1".into(),
        ]
    }

    /// The URL of database `name` (Unix socket, percent-encoded path).
    pub fn url(&self, name: &str) -> String {
        let host = self.dir.to_str().unwrap().replace('/', "%2F");
        format!("postgresql://umbra@{host}/{name}")
    }
}

/// When running as root: the uid and gid of an unprivileged user to run
/// PostgreSQL as (it refuses to run as root): `postgres` (made by Debian's
/// package), else `nobody`, else a system user `umbra-pg` created now.
/// `None` when not root.
fn unprivileged_ids() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap();
    if uid != "0" {
        return None;
    }
    // Through NSS (`getent`), like PostgreSQL's own getpwuid: /etc/passwd
    // is not the only source (systemd provides `nobody`), and on this
    // machine it is not even readable text.
    let lookup = |name: &str| -> Option<(u32, u32)> {
        let out = Command::new("getent")
            .args(["passwd", name])
            .output()
            .ok()?;
        let line = String::from_utf8_lossy(&out.stdout);
        let f: Vec<&str> = line.trim().split(':').collect();
        if !out.status.success() || f.len() < 4 || f[0] != name {
            return None;
        }
        Some((f[2].parse().ok()?, f[3].parse().ok()?))
    };
    if let Some(ids) = lookup("postgres").or_else(|| lookup("nobody")) {
        return Some(ids);
    }
    let ok = Command::new("useradd")
        .args(["--system", "--no-create-home", "--user-group", "umbra-pg"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "no unprivileged user to run PostgreSQL as, and useradd failed"
    );
    Some(lookup("umbra-pg").expect("umbra-pg was just created"))
}
