//! Copying directory trees between two roots that may hold hostile content
//! (a container's rootfs, a container's /proc/<pid>/root): every path is
//! resolved inside its root (RESOLVE_IN_ROOT, no magic links) and no symlink
//! is ever followed, so the content cannot lead a copy out of either root.
//! Used by tmpcopyup and by sandbox snapshots.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, fchmod, fchmodat, fstat, fstatat, mkdirat, mknodat,
};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, symlinkat, unlinkat};

/// Opens directory `dest` of `root`, resolved inside `root`.
pub fn open_in_root(root: &Path, dest: &str) -> nix::Result<OwnedFd> {
    let root = open_fd(None, root, OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = openat2(root.as_raw_fd(), dest, how)?;
    // SAFETY: openat2 returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn open_fd<P: ?Sized + nix::NixPath>(
    dir: Option<RawFd>,
    path: &P,
    flags: OFlag,
) -> nix::Result<OwnedFd> {
    let fd = openat(dir, path, flags | OFlag::O_CLOEXEC, Mode::empty())?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copies the entries of `src` into `dst` (a directory on device `dev`).
pub fn copy_dir(src: &OwnedFd, dst: &OwnedFd, dev: libc::dev_t) -> nix::Result<()> {
    for name in list(src)? {
        copy_entry(src, dst, &name, dev)?;
    }
    Ok(())
}

/// The names in directory `dir`, without "." and "..".
fn list(dir: &OwnedFd) -> nix::Result<Vec<OsString>> {
    let entries = Dir::openat(
        Some(dir.as_raw_fd()),
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in entries.into_iter() {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if name != "." && name != ".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// Empties directory `dir` without following symlinks; mount points (and
/// what is under them) are left alone.
pub fn remove_contents(dir: &OwnedFd) -> nix::Result<()> {
    let dev = fstat(dir.as_raw_fd())?.st_dev;
    for name in list(dir)? {
        let st = fstatat(
            Some(dir.as_raw_fd()),
            name.as_os_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )?;
        let is_dir = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT) == SFlag::S_IFDIR;
        if !is_dir {
            unlinkat(
                Some(dir.as_raw_fd()),
                name.as_os_str(),
                UnlinkatFlags::NoRemoveDir,
            )?;
            continue;
        }
        let sub = open_fd(
            Some(dir.as_raw_fd()),
            name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        )?;
        if fstat(sub.as_raw_fd())?.st_dev != dev {
            continue;
        }
        remove_contents(&sub)?;
        unlinkat(
            Some(dir.as_raw_fd()),
            name.as_os_str(),
            UnlinkatFlags::RemoveDir,
        )?;
    }
    Ok(())
}

fn copy_entry(src: &OwnedFd, dst: &OwnedFd, name: &OsStr, dev: libc::dev_t) -> nix::Result<()> {
    let (s, d) = (src.as_raw_fd(), dst.as_raw_fd());
    let st = fstatat(Some(s), name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
    let kind = SFlag::from_bits_truncate(st.st_mode & libc::S_IFMT);
    let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
    let (uid, gid) = (
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    );
    let nofollow = OFlag::O_NOFOLLOW;
    match kind {
        SFlag::S_IFDIR => {
            let created = match mkdirat(Some(d), name, Mode::from_bits_truncate(0o700)) {
                Ok(()) => true,
                Err(Errno::EEXIST) => false,
                Err(e) => return Err(e),
            };
            let sub_dst = match open_fd(
                Some(d),
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow,
            ) {
                Ok(fd) => fd,
                // Something else than a directory is already there.
                Err(Errno::ENOTDIR | Errno::ELOOP) if !created => return Ok(()),
                Err(e) => return Err(e),
            };
            if fstat(sub_dst.as_raw_fd())?.st_dev != dev {
                return Ok(()); // a nested mount: not ours to fill
            }
            let sub_src = open_fd(
                Some(s),
                name,
                OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow,
            )?;
            copy_dir(&sub_src, &sub_dst, dev)?;
            if created {
                fchown(sub_dst.as_raw_fd(), uid, gid)?;
                fchmod(sub_dst.as_raw_fd(), perm)?;
            }
        }
        SFlag::S_IFREG => {
            let out = match open_fd(
                Some(d),
                name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | nofollow,
            ) {
                Ok(fd) => fd,
                Err(Errno::EEXIST) => return Ok(()),
                Err(e) => return Err(e),
            };
            let input = open_fd(Some(s), name, OFlag::O_RDONLY | nofollow)?;
            let (mut input, mut out) = (File::from(input), File::from(out));
            std::io::copy(&mut input, &mut out)
                .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
            fchown(out.as_raw_fd(), uid, gid)?;
            fchmod(out.as_raw_fd(), perm)?;
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(Some(s), name)?;
            match symlinkat(target.as_os_str(), Some(d), name) {
                Ok(()) => fchownat(Some(d), name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?,
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        SFlag::S_IFCHR | SFlag::S_IFBLK | SFlag::S_IFIFO => {
            match mknodat(Some(d), name, kind, Mode::empty(), st.st_rdev) {
                Ok(()) => {
                    fchownat(Some(d), name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
                    fchmodat(Some(d), name, perm, FchmodatFlags::NoFollowSymlink).or_else(|e| {
                        if e == Errno::EOPNOTSUPP {
                            Ok(())
                        } else {
                            Err(e)
                        }
                    })?;
                }
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        _ => {} // sockets: nothing to copy, as runc
    }
    Ok(())
}
