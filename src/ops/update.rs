//! `update`: change a live container's cgroup limits, from an OCI
//! LinuxResources document (`--resources FILE|-`) and/or runc's flags.

use std::io::Read;

use libcontainer::container::ContainerStatus;
use oci_spec::runtime::LinuxResources;
use serde_json::{Map, Value, json};

use super::{Context, wrong_state};
use crate::cgroup::Cgroup;
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

/// Bytes with an optional k/m/g/t suffix (powers of 1024); -1 means unlimited.
pub fn parse_bytes(flag: &str, text: &str) -> Result<i64> {
    let bad = || {
        Error::InvalidArgument(format!(
            "{flag} {text:?}: expected bytes, optionally with k, m, g or t (e.g. 512m), or -1"
        ))
    };
    if text == "-1" {
        return Ok(-1);
    }
    let lower = text.to_ascii_lowercase();
    let trimmed = lower.trim_end_matches('b');
    let (num, mult) = match trimmed.chars().last() {
        Some('k') => (&trimmed[..trimmed.len() - 1], 1i64 << 10),
        Some('m') => (&trimmed[..trimmed.len() - 1], 1 << 20),
        Some('g') => (&trimmed[..trimmed.len() - 1], 1 << 30),
        Some('t') => (&trimmed[..trimmed.len() - 1], 1 << 40),
        _ => (trimmed, 1),
    };
    let n: i64 = num.parse().map_err(|_| bad())?;
    if n < 0 {
        return Err(bad());
    }
    n.checked_mul(mult).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(parse_bytes("--memory", "1024").unwrap(), 1024);
        assert_eq!(parse_bytes("--memory", "512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("--memory", "2G").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("--memory", "-1").unwrap(), -1);
        assert!(parse_bytes("--memory", "lots").is_err());
        assert!(parse_bytes("--memory", "-5").is_err());
    }

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
