//! A container's network egress, as effects: the hook's work (rules, the
//! way out, the DNS gatekeeper), its injection into a config on `create`,
//! what `stats` reads back and what `delete` takes down. The hook's command
//! line, `sbx-oci hook network --policy FILE` (hidden), is `ops::network_hook`.
//!
//! Under podman and containerd the client makes the network namespace and
//! names it in `linux.namespaces`; the policy rides in the config's
//! annotations (`org.sbx-oci.network.mode`, `.allow`, `.dns`, see
//! `netpolicy::file`). `create` checks every entry before anything exists,
//! writes the policy into the container's state directory
//! ([`POLICY_FILE`]) and adds, first among the prestart hooks, this binary
//! at its host path with `hook network --policy FILE`. libcontainer runs it
//! once the container's namespaces exist and before the user's process
//! runs; it reads the OCI state (the init's pid) on stdin, compiles the
//! policy, installs it in `/proc/<pid>/ns/net` in one nftables transaction
//! and starts the container's DNS gatekeeper ([`gatekeeper`]), which pins
//! the addresses of listed names as it answers them. Any failure exits
//! non-zero with one line on stderr, and libcontainer then fails `create`
//! and removes the container: fail closed.
//!
//! Modes, in a namespace the client made (a `path`): `full` needs nothing,
//! `none` installs an empty allowlist (loopback only), `allowlist` installs
//! the policy. In a namespace the runtime makes: `none` needs nothing (it
//! has only loopback); `allowlist` and `full` get a way out as well
//! ([`crate::uplink`]: a veth pair, addresses, NAT), after the rules. A
//! config that shares the host's network namespace is refused for `none` and
//! `allowlist`: sbx-oci never filters the host.
//!
//! Sandboxes with `allowlist` or `full` carry this hook in their own config
//! (see `sandbox::translate`), with `--down` as a poststop hook, so that
//! another runtime running their bundle enforces and cleans up the same.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::Value;

pub mod gatekeeper;

use crate::netpolicy::file::{self, Mode, PolicyFile};
use crate::netpolicy::{Ruleset, compile};
use crate::{Error, Result, cli, nft, selfexe, uplink};

/// The policy file's name in the container's state directory; no container
/// id can start with '@'.
pub const POLICY_FILE: &str = "@network.json";

/// Beside [`POLICY_FILE`], for a policy installed in a namespace the client
/// made: that namespace's path. Several containers share such a namespace
/// (a pod's sandbox and its containers, each created with the pod's
/// annotations): the hook of a later one finds the same policy in force
/// (the first one's table and DNS gatekeeper, of which a namespace can have
/// only one) and leaves it, and `delete` of one leaves the table while
/// another of ours still uses the namespace.
pub const NETNS_FILE: &str = "@network.netns";

/// Whether a config.json (its bytes) may carry network annotations: a
/// substring test, so that other configs pay nothing more on `create`.
pub fn may_need(config: &[u8]) -> bool {
    let needle = file::PREFIX.as_bytes();
    config.windows(needle.len()).any(|w| w == needle)
}

