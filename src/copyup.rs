//! runc's `tmpcopyup` mount option: a tmpfs mounted over a directory of the
//! rootfs starts with a copy of that directory's content. podman adds it to
//! every tmpfs it asks for (`--tmpfs`, and /tmp, /run, /var/tmp of
//! `--read-only`).
//!
//! libcontainer 0.7 does not know the option and hands it to mount(2) as
//! tmpfs data, which fails with EINVAL. So, only for a config.json that uses
//! it, `create` gives libcontainer a copy of the config without the option
//! (in our state directory, with root.path made absolute) and, once the
//! container is created and before its process starts, copies each such
//! directory from the rootfs into the container's tmpfs through
//! `/proc/<pid>/root`. Both sides are opened with `RESOLVE_IN_ROOT` and walked
//! without following symlinks, so the image's content cannot lead the copy out
//! of either root. Entries already in the tmpfs (mount points libcontainer
//! created for nested mounts) are left alone, and the copy never descends into
//! another file system.
//!
//! The same shadow config carries the prestart/createRuntime hook rewrite of
//! `hooks::wrap_for_state` when the config has such hooks, the network
//! hook of `network` when its annotations ask for one, and the device
//! cgroup's leading deny-all of `confcheck` when the config lacks it; and a
//! config with a mount into /proc is refused here (`confcheck`).
//!
//! Differences from runc: createContainer hooks see the rewritten bundle's
//! path (the stored state, and prestart/createRuntime hooks, name the real
//! bundle), and a read-only tmpfs with tmpcopyup is refused.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use nix::errno::Errno;
use nix::sys::stat::{Mode, fchmod, fstat};
use nix::sys::statfs::{TMPFS_MAGIC, fstatfs};
use serde_json::Value;

use crate::{Error, Result};

const OPTION: &str = "tmpcopyup";

/// What `create` must do for a bundle whose config uses tmpcopyup.
pub struct Plan {
    bundle: PathBuf,
    shadow: PathBuf,
    rootfs: PathBuf,
    dests: Vec<String>,
}

impl Plan {
    /// The bundle directory to give libcontainer.
    pub fn shadow_bundle(&self) -> &Path {
        &self.shadow
    }

    /// After libcontainer created the container: record the real bundle,
    /// drop the rewritten config and fill the tmpfs mounts.
    pub fn finish(self, container: &mut Container) -> Result<()> {
        let id = container.id().to_owned();
        container.state.bundle = self.bundle.clone();
        container
            .save()
            .map_err(|e| Error::container("create", &id, e))?;
        let _ = std::fs::remove_dir_all(&self.shadow);
        let pid = container.pid().ok_or_else(|| {
            Error::InvalidArgument(format!("container {id:?} has no init process to copy into"))
        })?;
        let target_root = PathBuf::from(format!("/proc/{pid}/root"));
        for dest in &self.dests {
            copy_up(&self.rootfs, &target_root, dest).map_err(|e| {
                Error::io(format!("tmpcopyup of {dest} in container {id:?}"), e.into())
            })?;
        }
        Ok(())
    }
}

