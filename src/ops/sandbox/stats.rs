//! `sandbox stats NAME`: live usage from the sandbox's cgroup, as JSON.

use super::{Usage, load_saved};
use crate::Result;
use crate::ops::{Context, status_word};
pub use crate::sandbox::info::Stats;
use libcontainer::container::ContainerStatus;

pub fn stats(ctx: &Context, name: &str) -> Result<Stats> {
    load_saved(ctx, name)?;
    let container = ctx.store.load(name)?;
    let network = match container.pid() {
        Some(pid) if container.status() != ContainerStatus::Stopped => {
            crate::network::stats(&ctx.store.dir(name), pid)?
        }
        _ => None,
    };
    Ok(Stats {
        id: name.to_owned(),
        status: status_word(container.status()).to_owned(),
        usage: Usage::read(&container)?,
        network,
    })
}
