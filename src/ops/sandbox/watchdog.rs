//! The command of a `sandbox exec` is the runtime's child: when the runtime
//! is killed (SIGKILL from a supervisor, a platform dropping its stream),
//! the command would be reparented to the host's init and run on with no
//! time limit and no budget. So right after the command starts, the runtime
//! forks a watchdog that waits on a pipe only the runtime writes to. The
//! runtime writes one byte once it has reaped the command and settled the
//! budget; a pipe closed without that byte means the runtime died mid-exec,
//! and the watchdog kills the command (through a pidfd: never a reused
//! pid) and what it started, then ends the exec's budget lease.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::unistd::Pid;

use super::budget::{Budget, Proc};
use crate::{Error, Result, signal};

pub struct Watchdog {
    /// The write end: closed by our death, or after the byte by `settled`.
    tx: OwnedFd,
}

impl Watchdog {
    /// Watches `command` (our child, running) on behalf of this process;
    /// `lease`: the budget and the holder to end if we die.
    ///
    /// Forks: the caller must have one thread (the runtime does; libcontainer
    /// joins what it starts).
    pub fn start(command: Pid, lease: Option<(&Budget, Proc)>) -> Result<Watchdog> {
        let err = |what: &str, e: std::io::Error| {
            Error::io(format!("cannot start the exec's watchdog ({what})"), e)
        };
        let pidfd = signal::pidfd_open(command).map_err(|e| err("pidfd_open", e))?;
        let (rx, tx) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| err("pipe", e.into()))?;
        // SAFETY: one thread (see above); the child only reads, signals,
        // and writes the ledger before it exits.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                drop(tx);
                watch(rx, pidfd, command, lease);
                // SAFETY: leaves without running the runtime's exit handlers.
                unsafe { libc::_exit(0) }
            }
            Ok(nix::unistd::ForkResult::Parent { .. }) => Ok(Watchdog { tx }),
            Err(e) => Err(err("fork", e.into())),
        }
    }

    /// The command is reaped and the budget settled: the watchdog leaves.
    pub fn settled(self) {
        let _ = nix::unistd::write(&self.tx, b"s");
    }
}

fn watch(rx: OwnedFd, pidfd: OwnedFd, command: Pid, lease: Option<(&Budget, Proc)>) {
    // Out of the runtime's session (a terminal's ^C to the runtime's group
    // is not for us), off its standard streams (whoever reads them waits
    // for their end), and nothing else of the runtime's held open.
    let _ = nix::unistd::setsid();
    crate::daemon::detach_fds(&[rx.as_raw_fd(), pidfd.as_raw_fd()]);
    let name = c"sbx-oci-watch";
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
    let mut byte = [0u8; 1];
    let got = loop {
        match nix::unistd::read(rx.as_raw_fd(), &mut byte) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    if got == Ok(1) {
        return; // settled by the runtime
    }
    // The runtime is gone. A command still running is ours to stop: its
    // pidfd names it even if its pid number has been taken since.
    // Dead before its lease ends: the budget is charged for all it ran.
    if signal::pidfd_send(pidfd.as_fd(), None).is_ok() {
        signal::kill_tree_and_wait(command, super::KILLED_WITHIN);
    }
    if let Some((budget, holder)) = lease {
        let _ = budget.end(holder);
    }
}
