//! `sandbox snapshot NAME SNAP` / `sandbox restore NAME SNAP`: the sandbox's
//! writable state — its workdir — saved into the state directory and put
//! back. The sandbox is frozen meanwhile, so a snapshot is consistent. Both
//! directions go through `safecopy`: the sandbox's content is hostile and no
//! link in it is followed.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use libcontainer::container::{Container, ContainerStatus};
use nix::fcntl::OFlag;

use super::{SNAPSHOT_DIR, load_saved};
use crate::ops::{Context, wrong_state};
use crate::safecopy::{copy_dir, open_fd, open_in_root, remove_contents};
use crate::{Error, Result, cli, store};

pub fn snapshot(ctx: &Context, args: &cli::SandboxSnapshot) -> Result<()> {
    let (container, workdir, dir) = locate(ctx, args)?;
    if dir.exists() {
        return Err(Error::InvalidArgument(format!(
            "snapshot {:?} of sandbox {:?} already exists; choose another name",
            args.snapshot, args.name
        )));
    }
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    let what = format!("snapshot of sandbox {:?}", args.name);
    let copied = frozen(&container, &what, || {
        let src = open_in_root(&container_root(&container)?, &workdir)?;
        let dst = open_fd(None, &dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        let dev = nix::sys::stat::fstat(dst.as_raw_fd())?.st_dev;
        copy_dir(&src, &dst, dev)
    });
    if copied.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    copied
}

pub fn restore(ctx: &Context, args: &cli::SandboxSnapshot) -> Result<()> {
    let (container, workdir, dir) = locate(ctx, args)?;
    if !dir.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "sandbox {:?} has no snapshot {:?} (take one with `sbx-oci sandbox snapshot`)",
            args.name, args.snapshot
        )));
    }
    let what = format!("restore of sandbox {:?}", args.name);
    frozen(&container, &what, || {
        let dst = open_in_root(&container_root(&container)?, &workdir)?;
        remove_contents(&dst)?;
        let src = open_fd(None, &dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        let dev = nix::sys::stat::fstat(dst.as_raw_fd())?.st_dev;
        copy_dir(&src, &dst, dev)
    })
}

/// The live sandbox, its workdir, and the snapshot's directory.
fn locate(ctx: &Context, args: &cli::SandboxSnapshot) -> Result<(Container, String, PathBuf)> {
    let saved = load_saved(ctx, &args.name)?;
    store::validate_id(&args.snapshot).map_err(|e| {
        Error::InvalidArgument(format!(
            "snapshot name: {}",
            e.to_string().replace("container id", "name")
        ))
    })?;
    let container = ctx.store.load(&args.name)?;
    if !matches!(
        container.status(),
        ContainerStatus::Running | ContainerStatus::Paused
    ) {
        return Err(wrong_state(
            "snapshot",
            &container,
            " (the sandbox must be running)",
        ));
    }
    let dir = ctx
        .store
        .dir(&args.name)
        .join(SNAPSHOT_DIR)
        .join(&args.snapshot);
    Ok((container, saved.workdir.display().to_string(), dir))
}

fn container_root(c: &Container) -> nix::Result<PathBuf> {
    let pid = c.pid().ok_or(nix::errno::Errno::ESRCH)?;
    Ok(Path::new("/proc").join(pid.to_string()).join("root"))
}

/// Runs `f` with the sandbox frozen (unless it already was), thawing after.
/// `what` names the operation in an error.
fn frozen<T>(c: &Container, what: &str, f: impl FnOnce() -> nix::Result<T>) -> Result<T> {
    let mut c = c.clone();
    let was_running = c.status() == ContainerStatus::Running;
    if was_running {
        c.pause()
            .map_err(|e| Error::container("pause (for a snapshot)", c.id(), e))?;
    }
    let result = f().map_err(|e| Error::io(what, e.into()));
    if was_running {
        let _ = c.resume();
    }
    result
}