/// Returns `None` (the common case, decided by substring tests) when the
/// bundle's config.json neither uses tmpcopyup nor has prestart or
/// createRuntime hooks (which `hooks::wrap_for_state` rewrites into the same
/// shadow config) nor network annotations (`network::inject`,
/// which writes the policy into `state_dir`) nor, with `checks`, lacks the
/// device cgroup's deny-all; otherwise writes the rewritten config into
/// `state_dir/@bundle` and returns the plan. With `checks`, a config that
/// mounts into /proc is refused (`confcheck`).
pub fn prepare(bundle: &Path, state_dir: &Path, checks: bool) -> Result<Option<Plan>> {
    use crate::network as network_hook;
    let shadow = &state_dir.join("@bundle");
    let path = bundle.join("config.json");
    let bytes = std::fs::read(&path)
        .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
    let copyup = bytes.windows(OPTION.len()).any(|w| w == OPTION.as_bytes());
    let hooks = crate::hooks::may_need_wrap(&bytes);
    let network = network_hook::may_need(&bytes);
    let bad = |reason: String| Error::Bundle {
        path: bundle.to_owned(),
        reason,
    };
    let deny_devices = checks
        && crate::confcheck::inspect(&bytes, bundle)
            .map_err(bad)?
            .deny_devices;
    if !copyup && !hooks && !network && !deny_devices {
        return Ok(None);
    }
    let mut spec: Value = serde_json::from_slice(&bytes)
        .map_err(|e| bad(format!("config.json is not a valid OCI config: {e}")))?;
    let devices_denied = deny_devices && crate::confcheck::deny_devices_first(&mut spec);
    let dests = if copyup {
        strip(&mut spec).map_err(bad)?
    } else {
        Vec::new()
    };
    let wrapped = hooks && crate::hooks::wrap_for_state(&mut spec, bundle);
    // After the wrap: the network hook needs no state rewrite.
    let injected =
        network && network_hook::inject(&mut spec, &state_dir.join(network_hook::POLICY_FILE))?;
    if dests.is_empty() && !wrapped && !injected && !devices_denied {
        return Ok(None);
    }
    let root = spec
        .pointer_mut("/root/path")
        .ok_or_else(|| bad("config.json has no root.path".into()))?;
    let rootfs = bundle.join(root.as_str().unwrap_or_default());
    *root = Value::String(rootfs.to_string_lossy().into_owned());

    std::fs::create_dir(shadow)
        .map_err(|e| Error::io(format!("cannot create {}", shadow.display()), e))?;
    let out = shadow.join("config.json");
    let json = serde_json::to_vec(&spec).map_err(|e| bad(format!("cannot encode config: {e}")))?;
    std::fs::write(&out, json)
        .map_err(|e| Error::io(format!("cannot write {}", out.display()), e))?;
    Ok(Some(Plan {
        bundle: bundle.to_owned(),
        shadow: shadow.to_owned(),
        rootfs,
        dests,
    }))
}

/// Removes the option from every mount; returns the tmpfs destinations that
/// had it, in mount order.
fn strip(spec: &mut Value) -> std::result::Result<Vec<String>, String> {
    let mut dests = Vec::new();
    let Some(mounts) = spec.get_mut("mounts").and_then(Value::as_array_mut) else {
        return Ok(dests);
    };
    for mount in mounts {
        let is_tmpfs = mount.get("type").and_then(Value::as_str) == Some("tmpfs");
        let dest = mount
            .get("destination")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some(options) = mount.get_mut("options").and_then(Value::as_array_mut) else {
            continue;
        };
        let before = options.len();
        options.retain(|o| o.as_str() != Some(OPTION));
        // runc ignores the option on anything but tmpfs.
        if options.len() == before || !is_tmpfs {
            continue;
        }
        if options.iter().any(|o| o.as_str() == Some("ro")) {
            return Err(format!(
                "mount {dest}: tmpcopyup on a read-only tmpfs is not supported"
            ));
        }
        dests.push(dest);
    }
    Ok(dests)
}

fn copy_up(rootfs: &Path, target_root: &Path, dest: &str) -> nix::Result<()> {
    use crate::safecopy::{copy_dir, open_in_root};
    let src = match open_in_root(rootfs, dest) {
        Ok(fd) => fd,
        // Nothing under the mount point in the image: nothing to copy.
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(()),
        Err(e) => return Err(e),
    };
    let dst = open_in_root(target_root, dest)?;
    if fstatfs(&dst)?.filesystem_type() != TMPFS_MAGIC {
        return Err(Errno::ENOTSUP);
    }
    let dev = fstat(dst.as_raw_fd())?.st_dev;
    copy_dir(&src, &dst, dev)?;
    // runc gives the tmpfs the mode of the directory it covers.
    let mode = fstat(src.as_raw_fd())?.st_mode;
    fchmod(dst.as_raw_fd(), Mode::from_bits_truncate(mode & 0o7777))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_the_option_and_lists_tmpfs_destinations() {
        let mut spec = serde_json::json!({"mounts": [
            {"destination": "/run", "type": "tmpfs", "options": ["rw", "tmpcopyup"]},
            {"destination": "/tmp", "type": "tmpfs", "options": ["rw"]},
            {"destination": "/x", "type": "bind", "options": ["bind", "tmpcopyup"]},
        ]});
        assert_eq!(strip(&mut spec).unwrap(), vec!["/run".to_owned()]);
        assert!(!spec.to_string().contains(OPTION));
    }

    #[test]
    fn refuses_a_read_only_tmpfs() {
        let mut spec = serde_json::json!({"mounts": [
            {"destination": "/run", "type": "tmpfs", "options": ["ro", "tmpcopyup"]},
        ]});
        assert!(strip(&mut spec).unwrap_err().contains("read-only"));
    }
}
