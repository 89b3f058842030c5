//! `sandbox rm [--force] NAME...`: removes sandboxes with their snapshots.
//! Without --force, a sandbox in which a command still runs (any process
//! but its idle init) is left alone, with an error saying so.

use crate::ops::Context;
use crate::sandbox::state::rm_one;
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
