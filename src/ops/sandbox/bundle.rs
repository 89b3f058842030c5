//! `sandbox bundle`: the OCI bundle of a spec, for any OCI runtime.

use super::{prepare, require_command, write_bundle};
use crate::{Result, cli, store};

pub fn bundle(args: &cli::SandboxBundle) -> Result<()> {
    store::validate_id(&args.name)?;
    let prepared = prepare(&args.spec, &args.command, &args.name)?;
    require_command(&prepared)?;
    write_bundle(&args.out, &prepared)
}
