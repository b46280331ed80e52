//! `umbra-desktop`: the Umbra chat window.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use eframe::egui;
use umbra_desktop::daemon::Umbra;
use umbra_desktop::{App, Options};

const USAGE: &str = "\
Usage: umbra-desktop [--data-dir DIR] [--config FILE] [--umbra PATH] [--no-notifications]

The Umbra chat window. It talks to the Umbra daemon of the data directory
(starting it if it is not running) and holds no keys itself.

  --data-dir DIR      data directory [default: $UMBRA_HOME, $XDG_DATA_HOME/umbra
                      or ~/.local/share/umbra]
  --config FILE       configuration file for a daemon the window starts
  --umbra PATH        the umbra program [default: next to umbra-desktop, else PATH]
  --no-notifications  no desktop notifications
";

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("UMBRA_DESKTOP_LOG"))
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args_os().skip(1);
    let mut data_dir = None;
    let mut config = None;
    let mut bin = None;
    let mut notifications = true;
    while let Some(a) = args.next() {
        match a.to_str() {
            Some("--data-dir") => data_dir = args.next().map(PathBuf::from),
            Some("--config") => config = args.next().map(PathBuf::from),
            Some("--umbra") => bin = args.next().map(PathBuf::from),
            Some("--no-notifications") => notifications = false,
            Some("-h" | "--help") => {
                print!("{USAGE}");
                return Ok(());
            }
            _ => bail!("unknown argument {}\n\n{USAGE}", a.to_string_lossy()),
        }
    }
    let data_dir = match data_dir {
        Some(d) => d,
        None => umbra_control::default_data_dir(|k| std::env::var_os(k))
            .context("no data directory: set HOME or pass --data-dir")?,
    };
    let opts = Options {
        umbra: Umbra {
            bin: bin.unwrap_or_else(Umbra::default_bin),
            data_dir,
            config,
        },
        notifications,
    };
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("Umbra")
            .with_app_id("umbra-desktop")
            .with_inner_size([960.0, 640.0])
            .with_min_inner_size([480.0, 360.0]),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    eframe::run_native(
        "Umbra",
        native,
        Box::new(move |cc| {
            tracing::info!("first frame after {:?}", started.elapsed());
            Ok(Box::new(App::new(opts, &cc.egui_ctx)?))
        }),
    )
    .map_err(|e| anyhow::anyhow!("the window could not start: {e}"))
}
