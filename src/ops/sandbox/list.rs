//! `sandbox list [--json]`: the sandboxes in the state root, with their
//! state, profile, limits, network mode and the time left of a budget.

use std::io::Write;

use super::budget::Budget;
use super::{Saved, bundle_dir, load_saved};
use crate::ops::Context;
use crate::ops::state::State;
pub use crate::sandbox::info::{Limits, SandboxInfo as Entry};
use crate::{Error, Result};

/// The entry of sandbox `id` (an error if it is none).
pub fn entry(ctx: &Context, id: &str) -> Result<Entry> {
    let saved = load_saved(ctx, id)?;
    let container = ctx.store.load(id)?;
    let state = State::of(&container);
    Ok(Entry {
        id: id.to_owned(),
        state: state.status.to_owned(),
        created: state.created,
        time_remaining_ms: remaining_ms(ctx, id, &saved),
        profile: saved.profile,
        limits: Limits {
            memory_bytes: saved.memory_bytes,
            cpus: saved.cpus,
            pids: saved.pids,
            wall_time_ms: saved.wall_time_ms,
            budget: saved.budget,
        },
        network: saved.network.mode,
    })
}

pub fn remaining_ms(ctx: &Context, id: &str, saved: &Saved) -> Option<u64> {
    let total = saved.wall_time_ms.filter(|_| saved.budget)?;
    Some(
        Budget::of(&bundle_dir(ctx, id), total)
            .remaining()
            .as_millis() as u64,
    )
}

pub fn list(ctx: &Context, json: bool, out: &mut dyn Write) -> Result<()> {
    // Containers that are not sandboxes, or vanish while we look, are skipped.
    let entries: Vec<Entry> = ctx
        .store
        .ids()?
        .iter()
        .filter_map(|id| entry(ctx, id).ok())
        .collect();
    let write_err = |e| Error::io("cannot write output", e);
    if json {
        let text = serde_json::to_string(&entries).unwrap_or_else(|_| "[]".into());
        return writeln!(out, "{text}").map_err(write_err);
    }
    let width = entries.iter().map(|e| e.id.len()).max().unwrap_or(0).max(2);
    writeln!(
        out,
        "{:<width$}  {:<8} {:<8} {:<9} {:<10} CREATED",
        "ID", "STATE", "PROFILE", "NETWORK", "TIME LEFT"
    )
    .map_err(write_err)?;
    for e in &entries {
        let left = e
            .time_remaining_ms
            .map_or("-".to_owned(), |ms| format!("{:.1}s", ms as f64 / 1000.0));
        writeln!(
            out,
            "{:<width$}  {:<8} {:<8} {:<9} {:<10} {}",
            e.id, e.state, e.profile, e.network, left, e.created
        )
        .map_err(write_err)?;
    }
    Ok(())
}
