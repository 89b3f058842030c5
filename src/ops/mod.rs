//! One module per OCI operation. Each takes the parsed arguments and a
//! [`Context`]; none prints errors itself (the binary does).

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod features;
pub mod gc;
pub mod hook;
pub mod kill;
pub mod list;
pub mod network_hook;
pub mod pause;
pub mod ps;
pub mod resume;
pub mod run;
pub mod sandbox;
pub mod spec;
pub mod start;
pub mod state;
pub mod update;

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::{Error, Result};

pub use crate::context::{Context, status_word, wrong_state};

/// Exit code of a waited-for process, with runc's 128+N for death by signal N.
pub fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => 255,
    }
}

/// Waits for `pid` (our child), retrying on EINTR; returns its exit code.
pub fn wait_exit(pid: Pid) -> Result<i32> {
    wait_status(pid).map(exit_code)
}

/// Waits for `pid` (our child) to exit or be killed.
pub fn wait_status(pid: Pid) -> Result<WaitStatus> {
    loop {
        match waitpid(pid, None) {
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                return Ok(status);
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(err) => {
                return Err(Error::io(
                    format!("cannot wait for process {pid}"),
                    err.into(),
                ));
            }
        }
    }
}

/// Kills and reaps whatever children a failed libcontainer call left behind
/// (its intermediate and init processes), so a failed create leaves no
/// process and no zombie.
pub fn reap_children() {
    for pid in child_pids() {
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    while let Ok(_) | Err(nix::errno::Errno::EINTR) =
        waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL))
    {}
}

fn child_pids() -> Vec<Pid> {
    let mut pids = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return pids;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            pids.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .map(Pid::from_raw),
            );
        }
    }
    pids
}

/// Signals a foreground process should pass on to the container.
pub mod forward {
    use std::sync::atomic::{AtomicI32, Ordering};

    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    use nix::unistd::Pid;

    static TARGET: AtomicI32 = AtomicI32::new(0);

    const FORWARDED: &[Signal] = &[
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
    ];

    extern "C" fn pass_on(sig: libc::c_int) {
        let pid = TARGET.load(Ordering::Relaxed);
        if pid > 0 {
            // SAFETY: kill(2) is async-signal-safe.
            unsafe { libc::kill(pid, sig) };
        }
    }

    /// From now on, the signals above are sent to `pid` instead of us.
    pub fn to(pid: Pid) {
        TARGET.store(pid.as_raw(), Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::Handler(pass_on),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for &sig in FORWARDED {
            // SAFETY: the handler only calls kill(2).
            let _ = unsafe { sigaction(sig, &action) };
        }
    }
}
