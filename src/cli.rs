//! runc's command line, as clap definitions. Parsing only: every command is
//! carried out by the module of the same name under `ops`.

use std::path::PathBuf;

pub mod fast;

use clap::{Args, Parser, Subcommand};

use crate::logging::Format;
use crate::sandbox::model::{NetworkMode, Profile};
use crate::store::DEFAULT_ROOT;

#[derive(Parser, Debug)]
#[command(
    name = "sbx-oci",
    about = "A runc-compatible OCI runtime for sandboxing untrusted code",
    disable_version_flag = true,
    subcommand_required = false
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Directory for container state (tmpfs recommended)
    #[arg(long, global = true, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,

    /// Write log lines to this file instead of stderr
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,

    /// Log format
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: Format,

    /// Log debug messages
    #[arg(long, global = true)]
    pub debug: bool,

    /// Manage cgroups through systemd (requires systemd as init)
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,

    /// Accepted for runc compatibility (true, false or auto); not used
    #[arg(long, hide = true)]
    pub rootless: Option<String>,

    /// Accepted for runc compatibility; checkpointing is not supported
    #[arg(long, hide = true)]
    pub criu: Option<String>,

    /// Print the version
    #[arg(short = 'v', long)]
    pub version: bool,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Command {
    /// Create a container from a bundle (it waits for `start`)
    Create(Create),
    /// Start a created container's process
    Start(Id),
    /// Create, start and (unless --detach) wait for a container
    Run(Run),
    /// Print a container's OCI state as JSON
    State(Id),
    /// Send a signal to a container's init process (default SIGTERM)
    Kill(Kill),
    /// Delete a stopped container (--force: any container)
    Delete(Delete),
    /// Run a process in a running container
    Exec(Exec),
    /// List the processes in a container
    Ps(Ps),
    /// List containers
    List(List),
    /// Freeze all processes of a container
    Pause(Id),
    /// Thaw a paused container
    Resume(Id),
    /// Print container resource statistics as JSON events
    Events(Events),
    /// Change a running container's resource limits
    Update(Update),
    /// Print the OCI runtime features document
    Features,
    /// Write a default config.json
    Spec(Spec),
    /// Sandboxes for untrusted commands, described by a SandboxSpec
    #[command(subcommand)]
    Sandbox(Sandbox),
    /// Remove what crashed runs left: sandbox NAT entries whose link is
    /// gone, and half-created containers in --root
    Gc,
    /// Internal: runs a prestart/createRuntime hook with the state the spec
    /// gives it (see ops::hook)
    #[command(hide = true, name = "run-hook")]
    Hook(Hook),
    /// Internal: hooks sbx-oci adds to a container's config
    #[command(hide = true, subcommand, name = "hook")]
    Hooks(Hooks),
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Hooks {
    /// Install a network policy in the namespace of the container whose
    /// OCI state is on stdin (see ops::network_hook)
    Network(NetworkHook),
    /// Delete the host's sandbox NAT table if no sandbox is in it (started
    /// in the background when the last one leaves; see uplink)
    Sweep,
}

#[derive(Args, Debug, Clone)]
pub struct NetworkHook {
    /// The policy file (JSON: mode, allow, dns, expose, uplink, learn, gatekeeper)
    #[arg(long)]
    pub policy: PathBuf,
    /// Take down the container's way out instead (a poststop hook)
    #[arg(long)]
    pub down: bool,
}

#[derive(Args, Debug, Clone)]
pub struct Id {
    pub container_id: String,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Create {
    /// Path to the bundle (the directory holding config.json)
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,

    /// Write the container's init pid to this file
    #[arg(long)]
    pub pid_file: Option<PathBuf>,

    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long)]
    pub console_socket: Option<PathBuf>,

    /// Do not use pivot_root (for a rootfs on a ramdisk)
    #[arg(long)]
    pub no_pivot: bool,

    /// Accepted for runc compatibility: a session keyring is always created
    #[arg(long)]
    pub no_new_keyring: bool,

    /// Pass this many extra file descriptors (from fd 3) to the container
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,

    pub container_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct Run {
    #[command(flatten)]
    pub create: Create,

    /// Return after start instead of waiting for the container to exit
    #[arg(short, long)]
    pub detach: bool,

    /// Keep the container's state after it exits
    #[arg(long)]
    pub keep: bool,

    /// Accepted for runc compatibility
    #[arg(long, hide = true)]
    pub no_subreaper: bool,
}

#[derive(Args, Debug, Clone)]
pub struct Kill {
    /// Send the signal to every process in the container
    #[arg(short, long)]
    pub all: bool,

    pub container_id: String,

    /// Signal number or name
    #[arg(default_value = "SIGTERM")]
    pub signal: String,
}

#[derive(Args, Debug, Clone)]
pub struct Delete {
    /// Kill and delete the container whatever its state; succeed if it is gone
    #[arg(short, long)]
    pub force: bool,

    pub container_id: String,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Exec {
    /// JSON file with the OCI process to run (instead of the command line)
    #[arg(short, long)]
    pub process: Option<PathBuf>,

    /// Return once the process is started
    #[arg(short, long)]
    pub detach: bool,

    /// Write the new process's pid to this file
    #[arg(long)]
    pub pid_file: Option<PathBuf>,

    /// Allocate a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,

    /// Unix socket that receives the pty master
    #[arg(long)]
    pub console_socket: Option<PathBuf>,

    /// Working directory inside the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,

    /// Environment variable KEY=VALUE (repeatable)
    #[arg(short, long = "env")]
    pub env: Vec<String>,

    /// UID[:GID] to run as
    #[arg(short, long)]
    pub user: Option<String>,

    /// Additional group id (repeatable)
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,

    /// Capability to add, e.g. CAP_NET_ADMIN (repeatable)
    #[arg(short, long = "cap")]
    pub cap: Vec<String>,

    /// Set no_new_privs for the process
    #[arg(long)]
    pub no_new_privs: bool,

    /// Pass this many extra file descriptors (from fd 3)
    #[arg(long, default_value_t = 0)]
    pub preserve_fds: i32,

    /// Run even if the container is paused
    #[arg(long)]
    pub ignore_paused: bool,

    /// Run in this sub-cgroup of the container
    #[arg(long)]
    pub cgroup: Option<String>,

    /// Accepted for runc compatibility (no SELinux here)
    #[arg(long, hide = true)]
    pub process_label: Option<String>,

    /// Accepted for runc compatibility (no AppArmor here)
    #[arg(long, hide = true)]
    pub apparmor: Option<String>,

    pub container_id: String,

    /// Drop the container's environment but PATH (`sandbox exec
    /// --clear-env`; runc's exec has no such flag)
    #[arg(skip)]
    pub clear_env: bool,

    /// Command and arguments (when --process is not given)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

#[derive(Args, Debug, Clone)]
pub struct Ps {
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: ListFormat,

    pub container_id: String,

    /// Options passed to ps(1) for the table format (default: -ef)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub ps_args: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct List {
    #[arg(short, long, value_enum, default_value = "table")]
    pub format: ListFormat,

    /// Print only the ids
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Args, Debug, Clone)]
pub struct Events {
    /// Print one stats event and exit
    #[arg(long)]
    pub stats: bool,

    /// Interval between stats events, e.g. 5s or 500ms
    #[arg(long, default_value = "5s")]
    pub interval: String,

    pub container_id: String,
}

#[derive(Args, Debug, Clone, Default)]
pub struct Update {
    /// JSON file with OCI LinuxResources, or - for stdin
    #[arg(short, long)]
    pub resources: Option<PathBuf>,

    /// Memory limit in bytes (suffixes k, m, g accepted)
    #[arg(long)]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long)]
    pub memory_reservation: Option<String>,
    /// Memory plus swap limit (-1: unlimited)
    #[arg(long)]
    pub memory_swap: Option<String>,
    /// Kernel memory limit (cgroup v1 only; deprecated)
    #[arg(long)]
    pub kernel_memory: Option<String>,
    /// Kernel TCP memory limit (cgroup v1 only; deprecated)
    #[arg(long)]
    pub kernel_memory_tcp: Option<String>,
    /// CPU shares (relative weight)
    #[arg(long = "cpu-share", visible_alias = "cpu-shares")]
    pub cpu_share: Option<u64>,
    /// CPU CFS period in microseconds
    #[arg(long)]
    pub cpu_period: Option<u64>,
    /// CPU CFS quota in microseconds (-1: unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    /// CPU realtime period in microseconds
    #[arg(long)]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime in microseconds
    #[arg(long, allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    /// CPUs to use, e.g. 0-1
    #[arg(long)]
    pub cpuset_cpus: Option<String>,
    /// Memory nodes to use
    #[arg(long)]
    pub cpuset_mems: Option<String>,
    /// Block IO weight (10-1000)
    #[arg(long)]
    pub blkio_weight: Option<u16>,
    /// Maximum number of processes (-1: unlimited)
    #[arg(long, allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,

    pub container_id: String,
}

#[derive(Args, Debug, Clone)]
pub struct Spec {
    /// Directory to write config.json into
    #[arg(short, long, default_value = ".")]
    pub bundle: PathBuf,

    /// Write a spec for a rootless container (user namespace, no cgroups)
    #[arg(long)]
    pub rootless: bool,
}

#[derive(Subcommand, Debug)]
#[command(defer = true)]
pub enum Sandbox {
    /// Write an OCI bundle (config.json + rootfs) for a spec
    Bundle(SandboxBundle),
    /// Run one command in a new sandbox, then remove it
    Run(SandboxRun),
    /// Create a persistent sandbox (an idle init keeps it alive)
    Create(SandboxCreate),
    /// Run a command in a persistent sandbox
    Exec(SandboxExec),
    /// Print a sandbox's live resource usage as JSON
    Stats(SandboxName),
    /// Save the sandbox's workdir as SNAP
    Snapshot(SandboxSnapshot),
    /// Put the workdir saved as SNAP back
    Restore(SandboxSnapshot),
    /// List the sandboxes in the state root
    List(SandboxList),
    /// Remove sandboxes (--force: even with commands running in them)
    Rm(SandboxRm),
    /// What this host supports, and what each profile gets here
    Probe(SandboxProbe),
}

#[derive(Args, Debug, Clone)]
pub struct SandboxList {
    /// One JSON array instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SandboxRm {
    /// Kill what runs in them first
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true)]
    pub names: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SandboxProbe {
    /// JSON instead of text
    #[arg(long)]
    pub json: bool,
}

// A SandboxSpec file and the flags that override it (a plain comment: a doc
// comment would become the `about` of the commands that flatten it).
#[derive(Args, Debug, Clone, Default)]
pub struct SpecFlags {
    /// SandboxSpec JSON file (- for stdin)
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Named defaults: minimal, standard or full
    #[arg(long, value_enum)]
    pub profile: Option<Profile>,
    /// Host path visible read-only at the same path (repeatable)
    #[arg(long = "ro", value_name = "PATH")]
    pub ro: Vec<PathBuf>,
    /// Host path visible writable at the same path (repeatable)
    #[arg(long = "rw", value_name = "PATH")]
    pub rw: Vec<PathBuf>,
    /// Host path at another path: SRC:DST or SRC:DST:ro (repeatable)
    #[arg(long = "bind", value_name = "SRC:DST[:ro]")]
    pub bind: Vec<String>,
    /// Working directory inside the sandbox
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Environment variable K=V (repeatable)
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// UID[:GID] inside the sandbox
    #[arg(long)]
    pub user: Option<String>,
    /// Memory limit, e.g. 512M
    #[arg(long)]
    pub memory: Option<String>,
    /// CPU limit in cores, e.g. 0.5
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes
    #[arg(long)]
    pub pids: Option<u64>,
    /// Wall-time limit, e.g. 30s or 500ms (0: none)
    #[arg(long)]
    pub timeout: Option<String>,
    /// The wall-time limit is a budget for all of a persistent sandbox's
    /// execs together (limits.budget)
    #[arg(long)]
    pub budget: bool,
    /// Network mode
    #[arg(long, value_enum)]
    pub network: Option<NetworkMode>,
    /// Network allowlist entry: ADDRESS[/LEN][:PORTS], HOST:PORTS,
    /// *.DOMAIN:PORTS (one more label), **.DOMAIN:PORTS (any depth), with
    /// udp:// for UDP (repeatable; implies --network allowlist)
    #[arg(long = "allow", value_name = "ENTRY")]
    pub allow: Vec<String>,
    /// Upstream DNS resolver the sandbox's gatekeeper asks (repeatable;
    /// default: the host's)
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// Audit the allowlist instead of enforcing it: nothing is dropped, and
    /// what would have been is recorded (`sandbox stats`, --report)
    #[arg(long)]
    pub learn: bool,
}

#[derive(Args, Debug, Clone)]
pub struct SandboxBundle {
    #[command(flatten)]
    pub spec: SpecFlags,
    /// Directory to write the bundle into (must not exist, or be empty)
    #[arg(long)]
    pub out: PathBuf,
    /// Sandbox id the bundle is made for (names its cgroup)
    #[arg(long, default_value = "sandbox")]
    pub name: String,
    /// The command (default: the spec's `command`)
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SandboxRun {
    #[command(flatten)]
    pub spec: SpecFlags,
    /// Write a JSON report of the run to FILE (- for stderr)
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Sandbox id (default: a new unique one)
    #[arg(long)]
    pub name: Option<String>,
    /// Run the command on a pseudo-terminal (this one's window size passed on)
    #[arg(short, long)]
    pub tty: bool,
    /// The command (default: the spec's `command`)
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SandboxCreate {
    #[command(flatten)]
    pub spec: SpecFlags,
    pub name: String,
}

#[derive(Args, Debug, Clone)]
pub struct SandboxExec {
    /// Kill the command after this long, e.g. 10s (exit status 124)
    #[arg(long)]
    pub timeout: Option<String>,
    /// Environment variable K=V, added to the sandbox's (repeatable)
    #[arg(long = "env", value_name = "K=V")]
    pub env: Vec<String>,
    /// Start from an empty environment (PATH kept) instead of the sandbox's
    #[arg(long)]
    pub clear_env: bool,
    /// Working directory inside the sandbox (default: its workdir)
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// UID[:GID] to run as (default: the sandbox's user)
    #[arg(long)]
    pub user: Option<String>,
    /// Read the command's stdin from FILE
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,
    /// Run the command on a pseudo-terminal (this one's window size passed on)
    #[arg(short, long)]
    pub tty: bool,
    /// With -t: send the terminal's master end to this Unix socket (runc's
    /// protocol) instead of copying it to and from this process's streams;
    /// the caller sets its window size
    #[arg(long, requires = "tty", value_name = "PATH")]
    pub console_socket: Option<PathBuf>,
    pub name: String,
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Args, Debug, Clone)]
pub struct SandboxName {
    pub name: String,
}

#[derive(Args, Debug, Clone)]
pub struct SandboxSnapshot {
    pub name: String,
    pub snapshot: String,
}

#[derive(Args, Debug, Clone)]
pub struct Hook {
    /// The bundle to name in the state (the real one, not our rewrite's)
    #[arg(long)]
    pub bundle: Option<PathBuf>,

    /// The hook's path
    pub path: PathBuf,

    /// The hook's args, args[0] first
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}
