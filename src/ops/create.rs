//! `create`: build a container from a bundle; its process waits for `start`.

use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use oci_spec::runtime::PosixRlimitType;

use super::{Context, reap_children};
use crate::cli;
use crate::idle_init::IdleInit;
use crate::seccomp::Filtered;
use crate::store::Claim;
use crate::{Error, Result, copyup, selfexe};

/// What the container's init process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    /// process.args, with the caller's stdio (every OCI container).
    Command,
    /// The idle init of a persistent sandbox, with /dev/null as stdio.
    Idle,
}

/// Creates the container. `foreground` keeps the caller's terminal and makes
/// the init process our child (for `run` without --detach).
pub fn create(ctx: &Context, args: &cli::Create, foreground: bool) -> Result<Container> {
    let bundle = resolve_bundle(&args.bundle)?;
    selfexe::ensure_protected()?;
    // Claiming first makes a concurrent create of the same id fail here, before
    // any work, and is released (with whatever is below it) on every error.
    let claim = ctx.store.claim(&args.container_id)?;
    create_claimed(
        ctx,
        claim,
        &bundle,
        args,
        foreground,
        Workload::Command,
        true,
    )
}

/// Creates the container for an id already claimed, from `bundle` (absolute).
/// The caller made sure, before any side effect, that this process runs from
/// the protected binary (`selfexe::ensure_protected`). `checks`: the config
/// is a foreign bundle's, checked and fixed by `confcheck` (a sandbox's is
/// sbx-oci's own, written from a validated spec).
pub fn create_claimed(
    ctx: &Context,
    claim: Claim,
    bundle: &Path,
    args: &cli::Create,
    foreground: bool,
    workload: Workload,
    checks: bool,
) -> Result<Container> {
    let id = args.container_id.as_str();
    let bundle = bundle.to_owned();
    // Only a config using runc's tmpcopyup, hooks or network annotations is
    // rewritten (see `copyup`).
    let copyup = copyup::prepare(&bundle, &ctx.store.dir(id), checks)?;
    let lib_bundle = copyup
        .as_ref()
        .map_or(bundle.as_path(), |p| p.shadow_bundle());
    let built = ContainerBuilder::new(id.to_owned(), SyscallType::default())
        .with_root_path(ctx.store.dir(id))
        .and_then(|b| b.with_pid_file(args.pid_file.as_ref()))
        .and_then(|b| match workload {
            Workload::Command => Ok(b.with_executor(Filtered::new(DefaultExecutor {}))),
            Workload::Idle => idle_stdio(b).map(|b| b.with_executor(Filtered::new(IdleInit))),
        })
        .map(|b| {
            b.with_console_socket(args.console_socket.as_ref())
                .with_preserved_fds(args.preserve_fds)
                .as_init(lib_bundle)
                .with_systemd(ctx.systemd_cgroup)
                .with_detach(!foreground)
                .with_no_pivot(args.no_pivot)
        })
        .and_then(|b| b.build());
    match built {
        Ok(mut container) => {
            if let Some(plan) = copyup
                && let Err(err) = plan.finish(&mut container)
            {
                let _ = container.delete(true);
                reap_children();
                crate::network::undo_after_failed_create(&ctx.store.dir(id), &bundle);
                return Err(err);
            }
            if let Some(pid) = container.pid() {
                ctx.store.record_init(id, pid.as_raw());
            }
            claim.keep();
            Ok(container)
        }
        Err(err) => {
            // libcontainer removed its state and cgroup; its child processes
            // may still be ours to kill and reap.
            reap_children();
            // Our network hook may have installed its table in a namespace
            // the client made before a later step failed: take it out.
            let state_dir = ctx.store.dir(id);
            crate::network::undo_after_failed_create(&state_dir, &bundle);
            // Read before the claim (and the sandbox's bundle in it) goes.
            let err = match crate::network::failure(&state_dir) {
                Some(msg) => Error::InvalidArgument(msg),
                None if no_space(&err) => Error::io(
                    format!(
                        "create container {id:?}: the state root {} is full (free space \
                         there, or give another --root)",
                        ctx.store.root().display()
                    ),
                    std::io::Error::from_raw_os_error(libc::ENOSPC),
                ),
                None => diagnose(&bundle, id, err),
            };
            drop(claim);
            Err(err)
        }
    }
}

