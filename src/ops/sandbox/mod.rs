//! `sbx-oci sandbox ...`: sandboxes for untrusted commands, built on the
//! runtime's own create/start/exec/delete. A sandbox's state directory is
//! also its bundle: config.json (and a networked sandbox's network.json and
//! resolv.conf) and the resolved spec sit beside libcontainer's `<id>/`, and
//! its snapshots in `@snapshots/` (a name no container id can take). No
//! bundle directory of its own: removing a directory costs ~0.25 ms on an
//! ext4 state root.

pub mod bundle;
pub mod create;
pub mod exec;
pub mod list;
pub mod probe;
pub mod rm;
pub mod run;
pub mod skeleton;
pub mod snapshot;
pub mod stats;
pub mod tty;
pub mod watchdog;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::{Context, wait_status};
use crate::cli::SpecFlags;
pub use crate::sandbox::info::Usage;
use crate::sandbox::model::RootfsSource;
use crate::sandbox::translate::{self, NetworkFiles};
use crate::sandbox::{Resolved, RootfsPlan, SandboxSpec, flags, host, validate};
use crate::{Error, Result};

pub use crate::sandbox::budget;
pub use crate::sandbox::state::{
    SNAPSHOT_DIR, Saved, SavedNetwork, bundle_dir, load_saved, save_resolved,
};

/// How long a killed exec (its time limit, its runtime gone) is waited
/// for until the command and what it started have exited: a SIGKILLed
/// process dies when next scheduled, milliseconds later unless the machine
/// is very loaded.
const KILLED_WITHIN: Duration = Duration::from_secs(5);

/// A spec checked and translated: nothing has been created yet.
pub struct Prepared {
    pub resolved: Resolved,
    /// config.json's content (see `translate::Translated::config`).
    pub config: serde_json::Value,
    pub plan: RootfsPlan,
    pub network: Option<NetworkFiles>,
}

/// File + flags + command → a validated sandbox, translated for the bundle
/// at `bundle` (absolute). Every error a spec can have is raised here,
/// before anything exists.
pub fn prepare(flags: &SpecFlags, command: &[String], id: &str, bundle: &Path) -> Result<Prepared> {
    let file = match &flags.spec {
        Some(path) => load_spec(path)?,
        None => SandboxSpec::default(),
    };
    let mut spec = flags::apply(file, flags)?;
    if !command.is_empty() {
        spec.command = Some(command.to_vec());
    }
    let resolved = spec.resolve();
    validate::validate(&resolved)?;
    let host = host::inspect(&resolved)?;
    let t = translate::translate(&resolved, id, &host, bundle)?;
    Ok(Prepared {
        resolved,
        config: t.config,
        plan: t.plan,
        network: t.network,
    })
}

pub fn require_command(p: &Prepared) -> Result<()> {
    if p.resolved.command.is_empty() {
        return Err(Error::spec(
            "command",
            "nothing to run: give the command after `--`, or set \"command\" in the spec",
        ));
    }
    Ok(())
}

