//! The state directory (`--root`, default /run/sbx-oci).
//!
//! Layout: `<root>/<id>/` belongs to sbx-oci and is created with one atomic
//! `mkdir`, which is what makes two concurrent `create`s of one id safe: exactly
//! one gets the directory, the other "already exists". libcontainer keeps its
//! own state below it, in `<root>/<id>/<id>/` (state.json, config, notify socket).

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;

use crate::{Error, Result};

pub const DEFAULT_ROOT: &str = "/run/sbx-oci";

#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Store { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Our directory for `id`; libcontainer's `root_path` for it.
    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// libcontainer's state directory for `id`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.dir(id).join(id)
    }

    /// Claims `id` atomically. The claim is released (the directory removed)
    /// when dropped, unless [`Claim::keep`] is called.
    pub fn claim(&self, id: &str) -> Result<Claim> {
        validate_id(id)?;
        let mut builder = fs::DirBuilder::new();
        builder.mode(0o700);
        if let Err(err) = builder.recursive(true).create(&self.root) {
            return Err(Error::io(
                format!("cannot create state root {}", self.root.display()),
                err,
            ));
        }
        let dir = self.dir(id);
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => match lock(&dir, libc::LOCK_SH) {
                Ok(busy) => Ok(Claim {
                    dir: Some(dir),
                    _busy: busy,
                }),
                Err(e) => {
                    // Not claimed after all: the directory goes with it.
                    let _ = fs::remove_dir(&dir);
                    Err(Error::io(format!("cannot lock {}", dir.display()), e))
                }
            },
            Err(err) if err.kind() == ErrorKind::AlreadyExists => {
                Err(Error::AlreadyExists(id.to_owned()))
            }
            Err(err) => Err(Error::io(format!("cannot create {}", dir.display()), err)),
        }
    }

    /// Marks `id` as worked on until the guard and every fork made meanwhile
    /// (libcontainer's intermediate and init inherit it until their execve)
    /// are gone: a shared lock on its directory. Waits while a
    /// `delete --force` holds it (which then leaves nothing to work on).
    pub fn busy(&self, id: &str) -> Result<Busy> {
        validate_id(id)?;
        let dir = self.dir(id);
        lock(&dir, libc::LOCK_SH).map_err(|e| match e.kind() {
            ErrorKind::NotFound => Error::NotFound(id.to_owned()),
            _ => Error::io(format!("cannot lock {}", dir.display()), e),
        })
    }

    /// The directory of `id` locked exclusively when no runtime process and
    /// no fork of one is at work on it (see [`Store::busy`]); `None` when one
    /// may be, or when it cannot be told.
    pub fn idle(&self, id: &str) -> Option<Busy> {
        lock(&self.dir(id), libc::LOCK_EX | libc::LOCK_NB).ok()
    }

    /// [`Store::idle`], waiting up to `limit` for whoever is at work to
    /// finish (a prestart hook of a killed runtime, which goes on alone).
    pub fn idle_within(&self, id: &str, limit: std::time::Duration) -> Option<Busy> {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(idle) = self.idle(id) {
                return Some(idle);
            }
            if std::time::Instant::now() >= deadline || !self.dir(id).is_dir() {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }

    /// Loads a container, with its status refreshed from the live process
    /// (see [`refresh`]).
    pub fn load(&self, id: &str) -> Result<Container> {
        validate_id(id)?;
        use libcontainer::container::state::StateError;
        let dir = self.container_dir(id);
        // libcontainer's State::load, in one read (it parses from a reader,
        // two reads after an existence check: `list` does this per container).
        let path = libcontainer::container::State::file_path(&dir);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::NotFound(id.to_owned()));
            }
            Err(source) => {
                let e = StateError::OpenStateFile {
                    state_file_path: path,
                    source,
                };
                return Err(Error::container("load", id, e.into()));
            }
        };
        let state = serde_json::from_slice(&bytes).map_err(|source| {
            let e = StateError::ParseStateFile {
                state_file_path: path,
                source,
            };
            Error::container("load", id, e.into())
        })?;
        let mut container = Container { state, root: dir };
        refresh(&mut container);
        Ok(container)
    }

    /// Records the start time of the init of `id`, whose pid is `pid`, for
    /// [`refresh`]. Best effort: without it, a container's pid is trusted
    /// as libcontainer trusts it.
    pub fn record_init(&self, id: &str, pid: i32) {
        let path = self.dir(id).join(INIT_START);
        let recorded = proc_stat(pid)
            .ok_or_else(|| std::io::Error::from(ErrorKind::NotFound))
            .and_then(|(_, start)| fs::write(&path, start.to_string()));
        if let Err(e) = recorded {
            // A file left empty (a full disk) would say "not the init".
            let _ = fs::remove_file(&path);
            tracing::warn!("{id}: cannot record its init's start time: {e}");
        }
    }

    /// Whether anything (even a half-created container) is stored under `id`.
    pub fn exists(&self, id: &str) -> bool {
        self.dir(id).exists()
    }

    /// Removes our directory for `id`; a missing directory is not an error.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.dir(id);
        // Idmapped mounts a killed runtime left on the host (see `idmap`).
        crate::idmap::detach_all(&dir);
        // An exec ending meanwhile (its command killed by this delete) may
        // still write a file there (its budget): try again.
        let mut tries = 0;
        loop {
            match fs::remove_dir_all(&dir) {
                Ok(()) => return Ok(()),
                Err(err) if err.kind() == ErrorKind::NotFound => return Ok(()),
                Err(err) if err.kind() == ErrorKind::DirectoryNotEmpty && tries < 10 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(err) => {
                    return Err(Error::io(format!("cannot remove {}", dir.display()), err));
                }
            }
        }
    }

    /// Ids of the stored containers, sorted. A missing root means none.
    pub fn ids(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => {
                return Err(Error::io(
                    format!("cannot read state root {}", self.root.display()),
                    err,
                ));
            }
        };
        let mut ids: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| validate_id(id).is_ok())
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// Beside libcontainer's directory: the init's start time (clock ticks
/// after boot, field 22 of /proc/<pid>/stat) when it was created.
const INIT_START: &str = "init.start";

