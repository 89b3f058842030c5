//! SandboxSpec → OCI config. Pure: the resolved spec, the sandbox id and the
//! host facts in; the OCI config (as the JSON that config.json holds) and the
//! rootfs skeleton to create out.
//!
//! The result is hardened whatever the spec says: new pid, mount, ipc, uts,
//! cgroup and network namespaces; the profile's capabilities only (none for
//! minimal and standard); no_new_privs; the default seccomp profile; runc's
//! masked and read-only /proc and /sys paths; a read-only root; rlimits and
//! cgroup limits (memory with swap off, cpu quota, pids); /tmp and the
//! workdir as size-limited tmpfs. The root is assembled by binding the
//! host's system directories, never by copying them; only the curated /etc
//! (a few small files and directories) is copied, into a skeleton shared by
//! every sandbox of the same plan and rebuilt when it changes on the host
//! (see `RootfsPlan::copies` and `RootfsPlan::trees`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::host::{ETC_ENTRIES, HostLayout, Kind, SYSTEM_DIRS};
use super::model::{NetworkMode, Resolved, RootfsSource};
use super::seccomp;
use super::validate::pools;
use crate::netpolicy::file::{Mode, PolicyFile};
use crate::{Error, Result};

/// What to create inside an empty rootfs directory before the container
/// starts (paths relative to the rootfs).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RootfsPlan {
    /// Links mirroring the host's merged-/usr layout, e.g. bin -> usr/bin.
    pub symlinks: Vec<(PathBuf, PathBuf)>,
    /// Mount points for directories.
    pub dirs: Vec<PathBuf>,
    /// Mount points for files.
    pub files: Vec<PathBuf>,
    /// Host files copied to the same place, read-only like the rest of the
    /// root: the curated /etc files. A bind per file cost libcontainer
    /// ~60 µs on every start; a copy costs once per skeleton.
    pub copies: Vec<PathBuf>,
    /// Host directories copied whole to the same place: the curated /etc
    /// directories (certificates, alternatives links). A bind of each cost
    /// ~0.1 ms on every start. They are not fingerprinted here (reading them
    /// costs more than the bind): the skeleton records what it copied, and
    /// is replaced when that changes (`host::tree_unchanged`).
    pub trees: Vec<PathBuf>,
    /// The fingerprint of those files on the host (`HostLayout::etc_stamp`):
    /// part of the plan, so any change on the host makes a new skeleton
    /// rather than a stale one.
    pub etc_stamp: u64,
}

pub const CPU_PERIOD_US: u64 = 100_000;
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The cgroup a sandbox gets (one level, so deleting it leaves nothing).
pub fn cgroups_path(id: &str) -> String {
    format!("/sbx-oci-{id}")
}

/// The cgroupsPath of a sandbox under `--systemd-cgroup`: a scope unit of
/// its own in system.slice (libcgroups would put an absolute path beside
/// systemd's tree, not under it).
pub fn systemd_cgroups_path(id: &str) -> String {
    format!("system.slice:sbx-oci:{id}")
}

/// Where a sandbox's cgroup is under /sys/fs/cgroup (v2) or under each v1
/// controller's mount: for `--systemd-cgroup`, the scope's directory.
pub fn cgroup_dir(id: &str, systemd: bool) -> String {
    match systemd {
        true => format!("/system.slice/sbx-oci-{id}.scope"),
        false => cgroups_path(id),
    }
}

/// A networked sandbox's files, written into its bundle beside config.json
/// and named there by absolute path (hooks and mounts need one).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NetworkFiles {
    /// For `hook network --policy` ([`POLICY_FILE`]).
    pub policy: PolicyFile,
    /// The sandbox's /etc/resolv.conf ([`RESOLV_FILE`]) when the spec names
    /// resolvers; otherwise the host's is bound.
    pub resolv_conf: Option<String>,
}

pub const POLICY_FILE: &str = "network.json";
pub const RESOLV_FILE: &str = "resolv.conf";

/// The translation of a spec into the bundle at `bundle` (an absolute path:
/// a networked sandbox's hooks and resolv.conf are named by it).
pub struct Translated {
    /// config.json's content. Kept as JSON, not parsed into oci_spec's
    /// `Spec`: it is only written out, and libcontainer parses the file
    /// anyway (the round trip cost ~0.2 ms per run); tests/golden.rs parses
    /// every example's translation to check it is a valid config.
    pub config: Value,
    pub plan: RootfsPlan,
    pub network: Option<NetworkFiles>,
}

