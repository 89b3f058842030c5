//! `sandbox rm [--force] NAME...`: removes sandboxes with their snapshots.
//! Without --force, a sandbox in which a command still runs (any process
//! but its idle init) is left alone, with an error saying so.

use super::load_saved;
use crate::cgroup::Cgroup;
use crate::ops::Context;
use crate::{Error, Result, cli};

pub fn rm(ctx: &Context, args: &cli::SandboxRm) -> Result<()> {
    if let [name] = args.names.as_slice() {
        return rm_one(ctx, name, args.force);
    }
    let mut failed = Vec::new();
    for name in &args.names {
        if let Err(e) = rm_one(ctx, name, args.force) {
            eprintln!("sbx-oci: error: {e}");
            failed.push(name.as_str());
        }
    }
    match failed.len() {
        0 => Ok(()),
        _ => Err(Error::InvalidArgument(format!(
            "not removed: {}",
            failed.join(", ")
        ))),
    }
}

pub fn rm_one(ctx: &Context, name: &str, force: bool) -> Result<()> {
    crate::store::validate_id(name)?;
    load_saved(ctx, name)?;
    if !force && let Ok(container) = ctx.store.load(name) {
        let busy = Cgroup::of(&container)
            .and_then(|c| c.pids())
            .map(|p| p.len().saturating_sub(1))
            .unwrap_or(0);
        if busy > 0 {
            return Err(Error::InvalidArgument(format!(
                "sandbox {name:?} has {busy} processes running besides its init: \
                 give --force to kill them"
            )));
        }
    }
    crate::ops::delete::delete(
        ctx,
        &cli::Delete {
            force: true,
            container_id: name.to_owned(),
        },
    )
}