/// The status of `container` as its process is now. libcontainer's own
/// refresh takes any live process with the saved pid for the init: once the
/// init is gone its pid can be another process's (pids wrap, at 32768 by
/// default), and `state` then called the container running, and `kill`
/// signalled that process, `exec` would have entered its namespaces. A
/// process whose start time is not the recorded one is not the init (runc
/// checks the same). The saved state file is not changed.
pub fn refresh(container: &mut Container) {
    use libcontainer::container::ContainerStatus as S;
    let status = match container.pid().and_then(|pid| proc_stat(pid.as_raw())) {
        None => S::Stopped,
        // Dead, or a zombie: it has exited.
        Some((b'Z' | b'X' | b'x', _)) => S::Stopped,
        Some((_, start)) if !is_init(container, start) => S::Stopped,
        Some(_) => match container.status() {
            S::Creating | S::Created | S::Paused => container.status(),
            _ => S::Running,
        },
    };
    container.set_status(status);
}

/// A pidfd of `container`'s init while it lives, checked after it was
/// opened (the pidfd holds on to the process it names, so the process that
/// reused a pid cannot take its place once checked): signals sent through
/// it reach the init or nothing.
pub fn init_pidfd(container: &Container) -> Option<std::os::fd::OwnedFd> {
    let pid = container.pid()?;
    let fd = crate::signal::pidfd_open(pid).ok()?;
    match proc_stat(pid.as_raw()) {
        Some((b'Z' | b'X' | b'x', _)) | None => None,
        Some((_, start)) => is_init(container, start).then_some(fd),
    }
}

/// Whether a process that started at `start` is the container's init: the
/// recorded start time, when there is one.
fn is_init(container: &Container, start: u64) -> bool {
    let Some(ours) = container.root.parent() else {
        return true;
    };
    // No record (a container of an older runtime, a full disk), or one cut
    // short: the pid is trusted, as before.
    match fs::read_to_string(ours.join(INIT_START)).map(|t| t.trim().parse::<u64>()) {
        Ok(Ok(recorded)) => recorded == start,
        _ => true,
    }
}

