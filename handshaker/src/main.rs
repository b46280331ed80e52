//! `umbra-handshaker`: parse arguments, load the configuration, set up
//! logging, open the store, start the listeners and serve until SIGINT or
//! SIGTERM.
#![forbid(unsafe_code)]
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Parser;
use umbra_handshaker::config::is_postgres_url;
use umbra_handshaker::listen::AnyListener;
use umbra_handshaker::{AppState, Config, PgStore, SqliteStore, Store};
use umbra_transport::arti::{ArtiNetwork, ArtiOptions, ArtiTransport};
use umbra_transport::tcp::TcpTransport;
use umbra_transport::{Listener, Transport};

/// The Umbra Handshaker: a directory of usernames and OpenPGP keys with
/// request mailboxes, served as an onion service.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML; see config/handshaker.example.toml).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Data directory (database, onion service keys); overrides the config.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Also listen on this TCP address (e.g. 127.0.0.1:8080; port 0 picks one).
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// Do not start the onion service (serve TCP only; no anonymity for the host).
    #[arg(long)]
    no_onion: bool,
    /// Arti network fragment of a private test network (overrides the config).
    #[arg(long)]
    arti_network_config: Option<PathBuf>,
    /// Proof-of-work difficulty in bits (overrides the config).
    #[arg(long)]
    pow_difficulty: Option<u32>,
    /// The directory's PostgreSQL database, postgres://user@host/db (a Unix
    /// socket directory percent-encoded as host); overrides the config.
    /// Without it: SQLite in the data directory.
    #[arg(long)]
    database: Option<String>,
    /// Print the manual page, umbra-handshaker(8), as roff and exit.
    #[arg(long, hide = true)]
    man: bool,
}

/// What the manual page adds to the options clap describes.
const MAN_EXTRA: &str = r#".SH CONFIGURATION
The configuration file is TOML; every key, its default and its limits are in
\fI/usr/share/doc/umbra-handshaker/examples/handshaker.toml\fR (the package installs
it as \fI/etc/umbra-handshaker/handshaker.toml\fR). Command-line options override it.
.SH FILES
.TP
\fIDATA_DIR/handshaker.sqlite\fR
the directory (usernames, public keys, mailboxes) when no PostgreSQL database is given
.TP
\fIDATA_DIR/arti/state/keystore/\fR
the onion service's identity key: its \fB.onion\fR address is this key; back it up
to keep the address
.TP
\fIDATA_DIR/binding.key\fR
the key that signs name bindings (clients pin it); back it up with the address
.SH SIGNALS
SIGTERM and SIGINT stop accepting connections, let requests in progress finish,
and exit with status 0.
.SH ENVIRONMENT
.TP
\fBRUST_LOG\fR
log filter (default \fBinfo\fR); logs go to standard error and never contain
usernames, keys, onion addresses or mailbox contents
.TP
\fBNO_COLOR\fR
no colour in logs written to a terminal
.SH EXIT STATUS
0 after a clean stop; 1 on a configuration, database or network error (the message
says which).
.SH SEE ALSO
\fBumbra\fR(1); \fI/usr/share/doc/umbra-handshaker/OPERATING.md\fR (install, backups,
tuning, monitoring, upgrades, what the operator can and cannot see).
"#;

/// Writes umbra-handshaker(8): clap's page of the options, then
/// [`MAN_EXTRA`].
fn print_man() -> anyhow::Result<()> {
    use clap::CommandFactory;
    let mut out = Vec::new();
    clap_mangen::Man::new(Args::command().name("umbra-handshaker"))
        .section("8")
        .render(&mut out)?;
    out.extend_from_slice(MAN_EXTRA.as_bytes());
    std::io::Write::write_all(&mut std::io::stdout().lock(), &out)?;
    Ok(())
}

#[tokio::main]
async fn main() {
    if let Err(e) = real_main().await {
        let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
        eprintln!("error: {}", chain.join(": "));
        std::process::exit(1);
    }
}

