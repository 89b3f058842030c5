//! Writable host paths that belong to the caller: idmapped bind mounts.
//!
//! A sandbox runs as its own user (65534 by default), and a directory given
//! with `--rw` belongs to someone else (the caller, say uid 1000). Rather
//! than chown anything, the directory is mounted idmapped (mount_setattr
//! with MOUNT_ATTR_IDMAP): through that mount, the owner's on-disk ids read
//! as the sandbox user's, and what the sandbox user creates is stored as
//! the owner's. Nothing else changes on disk, and only that one uid and gid
//! are mapped: files of other owners read as the overflow id (nobody) and
//! cannot be taken over.
//!
//! libcontainer 0.7 cannot make such mounts (runtime-spec mount
//! `uidMappings`), so they are made here, on the host, under the sandbox's
//! state directory (`idmap/N`), before the container is created; its bind
//! mounts take them as their source (a bind of an idmapped mount keeps the
//! mapping), and they are detached from the host once the container has
//! its copies. A mount left by a runtime that was killed meanwhile goes
//! with the state directory (see `Store::remove`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The subdirectory of a sandbox's state directory holding the mounts.
pub const DIR: &str = "idmap";

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Idmapped mounts made for one sandbox, detached from the host by
/// [`Staged::release`] or when dropped.
#[derive(Default)]
pub struct Staged {
    mounts: Vec<PathBuf>,
}

impl Staged {
    /// Detaches the mounts from the host (the container keeps its own).
    pub fn release(&mut self) {
        for m in self.mounts.drain(..) {
            if let Ok(c) = CString::new(m.as_os_str().as_encoded_bytes()) {
                // SAFETY: a NUL-terminated path.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
            let _ = std::fs::remove_dir(&m);
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.release();
    }
}

/// Whether `source` needs an idmapped mount to be written by `uid:gid`:
/// it is owned by another uid.
pub fn needed(source: &Path, uid: u32) -> Result<Option<(u32, u32)>> {
    let meta = std::fs::metadata(source)
        .map_err(|e| Error::io(format!("cannot read {}", source.display()), e))?;
    Ok((meta.uid() != uid).then_some((meta.uid(), meta.gid())))
}

/// Whether the mode of `path` lets `user` (uid, gid) write it without any
/// mapping (other-writable, or group-writable and of its group).
pub fn writable_by(path: &Path, user: (u32, u32)) -> bool {
    std::fs::metadata(path).is_ok_and(|m| {
        let mode = m.mode();
        mode & 0o002 != 0 || (mode & 0o020 != 0 && m.gid() == user.1) || m.uid() == user.0
    })
}

/// Mounts `source` idmapped at `<state_dir>/idmap/<n>` so that
/// `owner` (uid, gid) on disk is `user` (uid, gid) through it. Returns the
/// mount's path, which `staged` detaches later.
pub fn stage(
    staged: &mut Staged,
    state_dir: &Path,
    source: &Path,
    owner: (u32, u32),
    user: (u32, u32),
) -> Result<PathBuf> {
    let why = |what: &str, e: std::io::Error| {
        Error::InvalidArgument(format!(
            "{}: cannot make it writable for the sandbox's user {}:{} (it belongs to {}:{}): \
             {what}: {e}; make it writable for that user, or run the sandbox as its owner \
             (--user {}:{})",
            source.display(),
            user.0,
            user.1,
            owner.0,
            owner.1,
            owner.0,
            owner.1
        ))
    };
    let dir = state_dir.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|e| why("state directory", e))?;
    let target = dir.join(staged.mounts.len().to_string());
    std::fs::create_dir(&target).map_err(|e| why("state directory", e))?;
    // A mount's idmapping maps on-disk ids "down" through the namespace's
    // map (inside → outside): inside is the owner, outside the user.
    let userns = userns(owner, user).map_err(|e| why("user namespace", e))?;
    let tree = open_tree(source).map_err(|e| why("open_tree", e))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: mount_setattr reads `attr` (of the size given) and the empty
    // path; the descriptors are ours.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_dir(&target);
        let fs = fs_type(source).unwrap_or_else(|| "its file system".into());
        return Err(why(
            &format!("{fs} does not support idmapped mounts here (mount_setattr)"),
            e,
        ));
    }
    let to = CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| why("path", std::io::Error::from_raw_os_error(libc::EINVAL)))?;
    // SAFETY: move_mount with our detached tree and a NUL-terminated path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        let _ = std::fs::remove_dir(&target);
        return Err(why("move_mount", e));
    }
    staged.mounts.push(target.clone());
    Ok(target)
}

