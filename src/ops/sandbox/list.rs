//! `sandbox list [--json]`: the sandboxes in the state root, with their
//! state, profile, limits, network mode and the time left of a budget.

use std::io::Write;

use crate::ops::Context;
use crate::{Error, Result};

pub fn list(ctx: &Context, json: bool, out: &mut dyn Write) -> Result<()> {
    let entries = crate::sandbox::state::entries(ctx)?;
    let write_err = Error::output;
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
