//! The `umbra` command-line client: argument parsing, tracing set-up and a call
//! into [`umbra::cli::run`]. No protocol or storage logic lives here.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("UMBRA_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    // Usage errors, --help and --version exit here (usage errors with code 2).
    let cli = umbra::cli::Cli::parse();
    let mut stdout = std::io::stdout().lock();
    let result = umbra::cli::run(cli, &mut stdout);
    let _ = stdout.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.is_broken_pipe() {
                let _ = std::io::stderr().write_all(failure.report().as_bytes());
            }
            ExitCode::from(failure.exit_code())
        }
    }
}
