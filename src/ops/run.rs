//! `run`: create + start, then (unless --detach) wait, delete, and exit with
//! the container's status (128+N when killed by signal N).

use super::start::start_loaded;
use super::{Context, create, forward, wait_exit};
use crate::teardown::delete_loaded;
use crate::{Result, cli};

/// Returns the exit code for the process to exit with.
pub fn run(ctx: &Context, args: &cli::Run) -> Result<i32> {
    let id = args.create.container_id.as_str();
    let mut container = create::create(ctx, &args.create, !args.detach)?;
    let pid = container.pid();
    if let Some(pid) = pid.filter(|_| !args.detach) {
        forward::to(pid);
    }
    if let Err(err) = start_loaded(&mut container) {
        // The same removal as `delete --force` (cgroup, hooks, policy).
        let _ = delete_loaded(&mut container, true);
        let _ = ctx.store.remove(id);
        return Err(err);
    }
    if args.detach {
        return Ok(0);
    }
    let code = match pid {
        Some(pid) => wait_exit(pid)?,
        None => 255,
    };
    if !args.keep {
        delete_loaded(&mut container, true)?;
        ctx.store.remove(id)?;
    }
    Ok(code)
}
