//! `-t`: a sandbox command on a pseudo-terminal. libcontainer makes the
//! terminal inside the sandbox and sends its master end to a console
//! socket (runc's protocol); we listen on one in the sandbox's state
//! directory, take the master, and copy between it and our own stdin and
//! stdout (our terminal in raw mode while it runs, its window size passed
//! on, and again whenever it changes).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use nix::unistd::Pid;

use crate::{Error, Result};

/// The console socket, removed when dropped.
pub struct Console {
    listener: UnixListener,
    path: PathBuf,
}

impl Console {
    pub fn listen(dir: &Path) -> Result<Console> {
        let path = dir.join(format!("console-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)
            .map_err(|e| Error::io(format!("cannot listen on {}", path.display()), e))?;
        Ok(Console { listener, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The terminal's master end, as the container's init sent it.
    pub fn master(&self) -> Result<OwnedFd> {
        let err = |e: std::io::Error| Error::io("cannot receive the terminal", e);
        let (conn, _) = self.listener.accept().map_err(err)?;
        if let Some(fd) = crate::console::receive_fd(conn.as_raw_fd(), false).map_err(err)? {
            return Ok(fd);
        }
        Err(err(std::io::Error::other("no descriptor in the message")))
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Our terminal in raw mode until dropped (nothing when stdin is none).
struct Raw(Option<Termios>);

impl Raw {
    fn new() -> Raw {
        let stdin = std::io::stdin();
        let Ok(saved) = tcgetattr(stdin.as_fd()) else {
            return Raw(None);
        };
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        let _ = tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw);
        Raw(Some(saved))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, t);
        }
    }
}

fn window_size(fd: BorrowedFd) -> Option<libc::winsize> {
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills a winsize.
    (unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

fn set_window_size(fd: BorrowedFd, ws: &libc::winsize) {
    // SAFETY: TIOCSWINSZ reads a winsize.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, ws) };
}

/// Copies between our stdin/stdout and `master` until `pid` (our child)
/// has exited and its output is drained, or `deadline` passes (then
/// returns false, the process still running).
pub fn proxy(master: &OwnedFd, pid: Pid, deadline: Option<Instant>) -> bool {
    let _raw = Raw::new();
    let stdin = std::io::stdin();
    let mut size = window_size(stdin.as_fd());
    if let Some(ws) = &size {
        set_window_size(master.as_fd(), ws);
    }
    let mut stdin_open = true;
    let mut buf = [0u8; 16 * 1024];
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return false;
        }
        let now = window_size(stdin.as_fd());
        if let Some(ws) = &now
            && size.is_none_or(|s| (s.ws_row, s.ws_col) != (ws.ws_row, ws.ws_col))
        {
            set_window_size(master.as_fd(), ws);
            size = now;
        }
        let mut fds = vec![PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(100u8)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => {
                if exited(pid) && !readable(master) {
                    return true;
                }
                continue;
            }
            Err(_) => return true,
            Ok(_) => {}
        }
        let master_ev = fds[0].revents().unwrap_or(PollFlags::empty());
        let stdin_ev = fds
            .get(1)
            .and_then(|f| f.revents())
            .unwrap_or(PollFlags::empty());
        if master_ev.intersects(PollFlags::POLLIN) {
            match nix::unistd::read(master.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    let _ = write_all(1, &buf[..n]);
                }
                // EIO: every slave end is closed (the command is done).
                _ => return true,
            }
        } else if master_ev.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
            return true;
        }
        if stdin_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP) {
            match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    let _ = write_all(master.as_raw_fd(), &buf[..n]);
                }
                _ => stdin_open = false,
            }
        }
    }
}

fn write_all(fd: i32, mut data: &[u8]) -> nix::Result<()> {
    // SAFETY: a descriptor that stays open for this call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn exited(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit_once(") ").is_none_or(|(_, r)| r.starts_with('Z')))
        .unwrap_or(true)
}

fn readable(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
    matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(PollFlags::POLLIN))
}
