//! Root skeletons of "host" sandboxes: `<root>/@rootfs/<key>/`, a directory
//! holding the mount points, the merged-/usr links and the copied /etc
//! entries of one plan, shared by every sandbox with that plan. Its key is
//! the hash of the plan, which includes the fingerprint of the host's /etc
//! files, so a change on the host makes the next sandbox build a new one
//! instead of using a stale copy.
//!
//! A plan that copies /etc directories (`RootfsPlan::trees`) cannot be
//! fingerprinted cheaply up front: its skeleton is `<key>-<listing>/`, named
//! after what the copy was made from, and `<key>.trees` (the index) names
//! the current one with that listing. A sandbox uses the skeleton the index
//! names if every listed directory and file is unchanged, and builds a new
//! one otherwise. A copy made while the host's trees were changing is used
//! once and not indexed.
//!
//! A sandbox holds a shared `flock` of its skeleton from lookup until its
//! config.json, which names the skeleton, is written (and no longer: no
//! descriptor of the host's state root may reach the sandbox's processes).
//! Pruning takes the lock exclusively, without waiting, and then removes
//! only skeletons that nobody used for [`IDLE`] and that no sandbox's config
//! names; that keeps the skeletons of plans in use, and removes those the
//! host's changes left behind.

use std::fs::File;
use std::hash::Hasher;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::fnv::{Fnv1a, fnv1a};
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
    let key = format!(
        "{:016x}",
        fnv1a(&serde_json::to_vec(plan).unwrap_or_default())
    );
    let parent = ctx.store.root().join(SKELETON_DIR);
    let index = parent.join(format!("{key}{INDEX_SUFFIX}"));
    // A skeleton can be pruned between its build and our lock (only by a
    // prune that saw it idle, so hardly ever): build again.
    for _ in 0..3 {
        let known = match plan.trees.is_empty() {
            true => Some(key.clone()),
            false => current(&index),
        };
        if let Some(name) = known
            && let Some(lock) = open_shared(&parent.join(&name))
        {
            let path = parent.join(name);
            return Ok(Skeleton { path, _lock: lock });
        }
        let name = build(&parent, &key, &index, plan)?;
        let path = parent.join(name);
        if let Some(lock) = open_shared(&path) {
            // A new skeleton, so possibly a changed host: old ones may go.
            prune(ctx);
            return Ok(Skeleton { path, _lock: lock });
        }
    }
    Err(Error::io(
        format!("cannot keep a skeleton in {}", parent.display()),
        std::io::Error::from(std::io::ErrorKind::NotFound),
    ))
}

/// The index of a plan with trees: the skeleton's name and the listing of
/// what its trees were copied from.
const INDEX_SUFFIX: &str = ".trees";

#[derive(serde::Serialize, serde::Deserialize)]
struct Index {
    skeleton: String,
    items: Vec<host::TreeItem>,
}

/// The skeleton `index` names, if its trees are still the host's.
fn current(index: &Path) -> Option<String> {
    let index: Index = serde_json::from_slice(&std::fs::read(index).ok()?).ok()?;
    host::tree_unchanged(&index.items).then_some(index.skeleton)
}

/// Builds the skeleton of `plan` (whose key is `key`) and returns its name.
/// Built aside and renamed into place: a skeleton that exists is complete,
/// and two builders racing both end up with the same one.
fn build(parent: &Path, key: &str, index: &Path, plan: &RootfsPlan) -> Result<String> {
    let io = |what: &Path, e| Error::io(format!("cannot create {}", what.display()), e);
    std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
    let tmp = parent.join(format!(".{key}.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| io(&tmp, e))?;
    let built = host::materialize(plan, &tmp).and_then(|listing| {
        let name = match plan.trees.is_empty() {
            true => key.to_owned(),
            false => {
                let mut h = Fnv1a::default();
                h.write(&serde_json::to_vec(&listing.items).unwrap_or_default());
                if listing.racy {
                    // Its times may not show a further change: for this
                    // sandbox only (pruned once idle).
                    h.write_u128(now_nanos());
                    h.write_u32(std::process::id());
                }
                format!("{key}-{:016x}", h.finish())
            }
        };
        let path = parent.join(&name);
        std::fs::rename(&tmp, &path).or_else(|e| match path.is_dir() {
            true => Ok(()),
            false => Err(io(&path, e)),
        })?;
        if !plan.trees.is_empty() && !listing.racy {
            write_index(index, &name, listing.items);
        }
        Ok(name)
    });
    let _ = std::fs::remove_dir_all(&tmp);
    built
}

/// Points `index` at the skeleton `name` (written aside and renamed: a
/// reader sees the old index or the new one). Best effort: without an
/// index, the next sandbox builds again.
fn write_index(index: &Path, name: &str, items: Vec<host::TreeItem>) {
    let json = serde_json::to_vec(&Index {
        skeleton: name.to_owned(),
        items,
    })
    .unwrap_or_default();
    let file_name = index.file_name().unwrap_or_default().to_string_lossy();
    let tmp = index.with_file_name(format!(".{file_name}.{}", std::process::id()));
    if std::fs::write(&tmp, json).is_err() || std::fs::rename(&tmp, index).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

fn now_nanos() -> u128 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
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
    let mut indexes = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        let Ok(m) = e.metadata() else { continue };
        if name.starts_with('.') {
            // A build that died (a directory) or an index never renamed into
            // place (a file): a build takes milliseconds.
            if idle(&m, super::super::gc::GRACE)
                && (std::fs::remove_dir_all(&path).is_ok() || std::fs::remove_file(&path).is_ok())
            {
                removed.push(name);
            }
            continue;
        }
        if name.ends_with(INDEX_SUFFIX) {
            indexes.push((name, path));
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
    // An index whose skeleton is gone (a sandbox that finds none builds
    // one and writes its index again).
    for (name, path) in indexes {
        let named = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Index>(&b).ok())
            .map(|i| parent.join(i.skeleton));
        if !named.is_some_and(|p| p.is_dir()) && std::fs::remove_file(&path).is_ok() {
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
