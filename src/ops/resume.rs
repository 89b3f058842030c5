//! `resume`: thaw a paused container.

use super::{Context, wrong_state};
use crate::{Error, Result, cli};

pub fn resume(ctx: &Context, args: &cli::Id) -> Result<()> {
    let id = args.container_id.as_str();
    let mut container = ctx.store.load(id)?;
    if !container.can_resume() {
        return Err(wrong_state(
            "resume",
            &container,
            " (only a paused container can be resumed)",
        ));
    }
    container
        .resume()
        .map_err(|e| Error::container("resume", id, e))
}
