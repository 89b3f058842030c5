//! `sandbox create NAME`: a persistent sandbox, kept alive by an idle init
//! (see `idle_init`), for `sandbox exec` to run commands in.

use super::{bundle_dir, prepare, root_of, save_resolved, write_config};
use crate::ops::Context;
use crate::ops::create::{Workload, create_claimed};
use crate::{Error, Result, cli, store};

/// process.args of a persistent sandbox: never executed (the init is the
/// runtime's idle loop), present because an OCI process needs args.
const IDLE_ARGS: &[&str] = &["sbx-oci-idle-init"];

pub fn create(ctx: &Context, args: &cli::SandboxCreate) -> Result<()> {
    let id = args.name.as_str();
    store::validate_id(id)?;
    let command: Vec<String> = IDLE_ARGS.iter().map(|s| s.to_string()).collect();
    let bundle = bundle_dir(ctx, id);
    let mut prepared = prepare(&args.spec, &command, id, &bundle)?;
    let claim = ctx.store.claim(id)?;
    super::apply_options(ctx, id, &mut prepared);
    let mut writable = super::stage_writable(ctx, id, &mut prepared)?;
    let (rootfs, skeleton) = root_of(ctx, &prepared)?;
    write_config(ctx.store.root(), &bundle, &mut prepared, &rootfs)?;
    // The config names the skeleton now; its descriptor must not reach the
    // sandbox's processes.
    drop(skeleton);
    save_resolved(ctx, id, &prepared.resolved)?;
    let create = cli::Create {
        bundle: bundle.clone(),
        container_id: id.to_owned(),
        ..Default::default()
    };
    let mut container = create_claimed(ctx, claim, &bundle, &create, false, Workload::Idle, false)?;
    // The container has its copies of the idmapped mounts.
    writable.release();
    container.start().map_err(|e| {
        let _ = container.delete(true);
        let _ = ctx.store.remove(id);
        Error::container("start", id, e)
    })
}
