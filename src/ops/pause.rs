//! `pause`: freeze every process of a running container.

use super::{Context, wrong_state};
use crate::{Error, Result, cli};

pub fn pause(ctx: &Context, args: &cli::Id) -> Result<()> {
    let id = args.container_id.as_str();
    let mut container = ctx.store.load(id)?;
    if !container.can_pause() {
        return Err(wrong_state(
            "pause",
            &container,
            " (only a running container can be paused)",
        ));
    }
    container
        .pause()
        .map_err(|e| Error::container("pause", id, e))
}
