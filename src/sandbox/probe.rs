//! What this host gives sandboxes, checked on the host itself (files of
//! /proc and /sys, a netfilter socket, the running kernel), and what each
//! profile gets here as a result.

use std::path::Path;

use super::info::{Cgroups, Probe, ProfileSupport, Seccomp};
use super::model::Profile;

pub fn probe() -> Probe {
    let cgroup = cgroups();
    let has = |c: &str| cgroup.controllers.iter().any(|x| x == c);
    let seccomp = Seccomp {
        available: std::fs::read_to_string("/proc/self/status")
            .is_ok_and(|s| s.lines().any(|l| l.starts_with("Seccomp:"))),
        libseccomp: libseccomp::ScmpVersion::current()
            .ok()
            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)),
    };
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    let at_least = |maj: u32, min: u32| {
        let mut parts = kernel
            .split(['.', '-'])
            .filter_map(|p| p.parse::<u32>().ok());
        let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        (a, b) >= (maj, min)
    };
    // nf_tables answers "no such table" for a name nobody uses.
    let nftables = crate::nft::Netlink::open()
        .and_then(|nl| nl.delete("sbx_oci_probe"))
        .is_ok();
    let user_namespaces = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .is_some_and(|n| n > 0);
    let seccomp_ok = seccomp.available && seccomp.libseccomp.is_some();
    let profiles = [Profile::Minimal, Profile::Standard, Profile::Full]
        .into_iter()
        .map(|profile| {
            let memory_limit = has("memory");
            let cpu_limit = has("cpu");
            let pids_limit = has("pids");
            let io_accounting = has("io") || has("blkio");
            let network_allowlist = nftables;
            ProfileSupport {
                profile,
                memory_limit,
                cpu_limit,
                pids_limit,
                io_accounting,
                seccomp: seccomp_ok,
                network_allowlist,
                complete: memory_limit
                    && cpu_limit
                    && pids_limit
                    && io_accounting
                    && seccomp_ok
                    && network_allowlist,
            }
        })
        .collect();
    Probe {
        overlayfs: filesystem("overlay") || module_available("overlay"),
        idmapped_mounts: at_least(5, 12),
        pidfd: at_least(5, 3),
        cgroup,
        seccomp,
        nftables,
        user_namespaces,
        profiles,
        kernel,
    }
}

fn cgroups() -> Cgroups {
    use libcgroups::common::{CgroupSetup, get_cgroup_setup};
    let base = Path::new("/sys/fs/cgroup");
    let v2 = |dir: &Path| {
        std::fs::read_to_string(dir.join("cgroup.controllers"))
            .map(|t| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    match get_cgroup_setup() {
        Ok(CgroupSetup::Unified) => Cgroups {
            version: "v2".into(),
            controllers: v2(base),
        },
        setup => {
            // v1 hierarchies are the directories with a cgroup.procs of
            // their own, named by their controllers ("cpu,cpuacct" as links).
            let mut controllers: Vec<String> = std::fs::read_dir(base)
                .map(|d| {
                    d.flatten()
                        .filter(|e| e.path().join("cgroup.procs").exists())
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n != "unified" && n != "systemd" && !n.contains(','))
                        .collect()
                })
                .unwrap_or_default();
            controllers.sort();
            Cgroups {
                version: if matches!(setup, Ok(CgroupSetup::Hybrid)) {
                    "hybrid".into()
                } else {
                    "v1".into()
                },
                controllers,
            }
        }
    }
}

fn filesystem(name: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .is_ok_and(|t| t.lines().any(|l| l.split_whitespace().last() == Some(name)))
}

/// A module that would load on first use: built in, or on disk for this
/// kernel.
fn module_available(name: &str) -> bool {
    let Ok(u) = nix::sys::utsname::uname() else {
        return false;
    };
    let dir = Path::new("/lib/modules").join(u.release());
    ["modules.builtin", "modules.dep"].iter().any(|f| {
        std::fs::read_to_string(dir.join(f)).is_ok_and(|t| {
            t.lines().any(|l| {
                let path = l.split(':').next().unwrap_or("");
                let file = path.rsplit('/').next().unwrap_or("");
                file.strip_suffix(".ko")
                    .or_else(|| file.split(".ko.").next())
                    .is_some_and(|stem| stem == name)
            })
        })
    })
}
