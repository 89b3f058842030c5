//! Keeps the runtime binary out of the container's reach (the CVE-2019-5736
//! class).
//!
//! libcontainer forks (it does not exec) the processes that enter a
//! container, so they share our `/proc/self/exe`. If a container's entrypoint
//! is `#!/proc/self/exe`, that process re-executes *our binary* inside the
//! container, where another container process can grab `/proc/<pid>/exe` and,
//! once it exits, reopen it for writing: the host's sbx-oci would be
//! overwritten. runc and youki defend by re-executing from a sealed memfd
//! copy of the binary (about 5 ms for 8 MB, on every call).
//!
//! We re-execute instead from the binary as seen through a detached,
//! read-only overlayfs mount of its own directory: nothing is copied, no
//! mount appears in any namespace, and the file behind `/proc/self/exe` can
//! not be opened for writing (EROFS; an overlay with no upper layer can never
//! become writable). Only create, run and exec pay for it; where overlayfs is
//! unavailable, a sealed memfd copy is the fallback. If neither works the
//! operation fails: never run unprotected. A binary that is already on a
//! read-only mount (installed so) is protected as it is, and runs once.
//!
//! After the re-execution `/proc/self/exe` names the protected view, not the
//! binary on the host, so the re-execution passes the host path along in
//! [`HOST_EXE_ENV`], which [`ensure_protected`] takes out of the environment
//! and [`host_path`] returns (what a hook that runs sbx-oci must name).

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::{FcntlArg, SealFlag, fcntl};
use nix::sys::memfd::{MemFdCreateFlag, memfd_create};
use nix::sys::statfs::fstatfs;
use nix::unistd::execveat;

use crate::{Error, Result};

/// Returns when this process runs from a protected binary; otherwise
/// re-executes itself from one (and does not return).
pub fn ensure_protected() -> Result<()> {
    let exe = File::open("/proc/self/exe")
        .map_err(|e| Error::SelfExe(format!("cannot open /proc/self/exe: {e}")))?;
    if is_protected(&exe) {
        if let Some(path) = std::env::var_os(HOST_EXE_ENV) {
            let _ = HOST_EXE.set(PathBuf::from(path));
            // SAFETY: called from the main thread before any other thread
            // is started (the commands that need protection call it first).
            unsafe { std::env::remove_var(HOST_EXE_ENV) };
        }
        return Ok(());
    }
    drop(exe);
    let path = std::fs::read_link("/proc/self/exe")
        .map_err(|e| Error::SelfExe(format!("cannot read /proc/self/exe: {e}")))?;
    let fd = match overlay_view(&path) {
        Ok(fd) => fd,
        Err(overlay_err) => sealed_copy(&path).map_err(|memfd_err| {
            Error::SelfExe(format!(
                "cannot protect {} from the container: read-only overlay: {overlay_err}; \
                 sealed copy: {memfd_err}",
                path.display()
            ))
        })?,
    };
    reexec(fd, &path)
}

/// Carries the binary's host path across the protective re-execution.
pub const HOST_EXE_ENV: &str = "_SBX_OCI_HOST_EXE";

static HOST_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Set by the sbx-oci binary's `main`: see [`mark_runtime`].
static RUNTIME: AtomicBool = AtomicBool::new(false);

/// Says that this process is the sbx-oci binary (its `main` calls it first).
/// A program that links the library (the API's caller) is not: its
/// `/proc/self/exe` names that program, which a hook or `hook sweep` must
/// never be pointed at, so [`host_path`] refuses there.
pub fn mark_runtime() {
    RUNTIME.store(true, Ordering::Relaxed);
}

/// The binary's path on the host: the one it was started from, also after
/// the protective re-execution. An error in a process that is not the
/// runtime (see [`mark_runtime`]).
pub fn host_path() -> Result<PathBuf> {
    if let Some(p) = HOST_EXE.get() {
        return Ok(p.clone());
    }
    if !RUNTIME.load(Ordering::Relaxed) {
        return Err(Error::SelfExe(
            "this process is not the sbx-oci binary (a program using the library): it has no \
             runtime path to give; run the sbx-oci command for this"
                .into(),
        ));
    }
    let path = std::fs::read_link("/proc/self/exe")
        .map_err(|e| Error::SelfExe(format!("cannot read /proc/self/exe: {e}")))?;
    // A sealed copy's name ("/memfd:sbx-oci (deleted)") is no path.
    if path.is_absolute() && path.is_file() {
        Ok(path)
    } else {
        Err(Error::SelfExe(format!(
            "cannot tell the binary's host path ({} is not one)",
            path.display()
        )))
    }
}