/// The spec in file `path`; `-` reads it from stdin (the API passes it so).
fn load_spec(path: &Path) -> Result<SandboxSpec> {
    let read = || match path.to_str() {
        Some("-") => std::io::read_to_string(std::io::stdin()),
        _ => std::fs::read_to_string(path),
    };
    let text =
        read().map_err(|e| Error::io(format!("cannot read sandbox spec {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| Error::spec(path.display().to_string(), e.to_string()))
}

/// Writes the OCI bundle (config.json, and for a "host" root the rootfs
/// skeleton) into `dir`, which must not exist or be empty.
pub fn write_bundle(dir: &Path, p: &Prepared) -> Result<()> {
    let io = |what: &Path, e| Error::io(format!("cannot write {}", what.display()), e);
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    if std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .next()
        .is_some()
    {
        return Err(Error::InvalidArgument(format!(
            "{} is not empty; give a new directory for the bundle",
            dir.display()
        )));
    }
    if p.resolved.rootfs == RootfsSource::Host {
        let rootfs = dir.join("rootfs");
        std::fs::create_dir(&rootfs).map_err(|e| io(&rootfs, e))?;
        host::materialize(&p.plan, &rootfs)?;
    }
    write_network(dir, p)?;
    save_config(dir, &p.config)
}

fn save_config(dir: &Path, config: &serde_json::Value) -> Result<()> {
    let path = dir.join("config.json");
    let json = serde_json::to_vec(config).unwrap_or_default();
    std::fs::write(&path, json).map_err(|e| Error::Bundle {
        path: dir.to_owned(),
        reason: format!("cannot write config.json: {e}"),
    })
}

/// The policy file and resolv.conf of a networked sandbox.
fn write_network(dir: &Path, p: &Prepared) -> Result<()> {
    let Some(net) = &p.network else {
        return Ok(());
    };
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes)
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
    };
    write(
        translate::POLICY_FILE,
        &serde_json::to_vec_pretty(&net.policy).unwrap_or_default(),
    )?;
    if let Some(text) = &net.resolv_conf {
        write(translate::RESOLV_FILE, text.as_bytes())?;
    }
    Ok(())
}

/// Writes only config.json into `dir` (created), its root being `rootfs`,
/// with its seccomp profile precompiled (see `crate::seccomp`; the cache
/// lives in the state root `root`).
pub fn write_config(root: &Path, dir: &Path, p: &mut Prepared, rootfs: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
    write_network(dir, p)?;
    let root_path = rootfs.to_str().ok_or_else(|| Error::Bundle {
        path: dir.to_owned(),
        reason: format!("root {} is not UTF-8", rootfs.display()),
    })?;
    p.config["root"]["path"] = root_path.into();
    crate::seccomp::precompile(root, &mut p.config).map_err(|reason| Error::Bundle {
        path: dir.to_owned(),
        reason: format!("cannot compile the sandbox's seccomp profile: {reason}"),
    })?;
    save_config(dir, &p.config)
}

/// Makes the config's writable bind mounts of host paths that belong to
/// another user than the sandbox's writable by it: each such source is
/// replaced by an idmapped mount of it under the sandbox's state directory
/// (see `crate::idmap`), which the returned guard detaches from the host
/// once the container has been created.
/// What the runtime's own options change in a prepared sandbox:
/// `--systemd-cgroup` puts its cgroup in a systemd scope.
pub fn apply_options(ctx: &Context, id: &str, p: &mut Prepared) {
    if ctx.systemd_cgroup {
        p.config["linux"]["cgroupsPath"] =
            crate::sandbox::translate::systemd_cgroups_path(id).into();
    }
}

pub fn stage_writable(ctx: &Context, id: &str, p: &mut Prepared) -> Result<crate::idmap::Staged> {
    let mut staged = crate::idmap::Staged::default();
    let user = (p.resolved.user.uid, p.resolved.user.gid);
    let Some(mounts) = p.config["mounts"].as_array_mut() else {
        return Ok(staged);
    };
    for m in mounts {
        let writable_bind = m["type"] == "bind"
            && m["options"]
                .as_array()
                .is_some_and(|o| o.iter().any(|o| o == "rw"));
        let Some(source) = m["source"].as_str().filter(|_| writable_bind) else {
            continue;
        };
        let source = PathBuf::from(source);
        if let Some(owner) = crate::idmap::needed(&source, user.0)? {
            match crate::idmap::stage(&mut staged, &ctx.store.dir(id), &source, owner, user) {
                Ok(at) => m["source"] = at.to_string_lossy().into_owned().into(),
                // Without idmapped mounts (tmpfs before Linux 6.3, ...), a
                // path its mode lets the sandbox's user write anyway is
                // bound as it is: what the sandbox creates is then its own.
                // The caller is told (a warning reaches stderr only with
                // --debug or a --log file otherwise).
                Err(e) if crate::idmap::writable_by(&source, user) => {
                    let msg = format!(
                        "{} is bound as it is, without an idmapped mount (its mode lets the \
                         sandbox's user write): what the sandbox creates there belongs to \
                         {}:{} on the host. Why: {e}",
                        source.display(),
                        user.0,
                        user.1
                    );
                    eprintln!("sbx-oci: warning: {msg}");
                    tracing::warn!("{msg}");
                }
                Err(e) => return Err(e),
            }
        }
    }
    Ok(staged)
}

/// The root of a sandbox: for a "host" rootfs, the shared skeleton of its
/// plan (see `skeleton`), held until the sandbox's create has returned; a
/// rootfs path is used as it is.
pub fn root_of(ctx: &Context, p: &Prepared) -> Result<(PathBuf, Option<skeleton::Skeleton>)> {
    let RootfsSource::Path(path) = &p.resolved.rootfs else {
        let s = skeleton::acquire(ctx, &p.plan)?;
        return Ok((s.path.clone(), Some(s)));
    };
    Ok((path.clone(), None))
}

/// A unique id for a one-shot sandbox.
pub fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("sbx-{}-{nanos:08x}", std::process::id())
}

/// How a waited-for process ended.
pub enum Ended {
    Exited(WaitStatus),
    TimedOut,
}

/// Waits for `pid` (our child) until `deadline`.
pub fn wait_until(pid: Pid, deadline: Option<Instant>) -> Result<Ended> {
    let Some(deadline) = deadline else {
        return wait_status(pid).map(Ended::Exited);
    };
    let pidfd = crate::signal::pidfd_open(pid)
        .map_err(|e| Error::io(format!("cannot watch process {pid}"), e))?;
    let left = deadline.saturating_duration_since(Instant::now());
    match crate::signal::pidfd_wait(pidfd.as_fd(), left) {
        Ok(true) => wait_status(pid).map(Ended::Exited),
        Ok(false) => Ok(Ended::TimedOut),
        Err(e) => Err(Error::io("cannot wait for the sandbox", e)),
    }
}

pub fn since(start: Instant) -> u64 {
    Duration::as_millis(&start.elapsed()) as u64
}
