//! Signal names and numbers as runc accepts them: "9", "KILL", "SIGKILL",
//! "kill"; and pidfds, which name a process and never the one that is given
//! its number later.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::signal::Signal;

use crate::{Error, Result};

pub fn parse(input: &str) -> Result<Signal> {
    let bad = || {
        Error::InvalidArgument(format!(
            "invalid signal {input:?}: give a number (e.g. 15) or a name (e.g. TERM or SIGTERM)"
        ))
    };
    if let Ok(n) = input.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = input.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

/// A pidfd of `pid` (pidfd_open(2)): it names that process, never one that
/// is given its number later, and is readable once the process has exited.
pub fn pidfd_open(pid: nix::unistd::Pid) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open returns a new descriptor or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw as RawFd) })
}

/// `signal` to the process a pidfd names (`None`: only whether it is still
/// there); ESRCH once it has exited.
pub fn pidfd_send(pidfd: BorrowedFd<'_>, signal: Option<Signal>) -> std::io::Result<()> {
    let sig = signal.map_or(0, |s| s as libc::c_int);
    // SAFETY: pidfd_send_signal with a descriptor borrowed for the call and
    // no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits at most `timeout` for the process a pidfd names to exit; whether
/// it has.
pub fn pidfd_wait(pidfd: BorrowedFd<'_>, timeout: std::time::Duration) -> std::io::Result<bool> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let ms = u16::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u16::MAX);
        let mut fds = [PollFd::new(pidfd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(ms)) {
            Ok(n) if n > 0 => return Ok(true),
            Ok(_) if left.is_zero() => return Ok(false),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// SIGKILL to `pid` and all its descendants (children first found, then
/// killed parents first so nothing can fork away). Does not wait.
pub fn kill_tree(pid: nix::unistd::Pid) {
    for p in tree(pid) {
        let _ = nix::sys::signal::kill(p, Signal::SIGKILL);
    }
}

/// [`kill_tree`], then waits (at most `timeout`) until each process it
/// killed has exited. A process killed by a signal dies when it is next
/// scheduled, which on a loaded machine can be much later: without the
/// wait, a timed-out exec returned while what it started still ran (seen
/// in a TCG guest). Exited means a zombie or reaped: an orphan's zombie
/// is its reaper's (the container's init) to collect.
pub fn kill_tree_and_wait(pid: nix::unistd::Pid, timeout: std::time::Duration) {
    use std::os::fd::AsFd;
    // A pidfd each, opened before the signal: it names that process even
    // once its number is free again.
    let procs: Vec<(nix::unistd::Pid, Option<OwnedFd>)> = tree(pid)
        .into_iter()
        .map(|p| (p, pidfd_open(p).ok()))
        .collect();
    for (p, fd) in &procs {
        let _ = match fd {
            Some(fd) => pidfd_send(fd.as_fd(), Some(Signal::SIGKILL)),
            None => nix::sys::signal::kill(*p, Signal::SIGKILL).map_err(Into::into),
        };
    }
    let deadline = std::time::Instant::now() + timeout;
    for fd in procs.iter().filter_map(|(_, fd)| fd.as_ref()) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let _ = pidfd_wait(fd.as_fd(), left);
    }
}

/// `pid` and its descendants, parents before their children.
fn tree(pid: nix::unistd::Pid) -> Vec<nix::unistd::Pid> {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        all.extend(children(all[i]));
        i += 1;
    }
    all
}

fn children(pid: nix::unistd::Pid) -> Vec<nix::unistd::Pid> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(nix::unistd::Pid::from_raw)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names() {
        assert_eq!(parse("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("15").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("sigusr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse("SIGHUP").unwrap(), Signal::SIGHUP);
    }

    #[test]
    fn a_killed_tree_has_exited_when_the_wait_returns() {
        use std::time::{Duration, Instant};
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 37 & sleep 37; true"])
            .spawn()
            .unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let deadline = Instant::now() + Duration::from_secs(10);
        let procs = loop {
            let procs = tree(pid);
            if procs.len() == 3 {
                break procs;
            }
            assert!(Instant::now() < deadline, "the sleeps never started");
            std::thread::sleep(Duration::from_millis(10));
        };
        kill_tree_and_wait(pid, Duration::from_secs(10));
        for p in &procs {
            let state = crate::store::proc_stat(p.as_raw());
            assert!(
                matches!(state, None | Some((b'Z' | b'X', _))),
                "{p} still runs: {state:?}"
            );
        }
        child.wait().unwrap();
    }

    #[test]
    fn a_pidfd_probes_signals_and_waits_for_its_process() {
        use std::os::fd::AsFd;
        use std::time::Duration;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let fd = pidfd_open(pid).unwrap();
        pidfd_send(fd.as_fd(), None).unwrap();
        assert!(!pidfd_wait(fd.as_fd(), Duration::from_millis(20)).unwrap());
        pidfd_send(fd.as_fd(), Some(Signal::SIGKILL)).unwrap();
        assert!(pidfd_wait(fd.as_fd(), Duration::from_secs(5)).unwrap());
        child.wait().unwrap();
        // Reaped: the pidfd names nothing now, whoever gets the number.
        let gone = pidfd_send(fd.as_fd(), Some(Signal::SIGKILL)).unwrap_err();
        assert_eq!(gone.raw_os_error(), Some(libc::ESRCH));
    }

    #[test]
    fn rejects_unknown() {
        for bad in ["0", "99", "-1", "FOO", ""] {
            let msg = parse(bad).unwrap_err().to_string();
            assert!(msg.contains("invalid signal"), "{msg}");
        }
    }
}
