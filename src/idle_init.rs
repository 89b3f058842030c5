//! The init of a persistent sandbox: the runtime's own forked process,
//! already inside the sandbox, that reaps orphans until it is told to stop.
//! Nothing is executed, so the sandbox needs no binary of ours in its root
//! and costs no exec; as a fork of the protected runtime binary it exposes
//! nothing writable through /proc/<pid>/exe.

use std::sync::atomic::{AtomicBool, Ordering};

use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal, sigaction};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

#[derive(Clone)]
pub struct IdleInit;

static STOP: AtomicBool = AtomicBool::new(false);

// An init in a pid namespace ignores every signal it has no handler for:
// TERM and INT get one that asks it to stop, CHLD one that only wakes it.
extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}
extern "C" fn on_child(_: libc::c_int) {}

impl Executor for IdleInit {
    fn exec(&self, _spec: &Spec) -> Result<(), ExecutorError> {
        let err = |e: nix::Error| ExecutorError::Other(format!("idle init: {e}"));
        // A fork of the runtime that never execs keeps every descriptor the
        // runtime had, close-on-exec or not: the --log file, libcontainer's
        // handles of the host's directories, sockets. The sandbox's own
        // processes could reach them through /proc/1/fd (same user), so
        // everything but stdio goes.
        // SAFETY: closes descriptors this process owns and no longer uses.
        if unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) } != 0 {
            return Err(err(nix::Error::last()));
        }
        // SAFETY: PR_SET_NAME copies at most 16 bytes from a C string.
        unsafe { libc::prctl(libc::PR_SET_NAME, c"sbx-oci-init".as_ptr()) };
        let watched = SigSet::from_iter([Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD]);
        // Blocked except inside sigsuspend, so no signal is lost between the
        // checks below and the wait.
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&watched), None).map_err(err)?;
        for (sig, handler) in [
            (Signal::SIGTERM, on_stop as extern "C" fn(libc::c_int)),
            (Signal::SIGINT, on_stop),
            (Signal::SIGCHLD, on_child),
        ] {
            let action = SigAction::new(
                SigHandler::Handler(handler),
                SaFlags::empty(),
                SigSet::empty(),
            );
            // SAFETY: the handlers only store to an atomic.
            unsafe { sigaction(sig, &action) }.map_err(err)?;
        }
        loop {
            // Reap every exited orphan.
            while let Ok(status) = waitpid(
                Pid::from_raw(-1),
                Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
            ) {
                if status == WaitStatus::StillAlive {
                    break;
                }
            }
            if STOP.load(Ordering::Relaxed) {
                // SAFETY: ends this process without the runtime's exit work.
                unsafe { libc::_exit(0) }
            }
            let _ = SigSet::empty().suspend();
        }
    }

    fn validate(&self, _spec: &Spec) -> Result<(), ExecutorValidationError> {
        Ok(())
    }
}
