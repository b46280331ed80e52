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
        // Colour for a person at a terminal only: never into a log file, never
        // with NO_COLOR set (https://no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    // Usage errors, --help and --version exit here (usage errors with code 2;
    // with --json, the error is reported as JSON like every other error).
    let cli = match umbra::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() && std::env::args_os().any(|a| a == "--json") => {
            let _ = std::io::stderr().write_all(umbra::cli::usage_report_json(&e).as_bytes());
            return ExitCode::from(umbra::cli::EXIT_USAGE);
        }
        Err(e) => e.exit(),
    };
    // Everything printed may quote peers or a Handshaker: no escape
    // sequence, carriage return or bidi override reaches the terminal.
    let mut stdout = umbra::terminal::SafeWriter::new(std::io::stdout().lock());
    let result = umbra::cli::run(cli, &mut stdout);
    let _ = stdout.flush();
    drop(stdout);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.is_broken_pipe() {
                let mut stderr = umbra::terminal::SafeWriter::new(std::io::stderr().lock());
                let _ = stderr.write_all(failure.report().as_bytes());
            }
            ExitCode::from(failure.exit_code())
        }
    }
}