/// Whether `exe` can never be opened for writing: a file on a read-only
/// mount (our overlay view, or a binary installed read-only: a read-only
/// root, `/usr` or bind mount, which a container cannot remount), or a
/// write-sealed memfd. An installed read-only binary needs no re-execution:
/// create, run and exec then execute it once, not twice.
pub fn is_protected(exe: &File) -> bool {
    if let Ok(fs) = fstatfs(exe.as_fd())
        && fs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY)
    {
        return true;
    }
    match fcntl(exe.as_raw_fd(), FcntlArg::F_GET_SEALS) {
        Ok(bits) => SealFlag::from_bits_truncate(bits).contains(SealFlag::F_SEAL_WRITE),
        Err(_) => false,
    }
}

/// The binary at `path` (canonical) opened through a detached read-only
/// overlay of its directory, for a process that starts the runtime often
/// (the API's client): a runtime started from it is protected already, so
/// it runs once instead of making its own view and executing itself again.
/// An `O_PATH` descriptor, checked to be protected; `None` where no such
/// view can be made (the runtime then protects itself, as always).
pub fn protected_view(path: &Path) -> Option<OwnedFd> {
    let fd = overlay_view(path).ok()?;
    let file = File::from(fd);
    is_protected(&file).then(|| file.into())
}

// The new mount API (fsopen/fsconfig/fsmount), not wrapped by nix 0.29.
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;

fn check(ret: libc::c_long, what: &str) -> std::result::Result<OwnedFd, String> {
    if ret < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        // SAFETY: the syscall returned a new file descriptor that we own.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) })
    }
}

/// A detached mount of a new filesystem of `fstype`, configured by `options`.
fn detached_mount(
    fstype: &CStr,
    options: &[(&CStr, &CStr)],
) -> std::result::Result<OwnedFd, String> {
    // SAFETY: plain syscalls on valid C strings; results are checked.
    let fs = check(
        unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) },
        "fsopen",
    )?;
    for (key, value) in options {
        let ret = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        };
        if ret < 0 {
            return Err(format!(
                "fsconfig {key:?}: {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_char>(),
            0,
        )
    };
    if ret < 0 {
        return Err(format!(
            "creating {fstype:?}: {}",
            std::io::Error::last_os_error()
        ));
    }
    check(
        unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                fs.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
            )
        },
        "fsmount",
    )
}

/// An empty directory on the host, the overlay's second layer where the
/// kernel refuses a detached one (made by the first create that found so;
/// only root can write under /run).
const EMPTY_LAYER: &str = "/run/sbx-oci-empty-layer";

/// `path` opened through a read-only overlay of its directory. overlayfs
/// needs two lower layers when it has no upper one; the second is empty: a
/// detached tmpfs, or [`EMPTY_LAYER`] where that directory exists. Layers
/// must be attached mounts before Linux 6.15 or so (6.1 logs "overlayfs:
/// failed to clone lowerpath" for a detached one and fails): the first
/// create there makes the directory, and later ones use it at once (no
/// kernel message on each). The detached tmpfs is the cheaper one where it
/// works (an attached layer is cloned, ~0.9 ms more per run measured on
/// 6.18).
fn overlay_view(path: &Path) -> std::result::Result<OwnedFd, String> {
    let dir = path.parent().ok_or("binary has no parent directory")?;
    let name = path.file_name().ok_or("binary has no file name")?;
    let dir_bytes = dir.as_os_str().as_bytes();
    if dir_bytes.iter().any(|b| matches!(b, b':' | b',' | b'\\')) {
        return Err(format!(
            "directory {} has characters overlayfs options cannot hold",
            dir.display()
        ));
    }
    let detached = || -> std::result::Result<OwnedFd, String> {
        let empty = detached_mount(c"tmpfs", &[])?;
        let empty = PathBuf::from(format!("/proc/self/fd/{}", empty.as_raw_fd()));
        overlay_of(dir, &empty)
    };
    let attached = || match empty_layer() {
        Some(empty) => overlay_of(dir, Path::new(empty)),
        None => Err(format!("cannot make {EMPTY_LAYER}")),
    };
    let overlay = match Path::new(EMPTY_LAYER).is_dir() {
        true => attached()?,
        false => match detached() {
            Ok(fd) => fd,
            Err(first) => attached().map_err(|e| format!("{first}; with {EMPTY_LAYER}: {e}"))?,
        },
    };
    let name = CString::new(name.as_bytes()).map_err(|e| e.to_string())?;
    // SAFETY: openat on a valid directory fd and C string.
    check(
        unsafe {
            libc::openat(
                overlay.as_raw_fd(),
                name.as_ptr(),
                libc::O_PATH | libc::O_CLOEXEC,
            ) as libc::c_long
        },
        "open through overlay",
    )
}

