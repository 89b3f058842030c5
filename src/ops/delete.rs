//! `delete`: remove a stopped container (with --force, any container, and
//! success when there is nothing to delete, as containerd's shim expects).

use libcontainer::container::{Container, ContainerStatus};

use super::{Context, wrong_state};
use crate::hooks::{self, Stage};
use crate::{Error, Result, cli};

pub fn delete(ctx: &Context, args: &cli::Delete) -> Result<()> {
    let id = args.container_id.as_str();
    crate::store::validate_id(id)?;
    let mut container = match ctx.store.load(id) {
        Ok(c) => c,
        // A half-created container has a directory but no state: --force
        // clears it away, with any NAT entries a crash left for its id.
        Err(Error::NotFound(_)) if args.force => {
            if let Err(e) = crate::uplink::detach_and_sweep(id) {
                tracing::warn!("cannot remove the network leftovers of {id:?}: {e}");
            }
            return ctx.store.remove(id);
        }
        // A state file cut short: libcontainer rewrites it in place, and a
        // runtime killed meanwhile leaves it empty. --force still removes
        // the container, from what libcontainer saved beside it.
        Err(err) if args.force => return remove_unreadable(ctx, id, err),
        Err(err) => return Err(err),
    };
    if container.status() != ContainerStatus::Stopped && !args.force {
        return Err(wrong_state(
            "delete",
            &container,
            " (stop it first, or use delete --force)",
        ));
    }
    delete_loaded(&mut container, args.force)?;
    ctx.store.remove(id)
}

/// `delete --force` of a container whose state cannot be read: every
/// process of its cgroup (named in libcontainer's saved config) killed and
/// reaped, the cgroup removed, its network's host side taken down, its
/// directory removed. `err` is the load's error, returned when even the
/// saved config is unreadable (nothing is removed then).
fn remove_unreadable(ctx: &Context, id: &str, err: Error) -> Result<()> {
    use libcgroups::common::{CgroupConfig, CgroupManager, create_cgroup_manager};
    let Ok(config) = libcontainer::config::YoukiConfig::load(ctx.store.container_dir(id)) else {
        return Err(err);
    };
    let manager = create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: ctx.systemd_cgroup,
        container_name: id.to_owned(),
    })
    .map_err(|e| Error::Cgroup {
        id: id.to_owned(),
        message: crate::error::chain(&e),
    })?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let pids = manager.get_all_pids().unwrap_or_default();
        if pids.is_empty() {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Cgroup {
                id: id.to_owned(),
                message: format!("processes {pids:?} did not die on SIGKILL within 5 s"),
            });
        }
        for pid in pids {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    manager.remove().map_err(|e| Error::Cgroup {
        id: id.to_owned(),
        message: format!("cannot remove the cgroup: {}", crate::error::chain(&e)),
    })?;
    if let Err(e) = crate::uplink::detach_and_sweep(id) {
        tracing::warn!("cannot remove the network leftovers of {id:?}: {e}");
    }
    tracing::warn!("{id}: unreadable state ({err}); removed from its saved config");
    ctx.store.remove(id)
}

/// Deletes a loaded container through libcontainer (killing it first when
/// `force`), then runs its poststop hooks, whose failures are warnings. `run`
/// shares it.
pub fn delete_loaded(container: &mut Container, force: bool) -> Result<()> {
    let poststop = hooks::take(&container.root, Stage::Poststop)?;
    if let Err(err) = container.delete(force) {
        if let Some(taken) = poststop {
            taken.restore(&container.root);
        }
        return Err(Error::container("delete", container.id(), err));
    }
    if let Some(taken) = poststop {
        taken.run(container);
    }
    // A policy installed in a namespace the client made outlives the
    // container with that namespace (a pod's): take it out again.
    if let Some(ours) = container.root.parent() {
        crate::network::remove_policy(ours, container.bundle());
    }
    Ok(())
}