/// /dev/null for the idle init's stdin, stdout and stderr, so it holds no
/// pipe of the caller open.
fn idle_stdio(
    b: ContainerBuilder,
) -> std::result::Result<ContainerBuilder, libcontainer::error::LibcontainerError> {
    let null = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(libcontainer::error::LibcontainerError::OtherIO)
    };
    Ok(b.with_stdin(null()?)
        .with_stdout(null()?)
        .with_stderr(null()?))
}

fn resolve_bundle(bundle: &Path) -> Result<PathBuf> {
    let abs = std::fs::canonicalize(bundle).map_err(|e| Error::Bundle {
        path: bundle.to_owned(),
        reason: format!("cannot open the bundle directory: {e}"),
    })?;
    if !abs.join("config.json").is_file() {
        return Err(Error::Bundle {
            path: abs,
            reason: "no config.json in it (`sbx-oci spec` writes a default one)".into(),
        });
    }
    Ok(abs)
}

/// Turns a failed create into a message about the bundle when the bundle is
/// the cause. Runs only on the error path, so success pays nothing for it.
/// Whether libcontainer failed for want of space (writing its state).
fn no_space(err: &libcontainer::error::LibcontainerError) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.raw_os_error() == Some(libc::ENOSPC)
        {
            return true;
        }
        source = e.source();
    }
    crate::error::chain(err).contains("No space left on device")
}

