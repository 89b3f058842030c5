//! The SandboxSpec (the JSON users write), its profiles, and the resolved
//! form every later step works on.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The JSON document, as written. Every field is optional; the profile
/// fills in what is missing. Unknown fields are an error.
#[derive(Deserialize, Serialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    pub profile: Option<Profile>,
    /// "host" (the host's system directories, read-only) or a rootfs path.
    pub rootfs: Option<String>,
    pub workdir: Option<PathBuf>,
    #[serde(default)]
    pub allowed_paths_ro: Vec<PathBuf>,
    #[serde(default)]
    pub allowed_paths_rw: Vec<PathBuf>,
    #[serde(default)]
    pub bind_mounts: Vec<BindMount>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub user: Option<User>,
    #[serde(default)]
    pub limits: Limits,
    pub network: Option<Network>,
    /// The command, when the spec is run or bundled without one on the
    /// command line.
    pub command: Option<Vec<String>>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    Minimal,
    #[default]
    Standard,
    Full,
}

#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: PathBuf,
    #[serde(default)]
    pub readonly: bool,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

#[derive(Deserialize, Serialize, Default, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub memory_bytes: Option<u64>,
    pub cpus: Option<f64>,
    pub pids: Option<u64>,
    pub wall_time_ms: Option<u64>,
    pub open_files: Option<u64>,
    pub tmp_bytes: Option<u64>,
    /// A persistent sandbox's `wall_time_ms` is a budget for all its execs
    /// together (their wall times summed), not a limit for each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<bool>,
}

#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    #[default]
    None,
    Allowlist,
    Full,
}

#[derive(Deserialize, Serialize, Default, Clone, Debug, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(default)]
    pub mode: NetworkMode,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// Upstream resolvers: the gatekeeper asks them for the listed names
    /// (allowlist), or the sandbox asks them itself (full); written to its
    /// /etc/resolv.conf. Absent: the host's (from its resolv.conf); `[]`:
    /// none at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns: Option<Vec<String>>,
    /// Inbound ports open to new connections (`[tcp://|udp://]PORT` or
    /// `PORT-PORT`), from the host, at the sandbox's address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<String>,
    /// Where the sandbox's IPv4 address comes from (default 10.199.0.0/16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_pool: Option<String>,
    /// Where its IPv6 address comes from (default fd5b:c0c1:a7c4::/64);
    /// `"none"`: no IPv6.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_pool: Option<String>,
    /// Audit mode: nothing is dropped; what would be is recorded.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub learn: bool,
    /// The DNS gatekeeper's limits (pin lifetimes, caps, query rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gatekeeper: Option<crate::netpolicy::file::Gatekeeper>,
}

/// A profile's defaults: the values a spec gets for the fields it omits.
#[derive(Clone, Debug, PartialEq)]
pub struct Defaults {
    pub user: User,
    /// Capabilities kept (all others are dropped).
    pub capabilities: &'static [&'static str],
    pub memory_bytes: u64,
    pub cpus: f64,
    pub pids: u64,
    pub wall_time_ms: Option<u64>,
    pub open_files: u64,
    pub tmp_bytes: u64,
}

const MIB: u64 = 1 << 20;
const NOBODY: User = User {
    uid: 65534,
    gid: 65534,
};

/// runc's default capability set, which the `full` profile keeps.
pub const RUNC_DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

impl Profile {
    pub fn defaults(self) -> Defaults {
        match self {
            Profile::Minimal => Defaults {
                user: NOBODY,
                capabilities: &[],
                memory_bytes: 256 * MIB,
                cpus: 0.5,
                pids: 64,
                wall_time_ms: Some(30_000),
                open_files: 256,
                tmp_bytes: 64 * MIB,
            },
            Profile::Standard => Defaults {
                user: NOBODY,
                capabilities: &[],
                memory_bytes: 1024 * MIB,
                cpus: 1.0,
                pids: 256,
                wall_time_ms: Some(300_000),
                open_files: 1024,
                tmp_bytes: 256 * MIB,
            },
            Profile::Full => Defaults {
                user: User { uid: 0, gid: 0 },
                capabilities: RUNC_DEFAULT_CAPS,
                memory_bytes: 4096 * MIB,
                cpus: 2.0,
                pids: 1024,
                wall_time_ms: None,
                open_files: 4096,
                tmp_bytes: 1024 * MIB,
            },
        }
    }
}

/// Where the sandbox's root comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum RootfsSource {
    /// An empty root with the host's system directories bound read-only.
    Host,
    /// A rootfs directory (made read-only).
    Path(PathBuf),
}

/// A spec with its profile applied: every value concrete.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Resolved {
    pub profile: Profile,
    pub rootfs: RootfsSource,
    pub workdir: PathBuf,
    pub allowed_paths_ro: Vec<PathBuf>,
    pub allowed_paths_rw: Vec<PathBuf>,
    pub bind_mounts: Vec<BindMount>,
    pub env: BTreeMap<String, String>,
    pub user: User,
    pub capabilities: Vec<String>,
    pub memory_bytes: u64,
    pub cpus: f64,
    pub pids: u64,
    pub wall_time_ms: Option<u64>,
    pub budget: bool,
    pub open_files: u64,
    pub tmp_bytes: u64,
    pub network: Network,
    pub command: Vec<String>,
}

pub const DEFAULT_WORKDIR: &str = "/workspace";

impl SandboxSpec {
    /// Fills what the spec leaves out from its profile. A `wall_time_ms` of
    /// 0 means no wall-time limit.
    pub fn resolve(&self) -> Resolved {
        let profile = self.profile.unwrap_or_default();
        let d = profile.defaults();
        let l = &self.limits;
        Resolved {
            profile,
            rootfs: match self.rootfs.as_deref() {
                None | Some("host") => RootfsSource::Host,
                Some(path) => RootfsSource::Path(PathBuf::from(path)),
            },
            workdir: self
                .workdir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_WORKDIR)),
            allowed_paths_ro: self.allowed_paths_ro.clone(),
            allowed_paths_rw: self.allowed_paths_rw.clone(),
            bind_mounts: self.bind_mounts.clone(),
            env: self.env.clone(),
            user: self.user.unwrap_or(d.user),
            capabilities: d.capabilities.iter().map(|c| c.to_string()).collect(),
            memory_bytes: l.memory_bytes.unwrap_or(d.memory_bytes),
            cpus: l.cpus.unwrap_or(d.cpus),
            pids: l.pids.unwrap_or(d.pids),
            wall_time_ms: match l.wall_time_ms {
                Some(0) => None,
                Some(ms) => Some(ms),
                None => d.wall_time_ms,
            },
            budget: l.budget.unwrap_or(false),
            open_files: l.open_files.unwrap_or(d.open_files),
            tmp_bytes: l.tmp_bytes.unwrap_or(d.tmp_bytes),
            network: self.network.clone().unwrap_or_default(),
            command: self.command.clone().unwrap_or_default(),
        }
    }
}