pub fn translate(r: &Resolved, id: &str, host: &HostLayout, bundle: &Path) -> Result<Translated> {
    let mut plan = RootfsPlan::default();
    let host_root = r.rootfs == RootfsSource::Host;
    let mut mounts = base_mounts(r);
    let network = network(r, host)?;
    let own_resolv = network.as_ref().is_some_and(|n| n.resolv_conf.is_some());

    if host_root {
        for dir in SYSTEM_DIRS {
            let rel = relative(Path::new(dir));
            match host.kind(Path::new(dir)) {
                Some(Kind::Symlink(target)) => plan.symlinks.push((rel, target.clone())),
                Some(Kind::Dir) => {
                    mounts.push(bind(dir, dir, true));
                    plan.dirs.push(rel);
                }
                _ => {}
            }
        }
        for entry in ETC_ENTRIES {
            if own_resolv && *entry == RESOLV_CONF {
                plan.files.push(relative(Path::new(entry)));
                mounts.push(bind(bundle.join(RESOLV_FILE), entry, true));
                continue;
            }
            match host.kind(Path::new(entry)) {
                Some(Kind::File) => plan.copies.push(PathBuf::from(entry)),
                Some(Kind::Dir) => plan.trees.push(PathBuf::from(entry)),
                _ => {}
            }
        }
        plan.etc_stamp = host.etc_stamp;
        for fixed in ["proc", "dev", "sys", "tmp"] {
            plan.dirs.push(PathBuf::from(fixed));
        }
        if !r.allowed_paths_rw.contains(&r.workdir) {
            plan.dirs.push(relative(&r.workdir));
        }
    }

    // The user's paths, parents before children so a read-only path inside
    // a writable one stays read-only.
    let mut binds: Vec<(&Path, &Path, bool)> = r
        .allowed_paths_ro
        .iter()
        .map(|p| (p.as_path(), p.as_path(), true))
        .chain(
            r.allowed_paths_rw
                .iter()
                .map(|p| (p.as_path(), p.as_path(), false)),
        )
        .chain(
            r.bind_mounts
                .iter()
                .map(|b| (b.source.as_path(), b.target.as_path(), b.readonly)),
        )
        .collect();
    binds.sort_by_key(|(_, target, _)| (target.components().count(), target.to_path_buf()));
    for (source, target, readonly) in binds {
        if host_root {
            match host.kind(source) {
                Some(Kind::File) => plan.files.push(relative(target)),
                _ => plan.dirs.push(relative(target)),
            }
        }
        mounts.push(bind(source, target, readonly));
    }
    plan.dirs.sort();
    plan.dirs.dedup();

    let caps = &r.capabilities;
    let namespaces: Vec<Value> = ["pid", "mount", "ipc", "uts", "cgroup", "network"]
        .iter()
        .map(|t| json!({ "type": t }))
        .collect();
    let root_path = match &r.rootfs {
        RootfsSource::Host => "rootfs".to_owned(),
        RootfsSource::Path(p) => p.display().to_string(),
    };
    let config = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": { "uid": r.user.uid, "gid": r.user.gid },
            "args": r.command,
            "env": env(r, id, host),
            "cwd": r.workdir,
            "capabilities": { "bounding": caps, "effective": caps, "permitted": caps },
            "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": r.open_files, "soft": r.open_files }],
            "noNewPrivileges": true,
        },
        "root": { "path": root_path, "readonly": true },
        "hostname": "sandbox",
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path(id),
            "resources": {
                "devices": [{ "allow": false, "access": "rwm" }],
                // swap == limit: no swap on top of the memory limit.
                "memory": { "limit": r.memory_bytes, "swap": r.memory_bytes },
                "cpu": { "quota": (r.cpus * CPU_PERIOD_US as f64).round() as i64,
                         "period": CPU_PERIOD_US },
                "pids": { "limit": r.pids },
            },
            "maskedPaths": oci_spec::runtime::get_default_maskedpaths(),
            "readonlyPaths": oci_spec::runtime::get_default_readonly_paths(),
            "seccomp": seccomp::profile(),
        },
        "annotations": { "org.sbx-oci.sandbox.profile": format!("{:?}", r.profile).to_lowercase() },
    });
    let mut config = config;
    if network.is_some() {
        // Rules and a way out before the command runs; the way out taken
        // down after, also when another runtime (runc) runs the bundle.
        let hook = |extra: &[&str]| {
            let mut args = vec!["sbx-oci".to_owned(), "hook".into(), "network".into()];
            args.push("--policy".into());
            args.push(bundle.join(POLICY_FILE).display().to_string());
            args.extend(extra.iter().map(|s| s.to_string()));
            json!([{ "path": host.exe, "args": args, "timeout": 30 }])
        };
        config["hooks"] = json!({ "prestart": hook(&[]), "poststop": hook(&["--down"]) });
        if !host_root && own_resolv {
            config["mounts"].as_array_mut().expect("mounts").push(bind(
                bundle.join(RESOLV_FILE),
                RESOLV_CONF,
                true,
            ));
        }
    }
    Ok(Translated {
        config,
        plan,
        network,
    })
}

