//! Commands on a pseudo-terminal: the runtime runs `sandbox exec -t
//! --console-socket PATH`, libcontainer makes the terminal inside the
//! sandbox and sends its master end to our socket (runc's protocol), and we
//! copy between the master and the stream's chunks and stdin ourselves, so
//! that the window size can change while the command runs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};

use super::exec::{CHUNK_BYTES, Chunk, Stream};

/// A private directory with the console socket in it, removed when dropped.
pub(super) struct ConsoleDir {
    dir: PathBuf,
}

impl ConsoleDir {
    pub fn new() -> std::io::Result<(ConsoleDir, UnixListener)> {
        use std::os::unix::fs::DirBuilderExt;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sbx-oci-tty-{}-{n}", std::process::id()));
        std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
        let guard = ConsoleDir { dir };
        let listener = UnixListener::bind(guard.socket())?;
        Ok((guard, listener))
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("console.sock")
    }
}

impl Drop for ConsoleDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Takes the master from the runtime, then copies it to `tx` as stdout
/// chunks (and `stdin` to it) until every slave end is closed, or until
/// the runtime has ended (`runtime_gone`) and nothing is left to read.
/// Window sizes come from `size` (rows, columns): the first as soon as
/// the master arrives (libcontainer does not take `consoleSize`, so a
/// command that asks at once may see 0x0, then gets SIGWINCH), then each
/// change.
pub(super) async fn serve(
    listener: UnixListener,
    mut size: watch::Receiver<(u16, u16)>,
    stdin: Option<Vec<u8>>,
    tx: mpsc::Sender<Chunk>,
    mut runtime_gone: watch::Receiver<bool>,
) {
    let conn = tokio::select! {
        c = listener.accept() => match c {
            Ok((c, _)) => c,
            Err(_) => return,
        },
        _ = ended(&mut runtime_gone) => return,
    };
    let Some(master) = receive_fd(&conn).await else {
        return;
    };
    drop(conn);
    if set_nonblocking(&master).is_err() {
        return;
    }
    // SAFETY: the AsyncFd owns the descriptor, which stays open and the
    // same until it is dropped.
    let Ok(master) = (unsafe { AsyncFd::register(master) }) else {
        return;
    };
    set_window_size(&master, *size.borrow_and_update());
    let mut input = stdin.unwrap_or_default();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut gone = false;
    loop {
        tokio::select! {
            r = master.readable() => {
                let Ok(mut ready) = r else { return };
                match ready.try_io(|fd| read(fd.get_ref(), &mut buf)) {
                    // EIO: every slave end is closed (the command is done).
                    Ok(Ok(0)) | Ok(Err(_)) => return,
                    Ok(Ok(n)) => {
                        let chunk = Chunk { stream: Stream::Stdout, data: buf[..n].to_vec() };
                        if tx.send(chunk).await.is_err() {
                            return;
                        }
                    }
                    Err(_would_block) => {
                        if gone {
                            return; // drained after the runtime's end
                        }
                    }
                }
            }
            w = master.writable(), if !input.is_empty() => {
                let Ok(mut ready) = w else { return };
                if let Ok(r) = ready.try_io(|fd| write(fd.get_ref(), &input)) {
                    match r {
                        Ok(n) => { input.drain(..n); }
                        Err(_) => input.clear(),
                    }
                }
            }
            c = size.changed() => {
                if c.is_ok() {
                    set_window_size(&master, *size.borrow_and_update());
                }
            }
            _ = ended(&mut runtime_gone), if !gone => {
                // The command is reaped: what it wrote is in the terminal's
                // buffer, read it out and stop (a background process may
                // hold the slave open for ever).
                gone = true;
            }
        }
        if gone && !poll_readable(&master) {
            return;
        }
    }
}

/// Once the runtime has ended (its guard on the value is not kept: the
/// future stays Send).
async fn ended(gone: &mut watch::Receiver<bool>) {
    let _ = gone.wait_for(|g| *g).await;
}

fn poll_readable(fd: &AsyncFd<OwnedFd>) -> bool {
    let mut fds = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(fd.get_ref()),
        nix::poll::PollFlags::POLLIN,
    )];
    matches!(nix::poll::poll(&mut fds, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
        && fds[0]
            .revents()
            .is_some_and(|r| r.intersects(nix::poll::PollFlags::POLLIN))
}

fn read(fd: &OwnedFd, buf: &mut [u8]) -> std::io::Result<usize> {
    nix::unistd::read(fd.as_raw_fd(), buf).map_err(std::io::Error::from)
}

fn write(fd: &OwnedFd, data: &[u8]) -> std::io::Result<usize> {
    nix::unistd::write(fd, data).map_err(std::io::Error::from)
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_raw_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

fn set_window_size(fd: &AsyncFd<OwnedFd>, (rows, cols): (u16, u16)) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize.
    unsafe { libc::ioctl(fd.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// The descriptor in the first message on `conn`.
async fn receive_fd(conn: &tokio::net::UnixStream) -> Option<OwnedFd> {
    loop {
        conn.readable().await.ok()?;
        match conn.try_io(Interest::READABLE, || {
            crate::console::receive_fd(conn.as_raw_fd(), true)
        }) {
            Ok(fd) => return fd,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}
