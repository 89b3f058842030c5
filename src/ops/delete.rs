//! `delete`: remove a stopped container (with --force, any container, and
//! success when there is nothing to delete, as containerd's shim expects).

use libcontainer::container::ContainerStatus;

use super::{Context, wrong_state};
use crate::{Error, Result, cli};

pub fn delete(ctx: &Context, args: &cli::Delete) -> Result<()> {
    let id = args.container_id.as_str();
    crate::store::validate_id(id)?;
    let mut container = match ctx.store.load(id) {
        Ok(c) => c,
        // A half-created container has a directory but no state: --force
        // clears it away.
        Err(Error::NotFound(_)) if args.force => return ctx.store.remove(id),
        Err(err) => return Err(err),
    };
    if container.status() != ContainerStatus::Stopped && !args.force {
        return Err(wrong_state(
            "delete",
            &container,
            " (stop it first, or use delete --force)",
        ));
    }
    container
        .delete(args.force)
        .map_err(|e| Error::container("delete", id, e))?;
    ctx.store.remove(id)
}
