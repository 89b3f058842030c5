//! `events`: container statistics as runc's JSON events
//! (`{"type":"stats","id":...,"data":{cpu,memory,pids,blkio}}`), the shape
//! containerd's shim decodes. `--stats` prints one; otherwise one every
//! `--interval` until the container stops. A container with an egress
//! policy also gets `data.network`: the policy's counters and the
//! destinations of dropped attempts.

use std::io::Write;

use libcgroups::stats::{BlkioDeviceStat, MemoryData, Stats};
use libcontainer::container::ContainerStatus;
use serde_json::{Value, json};

use super::{Context, wrong_state};
use crate::cgroup::Cgroup;
use crate::units::parse_duration;
use crate::{Error, Result, cli};

pub fn events(ctx: &Context, args: &cli::Events, out: &mut dyn Write) -> Result<()> {
    let id = args.container_id.as_str();
    let interval = parse_duration("--interval", &args.interval)?;
    let container = ctx.store.load(id)?;
    if container.status() == ContainerStatus::Stopped {
        return Err(wrong_state("read events of", &container, ""));
    }
    let cgroup = Cgroup::of(&container)?;
    loop {
        let mut data = runc_stats(&cgroup.stats()?);
        // The egress policy's counters and blocked destinations, when the
        // container has one (see network_hook).
        if let Some(pid) = container.pid()
            && let Some(net) = crate::network::stats(&ctx.store.dir(id), pid)?
        {
            data["network"] = net;
        }
        let event = json!({ "type": "stats", "id": id, "data": data });
        writeln!(out, "{event}")
            .and_then(|_| out.flush())
            .map_err(Error::output)?;
        if args.stats {
            return Ok(());
        }
        std::thread::sleep(interval);
        match ctx.store.load(id) {
            Ok(c) if c.status() != ContainerStatus::Stopped => {}
            _ => return Ok(()),
        }
    }
}

fn memory_entry(m: &MemoryData) -> Value {
    json!({ "limit": m.limit, "usage": m.usage, "max": m.max_usage, "failcnt": m.fail_count })
}

fn blkio_entries(entries: &[BlkioDeviceStat]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                json!({ "major": e.major, "minor": e.minor,
                        "op": e.op_type.clone().unwrap_or_default(), "value": e.value })
            })
            .collect(),
    )
}

/// libcgroups' statistics in runc's field names.
pub fn runc_stats(s: &Stats) -> Value {
    let u = &s.cpu.usage;
    json!({
        "cpu": {
            "usage": {
                "total": u.usage_total, "kernel": u.usage_kernel, "user": u.usage_user,
                "percpu": u.per_core_usage_total,
                "percpu_kernel": u.per_core_usage_kernel,
                "percpu_user": u.per_core_usage_user,
            },
            "throttling": {
                "periods": s.cpu.throttling.periods,
                "throttledPeriods": s.cpu.throttling.throttled_periods,
                "throttledTime": s.cpu.throttling.throttled_time,
            },
        },
        "memory": {
            "cache": s.memory.cache,
            "usage": memory_entry(&s.memory.memory),
            "swap": memory_entry(&s.memory.memswap),
            "kernel": memory_entry(&s.memory.kernel),
            "kernelTCP": memory_entry(&s.memory.kernel_tcp),
            "raw": s.memory.stats,
        },
        "pids": { "current": s.pids.current, "limit": s.pids.limit },
        "blkio": {
            "ioServiceBytesRecursive": blkio_entries(&s.blkio.service_bytes),
            "ioServicedRecursive": blkio_entries(&s.blkio.serviced),
        },
        "hugetlb": {},
    })
}
