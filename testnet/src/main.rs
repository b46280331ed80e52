//! `umbra-testnet`: start a private Tor network, print its Arti configuration
//! and keep it up until interrupted (Ctrl-C reaches every tor, which run in
//! our process group; if we are killed otherwise, each tor notices that its
//! owning process is gone and exits).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::time::Duration;

use umbra_testnet::{TestNet, TestNetOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut out: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--arti-config" => out = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: umbra-testnet [--arti-config PATH]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)").into()),
        }
    }
    eprintln!("starting a private Tor network on 127.0.0.1 ...");
    let net = TestNet::start(TestNetOptions::default())?;
    eprintln!(
        "ready after {:.1} s; data in {}",
        net.startup_time().as_secs_f64(),
        net.dir().display()
    );
    if let Some(path) = &out {
        net.write_arti_config(path)?;
        eprintln!("Arti configuration written to {}", path.display());
    }
    println!("{}", net.arti_config_toml());
    eprintln!("press Ctrl-C to stop");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
