//! `sandbox exec NAME [options] -- CMD`: a command in a persistent sandbox,
//! as its user, in its workdir, with its environment (each overridable);
//! streamed, with stdin (or a file as stdin), its exit status, and 124 when
//! killed at the timeout or when the sandbox's budget runs out.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::budget::{Budget, Proc};
use super::run::TIMEOUT_EXIT;
use super::watchdog::Watchdog;
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
    if let Some(path) = &args.stdin {
        let file = std::fs::File::open(path)
            .map_err(|e| Error::io(format!("--stdin {}", path.display()), e))?;
        // The command inherits our stdin.
        nix::unistd::dup2(file.as_raw_fd(), 0)
            .map_err(|e| Error::io(format!("--stdin {}", path.display()), e.into()))?;
    }
    let console = match (args.tty, &args.console_socket) {
        (true, None) => Some(super::tty::Console::listen(&bundle_dir(ctx, &args.name))?),
        _ => None,
    };
    // The budget's lease, taken before the command starts (its start-up
    // counts) and ended whatever happens next.
    let holder = Proc::me();
    let lease = match &budget {
        Some(b) => Some(b.begin(holder)?.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "sandbox {:?} has used all of its wall-time budget of {} ms (limits.budget): it \
                 runs no more commands; remove it and create another",
                args.name, b.total_ms
            ))
        })?),
        None => None,
    };
    let started = Instant::now();
    let own = asked.or(match lease {
        None => saved.wall_time_ms.map(Duration::from_millis),
        Some(_) => None,
    });
    let own_deadline = own.map(|o| started + o);
    let deadline = match (own_deadline, lease.map(|l| l.deadline)) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let by_budget = lease.is_some_and(|l| own_deadline.is_none_or(|o| l.deadline <= o));
    let lease_of = budget.as_ref().map(|b| (b, holder));
    let ran = run(ctx, args, console.as_ref(), deadline, lease_of);
    if let Some(b) = &budget
        && let Err(e) = b.end(holder)
    {
        tracing::warn!("{e}");
    }
    let (ended, watchdog) = ran?;
    // Reaped and charged: the watchdog has nothing left to do.
    watchdog.settled();
    match ended? {
        Ended::Exited(status) => Ok(exit_code(status)),
        Ended::TimedOut => {
            if let (true, Some(l)) = (by_budget, lease) {
                tracing::warn!("{}: the wall-time budget ran out", args.name);
                eprintln!(
                    "sbx-oci: sandbox {}: command killed: the sandbox's wall-time budget ran out \
                     ({} ms were left)",
                    args.name,
                    l.remaining.as_millis()
                );
            } else {
                tracing::warn!("{}: command killed at its time limit", args.name);
                eprintln!(
                    "sbx-oci: sandbox {}: command killed at its time limit of {} ms",
                    args.name,
                    own.unwrap_or_default().as_millis()
                );
            }
            Ok(TIMEOUT_EXIT)
        }
    }
}

/// Starts the command, with its watchdog, and waits for it until
/// `deadline` (then kills it); it is reaped when this returns.
fn run(
    ctx: &Context,
    args: &cli::SandboxExec,
    console: Option<&super::tty::Console>,
    deadline: Option<Instant>,
    lease: Option<(&Budget, Proc)>,
) -> Result<(Result<Ended>, Watchdog)> {
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
        console_socket: console
            .map(|c| c.path().to_owned())
            .or_else(|| args.console_socket.clone()),
        ..Default::default()
    };
    let pid = exec::spawn(ctx, &exec_args)?;
    forward::to(pid);
    let watchdog = match Watchdog::start(pid, lease) {
        Ok(w) => w,
        Err(e) => {
            crate::signal::kill_tree(pid);
            let _ = crate::ops::wait_status(pid);
            return Err(e);
        }
    };
    let ended = match console {
        Some(console) => {
            let master = console.master();
            match master.map(|m| super::tty::proxy(&m, pid, deadline)) {
                Ok(true) => crate::ops::wait_status(pid).map(Ended::Exited),
                Ok(false) => Ok(Ended::TimedOut),
                Err(e) => Err(e),
            }
        }
        None => wait_until(pid, deadline),
    };
    if !matches!(ended, Ok(Ended::Exited(_))) {
        // Returns once the command and what it started are dead.
        crate::signal::kill_tree_and_wait(pid, super::KILLED_WITHIN);
        let _ = crate::ops::wait_status(pid);
    }
    Ok((ended, watchdog))
}
