//! `sandbox stats NAME`: live usage from the sandbox's cgroup, as JSON.

use serde::Serialize;

use super::{Usage, load_saved};
use crate::Result;
use crate::ops::{Context, status_word};
use libcontainer::container::ContainerStatus;

#[derive(Serialize)]
pub struct Stats {
    pub id: String,
    pub status: &'static str,
    #[serde(flatten)]
    pub usage: Usage,
    /// What the egress policy allowed and dropped (see `events --stats`);
    /// absent for a sandbox without one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<serde_json::Value>,
}

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
        status: status_word(container.status()),
        usage: Usage::read(&container)?,
        network,
    })
}