/// The state letter and start time (field 22: clock ticks after boot) of
/// process `pid`, if it exists.
pub fn proc_stat(pid: i32) -> Option<(u8, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold anything: fields are
    // counted after its last ')'. State is field 3, start time field 22.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = *fields.next()?.as_bytes().first()?;
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// A lock on a container's directory (see [`Store::busy`]), released when
/// the last descriptor of it, in this process or its forks, is closed.
pub struct Busy(#[allow(dead_code)] fs::File);

/// [`Store::busy`] for a process that knows the container's directory, not
/// the store (a hook: its policy file lies there), without waiting: `None`
/// while a `delete --force` holds it, or when it cannot be had.
pub fn busy_dir(dir: &Path) -> Option<Busy> {
    lock(dir, libc::LOCK_SH | libc::LOCK_NB).ok()
}

fn lock(dir: &Path, how: libc::c_int) -> std::io::Result<Busy> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    // Close-on-exec: the container's process drops it at its execve.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)?;
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), how) } == 0 {
            return Ok(Busy(file));
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A claimed id: the directory goes away on drop unless kept. It is
/// [`Store::busy`] while the claim lasts: the create's forks keep it so.
pub struct Claim {
    dir: Option<PathBuf>,
    _busy: Busy,
}

impl Claim {
    pub fn keep(mut self) {
        self.dir = None;
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            crate::idmap::detach_all(&dir);
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// runc's rule for ids, ([A-Za-z0-9_+.-]), minus names that are not file names.
pub fn validate_id(id: &str) -> Result<()> {
    let invalid = |reason: &str| {
        Err(Error::InvalidId {
            id: id.to_owned(),
            reason: reason.to_owned(),
        })
    };
    if id.is_empty() {
        return invalid("it is empty");
    }
    if id == "." || id == ".." {
        return invalid("'.' and '..' are not allowed");
    }
    if id.len() > 1024 {
        return invalid("it is longer than 1024 characters");
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-' | '.')))
    {
        return invalid(&format!(
            "character {c:?} is not allowed (use letters, digits, '_', '+', '-' and '.')"
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` whole or not at all (a temporary file beside
/// it, renamed over it): a runtime killed or a disk full meanwhile leaves
/// the old file or none, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_is_busy_while_a_claim_a_guard_or_a_fork_holds_it() {
        let root = std::env::temp_dir().join(format!("sbx-store-busy-{}", std::process::id()));
        let store = Store::new(&root);
        let claim = store.claim("c").unwrap();
        assert!(store.idle("c").is_none(), "the claim holds it");
        // A fork made meanwhile, as libcontainer's intermediate is, keeps it
        // after the claim is let go, until it exits.
        let (r, w) = nix::unistd::pipe().unwrap();
        // SAFETY: the child only reads a pipe and exits.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                drop(w);
                let _ = nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&r), &mut [0u8; 1]);
                // SAFETY: leaves at once, without the parent's destructors.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(r);
                claim.keep();
                assert!(store.idle("c").is_none(), "the fork holds it");
                drop(w);
                nix::sys::wait::waitpid(child, None).unwrap();
            }
        }
        let idle = store.idle("c").expect("nobody at work");
        assert!(store.idle("c").is_none(), "exclusive");
        drop(idle);
        let busy = store.busy("c").unwrap();
        assert!(store.idle("c").is_none(), "a guard holds it");
        let t = std::time::Instant::now();
        let limit = std::time::Duration::from_millis(50);
        assert!(store.idle_within("c", limit).is_none());
        assert!(t.elapsed() >= limit, "waited");
        assert!(busy_dir(&store.dir("c")).is_some(), "shared with a hook");
        drop(busy);
        let idle = store.idle("c").unwrap();
        assert!(busy_dir(&store.dir("c")).is_none(), "a hook does not wait");
        drop(idle);
        assert!(store.idle("c").is_some());
        assert!(matches!(store.busy("none"), Err(Error::NotFound(_))));
        assert!(store.idle("none").is_none());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn ids() {
        for ok in ["a", "web-1", "x.y_z+1", "A9"] {
            validate_id(ok).unwrap();
        }
        for (bad, why) in [
            ("", "empty"),
            ("..", "'..'"),
            (".", "'.'"),
            ("a/b", "'/'"),
            ("../x", "'/'"),
            ("a b", "' '"),
        ] {
            let msg = validate_id(bad).unwrap_err().to_string();
            assert!(msg.contains(why), "{bad:?}: {msg}");
        }
    }
}