/// Detaches every mount under `<state_dir>/idmap` (a killed runtime's).
pub fn detach_all(state_dir: &Path) {
    let dir = state_dir.join(DIR);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut staged = Staged {
        mounts: entries.flatten().map(|e| e.path()).collect(),
    };
    staged.release();
    let _ = std::fs::remove_dir(&dir);
}

fn open_tree(source: &Path) -> std::io::Result<OwnedFd> {
    let path = CString::new(source.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: open_tree with a NUL-terminated path returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A user namespace mapping `inside` (uid, gid) to `outside`, one id each
/// (`inside outside 1` in its uid_map and gid_map):
/// made by a child that unshares it and waits while we write its maps.
fn userns(inside: (u32, u32), outside: (u32, u32)) -> std::io::Result<OwnedFd> {
    let (ready_r, ready_w) = std::io::pipe()?;
    let (done_r, done_w) = std::io::pipe()?;
    // SAFETY: the child only makes async-signal-safe system calls (unshare,
    // write, read, _exit) before it exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above.
        unsafe {
            // Our copy of the write end would keep the read below from
            // ever seeing its end.
            libc::close(done_w.as_raw_fd());
            let ok: u8 = (libc::unshare(libc::CLONE_NEWUSER) == 0) as u8;
            libc::write(ready_w.as_raw_fd(), (&ok as *const u8).cast(), 1);
            let mut b = 0u8;
            libc::read(done_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(ready_w);
    drop(done_r);
    let result = (|| {
        let mut ok = [0u8];
        std::io::Read::read_exact(&mut &ready_r, &mut ok)?;
        if ok[0] != 1 {
            return Err(std::io::Error::other("unshare(CLONE_NEWUSER) failed"));
        }
        let proc = format!("/proc/{pid}");
        std::fs::write(
            format!("{proc}/uid_map"),
            format!("{} {} 1\n", inside.0, outside.0),
        )?;
        std::fs::write(format!("{proc}/setgroups"), "deny")?;
        std::fs::write(
            format!("{proc}/gid_map"),
            format!("{} {} 1\n", inside.1, outside.1),
        )?;
        std::fs::File::open(format!("{proc}/ns/user")).map(OwnedFd::from)
    })();
    drop(done_w);
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    result
}

/// The file system type of `path`, from /proc/self/mountinfo's longest
/// matching mount point.
fn fs_type(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let path = std::fs::canonicalize(path).ok()?;
    info.lines()
        .filter_map(|l| {
            let mut f = l.split(' ');
            let point = f.nth(4)?;
            let fstype = l.split(" - ").nth(1)?.split(' ').next()?;
            Some((PathBuf::from(point), fstype.to_owned()))
        })
        .filter(|(p, _)| path.starts_with(p))
        .max_by_key(|(p, _)| p.as_os_str().len())
        .map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writable_by_its_mode() {
        let dir = std::env::temp_dir().join(format!("sbx-idmap-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let set = |mode| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
        let meta = std::fs::metadata(&dir).unwrap();
        let (uid, gid) = (meta.uid(), meta.gid());
        let other = (uid.wrapping_add(4242), gid.wrapping_add(4242));
        set(0o755).unwrap();
        assert!(writable_by(&dir, (uid, gid)), "its owner");
        assert!(!writable_by(&dir, other));
        set(0o777).unwrap();
        assert!(writable_by(&dir, other));
        set(0o775).unwrap();
        assert!(!writable_by(&dir, other));
        assert!(writable_by(&dir, (other.0, gid)), "its group");
        std::fs::remove_dir(&dir).unwrap();
    }
}
