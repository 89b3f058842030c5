//! `update`: change a live container's cgroup limits, from an OCI
//! LinuxResources document (`--resources FILE|-`) and/or runc's flags.

use std::io::Read;

use libcontainer::container::ContainerStatus;
use oci_spec::runtime::LinuxResources;
use serde_json::{Map, Value, json};

use super::{Context, wrong_state};
use crate::cgroup::Cgroup;
use crate::units::parse_bytes;
use crate::{Error, Result, cli};

pub fn update(ctx: &Context, args: &cli::Update) -> Result<()> {
    let id = args.container_id.as_str();
    let base = match &args.resources {
        None => json!({}),
        Some(path) => {
            let mut text = String::new();
            let read = if path.as_os_str() == "-" {
                std::io::stdin().read_to_string(&mut text)
            } else {
                std::fs::File::open(path).and_then(|mut f| f.read_to_string(&mut text))
            };
            read.map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
            serde_json::from_str(&text).map_err(|e| {
                Error::InvalidArgument(format!(
                    "--resources {}: not a JSON object of OCI linux.resources: {e}",
                    path.display()
                ))
            })?
        }
    };
    let resources = resources(base, args)?;
    let container = ctx.store.load(id)?;
    if container.status() == ContainerStatus::Stopped {
        return Err(wrong_state("update", &container, ""));
    }
    Cgroup::of(&container)?.apply(&resources)
}

/// Applies the flags on top of `base` (pure, so it is tested without a container).
pub fn resources(mut base: Value, args: &cli::Update) -> Result<LinuxResources> {
    let obj = base
        .as_object_mut()
        .ok_or_else(|| Error::InvalidArgument("--resources must hold a JSON object".into()))?;
    let mut set = |section: &str, key: &str, value: Value| {
        let entry = obj
            .entry(section.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(map) = entry.as_object_mut() {
            map.insert(key.to_owned(), value);
        }
    };
    let bytes =
        |flag: &str, v: &Option<String>| v.as_deref().map(|t| parse_bytes(flag, t)).transpose();
    if let Some(v) = bytes("--memory", &args.memory)? {
        set("memory", "limit", json!(v));
    }
    if let Some(v) = bytes("--memory-reservation", &args.memory_reservation)? {
        set("memory", "reservation", json!(v));
    }
    if let Some(v) = bytes("--memory-swap", &args.memory_swap)? {
        set("memory", "swap", json!(v));
    }
    if let Some(v) = bytes("--kernel-memory", &args.kernel_memory)? {
        set("memory", "kernel", json!(v));
    }
    if let Some(v) = bytes("--kernel-memory-tcp", &args.kernel_memory_tcp)? {
        set("memory", "kernelTCP", json!(v));
    }
    if let Some(v) = args.cpu_share {
        set("cpu", "shares", json!(v));
    }
    if let Some(v) = args.cpu_period {
        set("cpu", "period", json!(v));
    }
    if let Some(v) = args.cpu_quota {
        set("cpu", "quota", json!(v));
    }
    if let Some(v) = args.cpu_rt_period {
        set("cpu", "realtimePeriod", json!(v));
    }
    if let Some(v) = args.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", json!(v));
    }
    if let Some(v) = &args.cpuset_cpus {
        set("cpu", "cpus", json!(v));
    }
    if let Some(v) = &args.cpuset_mems {
        set("cpu", "mems", json!(v));
    }
    if let Some(v) = args.blkio_weight {
        set("blockIO", "weight", json!(v));
    }
    if let Some(v) = args.pids_limit {
        set("pids", "limit", json!(v));
    }
    serde_json::from_value(base)
        .map_err(|e| Error::InvalidArgument(format!("invalid resources: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file() {
        let args = cli::Update {
            memory: Some("64m".into()),
            pids_limit: Some(32),
            ..Default::default()
        };
        let r = resources(
            json!({"memory": {"limit": 1, "swap": 5}, "cpu": {"shares": 2}}),
            &args,
        )
        .unwrap();
        let m = r.memory().as_ref().unwrap();
        assert_eq!(m.limit(), Some(64 << 20));
        assert_eq!(m.swap(), Some(5));
        assert_eq!(r.cpu().as_ref().unwrap().shares(), Some(2));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 32);
    }
}
