//! `start`: run the user's process of a created container.

use super::{Context, wrong_state};
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
    container
        .start()
        .map_err(|e| Error::container("start", id, e))
}