/// Reads the config's network annotations; when they ask for rules, writes
/// the policy to `policy` and puts the hook first among the prestart hooks.
/// Returns whether it did. Errors (a bad entry, the host's namespace) come
/// before anything is created.
pub fn inject(spec: &mut Value, policy: &Path) -> Result<bool> {
    let annotations: BTreeMap<String, String> = spec
        .get("annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let Some((mode, policy_file)) = file::from_annotations(&annotations)? else {
        return Ok(false);
    };
    let netns = spec
        .pointer("/linux/namespaces")
        .and_then(Value::as_array)
        .and_then(|l| l.iter().find(|n| n["type"] == "network"));
    let Some(netns) = netns else {
        if mode == Mode::Full {
            return Ok(false); // the bundle itself asks for the host's network
        }
        return Err(Error::NetworkPolicy(format!(
            "{}={} needs a network namespace, but the config shares the host's \
             (linux.namespaces has no \"network\" entry); sbx-oci never filters the host",
            file::MODE,
            if mode == Mode::None {
                "none"
            } else {
                "allowlist"
            }
        )));
    };
    let has_path = netns
        .get("path")
        .and_then(Value::as_str)
        .is_some_and(|p| !p.is_empty());
    let mut policy_file = policy_file;
    match (mode, has_path) {
        // The client's namespace has the client's way out.
        (Mode::Full, true) => return Ok(false),
        // A new namespace has only loopback.
        (Mode::None, false) => return Ok(false),
        // A namespace the runtime makes gets a way out.
        (Mode::Allowlist | Mode::Full, false) => {
            policy_file.uplink = Some(uplink::Pools::default())
        }
        _ => {}
    }
    let json = serde_json::to_vec(&policy_file)
        .map_err(|e| Error::NetworkPolicy(format!("cannot encode the policy: {e}")))?;
    std::fs::write(policy, json)
        .map_err(|e| Error::io(format!("cannot write {}", policy.display()), e))?;
    if let Some(path) = netns
        .get("path")
        .and_then(Value::as_str)
        .filter(|_| has_path)
    {
        let file = policy.with_file_name(NETNS_FILE);
        std::fs::write(&file, path)
            .map_err(|e| Error::io(format!("cannot write {}", file.display()), e))?;
    }
    let exe = selfexe::host_path()?;
    let hook = serde_json::json!({
        "path": exe.to_string_lossy(),
        "args": ["sbx-oci", "hook", "network", "--policy", policy.to_string_lossy()],
        "timeout": 30,
    });
    if !spec["hooks"].is_object() {
        spec["hooks"] = Value::Object(Default::default());
    }
    let list = &mut spec["hooks"]["prestart"];
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    if let Some(list) = list.as_array_mut() {
        list.insert(0, hook);
    }
    Ok(true)
}

/// `hook network --down`: takes down the way out of container `id`.
pub fn down(policy: &Path, id: &str) -> Result<()> {
    if PolicyFile::load(policy)?.uplink.is_some() {
        uplink::detach_and_sweep(id)?;
    }
    Ok(())
}

/// The policy file of a hook that is this binary's `hook network --down`
/// (as a sandbox's config carries it), which sbx-oci runs in-process.
pub fn own_down_hook(hook: &oci_spec::runtime::Hook) -> Option<PathBuf> {
    let args = hook.args().as_ref()?;
    let ours = args.len() == 6
        && selfexe::host_path().is_ok_and(|exe| exe == *hook.path())
        && args[1] == "hook"
        && args[2] == "network"
        && args[3] == "--policy"
        && args[5] == "--down";
    ours.then(|| PathBuf::from(&args[4]))
}

/// Where a failed hook leaves its message: `<policy file>.error`.
pub fn error_file(policy: &Path) -> PathBuf {
    let mut name = policy.file_name().unwrap_or_default().to_os_string();
    name.push(".error");
    policy.with_file_name(name)
}

/// The message of a network hook that failed while creating the container
/// whose state directory is `state_dir` (injected or a sandbox's).
pub fn failure(state_dir: &Path) -> Option<String> {
    policy_files(state_dir)
        .iter()
        .find_map(|p| std::fs::read_to_string(error_file(p)).ok())
}

/// Where a container's policy file may be: injected from annotations, or a
/// sandbox's (in its bundle, which is the state directory).
pub(crate) fn policy_files(state_dir: &Path) -> [PathBuf; 2] {
    [
        state_dir.join(POLICY_FILE),
        state_dir.join(crate::sandbox::translate::POLICY_FILE),
    ]
}

