//! `start`: run the user's process of a created container.

use libcontainer::container::Container;

use super::{Context, wrong_state};
use crate::hooks::{self, Stage};
use crate::{Error, Result, cli};

pub fn start(ctx: &Context, args: &cli::Id) -> Result<()> {
    let id = args.container_id.as_str();
    let mut container = ctx.store.load(id)?;
    if !container.can_start() {
        return Err(wrong_state(
            "start",
            &container,
            " (only a created container can be started)",
        ));
    }
    start_loaded(&mut container)
}

/// Starts a loaded, created container and runs its poststart hooks (whose
/// failures are warnings) once its process has executed the user's program.
/// `run` shares it.
pub fn start_loaded(container: &mut Container) -> Result<()> {
    let id = container.id().to_owned();
    let poststart = hooks::take(&container.root, Stage::Poststart)?;
    if let Err(err) = container.start() {
        if let Some(taken) = poststart {
            taken.restore(&container.root);
        }
        return Err(Error::container("start", &id, err));
    }
    if let Some(taken) = poststart {
        if let Some(pid) = container.pid() {
            hooks::wait_exec(pid);
        }
        taken.run(container);
    }
    Ok(())
}