/// [`EMPTY_LAYER`], made if missing; `None` if it cannot be, or is not a
/// plain directory.
fn empty_layer() -> Option<&'static str> {
    match std::fs::create_dir(EMPTY_LAYER) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(_) => return None,
    }
    std::fs::symlink_metadata(EMPTY_LAYER)
        .is_ok_and(|m| m.is_dir())
        .then_some(EMPTY_LAYER)
}

/// A detached read-only overlay of `dir` over `below`.
fn overlay_of(dir: &Path, below: &Path) -> std::result::Result<OwnedFd, String> {
    let lower = format!("{}:{}", dir.display(), below.display());
    let lower = CString::new(lower).map_err(|e| e.to_string())?;
    detached_mount(c"overlay", &[(c"lowerdir", &lower)])
}

/// A write-sealed in-memory copy of `path` (what runc and youki do).
fn sealed_copy(path: &Path) -> std::result::Result<OwnedFd, String> {
    let fd = memfd_create(
        c"sbx-oci",
        MemFdCreateFlag::MFD_CLOEXEC | MemFdCreateFlag::MFD_ALLOW_SEALING,
    )
    .map_err(|e| format!("memfd_create: {e}"))?;
    let mut src = File::open(path).map_err(|e| format!("open: {e}"))?;
    let mut dst = File::from(fd);
    std::io::copy(&mut src, &mut dst).map_err(|e| format!("copy: {e}"))?;
    let seals = SealFlag::F_SEAL_SEAL
        | SealFlag::F_SEAL_SHRINK
        | SealFlag::F_SEAL_GROW
        | SealFlag::F_SEAL_WRITE;
    fcntl(dst.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals)).map_err(|e| format!("seal: {e}"))?;
    Ok(dst.into())
}

fn reexec(fd: OwnedFd, host_path: &Path) -> Result<()> {
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).unwrap_or_default())
        .collect();
    let mut host = HOST_EXE_ENV.as_bytes().to_vec();
    host.push(b'=');
    host.extend_from_slice(host_path.as_os_str().as_bytes());
    let env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != HOST_EXE_ENV)
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv).unwrap_or_default()
        })
        .chain(CString::new(host).ok())
        .collect();
    let err = execveat(
        Some(fd.as_raw_fd()),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .unwrap_err();
    Err(Error::SelfExe(format!(
        "cannot re-execute the protected binary: {err}"
    )))
}

#[cfg(all(test, target_arch = "x86_64", target_os = "linux"))]
mod tests {
    #[test]
    fn a_process_that_is_not_the_runtime_has_no_host_path() {
        // The test binary links the library, as the API's caller does: its
        // /proc/self/exe is a program that must never run as a hook.
        let msg = super::host_path().unwrap_err().to_string();
        assert!(msg.contains("not the sbx-oci binary"), "{msg}");
    }

    #[test]
    fn the_entry_point_names_what_ensure_protected_names() {
        assert_eq!(sbx_oci_early::HOST_EXE_ENV, super::HOST_EXE_ENV.as_bytes());
        let layer = sbx_oci_early::EMPTY_LAYER_C;
        assert_eq!(layer.last(), Some(&0));
        assert_eq!(&layer[..layer.len() - 1], super::EMPTY_LAYER.as_bytes());
    }
}
