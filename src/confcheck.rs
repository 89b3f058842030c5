//! Checks and fixes of a bundle's config.json that libcontainer 0.7 does
//! not make, applied by `create` before libcontainer sees the config (the
//! fix goes into the shadow config of [`crate::copyup`]):
//!
//! - **Mounts into /proc** (the class of CVE-2019-16884 and CVE-2025-52881:
//!   a mount over /proc/self/attr, /proc/sys/... defeats LSM labels and the
//!   masked and read-only paths). As runc ≥ 1.2: /proc itself only as a
//!   `proc` mount, and below it only the files lxcfs emulates. The
//!   destination is resolved in the rootfs, symlinks included, as the mount
//!   itself would be.
//! - **A device cgroup without a leading deny-all** (GHSA-g54h-m393-cpwq):
//!   a new v1 devices cgroup inherits its parent's allow-all, and
//!   libcontainer only adds the config's rules and the default devices. A
//!   deny-all is put first, as runc always does.
//!
//! Both are decided by [`inspect`], a parse of only the fields they need
//! (serde skips the rest without building it); only a config that lacks
//! the deny-all is parsed whole and rewritten. `sandbox` configs, whose
//! mounts and devices sbx-oci writes itself from a validated spec, skip it.

use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

/// Files below /proc that may be mount destinations: those lxcfs emulates
/// (as runc allows).
const PROC_FILES: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/pressure/cpu",
    "/proc/pressure/io",
    "/proc/pressure/memory",
    "/proc/sys/kernel/ns_last_pid",
];

/// The fields of a config these checks read; serde skips the others.
#[derive(Deserialize)]
struct Partial {
    root: Option<PartialRoot>,
    #[serde(default)]
    mounts: Vec<PartialMount>,
    linux: Option<PartialLinux>,
}

#[derive(Deserialize)]
struct PartialRoot {
    path: PathBuf,
}

#[derive(Deserialize)]
struct PartialMount {
    destination: PathBuf,
    #[serde(rename = "type")]
    typ: Option<String>,
}

#[derive(Deserialize)]
struct PartialLinux {
    resources: Option<PartialResources>,
}

#[derive(Deserialize)]
struct PartialResources {
    devices: Option<Vec<Value>>,
}

/// What `create` must do about a config before libcontainer runs it.
#[derive(Debug, PartialEq, Eq)]
pub struct Inspection {
    /// The device cgroup list does not start with a deny-all: the config
    /// must be rewritten ([`deny_devices_first`]).
    pub deny_devices: bool,
}

/// Checks the config.json `bytes` of the bundle `bundle`: a mount into
/// /proc is an error that names it, a missing deny-all is reported for the
/// caller to add. A config that does not parse is an error (it would not
/// run either).
pub fn inspect(bytes: &[u8], bundle: &Path) -> Result<Inspection, String> {
    let p: Partial = serde_json::from_slice(bytes)
        .map_err(|e| format!("config.json is not a valid OCI config: {e}"))?;
    let rootfs = bundle.join(p.root.map(|r| r.path).unwrap_or_default());
    for (i, m) in p.mounts.iter().enumerate() {
        check_mount(i, &m.destination, m.typ.as_deref(), &rootfs)?;
    }
    let devices = p.linux.and_then(|l| l.resources).and_then(|r| r.devices);
    let first = devices.as_deref().unwrap_or_default().first();
    Ok(Inspection {
        deny_devices: !first.is_some_and(is_deny_all),
    })
}

fn is_deny_all(d: &Value) -> bool {
    d.get("allow") == Some(&Value::Bool(false))
        && d.get("access").and_then(Value::as_str) == Some("rwm")
        && d.get("type")
            .and_then(Value::as_str)
            .is_none_or(|t| t == "a")
        && d.get("major").is_none_or(|m| m.is_null() || m == -1)
        && d.get("minor").is_none_or(|m| m.is_null() || m == -1)
}

/// Refuses mount `i` when it lands in /proc: /proc itself only as procfs,
/// below it only lxcfs's files. Its destination is resolved in `rootfs`,
/// symlinks included.
fn check_mount(i: usize, dest: &Path, typ: Option<&str>, rootfs: &Path) -> Result<(), String> {
    let resolved = resolve_in_root(rootfs, dest);
    let Ok(below) = resolved.strip_prefix("/proc") else {
        return Ok(());
    };
    let what = format!("mounts[{i}] ({:?})", dest.display().to_string());
    if below.as_os_str().is_empty() {
        let ty = typ.unwrap_or_default();
        if ty != "proc" {
            return Err(format!(
                "{what}: /proc must be mounted as type \"proc\", not {:?}",
                if ty.is_empty() { "bind" } else { ty }
            ));
        }
        return Ok(());
    }
    if PROC_FILES.iter().any(|f| Path::new(f) == resolved) {
        return Ok(());
    }
    Err(format!(
        "{what}: a mount inside /proc ({}) is refused: it would defeat the kernel's and the \
         runtime's protections of /proc (only /proc itself, and lxcfs's files such as \
         /proc/meminfo, may be mount points)",
        resolved.display()
    ))
}

/// Where `dest` lands in `rootfs`, as an absolute path inside it: `.` and
/// `..` applied (never above the root) and symlinks of the rootfs followed
/// within it (at most 40), as libcontainer's mount would.
pub fn resolve_in_root(rootfs: &Path, dest: &Path) -> PathBuf {
    let mut done = PathBuf::from("/");
    let mut todo: Vec<std::ffi::OsString> = dest
        .components()
        .rev()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        if part == ".." {
            done.pop();
            continue;
        }
        let next = done.join(&part);
        let on_host = rootfs.join(next.strip_prefix("/").unwrap_or(&next));
        match std::fs::read_link(&on_host) {
            Ok(target) if links < 40 => {
                links += 1;
                if target.is_absolute() {
                    done = PathBuf::from("/");
                }
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => todo.push(n.to_owned()),
                        Component::ParentDir => todo.push("..".into()),
                        _ => {}
                    }
                }
            }
            _ => done = next,
        }
    }
    done
}

