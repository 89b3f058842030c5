//! `sandbox exec NAME [--timeout T] -- CMD`: a command in a persistent
//! sandbox, as its user, in its workdir; streamed, with stdin, its exit
//! status, and 124 when killed at the timeout.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::run::TIMEOUT_EXIT;
use super::{Ended, load_saved, wait_until};
use crate::ops::{Context, exec, exit_code, forward};
use crate::units::parse_duration;
use crate::{Result, cli};

pub fn exec(ctx: &Context, args: &cli::SandboxExec) -> Result<i32> {
    let saved = load_saved(ctx, &args.name)?;
    let limit = match &args.timeout {
        Some(t) => Some(parse_duration("--timeout", t)?),
        None => saved.wall_time_ms.map(Duration::from_millis),
    };
    let exec_args = cli::Exec {
        container_id: args.name.clone(),
        command: args.command.clone(),
        ..Default::default()
    };
    let pid = exec::spawn(ctx, &exec_args)?;
    forward::to(pid);
    match wait_until(pid, limit.map(|l| Instant::now() + l))? {
        Ended::Exited(status) => Ok(exit_code(status)),
        Ended::TimedOut => {
            kill_tree(pid);
            let _ = crate::ops::wait_status(pid);
            eprintln!(
                "sbx-oci: sandbox {}: command killed at its time limit of {} ms",
                args.name,
                limit.unwrap_or_default().as_millis()
            );
            Ok(TIMEOUT_EXIT)
        }
    }
}

/// SIGKILL to `pid` and all its descendants (children first found, then
/// killed parents first so nothing can fork away).
fn kill_tree(pid: Pid) {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        all.extend(children(all[i]));
        i += 1;
    }
    for p in all {
        let _ = kill(p, Signal::SIGKILL);
    }
}

fn children(pid: Pid) -> Vec<Pid> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(Pid::from_raw)
                .collect::<Vec<_>>()
        })
        .collect()
}