const RESOLV_CONF: &str = "/etc/resolv.conf";

/// The policy file and resolv.conf of a sandbox whose mode is not `none`.
/// An allowlist without `dns` has its gatekeeper ask the host's resolvers
/// (from the host's namespace, so a loopback stub resolver works too).
fn network(r: &Resolved, host: &HostLayout) -> Result<Option<NetworkFiles>> {
    let n = &r.network;
    let mode = match n.mode {
        NetworkMode::None => return Ok(None),
        NetworkMode::Allowlist => Mode::Allowlist,
        NetworkMode::Full => Mode::Full,
    };
    let listed: Option<Vec<IpAddr>> = match &n.dns {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|a| {
                    a.parse().map_err(|_| {
                        Error::spec("network.dns", format!("{a:?} is not an IP address"))
                    })
                })
                .collect::<Result<_>>()?,
        ),
    };
    let dns = match (&listed, mode) {
        (_, Mode::Full) => Vec::new(),
        (Some(l), _) => l.clone(),
        (None, _) => host.resolvers.clone(),
    };
    let resolv_conf = listed.map(|l| {
        let mut text = String::from("# written by sbx-oci from the sandbox spec's network.dns\n");
        for a in l {
            text.push_str(&format!("nameserver {a}\n"));
        }
        text
    });
    Ok(Some(NetworkFiles {
        policy: PolicyFile {
            mode,
            allow: n.allow.clone(),
            dns,
            expose: n.expose.clone(),
            uplink: Some(pools(n)?),
            learn: n.learn,
            gatekeeper: n.gatekeeper.clone().unwrap_or_default(),
        },
        resolv_conf,
    }))
}

fn relative(p: &Path) -> PathBuf {
    p.strip_prefix("/").unwrap_or(p).to_owned()
}

fn bind(source: impl AsRef<Path>, target: impl AsRef<Path>, readonly: bool) -> Value {
    json!({
        "destination": target.as_ref(),
        "type": "bind",
        "source": source.as_ref(),
        "options": ["rbind", if readonly { "rro" } else { "rw" }, "rnosuid", "rnodev"],
    })
}

fn tmpfs(dest: &Path, bytes: u64, mode: &str, r: &Resolved) -> Value {
    json!({
        "destination": dest,
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["nosuid", "nodev", format!("mode={mode}"), format!("size={bytes}"),
                    format!("uid={}", r.user.uid), format!("gid={}", r.user.gid)],
    })
}

/// What every sandbox gets from the runtime: /proc, /dev, /sys (read-only),
/// /tmp, and the workdir unless it is one of the user's writable paths. No
/// /dev/mqueue (runc's default spec has one): POSIX message queues are
/// system calls, in the sandbox's own IPC namespace, and work without it;
/// the file system only lists them, and its mount cost ~0.13 ms per start.
fn base_mounts(r: &Resolved) -> Vec<Value> {
    let mut mounts = vec![
        json!({ "destination": "/proc", "type": "proc", "source": "proc",
                "options": ["nosuid", "noexec", "nodev"] }),
        json!({ "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] }),
        json!({ "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"] }),
        json!({ "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] }),
        json!({ "destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"] }),
    ];
    // /tmp is shared by every user of the sandbox: sticky, like a host's.
    let mut tmp = tmpfs(Path::new("/tmp"), r.tmp_bytes, "1777", r);
    tmp["options"].as_array_mut().unwrap().truncate(4);
    mounts.push(tmp);
    if !r.allowed_paths_rw.contains(&r.workdir)
        && !r
            .bind_mounts
            .iter()
            .any(|b| b.target == r.workdir && !b.readonly)
    {
        // In memory, charged to the sandbox's memory limit.
        mounts.push(tmpfs(&r.workdir, r.memory_bytes, "755", r));
    }
    mounts
}

/// LANG, LC_*, PATH and TERM from the caller; HOME, TMPDIR and SANDBOX_ID;
/// then the spec's own variables, which win.
fn env(r: &Resolved, id: &str, host: &HostLayout) -> Vec<String> {
    let mut env: BTreeMap<String, String> = host.env.clone();
    env.entry("PATH".into())
        .or_insert_with(|| DEFAULT_PATH.into());
    env.insert("HOME".into(), r.workdir.display().to_string());
    env.insert("TMPDIR".into(), "/tmp".into());
    env.insert("SANDBOX_ID".into(), id.into());
    env.extend(r.env.clone());
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}
