//! The runtime binary as a client starts it for the commands that put a
//! process into a container (`sandbox create`, `run`, `exec`).
//!
//! A runtime started from the binary's path makes a read-only view of
//! itself and executes itself again from it before anything else (see
//! `selfexe`: the CVE-2019-5736 class). The client makes that view once
//! and starts the runtime from it (`/proc/self/fd/N`, with the host path in
//! the environment, as the re-execution passes it), so each of those calls
//! executes the binary once, not twice. A binary changed on disk (rebuilt,
//! upgraded, a symlink moved) gets a new view at the next call; where no
//! view can be made, the binary's path is started as before.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::process::Command;

/// What a client knows of its binary: the last view made (or that none
/// could be), for the file as it was then.
#[derive(Debug, Default)]
pub(super) struct Binary {
    last: Mutex<Option<Arc<View>>>,
}

/// A view of the binary at `host`, or `None` in `fd` where none could be
/// made for that file.
#[derive(Debug)]
pub(super) struct View {
    host: PathBuf,
    stamp: Stamp,
    fd: Option<OwnedFd>,
}

/// Which file a path names, and its content's version.
#[derive(Debug, PartialEq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }
}

impl Binary {
    /// The view of `binary` (a path, or a name looked up on PATH) as it is
    /// now; `None` if the binary cannot be found (starting it will say so).
    /// The caller keeps the `Arc` until the child has executed: the
    /// descriptor must not be closed and reused before.
    pub(super) fn view(&self, binary: &Path) -> Option<Arc<View>> {
        let host = std::fs::canonicalize(locate(binary)?).ok()?;
        let stamp = Stamp::of(&std::fs::metadata(&host).ok()?);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = last.as_ref()
            && v.host == host
            && v.stamp == stamp
        {
            return Some(v.clone());
        }
        let fd = crate::selfexe::protected_view(&host).filter(|fd| {
            // The view shows the file just stat'ed, not one put there since
            // (that one gets its own view at the next call).
            nix::sys::stat::fstat(fd.as_raw_fd()).is_ok_and(|s| {
                (s.st_size as u64, (s.st_mtime, s.st_mtime_nsec)) == (stamp.size, stamp.mtime)
            })
        });
        let view = Arc::new(View { host, stamp, fd });
        *last = Some(view.clone());
        Some(view)
    }
}

impl View {
    /// A command that starts the binary from this view, or `None` if there
    /// is none.
    pub(super) fn command(&self, binary: &Path) -> Option<Command> {
        let fd = self.fd.as_ref()?;
        let mut cmd = Command::new(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        cmd.arg0(binary)
            .env(crate::selfexe::HOST_EXE_ENV, &self.host);
        Some(cmd)
    }

    #[cfg(test)]
    pub(super) fn fd(&self) -> Option<&OwnedFd> {
        self.fd.as_ref()
    }
}

/// `binary` itself if it is a path, else the first file of that name in a
/// PATH directory (as starting it would find it).
fn locate(binary: &Path) -> Option<PathBuf> {
    if binary.components().count() > 1 {
        return Some(binary.to_owned());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn content(view: &View) -> Vec<u8> {
        let fd = view.fd().expect("a view").as_raw_fd();
        let mut out = Vec::new();
        std::fs::File::open(format!("/proc/self/fd/{fd}"))
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Root (overlayfs): the view is read-only, shows the binary's content,
    /// is made once, and is made again when the binary is replaced.
    #[test]
    fn a_view_follows_the_binary_and_cannot_be_written() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("sbx-api-view-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("runtime");
        std::fs::write(&bin, b"first").unwrap();
        let binary = Binary::default();
        let first = binary.view(&bin).unwrap();
        assert_eq!(content(&first), b"first");
        let fd = first.fd().unwrap().as_raw_fd();
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/self/fd/{fd}"))
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        assert!(
            Arc::ptr_eq(&first, &binary.view(&bin).unwrap()),
            "made again"
        );
        // Replaced as an upgrade does: a new file renamed over it.
        std::fs::write(dir.join("new"), b"second version").unwrap();
        std::fs::rename(dir.join("new"), &bin).unwrap();
        let second = binary.view(&bin).unwrap();
        assert_eq!(content(&second), b"second version");
        drop((first, second, binary));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_binary_has_no_view() {
        let binary = Binary::default();
        assert!(binary.view(Path::new("/nonexistent/sbx-oci")).is_none());
        assert!(binary.view(Path::new("no-such-sbx-oci-binary")).is_none());
    }
}
