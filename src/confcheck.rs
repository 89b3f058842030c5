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
//! Both are decided on the config's bytes first ([`needs_parse`]), so a
//! config that needs neither (every config podman, containerd and `sandbox`
//! write) costs no parse.

use std::path::{Component, Path, PathBuf};

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

/// Whether the config may need [`check_mounts`] or [`deny_devices_first`]:
/// a mount destination that mentions "proc" other than "/proc" itself, or a
/// device cgroup list that does not visibly start with a deny-all.
pub fn needs_parse(bytes: &[u8]) -> bool {
    destinations(bytes).any(|(dest, mount)| match dest {
        None => true,
        Some(b"/proc") => !is_procfs(mount),
        Some(d) => contains(d, b"proc"),
    }) || !denies_all_first(bytes)
}

/// Whether a mount object's text (flat: its only nested value is the
/// options list) says `"type": "proc"`.
fn is_procfs(mount: &[u8]) -> bool {
    let squeezed: Vec<u8> = mount
        .iter()
        .filter(|b| !b.is_ascii_whitespace())
        .copied()
        .collect();
    contains(&squeezed, br#""type":"proc""#)
}

/// The string values of `"destination"` keys, roughly, with the text of
/// the object around each (from the `{` before to the `}` after): `None`
/// for a value this scan cannot read (an escape, or not a string), which
/// then counts as suspect.
fn destinations(bytes: &[u8]) -> impl Iterator<Item = (Option<&[u8]>, &[u8])> {
    const KEY: &[u8] = b"\"destination\"";
    let mut at = 0;
    std::iter::from_fn(move || {
        let key = at + find(&bytes[at..], KEY)?;
        let start = key + KEY.len();
        at = start;
        let open = bytes[..key].iter().rposition(|b| *b == b'{').unwrap_or(0);
        let close = bytes[start..]
            .iter()
            .position(|b| *b == b'}')
            .map_or(bytes.len(), |p| start + p);
        let mount = &bytes[open..close];
        let rest = skip_ws(&bytes[start..]);
        let Some(rest) = rest.strip_prefix(b":") else {
            return Some((None, mount));
        };
        let Some(value) = skip_ws(rest).strip_prefix(b"\"") else {
            return Some((None, mount));
        };
        let end = value.iter().position(|b| *b == b'"' || *b == b'\\');
        Some(match end {
            Some(e) if value[e] == b'"' => (Some(&value[..e]), mount),
            _ => (None, mount),
        })
    })
}

/// Whether the first `"devices"` key's list starts with a deny-all: the
/// spellings runc, podman, containerd and serde_json write.
fn denies_all_first(bytes: &[u8]) -> bool {
    const KEY: &[u8] = b"\"devices\"";
    let Some(at) = find(bytes, KEY) else {
        return false;
    };
    let squeezed: Vec<u8> = bytes[at + KEY.len()..]
        .iter()
        .filter(|b| !b.is_ascii_whitespace())
        .take(48)
        .copied()
        .collect();
    squeezed.starts_with(br#":[{"allow":false,"access":"rwm"}"#)
        || squeezed.starts_with(br#":[{"access":"rwm","allow":false}"#)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    find(hay, needle).is_some()
}

fn skip_ws(b: &[u8]) -> &[u8] {
    let n = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    &b[n..]
}

/// Refuses a mount into /proc; the error names the mount and says why.
/// `rootfs` is where destinations are resolved (symlinks included).
pub fn check_mounts(spec: &Value, rootfs: &Path) -> Result<(), String> {
    let Some(mounts) = spec.get("mounts").and_then(Value::as_array) else {
        return Ok(());
    };
    for (i, m) in mounts.iter().enumerate() {
        let Some(dest) = m.get("destination").and_then(Value::as_str) else {
            continue;
        };
        let resolved = resolve_in_root(rootfs, Path::new(dest));
        let Ok(below) = resolved.strip_prefix("/proc") else {
            continue;
        };
        let what = format!("mounts[{i}] ({dest:?})");
        if below.as_os_str().is_empty() {
            let ty = m.get("type").and_then(Value::as_str).unwrap_or_default();
            if ty != "proc" {
                return Err(format!(
                    "{what}: /proc must be mounted as type \"proc\", not {:?}",
                    if ty.is_empty() { "bind" } else { ty }
                ));
            }
            continue;
        }
        if !PROC_FILES.iter().any(|f| Path::new(f) == resolved) {
            return Err(format!(
                "{what}: a mount inside /proc ({}) is refused: it would defeat the kernel's and \
                 the runtime's protections of /proc (only /proc itself, and lxcfs's files such \
                 as /proc/meminfo, may be mount points)",
                resolved.display()
            ));
        }
    }
    Ok(())
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
    let deny_all = |d: &Value| {
        d.get("allow") == Some(&Value::Bool(false))
            && d.get("access").and_then(Value::as_str) == Some("rwm")
            && d.get("type")
                .and_then(Value::as_str)
                .is_none_or(|t| t == "a")
            && d.get("major").is_none_or(|m| m.is_null() || m == -1)
            && d.get("minor").is_none_or(|m| m.is_null() || m == -1)
    };
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
    if list.first().is_some_and(deny_all) {
        return false;
    }
    list.insert(0, json!({"allow": false, "access": "rwm"}));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_scan_lets_usual_configs_through_unparsed() {
        let usual =
            br#"{"linux": {"resources": {"devices": [{ "allow": false, "access": "rwm" }]}},
            "mounts": [{"destination": "/proc", "type": "proc"}, {"destination": "/dev"}]}"#;
        assert!(!needs_parse(usual));
        let serde = br#"{"linux":{"resources":{"devices":[{"access":"rwm","allow":false}]}},
            "mounts":[{"destination":"/proc","type":"proc"}]}"#;
        assert!(!needs_parse(serde));
        for suspect in [
            &br#"{"linux":{"resources":{"devices":[{"access":"rwm","allow":false}]}},"mounts":[{"destination":"/proc/self/attr"}]}"#[..],
            br#"{"linux":{"resources":{"devices":[{"access":"rwm","allow":false}]}},"mounts":[{"destination":"/x/../proc/sys"}]}"#,
            br#"{"linux":{"resources":{"devices":[{"access":"rwm","allow":false}]}},"mounts":[{"destination":"/\u0070roc/sys"}]}"#,
            br#"{"linux":{"resources":{}},"mounts":[]}"#,
            br#"{"linux":{"resources":{"devices":[{"allow":true,"access":"rwm"}]}}}"#,
            br#"{"linux":{"resources":{"devices":[{"access":"rwm","allow":false}]}},"mounts":[{"destination":"/proc","type":"proc"},{"type":"tmpfs","destination":"/proc"}]}"#,
        ] {
            assert!(needs_parse(suspect), "{}", String::from_utf8_lossy(suspect));
        }
    }

    #[test]
    fn the_configs_we_ship_and_write_cost_no_parse() {
        for (name, bytes) in [
            (
                "bundles/config.json",
                &include_bytes!("../bundles/config.json")[..],
            ),
            ("minimal", include_bytes!("../tests/golden/minimal.json")),
            (
                "agent-egress",
                include_bytes!("../tests/golden/agent-egress.json"),
            ),
            ("build", include_bytes!("../tests/golden/build.json")),
        ] {
            assert!(!needs_parse(bytes), "{name}");
        }
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
            assert_eq!(check_mounts(&spec(dest, ty), &root), Ok(()), "{dest}");
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
            let err = check_mounts(&spec(dest, ty), &root).unwrap_err();
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