fn diagnose(bundle: &Path, id: &str, err: libcontainer::error::LibcontainerError) -> Error {
    let bundle_error = |reason: String| Error::Bundle {
        path: bundle.to_owned(),
        reason,
    };
    let text = match std::fs::read_to_string(bundle.join("config.json")) {
        Ok(text) => text,
        Err(e) => return bundle_error(format!("cannot read config.json: {e}")),
    };
    let spec: oci_spec::runtime::Spec = match serde_json::from_str(&text) {
        Ok(spec) => spec,
        Err(e) => return bundle_error(format!("config.json is not a valid OCI config: {e}")),
    };
    if let Some(root) = spec.root() {
        let rootfs = if root.path().is_absolute() {
            root.path().to_owned()
        } else {
            bundle.join(root.path())
        };
        if !rootfs.is_dir() {
            return bundle_error(format!(
                "root.path {} does not exist or is not a directory",
                rootfs.display()
            ));
        }
        // libcontainer refuses procfs and sysfs over a symlink (it could
        // lead the mount out of the rootfs) as "failed to prepare rootfs".
        for m in spec.mounts().iter().flatten() {
            let ty = m.typ().as_deref().unwrap_or_default();
            if ty != "proc" && ty != "sysfs" {
                continue;
            }
            let dest = m.destination();
            let at = rootfs.join(dest.strip_prefix("/").unwrap_or(dest));
            if let Ok(target) = std::fs::read_link(&at) {
                return bundle_error(format!(
                    "{} must be mounted on an ordinary directory, but the rootfs's {} is a \
                     symbolic link (to {}): make it a directory",
                    dest.display(),
                    dest.display(),
                    target.display()
                ));
            }
        }
    } else {
        return bundle_error("config.json has no root (root.path names the rootfs)".into());
    }
    let Some(process) = spec.process() else {
        return bundle_error("config.json has no process to run".into());
    };
    // A capability this runtime does not hold itself cannot be given: the
    // kernel refuses it (EPERM), which libcontainer reports as "failed
    // syscall".
    if let Some(c) = process.capabilities() {
        let sets = [
            c.bounding(),
            c.effective(),
            c.permitted(),
            c.inheritable(),
            c.ambient(),
        ];
        for cap in sets.into_iter().flatten().flatten() {
            let name = cap.to_string();
            let name = if name.starts_with("CAP_") {
                name
            } else {
                format!("CAP_{name}")
            };
            let Ok(parsed) = name.parse::<caps::Capability>() else {
                continue;
            };
            if !caps::has_cap(None, caps::CapSet::Bounding, parsed).unwrap_or(true) {
                return bundle_error(format!(
                    "process.capabilities: {name} cannot be granted: this runtime's own \
                     bounding set lacks it (Operation not permitted, EPERM); run sbx-oci with \
                     it or remove it from the config"
                ));
            }
        }
    }
    // libcontainer's init and intermediate processes report these only as
    // "failed to prepare rootfs" and "intermediate process error EPERM".
    for m in spec.mounts().iter().flatten() {
        let options = m.options().as_deref().unwrap_or_default();
        let is_bind = m.typ().as_deref() == Some("bind")
            || options.iter().any(|o| o == "bind" || o == "rbind");
        if let Some(source) = m.source().as_ref().filter(|s| is_bind && !s.exists()) {
            return bundle_error(format!(
                "mount {}: bind source {} does not exist",
                m.destination().display(),
                source.display()
            ));
        }
    }
    for r in process.rlimits().iter().flatten() {
        if let Some(current) = hard_limit(r.typ())
            && r.hard() > current
            && !crate::caps::has_effective(crate::caps::CAP_SYS_RESOURCE)
        {
            return bundle_error(format!(
                "process.rlimits {}: hard limit {} is above the runtime's own hard limit {} \
                 and raising it needs CAP_SYS_RESOURCE",
                r.typ(),
                r.hard(),
                current
            ));
        }
    }
    // The kernel lets a process lower its oom_score_adj below its own only
    // with CAP_SYS_RESOURCE; libcontainer's init reports the refusal as "io
    // error". (containerd's CRI plugin asks -998 for a pod's sandbox.)
    if let Some(adj) = process.oom_score_adj()
        && let Some(own) = std::fs::read_to_string("/proc/self/oom_score_adj")
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        && adj < own
        && !crate::caps::has_effective(crate::caps::CAP_SYS_RESOURCE)
    {
        return bundle_error(format!(
            "process.oomScoreAdj {adj} is below the runtime's own oom_score_adj ({own}) and \
             lowering it needs CAP_SYS_RESOURCE (Permission denied): ask for {own} or more, \
             or run sbx-oci with CAP_SYS_RESOURCE (containerd's CRI plugin: \
             restrict_oom_score_adj = true)"
        ));
    }
    Error::container("create", id, err)
}

/// This process's hard limit for `typ` (None when unknown or unlimited).
fn hard_limit(typ: PosixRlimitType) -> Option<u64> {
    use PosixRlimitType as T;
    let resource = match typ {
        T::RlimitCpu => libc::RLIMIT_CPU,
        T::RlimitFsize => libc::RLIMIT_FSIZE,
        T::RlimitData => libc::RLIMIT_DATA,
        T::RlimitStack => libc::RLIMIT_STACK,
        T::RlimitCore => libc::RLIMIT_CORE,
        T::RlimitRss => libc::RLIMIT_RSS,
        T::RlimitNproc => libc::RLIMIT_NPROC,
        T::RlimitNofile => libc::RLIMIT_NOFILE,
        T::RlimitMemlock => libc::RLIMIT_MEMLOCK,
        T::RlimitAs => libc::RLIMIT_AS,
        T::RlimitLocks => libc::RLIMIT_LOCKS,
        T::RlimitSigpending => libc::RLIMIT_SIGPENDING,
        T::RlimitMsgqueue => libc::RLIMIT_MSGQUEUE,
        T::RlimitNice => libc::RLIMIT_NICE,
        T::RlimitRtprio => libc::RLIMIT_RTPRIO,
        T::RlimitRttime => libc::RLIMIT_RTTIME,
    };
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    let ok = unsafe { libc::getrlimit(resource, &mut lim) } == 0;
    (ok && lim.rlim_max != libc::RLIM_INFINITY).then_some(lim.rlim_max)
}
