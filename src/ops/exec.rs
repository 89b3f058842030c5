//! `exec`: run another process in a running container. With an argv, the
//! process is the container's own process (user, env, cwd, capabilities)
//! with the given overrides, as runc does; with --process, that file as is.

use std::path::{Path, PathBuf};

use libcontainer::container::ContainerStatus;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::DefaultExecutor;
use nix::unistd::Pid;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, Process, Spec};

use super::{Context, forward, reap_children, wait_exit, wrong_state};
use crate::seccomp::Filtered;
use crate::{Error, Result, cli, selfexe};

/// Returns the exit code to exit with (0 when detached).
pub fn exec(ctx: &Context, args: &cli::Exec) -> Result<i32> {
    let pid = spawn(ctx, args)?;
    if args.detach {
        return Ok(0);
    }
    forward::to(pid);
    wait_exit(pid)
}

/// Starts the process in the container and returns its pid (our child
/// unless detached).
pub fn spawn(ctx: &Context, args: &cli::Exec) -> Result<Pid> {
    let id = args.container_id.as_str();
    // Held while libcontainer forks (they inherit it until their execve).
    let _busy = ctx.store.busy(id)?;
    let container = ctx.store.load(id)?;
    match container.status() {
        ContainerStatus::Running => {}
        ContainerStatus::Paused if args.ignore_paused => {}
        _ => {
            return Err(wrong_state(
                "exec in",
                &container,
                " (exec needs a running container)",
            ));
        }
    }
    if args.process.is_none() && args.command.is_empty() {
        return Err(Error::InvalidArgument(
            "exec needs a command after the container id, or --process FILE".into(),
        ));
    }
    selfexe::ensure_protected()?;

    // libcontainer 0.7 builds an exec'd process's spec without the
    // container's linux.seccomp: compiled here, installed by our executor.
    // That happens after capabilities are set, so a process without
    // CAP_SYS_ADMIN needs no_new_privs for it (as every sandbox process has
    // anyway); one that keeps CAP_SYS_ADMIN is left as it asked.
    let config_path = container.bundle().join("config.json");
    let filter = exec_filter(ctx, &config_path)?;

    // The argv form, or a --process file that needs no_new_privs added, is
    // turned into a process file beside the container state, removed once
    // the process has started.
    let mut process = match &args.process {
        Some(_) if filter.is_none() => None,
        Some(path) => Some(load_process(path)?),
        None => Some(process_from_args(&config_path, args)?),
    };
    let mut rewritten = args.process.is_none();
    if let Some(p) = &mut process
        && filter.is_some()
        && !may_install_filters(p)
    {
        p.set_no_new_privileges(Some(true));
        rewritten = true;
    }
    let process_file = match &args.process {
        Some(path) if !rewritten => ProcessFile::Given(path.clone()),
        _ => {
            let path = ctx
                .store
                .dir(id)
                .join(format!("exec-{}.json", std::process::id()));
            let json = serde_json::to_vec(&process.unwrap_or_default())
                .map_err(|e| Error::InvalidArgument(format!("cannot encode process: {e}")))?;
            std::fs::write(&path, json)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            ProcessFile::Temporary(path)
        }
    };

    let built = ContainerBuilder::new(id.to_owned(), SyscallType::default())
        .with_root_path(ctx.store.dir(id))
        .and_then(|b| b.with_pid_file(args.pid_file.as_ref()))
        .and_then(|b| {
            b.with_executor(Filtered::new(DefaultExecutor {}).with_program(filter))
                .with_console_socket(args.console_socket.as_ref())
                .with_preserved_fds(args.preserve_fds)
                .as_tenant()
                .with_detach(args.detach)
                .with_process(Some(process_file.path()))
                .with_ignore_paused(args.ignore_paused)
                .with_sub_cgroup(args.cgroup.clone())
                .build()
        });
    drop(process_file);
    built.map_err(|err| {
        reap_children();
        Error::container("exec in", id, err)
    })
}

enum ProcessFile {
    Given(PathBuf),
    Temporary(PathBuf),
}

impl ProcessFile {
    fn path(&self) -> PathBuf {
        match self {
            ProcessFile::Given(p) | ProcessFile::Temporary(p) => p.clone(),
        }
    }
}

