//! `sandbox bundle`: the OCI bundle of a spec, for any OCI runtime.

use super::{prepare, require_command, write_bundle};
use crate::{Result, cli, store};

pub fn bundle(args: &cli::SandboxBundle) -> Result<()> {
    store::validate_id(&args.name)?;
    // Hooks and mounts name the bundle's files by absolute path.
    let out = std::path::absolute(&args.out)
        .map_err(|e| crate::Error::io(format!("{}", args.out.display()), e))?;
    let prepared = prepare(&args.spec, &args.command, &args.name, &out)?;
    require_command(&prepared)?;
    write_bundle(&out, &prepared)
}
