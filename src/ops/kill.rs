//! `kill`: signal the init process, or with --all every process of the
//! container. Unlike libcontainer's own kill, the stored status is left alone:
//! a signal that is caught or ignored does not stop the container.

use libcontainer::container::ContainerStatus;
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill as send};

use super::{Context, wrong_state};
use crate::cgroup::Cgroup;
use crate::{Error, Result, cli, signal};

pub fn kill(ctx: &Context, args: &cli::Kill) -> Result<()> {
    let sig = signal::parse(&args.signal)?;
    let id = args.container_id.as_str();
    let container = ctx.store.load(id)?;
    let status = container.status();
    if status == ContainerStatus::Stopped && !args.all {
        return Err(wrong_state("kill", &container, " (its process has exited)"));
    }
    let cgroup = if args.all || status == ContainerStatus::Paused {
        Some(Cgroup::of(&container)?)
    } else {
        None
    };
    let targets = match (&cgroup, args.all) {
        (Some(cg), true) => cg.pids()?,
        _ => container.pid().into_iter().collect(),
    };
    for pid in targets {
        match send(pid, sig) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                return Err(Error::io(
                    format!("cannot send {sig} to process {pid} of container {id:?}"),
                    e.into(),
                ));
            }
        }
    }
    // A frozen process only dies once thawed (cgroup v1 freezer).
    if let (Some(cg), true) = (
        &cgroup,
        status == ContainerStatus::Paused && sig == Signal::SIGKILL,
    ) {
        cg.thaw()?;
    }
    Ok(())
}
