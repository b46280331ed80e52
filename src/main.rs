//! The `umbra` command-line client: argument parsing, tracing set-up and
//! calls into the library. No protocol logic lives here.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Umbra: an anonymous messenger over Tor onion services.
#[derive(Parser)]
#[command(name = "umbra", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the offline demo: two users, a PGP-wrapped handshake and an
    /// encrypted conversation, entirely on this machine.
    Demo,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UMBRA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo => umbra::demo::run(&mut std::io::stdout()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            #[allow(clippy::print_stderr)]
            {
                eprintln!("{msg}");
            }
            ExitCode::FAILURE
        }
    }
}
