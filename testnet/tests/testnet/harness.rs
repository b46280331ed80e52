//! Proves that no tor process outlives its `TestNet`, whether the network is
//! dropped (normal exit or panic) or its owning process dies.

use std::process::Command;
use std::time::{Duration, Instant};

use umbra_testnet::{TestNet, TestNetOptions};

/// Is `pid` a live (not zombie) process?
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // The state is the first field after the parenthesised command.
            let state = stat.rsplit_once(')').map(|(_, rest)| rest.trim_start());
            !matches!(
                state.and_then(|s| s.chars().next()),
                Some('Z') | Some('X') | None
            )
        }
        Err(_) => false,
    }
}

fn small(owner_pid: u32) -> TestNetOptions {
    let mut o = TestNetOptions::default();
    o.authorities = 1;
    o.exits = 0;
    o.middles = 1;
    o.wait_ready = false;
    o.owner_pid = owner_pid;
    o
}

/// Wait until `pred` holds, polling, for at most `limit`.
fn wait_until(limit: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    pred()
}

#[test]
fn drop_kills_every_tor() {
    let _one = crate::one_network_at_a_time();
    let net = TestNet::start(small(std::process::id())).expect("start network");
    let pids = net.pids();
    let dir = net.dir().to_owned();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|p| alive(*p)), "tor should be running");
    drop(net);
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "every tor must be gone after drop"
    );
    assert!(!dir.exists(), "temporary directory must be removed");
}

#[test]
fn drop_during_panic_kills_every_tor() {
    let _one = crate::one_network_at_a_time();
    let net = TestNet::start(small(std::process::id())).expect("start network");
    let pids = net.pids();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _net = net;
        panic!("a failing test");
    }));
    assert!(r.is_err());
    assert!(
        pids.iter().all(|p| !alive(*p)),
        "every tor must be gone after a panic"
    );
}

/// The safety net of `shared()`: the static network is never dropped, so each
/// tor watches its owner process (`__OwningControllerProcess`) and exits by
/// itself when the owner dies.
#[test]
fn owner_exit_stops_tor() {
    let _one = crate::one_network_at_a_time();
    let mut owner = Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep");
    let net = TestNet::start(small(owner.id())).expect("start network");
    let pids = net.pids();
    // Give tor time to take ownership before the owner goes away.
    assert!(wait_until(Duration::from_secs(20), || {
        net.log_tail(50).contains("Bootstrapped") || net.log_tail(50).contains("Opening")
    }));
    assert!(pids.iter().all(|p| alive(*p)));
    owner.kill().expect("kill owner");
    owner.wait().expect("reap owner");
    let gone = wait_until(Duration::from_secs(45), || pids.iter().all(|p| !alive(*p)));
    let tail = net.log_tail(5);
    assert!(gone, "tor must exit after its owner died:\n{tail}");
    assert!(
        tail.contains("Owning controller"),
        "tor exited for another reason:\n{tail}"
    );
}
