//! Deleting a container: its processes killed (with --force), its cgroup,
//! its poststop hooks, its network's leftovers and its state directory.
//! `delete`, `run`, `sandbox run` and `sandbox rm` (and the API's destroy,
//! in-process) share it.

use libcontainer::container::{Container, ContainerStatus};

use crate::cgroup::Cgroup;
use crate::context::{Context, wrong_state};
use crate::hooks::{self, Stage};
use crate::{Error, Result};

/// Deletes container `id` of `ctx`'s state root (`force`: whatever its
/// state, and success when there is nothing to delete).
pub fn delete(ctx: &Context, id: &str, force: bool) -> Result<()> {
    crate::store::validate_id(id)?;
    let loaded = ctx.store.load(id);
    // libcontainer forks of a killed create or exec may still be at work
    // (an exec's would make the cgroup again after its removal): killed
    // first, so that none joins the cgroup after it was emptied. They hold
    // the directory's lock (Store::busy), so they are looked for (a walk of
    // every process's /proc entry) only when it cannot be taken; when it
    // can, execs that come meanwhile wait until this delete is done. The
    // network hook holds it too, and outlives a runtime killed while it
    // ran: it is let finish (it adds the way out, which this delete then
    // takes down), up to a few seconds.
    let _idle = if force {
        let mut idle = ctx.store.idle(id);
        if idle.is_none() {
            let root = ctx.store.root();
            let forks = crate::orphans::kill_forks(id, root, crate::store::DEFAULT_ROOT.as_ref());
            if forks > 0 {
                tracing::warn!("{id}: killed {forks} processes of an interrupted runtime");
            }
            idle = ctx.store.idle_within(id, std::time::Duration::from_secs(5));
        }
        idle
    } else {
        None
    };
    let mut container = match loaded {
        Ok(c) => c,
        // A half-created container has a directory but no state: --force
        // clears it away, with any NAT entries a crash left for its id.
        Err(Error::NotFound(_)) if force => {
            if let Err(e) = crate::uplink::detach_and_sweep(id) {
                tracing::warn!("cannot remove the network leftovers of {id:?}: {e}");
            }
            return ctx.store.remove(id);
        }
        // A state file cut short: libcontainer rewrites it in place, and a
        // runtime killed meanwhile leaves it empty. --force still removes
        // the container, from what libcontainer saved beside it.
        Err(err) if force => return remove_unreadable(ctx, id, err),
        Err(err) => return Err(err),
    };
    if container.status() != ContainerStatus::Stopped && !force {
        return Err(wrong_state(
            "delete",
            &container,
            " (stop it first, or use delete --force)",
        ));
    }
    delete_loaded(&mut container, force)?;
    ctx.store.remove(id)
}

/// `delete --force` of a container whose state cannot be read: every
/// process of its cgroup (named in libcontainer's saved config) killed and
/// reaped, the cgroup removed, its network's host side taken down, its
/// directory removed. `err` is the load's error, logged.
fn remove_unreadable(ctx: &Context, id: &str, err: Error) -> Result<()> {
    // libcontainer saves its config before it makes the cgroup or forks:
    // without one (a runtime killed that early), there is nothing but files.
    if let Ok(config) = libcontainer::config::YoukiConfig::load(ctx.store.container_dir(id)) {
        let cgroup = Cgroup::at(id, config.cgroup_path, ctx.systemd_cgroup)?;
        cgroup.kill_all()?;
        cgroup.remove()?;
    }
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
    // libcontainer kills the cgroup's processes only for a live init: a
    // runtime killed mid-create leaves a state without a pid and an init
    // waiting in the cgroup, and a container without its own pid namespace
    // leaves processes behind its dead init. Either would make the cgroup's
    // removal fail. (A cgroup manager costs ~1 ms on v1, hence the check.)
    // For a live one with force, libcontainer SIGKILLs itself but then gives
    // the cgroup's removal about 100 ms; processes that take longer to die (a
    // loaded or slow host: cgroup v2 in a TCG guest took ~1 s) make it
    // fail with "could not delete". Killing them ourselves first waits up
    // to 5 s for the cgroup to empty.
    // The status as it is now: `run` holds a container loaded as running
    // whose init has since exited (a stale status would cost it a cgroup
    // manager and a kill sweep).
    crate::store::refresh(container);
    let leftovers = match container.status() {
        _ if container.pid().is_none() => true,
        ContainerStatus::Stopped => crate::cgroup::may_have_processes(container),
        _ => force,
    };
    // The directories found once, for the kill and the removal.
    let dirs = crate::cgroup::Dirs::of(container);
    if leftovers {
        match &dirs {
            Some(dirs) => {
                let init = crate::store::init_pidfd(container);
                dirs.kill_all(container.id(), init)?;
                // Every process of its cgroup is gone, the init with them.
                container.set_status(ContainerStatus::Stopped);
            }
            None => {
                if let Ok(cgroup) = Cgroup::of(container) {
                    cgroup.kill_all()?;
                }
                // Its init is among the dead now: stopped.
                crate::store::refresh(container);
            }
        }
    }
    // The common case, a stopped container whose cgroup is empty, without
    // libcontainer's cgroup manager (see cgroup::Dirs).
    let mut deleted = if container.status() == ContainerStatus::Stopped
        && container.intel_rdt_dir().is_none()
        && dirs.as_ref().is_some_and(|d| d.remove())
    {
        std::fs::remove_dir_all(&container.root)
            .map_err(libcontainer::error::LibcontainerError::OtherIO)
    } else {
        container.delete(force)
    };
    if deleted.is_err() && force {
        // The init killed above may vanish between libcontainer's two
        // looks at /proc/<pid> ("File not found: /proc/N/stat", seen in
        // the TCG guest); a saved config cut short by an older runtime's
        // kill fails libcontainer's own kill. Once more, with the status
        // read again and the config made anew from the bundle.
        if container.spec().is_err() {
            resave_config(container);
        }
        crate::store::refresh(container);
        deleted = container.delete(force);
    }
    if let Err(err) = deleted {
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

/// libcontainer's saved config made again from the bundle's config.json
/// (hooks and cgroup path), for `delete --force` when it cannot be read.
fn resave_config(container: &Container) {
    let config = oci_spec::runtime::Spec::load(container.bundle().join("config.json"))
        .ok()
        .and_then(|spec| libcontainer::config::YoukiConfig::from_spec(&spec, container.id()).ok());
    match config {
        Some(config) => {
            if let Err(e) = hooks::save(&config, &container.root) {
                tracing::warn!("{}: {e}", container.id());
            }
        }
        None => tracing::warn!(
            "{}: neither the saved config nor the bundle's can be read",
            container.id()
        ),
    }
}
