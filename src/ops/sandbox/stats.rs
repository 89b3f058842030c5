//! `sandbox stats NAME`: live usage from the sandbox's cgroup, as JSON.

use serde::Serialize;

use super::{Usage, load_saved};
use crate::Result;
use crate::ops::{Context, status_word};

#[derive(Serialize)]
pub struct Stats {
    pub id: String,
    pub status: &'static str,
    #[serde(flatten)]
    pub usage: Usage,
}

pub fn stats(ctx: &Context, name: &str) -> Result<Stats> {
    load_saved(ctx, name)?;
    let container = ctx.store.load(name)?;
    Ok(Stats {
        id: name.to_owned(),
        status: status_word(container.status()),
        usage: Usage::read(&container)?,
    })
}
