//! What the runtime answers, as the API's types (the JSON of `sandbox
//! list --json`, `sandbox stats` and `sandbox probe --json`).

use serde::Deserialize;

use super::{ApiError, Result};

pub(super) fn parse<T: serde::de::DeserializeOwned>(op: &'static str, out: &[u8]) -> Result<T> {
    serde_json::from_slice(out).map_err(|e| ApiError::Protocol {
        op,
        message: e.to_string(),
    })
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct SandboxInfo {
    pub id: String,
    /// "created", "running", "paused" or "stopped".
    pub state: String,
    pub profile: String,
    /// RFC 3339.
    pub created: String,
    pub limits: Limits,
    /// "none", "allowlist" or "full".
    pub network: String,
    /// What is left of a budget (limits.budget), in ms.
    #[serde(default)]
    pub time_remaining_ms: Option<u64>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpus: f64,
    pub pids: u64,
    pub wall_time_ms: Option<u64>,
    pub budget: bool,
}

/// Live usage, from the sandbox's cgroup.
#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct Usage {
    pub status: String,
    pub cpu_time_ms: u64,
    pub memory_bytes: u64,
    pub peak_memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub pids: u64,
    pub pids_limit: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub oom_kills: u64,
    /// The egress policy's counters and the DNS gatekeeper's audit.
    #[serde(default)]
    pub network: Option<serde_json::Value>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct Probe {
    pub kernel: String,
    pub cgroup: Cgroups,
    pub seccomp: Seccomp,
    pub overlayfs: bool,
    pub idmapped_mounts: bool,
    pub nftables: bool,
    pub user_namespaces: bool,
    pub pidfd: bool,
    pub profiles: Vec<ProfileSupport>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct Cgroups {
    pub version: String,
    pub controllers: Vec<String>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct Seccomp {
    pub available: bool,
    pub libseccomp: Option<String>,
}

#[derive(Deserialize, Debug, Clone, PartialEq)]
pub struct ProfileSupport {
    pub profile: String,
    pub memory_limit: bool,
    pub cpu_limit: bool,
    pub pids_limit: bool,
    pub io_accounting: bool,
    pub seccomp: bool,
    pub network_allowlist: bool,
    pub complete: bool,
}
