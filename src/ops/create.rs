//! `create`: build a container from a bundle; its process waits for `start`.

use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;

use super::{Context, reap_children};
use crate::cli;
use crate::{Error, Result, copyup, selfexe};

/// Creates the container. `foreground` keeps the caller's terminal and makes
/// the init process our child (for `run` without --detach).
pub fn create(ctx: &Context, args: &cli::Create, foreground: bool) -> Result<Container> {
    let id = args.container_id.as_str();
    let bundle = resolve_bundle(&args.bundle)?;
    selfexe::ensure_protected()?;

    // Claiming first makes a concurrent create of the same id fail here, before
    // any work, and is released (with whatever is below it) on every error.
    let claim = ctx.store.claim(id)?;
    // Only a config using runc's tmpcopyup is rewritten (see `copyup`).
    let copyup = copyup::prepare(&bundle, &ctx.store.dir(id).join("@bundle"))?;
    let lib_bundle = copyup
        .as_ref()
        .map_or(bundle.as_path(), |p| p.shadow_bundle());
    let built = ContainerBuilder::new(id.to_owned(), SyscallType::default())
        .with_root_path(ctx.store.dir(id))
        .and_then(|b| b.with_pid_file(args.pid_file.as_ref()))
        .map(|b| {
            b.with_console_socket(args.console_socket.as_ref())
                .with_preserved_fds(args.preserve_fds)
                .as_init(lib_bundle)
                .with_systemd(ctx.systemd_cgroup)
                .with_detach(!foreground)
                .with_no_pivot(args.no_pivot)
        })
        .and_then(|b| b.build());
    match built {
        Ok(mut container) => {
            if let Some(plan) = copyup
                && let Err(err) = plan.finish(&mut container)
            {
                let _ = container.delete(true);
                reap_children();
                return Err(err);
            }
            claim.keep();
            Ok(container)
        }
        Err(err) => {
            // libcontainer removed its state and cgroup; its child processes
            // may still be ours to kill and reap.
            reap_children();
            drop(claim);
            Err(diagnose(&bundle, id, err))
        }
    }
}

fn resolve_bundle(bundle: &Path) -> Result<PathBuf> {
    let abs = std::fs::canonicalize(bundle).map_err(|e| Error::Bundle {
        path: bundle.to_owned(),
        reason: format!("cannot open the bundle directory: {e}"),
    })?;
    if !abs.join("config.json").is_file() {
        return Err(Error::Bundle {
            path: abs,
            reason: "no config.json in it (`sbx-oci spec` writes a default one)".into(),
        });
    }
    Ok(abs)
}

/// Turns a failed create into a message about the bundle when the bundle is
/// the cause. Runs only on the error path, so success pays nothing for it.
fn diagnose(bundle: &Path, id: &str, err: libcontainer::error::LibcontainerError) -> Error {
    let bundle_error = |reason: String| Error::Bundle {
        path: bundle.to_owned(),
        reason,
    };
    let text = match std::fs::read_to_string(bundle.join("config.json")) {
        Ok(text) => text,
        Err(e) => return bundle_error(format!("cannot read config.json: {e}")),
    };
    let spec: oci_spec::runtime::Spec = match serde_json::from_str(&text) {
        Ok(spec) => spec,
        Err(e) => return bundle_error(format!("config.json is not a valid OCI config: {e}")),
    };
    if let Some(root) = spec.root() {
        let rootfs = if root.path().is_absolute() {
            root.path().to_owned()
        } else {
            bundle.join(root.path())
        };
        if !rootfs.is_dir() {
            return bundle_error(format!(
                "root.path {} does not exist or is not a directory",
                rootfs.display()
            ));
        }
    } else {
        return bundle_error("config.json has no root (root.path names the rootfs)".into());
    }
    if spec.process().is_none() {
        return bundle_error("config.json has no process to run".into());
    }
    Error::container("create", id, err)
}
