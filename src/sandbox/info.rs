//! What the sandbox commands print as JSON, and the API reads back: one
//! set of types for both sides (`sandbox list --json`, `sandbox stats`,
//! `sandbox probe --json`).

use serde::{Deserialize, Serialize};

use super::model::Profile;

/// A sandbox as `sandbox list` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
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
    /// What is left of a budget (limits.budget), in ms; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_remaining_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Limits {
    pub memory_bytes: u64,
    pub cpus: f64,
    pub pids: u64,
    pub wall_time_ms: Option<u64>,
    pub budget: bool,
}

/// A sandbox's resource usage, read from its cgroup.
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub struct Usage {
    pub cpu_time_ms: u64,
    pub memory_bytes: u64,
    pub peak_memory_bytes: u64,
    pub memory_limit_bytes: u64,
    pub pids: u64,
    pub pids_limit: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub oom_kills: u64,
}

/// `sandbox stats`: live usage, and the network's counters and audit.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Stats {
    pub id: String,
    pub status: String,
    #[serde(flatten)]
    pub usage: Usage,
    /// What the egress policy allowed and dropped (see `events --stats`);
    /// absent for a sandbox without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<serde_json::Value>,
}

/// `sandbox probe`: what this host gives sandboxes.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Probe {
    pub kernel: String,
    pub cgroup: Cgroups,
    pub seccomp: Seccomp,
    pub overlayfs: bool,
    /// mount_setattr(MOUNT_ATTR_IDMAP) exists (Linux ≥ 5.12); each file
    /// system must support it too (ext4, xfs, btrfs; tmpfs from 6.3).
    pub idmapped_mounts: bool,
    pub nftables: bool,
    pub user_namespaces: bool,
    /// pidfd_open (Linux ≥ 5.3): the DNS gatekeeper follows its sandbox by it.
    pub pidfd: bool,
    pub profiles: Vec<ProfileSupport>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Cgroups {
    /// "v1", "hybrid" or "v2".
    pub version: String,
    pub controllers: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Seccomp {
    pub available: bool,
    pub libseccomp: Option<String>,
}

/// What a sandbox of a profile gets on this host.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct ProfileSupport {
    pub profile: Profile,
    pub memory_limit: bool,
    pub cpu_limit: bool,
    pub pids_limit: bool,
    pub io_accounting: bool,
    pub seccomp: bool,
    pub network_allowlist: bool,
    /// Everything above: the profile is enforced as documented.
    pub complete: bool,
}