async fn real_main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.man {
        return print_man();
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour for a person at a terminal only: never into a log file, never
        // with NO_COLOR set (https://no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();

    let mut cfg = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    if let Some(d) = args.data_dir {
        cfg.data_dir = Some(d);
    }
    if !args.listen.is_empty() {
        cfg.network.listen = args.listen;
    }
    if args.no_onion {
        cfg.network.onion_service = false;
    }
    if let Some(p) = args.arti_network_config {
        cfg.network.arti_network_config = Some(p);
    }
    if let Some(d) = args.pow_difficulty {
        cfg.pow.difficulty = d;
    }
    if let Some(url) = args.database {
        cfg.database = Some(url);
    }
    cfg.validate()?;
    // Before any listener: see `shutdown_signal`.
    let shutdown = shutdown_signal()?;
    let Some(data_dir) = cfg.data_dir.clone() else {
        bail!("no data directory: give --data-dir DIR or data_dir in the configuration");
    };
    std::fs::create_dir_all(&data_dir).context("cannot create the data directory")?;
    let store: Arc<dyn Store> = match &cfg.database {
        Some(url) if is_postgres_url(url) => {
            let url = url.clone();
            // Connecting blocks (the store drives its own runtime).
            Arc::new(
                tokio::task::spawn_blocking(move || PgStore::open(&url))
                    .await
                    .context("cannot open the PostgreSQL database")?
                    .context("cannot open the PostgreSQL database")?,
            )
        }
        Some(_) => bail!("database must be a postgres:// URL (leave it out for SQLite)"),
        None => Arc::new(
            SqliteStore::open(&data_dir.join("handshaker.sqlite"))
                .context("cannot open the database")?,
        ),
    };

    // A signal during start-up (Tor bootstrap can take minutes) stops it too.
    let mut shutdown = Box::pin(shutdown);
    let (listener, state, _transport) = tokio::select! {
        started = start(cfg, store, &data_dir) => started?,
        () = &mut shutdown => {
            println!("stopped before the server started");
            return Ok(());
        }
    };
    umbra_handshaker::serve(listener, state, shutdown).await;
    Ok(())
}

/// Opens the listeners named by `cfg` and builds the server state. The
/// returned transport (the Arti client, if any) must outlive the listener.
async fn start(
    cfg: Config,
    store: Arc<dyn Store>,
    data_dir: &std::path::Path,
) -> anyhow::Result<(AnyListener, Arc<AppState>, Option<ArtiTransport>)> {
    let tcp = match cfg.network.listen.first() {
        Some(addr) => {
            if cfg.network.listen.len() > 1 {
                bail!("only one TCP listen address is supported");
            }
            let l = TcpTransport::new(*addr)
                .listen()
                .await
                .context("cannot listen on the TCP address")?;
            println!("listening on http://{}", l.address().as_str());
            Some(l)
        }
        None => None,
    };
    let onion = if cfg.network.onion_service {
        let network = match &cfg.network.arti_network_config {
            Some(p) => ArtiNetwork::Custom {
                arti_toml: std::fs::read_to_string(p)
                    .context("cannot read the Arti network configuration")?,
            },
            None => ArtiNetwork::Tor,
        };
        let custom = matches!(network, ArtiNetwork::Custom { .. });
        let mut opts = ArtiOptions::new(network, data_dir.to_path_buf());
        opts.nickname = "handshaker".into();
        opts.dangerously_trust_everyone = custom;
        opts.max_streams_per_circuit = cfg.network.hs_max_streams_per_circuit;
        opts.intro_rate_limit = (cfg.network.hs_intro_rate > 0)
            .then_some((cfg.network.hs_intro_rate, cfg.network.hs_intro_burst));
        println!("joining the Tor network…");
        let transport = ArtiTransport::bootstrap(opts)
            .await
            .context("cannot start Tor")?;
        let l = transport
            .listen()
            .await
            .context("cannot launch the onion service")?;
        println!("onion service: {}", l.address().as_str());
        Some((l, transport))
    } else {
        None
    };
    // The transport (Arti client) must outlive the listener.
    let (onion, transport) = match onion {
        Some((l, t)) => (Some(l), Some(t)),
        None => (None, None),
    };
    let listener = match (tcp, onion) {
        (Some(t), Some(o)) => AnyListener::Both(t, o),
        (Some(t), None) => AnyListener::Tcp(t),
        (None, Some(o)) => AnyListener::Onion(o),
        (None, None) => bail!("nothing to serve"),
    };
    let address = match (&cfg.network.public_address, &listener) {
        (Some(a), _) => a.clone(),
        (None, AnyListener::Tcp(t)) => format!("http://{}", t.address().as_str()),
        (None, l) => l.address().as_str().to_string(),
    };
    let address = umbra_proto::handshaker_api::HandshakerAddress::parse(&address)
        .context("invalid public address")?
        .as_str()
        .to_string();
    let signer = umbra_handshaker::binding_key::load_or_create(data_dir)?;
    // Reads the store, which blocks: not on an async worker.
    let state = tokio::task::spawn_blocking(move || AppState::new(cfg, store, address))
        .await
        .context("cannot read the token key")?
        .context("cannot read the token key")?;
    let state = Arc::new(state.with_binding_key(signer));
    Ok((listener, state, transport))
}

/// Completes on SIGINT or SIGTERM.
///
/// The handlers are installed when this is *called*, not when the returned
/// future is first polled: `real_main` calls it before any listener exists,
/// so a signal that arrives once the server answers can never hit the
/// default action (exit by signal, no drain, no "stopped" line). Before, a
/// SIGTERM sent right after the first served request could kill the process
/// (seen once in CI).
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
