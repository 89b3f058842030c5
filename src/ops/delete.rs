//! `delete`: remove a stopped container (with --force, any container, and
//! success when there is nothing to delete, as containerd's shim expects).

use libcontainer::container::{Container, ContainerStatus};

use super::{Context, wrong_state};
use crate::hooks::{self, Stage};
use crate::{Error, Result, cli};

pub fn delete(ctx: &Context, args: &cli::Delete) -> Result<()> {
    let id = args.container_id.as_str();
    crate::store::validate_id(id)?;
    let mut container = match ctx.store.load(id) {
        Ok(c) => c,
        // A half-created container has a directory but no state: --force
        // clears it away, with any NAT entries a crash left for its id.
        Err(Error::NotFound(_)) if args.force => {
            if let Err(e) = crate::uplink::detach_and_sweep(id) {
                tracing::warn!("cannot remove the network leftovers of {id:?}: {e}");
            }
            return ctx.store.remove(id);
        }
        Err(err) => return Err(err),
    };
    if container.status() != ContainerStatus::Stopped && !args.force {
        return Err(wrong_state(
            "delete",
            &container,
            " (stop it first, or use delete --force)",
        ));
    }
    delete_loaded(&mut container, args.force)?;
    ctx.store.remove(id)
}

/// Deletes a loaded container through libcontainer (killing it first when
/// `force`), then runs its poststop hooks, whose failures are warnings. `run`
/// shares it.
pub fn delete_loaded(container: &mut Container, force: bool) -> Result<()> {
    let poststop = hooks::take(&container.root, Stage::Poststop)?;
    if let Err(err) = container.delete(force) {
        if let Some(taken) = poststop {
            taken.restore(&container.root);
        }
        return Err(Error::container("delete", container.id(), err));
    }
    if let Some(taken) = poststop {
        taken.run(container);
    }
    // A policy installed in a namespace the client made outlives the
    // container with that namespace (a pod's): take it out again.
    if let Some(ours) = container.root.parent() {
        crate::network::remove_policy(ours, container.bundle());
    }
    Ok(())
}
