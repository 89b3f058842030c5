//! Root skeletons of "host" sandboxes: `<root>/@rootfs/<key>/`, a directory
//! holding the mount points, the merged-/usr links and the copied /etc
//! entries of one plan, shared by every sandbox with that plan. Its key is
//! the hash of the plan, which includes the fingerprint of the host's /etc
//! entries, so a change on the host makes the next sandbox build a new one
//! instead of using a stale copy.
//!
//! A sandbox holds a shared `flock` of its skeleton from lookup until its
//! config.json, which names the skeleton, is written (and no longer: no
//! descriptor of the host's state root may reach the sandbox's processes).
//! Pruning takes the lock exclusively, without waiting, and then removes
//! only skeletons that nobody used for [`IDLE`] and that no sandbox's config
//! names; that keeps the skeletons of plans in use, and removes those the
//! host's changes left behind.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::fnv::fnv1a;
use crate::ops::Context;
use crate::sandbox::RootfsPlan;
use crate::sandbox::host;
use crate::{Error, Result};

/// Under the state root.
pub const SKELETON_DIR: &str = "@rootfs";

/// A skeleton nobody used for this long, and that no sandbox's config names,
/// is removed when another one is built, and by `gc`.
pub const IDLE: Duration = Duration::from_secs(600);

/// How often a skeleton in use is marked used.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// A skeleton in use: the path, and the shared lock that keeps pruning away
/// until the sandbox's config names it (drop it then, before anything forks).
pub struct Skeleton {
    pub path: PathBuf,
    _lock: File,
}

/// The skeleton of `plan`, built if there is none.
pub fn acquire(ctx: &Context, plan: &RootfsPlan) -> Result<Skeleton> {
    let key = fnv1a(&serde_json::to_vec(plan).unwrap_or_default());
    let parent = ctx.store.root().join(SKELETON_DIR);
    let path = parent.join(format!("{key:016x}"));
    // A skeleton can be pruned between its build and our lock (only by a
    // prune that saw it idle, so hardly ever): build again.
    for attempt in 0..3 {
        if let Some(lock) = open_shared(&path) {
            return Ok(Skeleton { path, _lock: lock });
        }
        build(&parent, &path, plan)?;
        if attempt == 0 {
            // A new skeleton, so possibly a changed host: old ones may go.
            prune(ctx);
        }
    }
    Err(Error::io(
        format!("cannot keep {}", path.display()),
        std::io::Error::from(std::io::ErrorKind::NotFound),
    ))
}

/// Opens and share-locks `path`, and marks it used (its time is what
/// pruning goes by). None if it does not exist, or was pruned while we
/// waited for the lock (a removed directory has no links left).
fn open_shared(path: &Path) -> Option<File> {
    let dir = File::open(path).ok()?;
    // SAFETY: flock on a descriptor we own.
    if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_SH) } != 0 {
        return None;
    }
    let m = dir.metadata().ok()?;
    if m.nlink() == 0 {
        return None;
    }
    // At most once a minute: a metadata write per run is not free on a
    // journaled state root, and pruning only asks about the last 10 minutes.
    let stale = m
        .modified()
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_none_or(|age| age >= TOUCH_EVERY);
    if stale {
        // SAFETY: futimens with a null `times` sets both to now.
        unsafe { libc::futimens(dir.as_raw_fd(), std::ptr::null()) };
    }
    Some(dir)
}

/// Built aside and renamed into place: a skeleton that exists is complete,
/// and two builders racing both end up with the same one.
fn build(parent: &Path, path: &Path, plan: &RootfsPlan) -> Result<()> {
    let io = |what: &Path, e| Error::io(format!("cannot create {}", what.display()), e);
    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = parent.join(format!(".{name}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| io(&tmp, e))?;
    let built = host::materialize(plan, &tmp).and_then(|_| {
        std::fs::rename(&tmp, path).or_else(|e| {
            if path.is_dir() {
                Ok(())
            } else {
                Err(io(path, e))
            }
        })
    });
    let _ = std::fs::remove_dir_all(&tmp);
    built
}

/// Removes the skeletons nobody uses (see the module's comment), and the
/// leftovers of builds that crashed. Returns the names removed.
pub fn prune(ctx: &Context) -> Vec<String> {
    let parent = ctx.store.root().join(SKELETON_DIR);
    let Ok(entries) = std::fs::read_dir(&parent) else {
        return Vec::new();
    };
    let idle = |m: &std::fs::Metadata, age: Duration| {
        m.modified()
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|d| d >= age)
    };
    let mut removed = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let Ok(m) = e.metadata() else { continue };
        if name.starts_with('.') {
            // A build that died: a build takes milliseconds.
            if idle(&m, super::super::gc::GRACE) && std::fs::remove_dir_all(&path).is_ok() {
                removed.push(name);
            }
            continue;
        }
        if !idle(&m, IDLE) {
            continue;
        }
        let Ok(dir) = File::open(&path) else { continue };
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        // Under the lock, again: a sandbox may have taken it since, and its
        // config is written before it lets go. Configs name the skeleton by
        // its path in whatever spelling of the state root they were given:
        // the key is what counts.
        let needle = format!("/{SKELETON_DIR}/{name}\"");
        if !dir.metadata().is_ok_and(|m| idle(&m, IDLE))
            || sandbox_configs(ctx).iter().any(|c| c.contains(&needle))
        {
            continue;
        }
        // Renamed first, so no new sandbox finds it; one already waiting
        // for the lock finds it removed (no links) once we let go.
        let doomed = parent.join(format!(".old-{name}"));
        if std::fs::rename(&path, &doomed).is_ok() {
            let _ = std::fs::remove_dir_all(&doomed);
            removed.push(name);
        }
    }
    removed
}

/// The config.json of every sandbox in the state root.
fn sandbox_configs(ctx: &Context) -> Vec<String> {
    ctx.store
        .ids()
        .unwrap_or_default()
        .iter()
        .filter_map(|id| {
            std::fs::read_to_string(super::bundle_dir(ctx, id).join("config.json")).ok()
        })
        .collect()
}
