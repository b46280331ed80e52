//! Child processes that never outlive their owner: each runs in its own
//! process group, which is killed on drop, and a watchdog in that group kills
//! the group when the owning process dies (like tor's
//! `__OwningControllerProcess`, for programs that have no such option).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// Shell wrapper: start the watchdog in the background, then `exec` the
/// program, which thereby keeps the wrapper's pid and leads the group. The
/// watchdog polls once a second and kills the whole group (itself included)
/// when the owner or the program is gone; its stdio is detached so it holds
/// no pipe open.
const WRAPPER: &str = r#"owner=$1; shift
( while kill -0 "$owner" 2>/dev/null && kill -0 $$ 2>/dev/null; do sleep 1; done
  kill -KILL 0 ) </dev/null >/dev/null 2>&1 &
exec "$@""#;

/// A [`Command`] that runs `program` (with the arguments added later) in a
/// new process group, watched so that it dies within ~1 s of `owner_pid`.
pub(crate) fn command(owner_pid: u32, program: &Path) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(WRAPPER)
        .arg("sh")
        .arg(owner_pid.to_string())
        .arg(program)
        .process_group(0);
    cmd
}

/// A child started by [`command`]: dropping it kills its whole process group
/// and reaps the child.
#[derive(Debug)]
pub(crate) struct GroupChild {
    child: Child,
}

impl GroupChild {
    /// Take ownership of a child spawned from [`command`].
    pub(crate) fn new(child: Child) -> Self {
        Self { child }
    }

    /// Process id of the program (also its process group id).
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// The exit status if the program has exited.
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for GroupChild {
    fn drop(&mut self) {
        let pgid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Find `program` on `PATH`.
pub(crate) fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::{Duration, Instant};

    /// Is `pid` a live (not zombie) process?
    fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => !matches!(
                stat.rsplit_once(')')
                    .and_then(|(_, r)| r.trim_start().chars().next()),
                Some('Z') | Some('X') | None
            ),
            Err(_) => false,
        }
    }

    fn wait_until(limit: Duration, mut pred: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if pred() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        pred()
    }

    /// Pids of the processes in process group `pgid`.
    fn group_members(pgid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after ")": state ppid pgrp ...
            let pgrp = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(2))
                .and_then(|p| p.parse::<u32>().ok());
            if pgrp == Some(pgid) && alive(pid) {
                out.push(pid);
            }
        }
        out
    }

    #[test]
    fn drop_kills_the_whole_group() {
        // The program forks a grandchild, as a Python server might.
        let child = command(std::process::id(), Path::new("/bin/sh"))
            .args(["-c", "sleep 600 & wait"])
            .spawn()
            .unwrap();
        let child = GroupChild::new(child);
        let pgid = child.id();
        // program, its sleep, the watchdog (and its sleep 1).
        assert!(wait_until(Duration::from_secs(5), || group_members(pgid)
            .len()
            >= 3));
        drop(child);
        assert!(wait_until(Duration::from_secs(5), || group_members(pgid).is_empty()));
    }

    #[test]
    fn owner_death_kills_the_group() {
        let mut owner = Command::new("sleep").arg("600").spawn().unwrap();
        let child = command(owner.id(), Path::new("sleep"))
            .arg("600")
            .spawn()
            .unwrap();
        let mut child = GroupChild::new(child);
        let pgid = child.id();
        assert!(wait_until(Duration::from_secs(5), || group_members(pgid)
            .len()
            >= 2));
        assert!(child.exited().is_none());
        owner.kill().unwrap();
        owner.wait().unwrap();
        assert!(wait_until(Duration::from_secs(5), || child
            .exited()
            .is_some()));
        assert!(wait_until(Duration::from_secs(5), || group_members(pgid).is_empty()));
    }

    #[test]
    fn finds_sh() {
        assert!(find_program("sh").is_some());
        assert!(find_program("no-such-program-umbra").is_none());
    }
}
