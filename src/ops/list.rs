//! `list`: every container in the state root.

use std::io::Write;

use super::Context;
use super::state::{Owners, State};
use crate::cli::{self, ListFormat};
use crate::{Error, Result};

pub fn list(ctx: &Context, args: &cli::List, out: &mut dyn Write) -> Result<()> {
    // A container that vanishes or is half-created while we look is skipped.
    let mut owners = Owners::default();
    let states: Vec<State> = ctx
        .store
        .ids()?
        .iter()
        .filter_map(|id| ctx.store.load(id).ok())
        .map(|c| State::with_owners(&c, &mut owners))
        .collect();
    // One write, not one per line (stdout is line-buffered).
    let mut out = std::io::BufWriter::new(out);
    print(args, &states, &mut out)?;
    out.flush().map_err(Error::output)
}

fn print(args: &cli::List, states: &[State], out: &mut impl Write) -> Result<()> {
    let write_err = Error::output;
    if args.quiet {
        for s in states {
            writeln!(out, "{}", s.id).map_err(write_err)?;
        }
        return Ok(());
    }
    if args.format == ListFormat::Json {
        let json = serde_json::to_string(states).unwrap_or_else(|_| "[]".into());
        return writeln!(out, "{json}").map_err(write_err);
    }
    let width = states.iter().map(|s| s.id.len()).max().unwrap_or(0).max(2);
    writeln!(
        out,
        "{:<width$}   {:<8} {:<8} {:<40} {:<32} OWNER",
        "ID", "PID", "STATUS", "BUNDLE", "CREATED"
    )
    .map_err(write_err)?;
    for s in states {
        writeln!(
            out,
            "{:<width$}   {:<8} {:<8} {:<40} {:<32} {}",
            s.id,
            s.pid,
            s.status,
            s.bundle.display(),
            s.created,
            s.owner
        )
        .map_err(write_err)?;
    }
    Ok(())
}