/// The hook's work for the container whose OCI state is on stdin: installs
/// the policy of `args.policy` in its network namespace, or with `--down`
/// takes its way out down.
pub fn run(args: &cli::NetworkHook) -> Result<i32> {
    let t0 = Instant::now();
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| Error::io("cannot read the container state", e))?;
    let state: Value = serde_json::from_slice(&input)
        .map_err(|e| Error::NetworkPolicy(format!("the state on stdin is not JSON: {e}")))?;
    let id = state["id"]
        .as_str()
        .ok_or_else(|| Error::NetworkPolicy("the state has no id".into()))?;
    if args.down {
        return down(&args.policy, id).map(|_| 0);
    }
    // The container's directory (where the policy lies) is busy while this
    // runs, as for the runtime that started it: a `delete --force` after
    // that runtime was killed lets this finish, then takes down what it
    // set up. (Not for --down: a delete runs that, holding the lock.)
    let _busy = args.policy.parent().and_then(crate::store::busy_dir);
    let file = PolicyFile::load(&args.policy)?;
    let pid = state["pid"]
        .as_i64()
        .filter(|p| *p > 0)
        .ok_or_else(|| Error::NetworkPolicy("the state has no pid".into()))?;
    let ns_path = format!("/proc/{pid}/ns/net");
    let ns = File::open(&ns_path)
        .map_err(|e| Error::io(format!("cannot open {ns_path} (the container's init)"), e))?;
    // A pod's containers join its sandbox's namespace with the same policy:
    // the sandbox's hook installed it and started the one gatekeeper the
    // namespace can have (it listens on port 53 there).
    if let Some(other) = installed_by_other(&args.policy, &ns) {
        tracing::debug!("network hook: the same policy is in force, installed by {other:?}");
        return Ok(0);
    }
    // The rules first, then the way out: the namespace is never connected
    // without them. Then the gatekeeper the rules send DNS to.
    if file.mode != Mode::Full {
        let rules = compile(&file.policy()?)?;
        let t_compiled = Instant::now();
        let (apply_time, socket) = apply_in(
            ns.try_clone().map_err(|e| {
                Error::io(format!("cannot duplicate the descriptor of {ns_path}"), e)
            })?,
            &rules,
            &ns_path,
        )?;
        tracing::debug!(
            "network hook: compile {:?}, apply {:?}",
            t_compiled - t0,
            apply_time,
        );
        socket.close_later();
    }
    if let Some(pools) = &file.uplink {
        let nl = nft::Netlink::open()?;
        let up = uplink::attach(id, &ns, pools, &nl)?;
        tracing::debug!("network hook: {up:?}");
        nl.close_later();
    }
    if file.has_gatekeeper() {
        let t = Instant::now();
        gatekeeper::start(&ns, pid as i32, &file, &args.policy)?;
        tracing::debug!("network hook: DNS gatekeeper started in {:?}", t.elapsed());
    }
    tracing::debug!("network hook: total {:?}", t0.elapsed());
    Ok(0)
}

/// Applies `rules` in the network namespace `ns`, from a thread of its own
/// (setns of a network namespace changes only the calling thread).
fn apply_in(ns: File, rules: &Ruleset, what: &str) -> Result<(std::time::Duration, nft::Netlink)> {
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io(format!("cannot enter {what}"), e.into()))?;
            let t = Instant::now();
            let nl = nft::Netlink::open()?;
            nl.apply(rules)?;
            Ok((t.elapsed(), nl))
        })
        .join()
        .unwrap_or_else(|_| Err(Error::NetworkPolicy("the thread panicked".into())))
    })
}

/// What the egress policy of a running container allowed and dropped, read
/// from its own table: every named counter, and the destinations of dropped
/// attempts (address, protocol, port, packets, bytes). `None` when the
/// container has no policy of ours: no policy file in its state directory,
/// injected or a sandbox's, or one of mode `full`.
pub fn stats(state_dir: &Path, pid: nix::unistd::Pid) -> Result<Option<Value>> {
    let what = format!("the network namespace of process {pid}");
    stats_in(state_dir, || {
        File::open(format!("/proc/{pid}/ns/net"))
            .map_err(|e| Error::io(format!("cannot open {what}"), e))
    })
}

