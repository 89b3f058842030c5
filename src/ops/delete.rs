//! `delete`: remove a stopped container (with --force, any container, and
//! success when there is nothing to delete, as containerd's shim expects).

use super::Context;
use crate::{Result, cli};

pub fn delete(ctx: &Context, args: &cli::Delete) -> Result<()> {
    crate::teardown::delete(ctx, &args.container_id, args.force)
}