/// Puts a deny-all first in `linux.resources.devices` unless it is there;
/// returns whether the config changed.
pub fn deny_devices_first(spec: &mut Value) -> bool {
    let Some(linux) = spec.get_mut("linux").and_then(Value::as_object_mut) else {
        return false; // not a Linux container: libcontainer refuses it
    };
    let resources = linux.entry("resources").or_insert_with(|| json!({}));
    let Some(resources) = resources.as_object_mut() else {
        return false;
    };
    let devices = resources.entry("devices").or_insert_with(|| json!([]));
    let Some(list) = devices.as_array_mut() else {
        return false;
    };
    if list.first().is_some_and(is_deny_all) {
        return false;
    }
    list.insert(0, json!({"allow": false, "access": "rwm"}));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspect_json(mut v: Value, root: &Path) -> Result<Inspection, String> {
        v["root"] = json!({ "path": root });
        inspect(&serde_json::to_vec(&v).unwrap(), Path::new("/"))
    }

    #[test]
    fn the_configs_we_ship_and_write_need_no_rewrite() {
        let golden = |text: &str| {
            let v: Value = serde_json::from_str(text).unwrap();
            serde_json::to_vec(&v["config"]).unwrap()
        };
        for (name, bytes) in [
            (
                "bundles/config.json",
                include_bytes!("../bundles/config.json").to_vec(),
            ),
            (
                "minimal",
                golden(include_str!("../tests/golden/minimal.json")),
            ),
            (
                "agent-egress",
                golden(include_str!("../tests/golden/agent-egress.json")),
            ),
        ] {
            let got = inspect(&bytes, Path::new("/nonexistent"));
            assert_eq!(
                got,
                Ok(Inspection {
                    deny_devices: false
                }),
                "{name}"
            );
        }
        for config in [
            json!({"linux": {}}),
            json!({"linux": {"resources": {"devices": [{"allow": true, "access": "rwm"}]}}}),
            // A decoy elsewhere does not count.
            json!({"devices": [{"allow": false, "access": "rwm"}], "linux": {}}),
        ] {
            let got = inspect_json(config, Path::new("/nonexistent"));
            assert_eq!(got, Ok(Inspection { deny_devices: true }));
        }
        let err = inspect(b"{ not json", Path::new("/")).unwrap_err();
        assert!(err.contains("not a valid OCI config"), "{err}");
    }

    #[test]
    fn mounts_into_proc_are_refused_but_procfs_and_lxcfs_files() {
        let root = std::env::temp_dir().join(format!("sbx-confcheck-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::os::unix::fs::symlink("/proc/self", root.join("link")).unwrap();
        std::os::unix::fs::symlink("../proc", root.join("rel")).unwrap();
        let spec = |dest: &str, ty: &str| json!({"mounts": [{"destination": dest, "type": ty}]});
        for (dest, ty) in [
            ("/proc", "proc"),
            ("/proc/meminfo", "bind"),
            ("/proc/sys/kernel/ns_last_pid", "bind"),
            ("/sys", "sysfs"),
            ("/procfoo", "tmpfs"),
        ] {
            assert!(inspect_json(spec(dest, ty), &root).is_ok(), "{dest}");
        }
        for (dest, ty, want) in [
            ("/proc", "tmpfs", "must be mounted as type \"proc\""),
            ("/proc/self/attr", "tmpfs", "inside /proc (/proc/self/attr)"),
            (
                "/proc/sys/kernel",
                "bind",
                "inside /proc (/proc/sys/kernel)",
            ),
            (
                "//proc/./sys/../sys/kernel",
                "bind",
                "inside /proc (/proc/sys/kernel)",
            ),
            ("/tmp/../../proc/sys", "bind", "inside /proc (/proc/sys)"),
            ("/link/attr", "tmpfs", "inside /proc (/proc/self/attr)"),
            (
                "/rel/sysrq-trigger",
                "bind",
                "inside /proc (/proc/sysrq-trigger)",
            ),
        ] {
            let err = inspect_json(spec(dest, ty), &root).unwrap_err();
            assert!(err.contains(want), "{dest}: {err}");
            assert!(err.starts_with("mounts[0]"), "{err}");
        }
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_deny_all_goes_first_unless_it_is_there() {
        let mut none = json!({"linux": {}});
        assert!(deny_devices_first(&mut none));
        assert_eq!(
            none["linux"]["resources"]["devices"],
            json!([{"allow": false, "access": "rwm"}])
        );
        let mut allowing = json!({"linux": {"resources": {"devices": [
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}}});
        assert!(deny_devices_first(&mut allowing));
        assert_eq!(allowing["linux"]["resources"]["devices"][0]["allow"], false);
        assert_eq!(allowing["linux"]["resources"]["devices"][1]["allow"], true);
        let mut fine =
            json!({"linux": {"resources": {"devices": [{"allow": false, "access": "rwm"}]}}});
        assert!(!deny_devices_first(&mut fine));
        let mut partial = json!({"linux": {"resources": {"devices": [
            {"allow": false, "type": "c", "major": 1, "access": "rwm"}]}}});
        assert!(
            deny_devices_first(&mut partial),
            "a deny of one major is not deny-all"
        );
    }
}