impl Drop for ProcessFile {
    fn drop(&mut self) {
        if let ProcessFile::Temporary(p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Whether `p` may install a seccomp filter once its capabilities are set:
/// with no_new_privs, or with CAP_SYS_ADMIN in its effective set.
fn may_install_filters(p: &Process) -> bool {
    p.no_new_privileges() == Some(true)
        || p.capabilities()
            .as_ref()
            .and_then(|c| c.effective().as_ref())
            .is_some_and(|e| e.contains(&Capability::SysAdmin))
}

/// The seccomp filter an exec'd process of the container gets (see above).
fn exec_filter(ctx: &Context, config: &Path) -> Result<Option<crate::seccomp::Program>> {
    let text = std::fs::read_to_string(config)
        .map_err(|e| Error::io(format!("cannot read {}", config.display()), e))?;
    let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Bundle {
        path: config.to_owned(),
        reason: format!("cannot load: {e}"),
    })?;
    crate::seccomp::for_exec(ctx.store.root(), &value).map_err(|reason| {
        Error::InvalidArgument(format!(
            "cannot give the new process the container's seccomp filter: {reason}"
        ))
    })
}

fn load_process(path: &Path) -> Result<Process> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::io(format!("cannot read process file {}", path.display()), e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::InvalidArgument(format!("process file {}: {e}", path.display())))
}

/// The container's process with the command line's overrides applied.
fn process_from_args(config: &std::path::Path, args: &cli::Exec) -> Result<Process> {
    let spec = Spec::load(config).map_err(|e| Error::Bundle {
        path: config.to_owned(),
        reason: format!("cannot load: {}", crate::error::chain(&e)),
    })?;
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(args.command.clone()));
    process.set_terminal(Some(args.tty));
    if let Some(cwd) = &args.cwd {
        process.set_cwd(cwd.clone());
    }
    if args.clear_env {
        let mut env = process.env().clone().unwrap_or_default();
        env.retain(|e| e.starts_with("PATH="));
        process.set_env(Some(env));
    }
    if !args.env.is_empty() {
        let mut env = process.env().clone().unwrap_or_default();
        for kv in &args.env {
            if !kv.contains('=') {
                return Err(Error::InvalidArgument(format!(
                    "--env {kv:?}: expected KEY=VALUE"
                )));
            }
            let key = &kv[..=kv.find('=').unwrap_or(0)];
            env.retain(|e| !e.starts_with(key));
            env.push(kv.clone());
        }
        process.set_env(Some(env));
    }
    if let Some(user) = &args.user {
        let (uid, gid) = crate::units::parse_user(user)?;
        let u = process.user_mut();
        u.set_uid(uid);
        u.set_gid(gid);
    }
    if !args.additional_gids.is_empty() {
        process
            .user_mut()
            .set_additional_gids(Some(args.additional_gids.clone()));
    }
    if args.no_new_privs {
        process.set_no_new_privileges(Some(true));
    }
    if !args.cap.is_empty() {
        let added = args
            .cap
            .iter()
            .map(|c| parse_capability(c))
            .collect::<Result<Vec<_>>>()?;
        // Added to every set, the process's own sets kept (a fresh
        // LinuxCapabilities would bring oci-spec's default ambient set): a
        // process that is not root keeps across its execve only what is in
        // its ambient set, which needs the inheritable bit.
        let mut caps = process.capabilities().clone().unwrap_or_else(|| {
            let mut none = LinuxCapabilities::default();
            let empty = || Some(Capabilities::new());
            none.set_bounding(empty());
            none.set_effective(empty());
            none.set_permitted(empty());
            none.set_inheritable(empty());
            none.set_ambient(empty());
            none
        });
        let extend = |set: &Option<Capabilities>| {
            let mut set = set.clone().unwrap_or_default();
            set.extend(added.iter().copied());
            Some(set)
        };
        let (b, e, p, i, a) = (
            extend(caps.bounding()),
            extend(caps.effective()),
            extend(caps.permitted()),
            extend(caps.inheritable()),
            extend(caps.ambient()),
        );
        caps.set_bounding(b);
        caps.set_effective(e);
        caps.set_permitted(p);
        caps.set_inheritable(i);
        caps.set_ambient(a);
        process.set_capabilities(Some(caps));
    }
    Ok(process)
}

fn parse_capability(name: &str) -> Result<Capability> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| Error::InvalidArgument(format!("--cap {name:?}: unknown capability")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities() {
        assert_eq!(parse_capability("net_admin").unwrap(), Capability::NetAdmin);
        assert_eq!(parse_capability("CAP_KILL").unwrap(), Capability::Kill);
        assert!(parse_capability("CAP_FLY").is_err());
    }
}
