//! A sandbox's own state beside its container's, in its state directory
//! (which is also its bundle): the resolved spec it was made from
//! (`sandbox.json`), its budget's ledger, its snapshots. And what is read
//! or done from it without forking, so the CLI and the API's in-process
//! calls share it: its entry in a list, its live usage, its removal.

use std::path::PathBuf;

use libcontainer::container::{Container, ContainerStatus};

use super::Resolved;
use super::budget::Budget;
use super::info::{Limits, SandboxInfo, Stats, Usage};
use crate::cgroup::Cgroup;
use crate::context::{Context, status_word};
use crate::{Error, Result};

pub const SNAPSHOT_DIR: &str = "@snapshots";
const RESOLVED_FILE: &str = "sandbox.json";

/// The bundle directory of sandbox `id`: its state directory.
pub fn bundle_dir(ctx: &Context, id: &str) -> PathBuf {
    ctx.store.dir(id)
}

pub fn save_resolved(ctx: &Context, id: &str, r: &Resolved) -> Result<()> {
    let path = bundle_dir(ctx, id).join(RESOLVED_FILE);
    let json = serde_json::to_vec(r).unwrap_or_default();
    std::fs::write(&path, json)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

/// What `sandbox exec/stats/snapshot` need to know about a sandbox.
#[derive(serde::Deserialize)]
pub struct Saved {
    pub workdir: PathBuf,
    pub wall_time_ms: Option<u64>,
    #[serde(default)]
    pub budget: bool,
    #[serde(default)]
    pub profile: String,
    #[serde(default)]
    pub memory_bytes: u64,
    #[serde(default)]
    pub cpus: f64,
    #[serde(default)]
    pub pids: u64,
    #[serde(default)]
    pub network: SavedNetwork,
}

#[derive(serde::Deserialize, Default)]
pub struct SavedNetwork {
    #[serde(default)]
    pub mode: String,
}

pub fn load_saved(ctx: &Context, id: &str) -> Result<Saved> {
    let path = bundle_dir(ctx, id).join(RESOLVED_FILE);
    let text = std::fs::read_to_string(&path).map_err(|_| {
        if ctx.store.exists(id) {
            Error::InvalidArgument(format!(
                "container {id:?} is not a sandbox (create one with `sbx-oci sandbox create`)"
            ))
        } else {
            Error::NotFound(id.to_owned())
        }
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))
}

impl Usage {
    /// The usage of `container`, from its cgroup.
    pub fn read(container: &Container) -> Result<Usage> {
        let cgroup = Cgroup::of(container)?;
        let s = cgroup.stats()?;
        let io = |op: &str| {
            s.blkio
                .service_bytes
                .iter()
                .filter(|e| {
                    e.op_type
                        .as_deref()
                        .is_some_and(|o| o.eq_ignore_ascii_case(op))
                })
                .map(|e| e.value)
                .sum()
        };
        Ok(Usage {
            cpu_time_ms: s.cpu.usage.usage_total / 1_000_000,
            memory_bytes: s.memory.memory.usage,
            peak_memory_bytes: s.memory.memory.max_usage,
            memory_limit_bytes: s.memory.memory.limit,
            pids: s.pids.current,
            pids_limit: s.pids.limit,
            read_bytes: io("read"),
            write_bytes: io("write"),
            oom_kills: cgroup.oom_kills(),
        })
    }
}

/// The entry of sandbox `id` (an error if it is none).
pub fn entry(ctx: &Context, id: &str) -> Result<SandboxInfo> {
    let saved = load_saved(ctx, id)?;
    let container = ctx.store.load(id)?;
    Ok(SandboxInfo {
        id: id.to_owned(),
        state: status_word(container.status()).to_owned(),
        created: container
            .created()
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .unwrap_or_default(),
        time_remaining_ms: remaining_ms(ctx, id, &saved),
        profile: saved.profile,
        limits: Limits {
            memory_bytes: saved.memory_bytes,
            cpus: saved.cpus,
            pids: saved.pids,
            wall_time_ms: saved.wall_time_ms,
            budget: saved.budget,
        },
        network: saved.network.mode,
    })
}

pub fn remaining_ms(ctx: &Context, id: &str, saved: &Saved) -> Option<u64> {
    let total = saved.wall_time_ms.filter(|_| saved.budget)?;
    Some(
        Budget::of(&bundle_dir(ctx, id), total)
            .remaining()
            .as_millis() as u64,
    )
}

/// Every sandbox in the state root; containers that are not sandboxes, or
/// vanish while we look, are skipped.
pub fn entries(ctx: &Context) -> Result<Vec<SandboxInfo>> {
    Ok(ctx
        .store
        .ids()?
        .iter()
        .filter_map(|id| entry(ctx, id).ok())
        .collect())
}

/// The live usage of sandbox `name`, its state, and its network's counters
/// and DNS audit.
pub fn stats(ctx: &Context, name: &str) -> Result<Stats> {
    load_saved(ctx, name)?;
    let container = ctx.store.load(name)?;
    let network = match container.pid() {
        Some(pid) if container.status() != ContainerStatus::Stopped => {
            crate::network::stats(&ctx.store.dir(name), pid)?
        }
        _ => None,
    };
    Ok(Stats {
        id: name.to_owned(),
        status: status_word(container.status()).to_owned(),
        usage: Usage::read(&container)?,
        network,
    })
}

/// Removes sandbox `name` with its snapshots; without `force`, not while
/// a command runs in it (any process but its idle init).
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
    crate::teardown::delete(ctx, name, true)
}