/// [`stats`] of the namespace `netns` gives (opened only when the policy
/// has a table to read): a `sandbox run` keeps its sandbox's namespace open
/// to report on it after the last process is gone.
pub fn stats_in(state_dir: &Path, netns: impl FnOnce() -> Result<File>) -> Result<Option<Value>> {
    let policy = policy_files(state_dir)
        .into_iter()
        .find_map(|p| Some((PolicyFile::load(&p).ok()?, p)));
    let Some((policy, policy_path)) = policy else {
        return Ok(None);
    };
    let mut out = serde_json::Map::new();
    if policy.learn {
        out.insert("learn".into(), Value::from(true));
    }
    // What the gatekeeper answered and denied; its names for the addresses
    // of dropped connections.
    let audit = gatekeeper::read_audit(&policy_path);
    if let Some(a) = &audit {
        out.insert("dns".into(), serde_json::to_value(a).unwrap_or(Value::Null));
    }
    let names_of = |addr: &std::net::IpAddr| -> Vec<String> {
        audit
            .iter()
            .flat_map(|a| &a.answered)
            .filter(|q| q.addresses.contains(addr))
            .map(|q| q.name.clone())
            .collect()
    };
    if policy.uplink.is_some() {
        // The sandbox's own addresses, as the host table has them.
        let id = state_dir.file_name().unwrap_or_default().to_string_lossy();
        let link = uplink::link_name(&id);
        let addresses: Vec<String> = nft::host_elements()?
            .into_iter()
            .filter(|e| e.link == link)
            .map(|e| e.addr.to_string())
            .collect();
        out.insert("link".into(), Value::from(link));
        out.insert("addresses".into(), Value::from(addresses));
    }
    if policy.mode == Mode::Full {
        return Ok(Some(Value::Object(out)));
    }
    let ns = netns()?;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io("cannot enter the sandbox's network namespace", e.into()))?;
            let nl = nft::Netlink::open()?;
            let counters: serde_json::Map<String, Value> = nl
                .counters(crate::netpolicy::compile::TABLE)?
                .into_iter()
                .map(|(name, c)| {
                    let v = serde_json::json!({ "packets": c.packets, "bytes": c.bytes });
                    (name, v)
                })
                .collect();
            let mut dropped = Vec::new();
            for set in ["dropped4", "dropped6"] {
                for d in nl.dropped(crate::netpolicy::compile::TABLE, set)? {
                    let protocol = match d.proto {
                        6 => "tcp".to_owned(),
                        17 => "udp".to_owned(),
                        n => n.to_string(),
                    };
                    let mut entry = serde_json::json!({
                        "address": d.addr.to_string(), "protocol": protocol, "port": d.port,
                        "packets": d.packets, "bytes": d.bytes,
                    });
                    let names = names_of(&d.addr);
                    if !names.is_empty() {
                        entry["names"] = Value::from(names);
                    }
                    if let Some(left) = d.expires_ms {
                        let timeout =
                            u64::from(crate::netpolicy::compile::DROPPED_TIMEOUT_S) * 1000;
                        let ago = chrono::Duration::milliseconds(
                            timeout.saturating_sub(left).try_into().unwrap_or(0),
                        );
                        entry["last"] = Value::from(
                            (chrono::Utc::now() - ago)
                                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        );
                    }
                    dropped.push(entry);
                }
            }
            out.insert("counters".into(), Value::Object(counters));
            out.insert("dropped".into(), Value::from(dropped));
            Ok(Some(Value::Object(out)))
        })
        .join()
        .unwrap_or_else(|_| Err(Error::NetworkPolicy("the thread panicked".into())))
    })
}

