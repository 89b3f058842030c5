//! `sandbox run`: one command in a new sandbox, streamed, with its exit
//! status; killed with status 124 at the wall-time limit; then removed.

use std::io::Write;
use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;
use serde::Serialize;

use super::{
    Ended, Usage, bundle_dir, new_id, prepare, require_command, root_of, since, wait_until,
    write_config,
};
use crate::ops::create::{Workload, create_claimed};
use crate::ops::{Context, forward};
use crate::{Error, Result, cli, store};

pub const TIMEOUT_EXIT: i32 = 124;

/// The final record of a run (`--report`).
#[derive(Serialize, Debug)]
pub struct Report {
    pub id: String,
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub timed_out: bool,
    pub oom_killed: bool,
    pub wall_time_ms: u64,
    pub cpu_time_ms: u64,
    pub peak_memory_bytes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// The egress policy's counters, dropped destinations and the DNS
    /// gatekeeper's record (see `sandbox stats`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<serde_json::Value>,
}

pub fn run(ctx: &Context, args: &cli::SandboxRun) -> Result<i32> {
    let id = args.name.clone().unwrap_or_else(new_id);
    store::validate_id(&id)?;
    let bundle = bundle_dir(ctx, &id);
    let mut prepared = prepare(&args.spec, &args.command, &id, &bundle)?;
    require_command(&prepared)?;

    let claim = ctx.store.claim(&id)?;
    super::apply_options(ctx, &id, &mut prepared);
    let mut writable = super::stage_writable(ctx, &id, &mut prepared)?;
    let (rootfs, skeleton) = root_of(ctx, &prepared)?;
    let console = match args.tty {
        true => {
            prepared.config["process"]["terminal"] = true.into();
            Some(super::tty::Console::listen(&bundle)?)
        }
        false => None,
    };
    write_config(ctx.store.root(), &bundle, &mut prepared, &rootfs)?;
    // The config names the skeleton now; its descriptor must not reach the
    // sandbox's processes.
    drop(skeleton);
    let create = cli::Create {
        bundle: bundle.clone(),
        container_id: id.clone(),
        console_socket: console.as_ref().map(|c| c.path().to_owned()),
        ..Default::default()
    };
    // libcontainer takes a console socket only when "detached", which
    // changes nothing else for it: the init stays our child.
    let foreground = console.is_none();
    let mut container = create_claimed(
        ctx,
        claim,
        &bundle,
        &create,
        foreground,
        Workload::Command,
        false,
    )?;
    // The container has its copies of the idmapped mounts.
    writable.release();
    // `delete --force`'s removal: poststop hooks as warnings, a networked
    // sandbox's teardown in-process.
    let cleanup = |container: &mut libcontainer::container::Container| {
        let _ = crate::teardown::delete_loaded(container, true);
        let _ = ctx.store.remove(&id);
    };
    let Some(pid) = container.pid() else {
        cleanup(&mut container);
        return Err(Error::InvalidArgument(format!(
            "sandbox {id:?} has no process"
        )));
    };
    // For the report: the namespace outlives the sandbox's last process
    // while this is open.
    let netns = args
        .report
        .as_ref()
        .and_then(|_| std::fs::File::open(format!("/proc/{pid}/ns/net")).ok());
    forward::to(pid);
    let started = Instant::now();
    if let Err(e) = container.start() {
        cleanup(&mut container);
        return Err(Error::container("start", &id, e));
    }
    let deadline = prepared
        .resolved
        .wall_time_ms
        .map(|ms| started + Duration::from_millis(ms));
    let waited = match &console {
        Some(console) => console
            .master()
            .map(|m| super::tty::proxy(&m, pid, deadline))
            .and_then(|done| match done {
                true => crate::ops::wait_status(pid).map(Ended::Exited),
                false => Ok(Ended::TimedOut),
            }),
        None => wait_until(pid, deadline),
    };
    let ended = match waited {
        Ok(ended) => ended,
        Err(e) => {
            cleanup(&mut container);
            return Err(e);
        }
    };
    let (status, timed_out) = match ended {
        Ended::Exited(status) => (Some(status), false),
        Ended::TimedOut => {
            // The whole sandbox goes: every process in its cgroup.
            let _ = container.kill(nix::sys::signal::Signal::SIGKILL, true);
            let _ = crate::ops::wait_status(pid);
            (None, true)
        }
    };
    let wall_time_ms = since(started);
    // The full usage (a cgroup manager and every controller's files) only
    // for a report; the OOM check reads one file.
    let usage = match &args.report {
        Some(_) => Usage::read(&container).unwrap_or_default(),
        None => Usage {
            oom_kills: crate::cgroup::oom_kills_at(std::path::Path::new(
                &crate::sandbox::translate::cgroup_dir(&id, ctx.systemd_cgroup),
            )),
            ..Usage::default()
        },
    };
    let network = netns.and_then(|ns| {
        let dir = ctx.store.dir(&id);
        crate::network::gatekeeper::wait_gone(&dir, Duration::from_millis(500));
        crate::network::stats_in(&dir, || Ok(ns)).ok().flatten()
    });
    cleanup(&mut container);

    let oom_killed = usage.oom_kills > 0;
    if timed_out {
        tracing::warn!("{id}: command killed at its time limit");
        eprintln!(
            "sbx-oci: sandbox {id}: killed at the wall-time limit of {} ms (limits.wall_time_ms)",
            prepared.resolved.wall_time_ms.unwrap_or(0)
        );
    } else if oom_killed {
        eprintln!(
            "sbx-oci: sandbox {id}: out of memory: a process was killed at the limit of {} bytes \
             (limits.memory_bytes)",
            prepared.resolved.memory_bytes
        );
    }
    let exit_code = status.map_or(TIMEOUT_EXIT, crate::ops::exit_code);
    let signal = match status {
        Some(WaitStatus::Signaled(_, sig, _)) => Some(sig as i32),
        _ => None,
    };
    let report = Report {
        id,
        exit_code,
        signal,
        timed_out,
        oom_killed,
        wall_time_ms,
        cpu_time_ms: usage.cpu_time_ms,
        peak_memory_bytes: usage.peak_memory_bytes,
        read_bytes: usage.read_bytes,
        write_bytes: usage.write_bytes,
        network,
    };
    if let Some(path) = &args.report {
        write_report(path, &report)?;
    }
    Ok(exit_code)
}

fn write_report(path: &std::path::Path, report: &Report) -> Result<()> {
    let json = serde_json::to_string(report).unwrap_or_default();
    if path.as_os_str() == "-" {
        let _ = writeln!(std::io::stderr(), "{json}");
        return Ok(());
    }
    std::fs::write(path, format!("{json}\n"))
        .map_err(|e| Error::io(format!("cannot write report {}", path.display()), e))
}
