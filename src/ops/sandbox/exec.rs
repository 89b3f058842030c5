//! `sandbox exec NAME [options] -- CMD`: a command in a persistent sandbox,
//! as its user, in its workdir, with its environment (each overridable);
//! streamed, with stdin (or a file as stdin), its exit status, and 124 when
//! killed at the timeout or when the sandbox's budget runs out.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::budget::Budget;
use super::run::TIMEOUT_EXIT;
use super::{Ended, bundle_dir, load_saved, wait_until};
use crate::ops::{Context, exec, exit_code, forward};
use crate::units::parse_duration;
use crate::{Error, Result, cli};

pub fn exec(ctx: &Context, args: &cli::SandboxExec) -> Result<i32> {
    let saved = load_saved(ctx, &args.name)?;
    let budget = saved
        .wall_time_ms
        .filter(|_| saved.budget)
        .map(|total| Budget::of(&bundle_dir(ctx, &args.name), total));
    let asked = match &args.timeout {
        Some(t) => Some(parse_duration("--timeout", t)?),
        None => None,
    };
    let remaining = budget.as_ref().map(Budget::remaining);
    if remaining.is_some_and(|r| r.is_zero()) {
        return Err(Error::InvalidArgument(format!(
            "sandbox {:?} has used all of its wall-time budget of {} ms (limits.budget): it \
             runs no more commands; remove it and create another",
            args.name,
            saved.wall_time_ms.unwrap_or(0)
        )));
    }
    let limit = match (asked, remaining) {
        (Some(a), Some(r)) => Some(a.min(r)),
        (None, Some(r)) => Some(r),
        (a, None) => a.or(saved.wall_time_ms.map(Duration::from_millis)),
    };
    let by_budget = remaining.is_some() && limit == remaining;
    if let Some(path) = &args.stdin {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("--stdin {}", path.display()), e))?;
        // The command inherits our stdin.
        nix::unistd::dup2(file.as_raw_fd(), 0)
            .map_err(|e| Error::io(format!("--stdin {}", path.display()), e.into()))?;
    }
    let console = match args.tty {
        true => Some(super::tty::Console::listen(&bundle_dir(ctx, &args.name))?),
        false => None,
    };
    let exec_args = cli::Exec {
        container_id: args.name.clone(),
        command: args.command.clone(),
        env: args.env.clone(),
        clear_env: args.clear_env,
        cwd: args.workdir.clone(),
        user: args.user.clone(),
        tty: args.tty,
        // libcontainer takes a console socket only when "detached", which
        // changes nothing else for it: the process stays our child.
        detach: args.tty,
        console_socket: console.as_ref().map(|c| c.path().to_owned()),
        ..Default::default()
    };
    let started = Instant::now();
    let pid = exec::spawn(ctx, &exec_args)?;
    forward::to(pid);
    let deadline = limit.map(|l| started + l);
    let ended = match &console {
        Some(console) => {
            let master = console.master();
            match master.map(|m| super::tty::proxy(&m, pid, deadline)) {
                Ok(true) => crate::ops::wait_status(pid).map(Ended::Exited),
                Ok(false) => Ok(Ended::TimedOut),
                Err(e) => {
                    crate::signal::kill_tree(pid);
                    let _ = crate::ops::wait_status(pid);
                    Err(e)
                }
            }
        }
        None => wait_until(pid, deadline),
    };
    if let Some(b) = &budget
        && let Err(e) = b.charge(started.elapsed())
    {
        tracing::warn!("{e}");
    }
    match ended? {
        Ended::Exited(status) => Ok(exit_code(status)),
        Ended::TimedOut => {
            crate::signal::kill_tree(pid);
            let _ = crate::ops::wait_status(pid);
            let ms = limit.unwrap_or_default().as_millis();
            if by_budget {
                tracing::warn!("{}: the wall-time budget ran out", args.name);
                eprintln!(
                    "sbx-oci: sandbox {}: command killed: the sandbox's wall-time budget ran out \
                     ({ms} ms were left)",
                    args.name
                );
            } else {
                tracing::warn!("{}: command killed at its time limit", args.name);
                eprintln!(
                    "sbx-oci: sandbox {}: command killed at its time limit of {ms} ms",
                    args.name
                );
            }
            Ok(TIMEOUT_EXIT)
        }
    }
}