/// What a `create` that failed after the network hook ran must take back:
/// the policy from a client's namespace ([`remove_policy`]) and, for a
/// sandbox, whose poststop hook will never run, its way out.
pub fn undo_after_failed_create(state_dir: &Path, bundle: &Path) {
    remove_policy(state_dir, bundle);
    let sandbox = &policy_files(state_dir)[1];
    if PolicyFile::load(sandbox).is_ok_and(|p| p.uplink.is_some()) {
        let id = state_dir.file_name().unwrap_or_default().to_string_lossy();
        if let Err(e) = uplink::detach_and_sweep(&id) {
            tracing::warn!("cannot take down the network of {id:?}: {e}");
        }
    }
}

/// Removes the policy's table from the client-made network namespace the
/// container's config names (`linux.namespaces` network `path`), when
/// `create` installed one (a policy file in `state_dir`), unless another
/// container of ours still uses that namespace with its policy (a pod's
/// sandbox and containers share one: see [`NETNS_FILE`]). Best effort, on
/// `delete`: a namespace already gone (podman removes its own) has nothing
/// left to clean; a failure is a warning.
pub fn remove_policy(state_dir: &Path, bundle: &Path) {
    let Ok(file) = PolicyFile::load(&state_dir.join(POLICY_FILE)) else {
        return;
    };
    if file.uplink.is_some() {
        // The namespace was the runtime's: nothing of ours is left in it,
        // but the host side of its way out may be.
        let id = state_dir.file_name().unwrap_or_default().to_string_lossy();
        if let Err(e) = uplink::detach_and_sweep(&id) {
            let msg = format!("warning: cannot take down the network of {id:?}: {e}");
            tracing::warn!("{msg}");
            eprintln!("sbx-oci: {msg}");
        }
        return;
    }
    let netns = std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|c| {
            c["linux"]["namespaces"].as_array()?.iter().find_map(|ns| {
                (ns["type"] == "network").then(|| ns["path"].as_str().map(str::to_owned))?
            })
        });
    let Some(path) = netns else {
        return; // the runtime's own namespace went with the container
    };
    let Ok(ns) = File::open(&path) else {
        return;
    };
    if let Some(other) = ns
        .metadata()
        .ok()
        .and_then(|m| other_user(state_dir, m.dev(), m.ino(), None))
    {
        tracing::debug!("the policy in {path} stays: container {other:?} shares the namespace");
        return;
    }
    let removed = std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io(format!("cannot enter {path}"), e.into()))?;
            nft::delete(crate::netpolicy::compile::TABLE)
        })
        .join()
        .unwrap_or_else(|_| Err(Error::NetworkPolicy("the thread panicked".into())))
    });
    if let Err(e) = removed {
        let msg = format!("warning: cannot remove the network policy from {path}: {e}");
        tracing::warn!("{msg}");
        eprintln!("sbx-oci: {msg}");
    }
}

/// Another container in the state root of `state_dir` (not yet deleted)
/// whose policy is installed in the namespace `(dev, ino)`, and is
/// `policy` (the bytes of a policy file) when given: its id.
fn other_user(state_dir: &Path, dev: u64, ino: u64, policy: Option<&[u8]>) -> Option<String> {
    let own = state_dir.file_name()?;
    std::fs::read_dir(state_dir.parent()?)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() != own)
        .find(|e| {
            std::fs::read_to_string(e.path().join(NETNS_FILE))
                .and_then(std::fs::metadata)
                .is_ok_and(|m| m.dev() == dev && m.ino() == ino)
                && policy
                    .is_none_or(|p| std::fs::read(e.path().join(POLICY_FILE)).is_ok_and(|q| q == p))
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// For the hook of a container whose policy was injected in a namespace
/// the client made (`ns`): another container of ours that has the very
/// same policy in force there.
fn installed_by_other(policy: &Path, ns: &File) -> Option<String> {
    if policy.file_name()? != POLICY_FILE || !policy.with_file_name(NETNS_FILE).exists() {
        return None;
    }
    let bytes = std::fs::read(policy).ok()?;
    let m = ns.metadata().ok()?;
    other_user(policy.parent()?, m.dev(), m.ino(), Some(&bytes))
}
