//! Soak and faults, for real (root): many lifecycles, the runtime killed at
//! every phase of an operation, many creates at once, and a full disk under
//! the state root; after each, nothing is left on the host.
//!
//! "Nothing left" is a whole-host snapshot ([`Host`]): mounts, cgroups,
//! network namespaces, links, the host's nftables ruleset, live processes of
//! ours (runtime, container inits, gatekeepers, commands) and container state
//! directories. The tests of this file run one at a time (cargo runs test
//! binaries one after another, and [`serial`] orders the tests here), so the
//! host's counts are theirs alone.
//!
//! Sizes: `SBX_SOAK_CYCLES` (default 200; the long run is 1000) lifecycles of
//! each kind, and `SBX_SOAK_STEPS` (default 24; the long run is 60) kill
//! points per operation:
//!
//! ```sh
//! SBX_SOAK_CYCLES=1000 SBX_SOAK_STEPS=60 cargo test --release --test soak -- --nocapture
//! ```

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::Env;
use common::netns::Upstream;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The argument every container command here carries, so that a leaked
/// command is found by its command line.
const MARK: &str = "31337";

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// What of ours exists on the host.
#[derive(Debug, PartialEq, Eq, Clone)]
struct Host {
    mounts: usize,
    cgroups: BTreeSet<String>,
    netns: usize,
    /// The sandboxes' links (`sbx-…`).
    links: BTreeSet<String>,
    nft: String,
    processes: BTreeSet<String>,
    state: BTreeSet<String>,
}

impl Host {
    fn now(root: &Path) -> Host {
        Host {
            mounts: fs::read_to_string("/proc/self/mountinfo")
                .unwrap()
                .lines()
                .count(),
            cgroups: cgroups(),
            netns: netns(),
            links: fs::read_dir("/sys/class/net")
                .unwrap()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("sbx-"))
                .collect(),
            nft: String::from_utf8_lossy(
                &Command::new("nft")
                    .args(["list", "ruleset"])
                    .output()
                    .unwrap()
                    .stdout,
            )
            .into_owned(),
            processes: processes(),
            state: fs::read_dir(root)
                .map(|d| {
                    d.flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| !n.starts_with('@'))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// Waits (up to 10 s) for the host to be `self` again: a deleted
    /// sandbox's table sweep and namespace teardown finish in the
    /// background. Panics with the difference otherwise.
    fn settle(&self, root: &Path, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut now = Host::now(root);
            // The kernel frees a network namespace asynchronously after its
            // last reference: one an earlier run left to it may go while
            // this one runs (in the TCG guest, 2 -> 1). Only more than
            // before is a leak.
            now.netns = now.netns.max(self.netns);
            if now == *self {
                return;
            }
            if Instant::now() > deadline {
                panic!("{what}: leaked\n{}", self.diff(&now));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn diff(&self, now: &Host) -> String {
        let mut out = String::new();
        let sets = |name: &str, a: &BTreeSet<String>, b: &BTreeSet<String>, out: &mut String| {
            let new: Vec<_> = b.difference(a).collect();
            let gone: Vec<_> = a.difference(b).collect();
            if !new.is_empty() || !gone.is_empty() {
                out.push_str(&format!("{name}: new {new:?}, gone {gone:?}\n"));
            }
        };
        if self.mounts != now.mounts {
            out.push_str(&format!("mounts: {} -> {}\n", self.mounts, now.mounts));
        }
        if self.netns != now.netns {
            out.push_str(&format!("netns: {} -> {}\n", self.netns, now.netns));
        }
        sets("cgroups", &self.cgroups, &now.cgroups, &mut out);
        sets("links", &self.links, &now.links, &mut out);
        sets("processes", &self.processes, &now.processes, &mut out);
        sets("state", &self.state, &now.state, &mut out);
        if self.nft != now.nft {
            out.push_str(&format!("nft ruleset now:\n{}\n", now.nft));
        }
        out
    }
}

/// Every cgroup directory, two levels deep in each hierarchy.
fn cgroups() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut walk = vec![(Path::new("/sys/fs/cgroup").to_owned(), 0)];
    while let Some((dir, depth)) = walk.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let path = e.path();
                if depth >= 1 {
                    out.insert(path.display().to_string());
                }
                if depth < 3 {
                    walk.push((path, depth + 1));
                }
            }
        }
    }
    out
}

/// Distinct network namespaces that some process is in, or that a file
/// holds (ip-netns(8) and anything else bind-mounting one shows as a mount).
fn netns() -> usize {
    let mut seen = BTreeSet::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(link) = fs::read_link(e.path().join("ns/net")) {
            seen.insert(link);
        }
    }
    seen.len()
}

/// Live (not zombie) processes of ours: the runtime and its forks (comm
/// `sbx-oci`, `sbx-oci-dns`, libcontainer's `youki:[…]`) and container
/// commands (carrying [`MARK`]). "pid comm" each.
fn processes() -> BTreeSet<String> {
    let me = std::process::id().to_string();
    let mut out = BTreeSet::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let pid = e.file_name().to_string_lossy().into_owned();
        if pid == me || !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let (Ok(stat), Ok(cmdline)) = (
            fs::read_to_string(e.path().join("stat")),
            fs::read(e.path().join("cmdline")),
        ) else {
            continue;
        };
        let Some((comm, rest)) = stat.split_once(" (").and_then(|(_, r)| r.rsplit_once(") "))
        else {
            continue;
        };
        if rest.starts_with('Z') {
            continue;
        }
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let ours = comm.starts_with("sbx-oci") || comm.starts_with("youki:");
        if ours || cmdline.split(' ').any(|a| a == MARK) {
            out.insert(format!("{pid} {comm} {cmdline}"));
        }
    }
    out
}

/// Runs `sbx-oci ARGS` and kills it (SIGKILL, the runtime process alone)
/// after `after`, unless it ended first. Returns whether it was killed.
fn kill_after(env: &Env, args: &[&str], after: Duration) -> bool {
    let mut child = env
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let killed = child.try_wait().unwrap().is_none()
        && kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).is_ok();
    child.wait().unwrap();
    killed
}

/// How long `args` takes when left alone (the fastest of five), after
/// `prepare`, with `recover` after each.
fn duration_of(
    env: &Env,
    prepare: &dyn Fn(&Env),
    args: &[&str],
    recover: &dyn Fn(&Env),
) -> Duration {
    // The fastest of five: a slow first run (a busy machine) would spread
    // the kill points past the end of the usual run.
    let mut times: Vec<Duration> = (0..5)
        .map(|_| {
            prepare(env);
            let t = Instant::now();
            let _ = env.sbx(args);
            let took = t.elapsed();
            recover(env);
            took
        })
        .collect();
    times.sort();
    times[0]
}

/// The runtime killed at `SBX_SOAK_STEPS` points spread over `args`' whole
/// run (from before its first syscall to just after it would have ended),
/// each followed by `recover`; the host must then be as before.
fn kill_sweep(
    env: &Env,
    what: &str,
    prepare: &dyn Fn(&Env),
    args: &[&str],
    recover: &dyn Fn(&Env),
) {
    let before = Host::now(&env.root);
    let full = duration_of(env, prepare, args, recover);
    before.settle(&env.root, &format!("{what} left alone"));
    let steps = knob("SBX_SOAK_STEPS", 24).max(2);
    let mut killed = 0;
    for step in 0..=steps {
        let after = full.mul_f64(1.1 * step as f64 / steps as f64);
        prepare(env);
        killed += usize::from(kill_after(env, args, after));
        recover(env);
        before.settle(&env.root, &format!("{what} killed after {after:?}"));
    }
    eprintln!("{what}: {full:?} alone, killed {killed} times in {steps} steps, nothing leaked");
    assert!(killed * 2 >= steps, "{what}: killed only {killed} times");
}

/// A plain bundle running `args` (the busybox rootfs).
fn bundle(env: &mut Env, id: &str, args: &[&str]) -> String {
    env.bundle(id, args).to_str().unwrap().to_owned()
}

/// `delete --force` of `id`; a missing container is fine (the kill came
/// before create claimed it).
fn force_delete(env: &Env, id: &str) {
    let out = env.sbx(&["delete", "--force", id]);
    assert!(
        out.status.success(),
        "delete --force {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn plain_lifecycles_leave_nothing() {
    let _one = serial();
    let mut env = Env::new("soakplain");
    let cycles = knob("SBX_SOAK_CYCLES", 200);
    let id = env.id("c");
    let bundle = bundle(&mut env, &id, &["sh", "-c", "exit 0", MARK]);
    let before = Host::now(&env.root);
    let started = Instant::now();
    for i in 0..cycles {
        env.ok(&["create", "--bundle", &bundle, &id]);
        env.ok(&["start", &id]);
        env.wait_status(&id, "stopped");
        env.ok(&["delete", &id]);
        if i % 100 == 99 {
            before.settle(&env.root, &format!("after {} cycles", i + 1));
        }
    }
    before.settle(&env.root, &format!("after {cycles} cycles"));
    eprintln!(
        "{cycles} create/start/delete cycles in {:?}, nothing leaked",
        started.elapsed()
    );
}

/// Sandboxes with an allowlist of an address and a name: each gets a veth
/// pair, addresses, host NAT entries, a policy table and a DNS gatekeeper.
/// Its command connects to the listed address once in every ten cycles.
#[test]
fn sandbox_lifecycles_with_an_allowlist_leave_nothing() {
    let _one = serial();
    let env = Env::new("soaksbx");
    let mut up = Upstream::new("sk", 207, &[2]);
    let server = SocketAddr::new(up.v4(2), 8001);
    up.tcp(server);
    up.dns(up.v4(2), &[("soak.test", up.v4(2))]);
    let allow_addr = server.to_string();
    let dns = up.v4(2).to_string();
    let cycles = knob("SBX_SOAK_CYCLES", 200);
    let persistent = env.id("p");
    let base = |id: &str| {
        vec![
            "--name".to_owned(),
            id.to_owned(),
            "--allow".to_owned(),
            allow_addr.clone(),
            "--allow".to_owned(),
            "soak.test:8001".to_owned(),
            "--dns".to_owned(),
            dns.clone(),
        ]
    };
    let before = Host::now(&env.root);
    let started = Instant::now();
    for i in 0..cycles {
        let id = env.id(&format!("r{}", i % 3));
        let probe = if i % 10 == 0 {
            format!("busybox nc -w 10 soak.test 8001 </dev/null | grep -qx ok # {MARK}")
        } else {
            format!("true {MARK}")
        };
        let mut args = vec!["sandbox".to_owned(), "run".to_owned()];
        args.extend(base(&id));
        args.extend(["--", "sh", "-c", &probe].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        env.ok(&args);
        // And a persistent one: create, exec, delete.
        if i % 4 == 0 {
            let mut args = vec!["sandbox".to_owned(), "create".to_owned()];
            let mut flags = base(&persistent);
            flags.drain(0..2); // create takes the name last
            args.extend(flags);
            args.push(persistent.clone());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            env.ok(&args);
            env.ok(&["sandbox", "exec", &persistent, "--", "true", MARK]);
            env.ok(&["delete", "--force", &persistent]);
        }
        if i % 100 == 99 {
            before.settle(&env.root, &format!("after {} cycles", i + 1));
        }
    }
    before.settle(&env.root, &format!("after {cycles} sandbox cycles"));
    eprintln!(
        "{cycles} sandbox runs (+{} persistent) with an allowlist in {:?}, nothing leaked",
        cycles.div_ceil(4),
        started.elapsed()
    );
}

#[test]
fn the_runtime_killed_at_any_point_of_create_start_exec_or_delete_leaves_nothing_after_delete_force()
 {
    let _one = serial();
    let mut env = Env::new("soakkill");
    let id = env.id("k");
    let b = bundle(&mut env, &id, &["sleep", MARK]);
    let create = ["create", "--bundle", b.as_str(), id.as_str()];
    let recover = |env: &Env| force_delete(env, &id);
    kill_sweep(&env, "create", &|_| {}, &create, &recover);
    let created = |env: &Env| {
        env.ok(&create);
    };
    kill_sweep(&env, "start", &created, &["start", &id], &recover);
    let running = |env: &Env| {
        env.ok(&create);
        env.ok(&["start", &id]);
    };
    // exec of a command that exits at once, so that "left alone" ends.
    kill_sweep(
        &env,
        "exec",
        &running,
        &["exec", &id, "sh", "-c", "true", MARK],
        &recover,
    );
    kill_sweep(
        &env,
        "exec --detach",
        &running,
        &["exec", "--detach", &id, "sleep", MARK],
        &recover,
    );
    kill_sweep(
        &env,
        "delete --force",
        &running,
        &["delete", "--force", &id],
        &recover,
    );
    let stopped = |env: &Env| {
        env.ok(&create);
        env.ok(&["start", &id]);
        env.ok(&["kill", &id, "KILL"]);
        env.wait_status(&id, "stopped");
    };
    kill_sweep(&env, "delete", &stopped, &["delete", &id], &recover);
    kill_sweep(
        &env,
        "run --detach",
        &|_| {},
        &["run", "--detach", "--bundle", &b, &id],
        &recover,
    );
}

#[test]
fn the_runtime_killed_at_any_point_of_a_sandbox_leaves_nothing_after_delete_force() {
    let _one = serial();
    let env = Env::new("soaksbxkill");
    let mut up = Upstream::new("sq", 207, &[2]);
    up.dns(up.v4(2), &[("soak.test", up.v4(2))]);
    let dns = up.v4(2).to_string();
    let allow = format!("{}:8001", up.v4(2));
    let id = env.id("s");
    // A writable path of another user: an idmapped mount is staged on the
    // host during create.
    let rw = env.dir.join("rw");
    fs::create_dir_all(&rw).unwrap();
    std::os::unix::fs::chown(&rw, Some(1000), Some(1000)).unwrap();
    let flags = [
        "--allow",
        allow.as_str(),
        "--allow",
        "soak.test:8001",
        "--dns",
        dns.as_str(),
        "--rw",
        rw.to_str().unwrap(),
    ];
    // The host's end of the link goes when the kernel has torn the
    // namespace down, in the background; the next create of the same name
    // waits only 2 s for that, which a loaded TCG guest can overrun.
    let link = format!("/sys/class/net/{}", sbx_oci::uplink::link_name(&id));
    let recover = |env: &Env| {
        force_delete(env, &id);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::path::Path::new(&link).exists() {
            assert!(
                Instant::now() < deadline,
                "{link} stays after delete --force"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut create = vec!["sandbox", "create"];
    create.extend_from_slice(&flags);
    create.push(&id);
    kill_sweep(&env, "sandbox create", &|_| {}, &create, &recover);
    let created = |env: &Env| {
        env.ok(&create);
    };
    kill_sweep(
        &env,
        "sandbox exec",
        &created,
        &["sandbox", "exec", &id, "--", "true", MARK],
        &recover,
    );
    kill_sweep(
        &env,
        "sandbox delete",
        &created,
        &["delete", "--force", &id],
        &recover,
    );
    let mut run = vec!["sandbox", "run", "--name", &id];
    run.extend_from_slice(&flags);
    run.extend_from_slice(&["--", "true", MARK]);
    kill_sweep(&env, "sandbox run", &|_| {}, &run, &recover);
}

/// Runs every command line of `runs` at once; each must succeed or fail
/// with one error line and no state for its id. Returns how many succeeded.
fn all_at_once(env: &Env, runs: &[(String, Vec<String>)]) -> usize {
    let children: Vec<_> = runs
        .iter()
        .map(|(id, args)| {
            // stderr to a file: a created container's init inherits it, and
            // a pipe would not end until the container does.
            let err = env.dir.join(format!("{id}.err"));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            env.command(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(fs::File::create(&err).unwrap())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut made = 0;
    for ((id, _), mut child) in runs.iter().zip(children) {
        let status = child.wait().unwrap();
        let err = fs::read_to_string(env.dir.join(format!("{id}.err"))).unwrap();
        if status.success() {
            made += 1;
            // A sandbox is started at once (its idle init).
            let status = env.status(id);
            assert!(status == "created" || status == "running", "{id}: {status}");
        } else {
            assert!(
                err.starts_with("sbx-oci: error: ") && err.trim_end().lines().count() == 1,
                "{id}: {err:?}"
            );
            assert!(!env.root.join(id).exists(), "{id} failed but left state");
        }
    }
    made
}

/// 100 creates at once, of distinct ids, then 100 sandboxes with an
/// allowlist (each a veth pair, addresses claimed, host NAT entries): each
/// succeeds or fails with one error line; all are then deleted and nothing
/// is left.
#[test]
fn a_hundred_concurrent_creates_each_succeed_or_fail_cleanly() {
    let _one = serial();
    let mut env = Env::new("soakconc");
    let n = 100;
    let before = Host::now(&env.root);
    let mut runs = Vec::new();
    for i in 0..n {
        let id = env.id(&format!("c{i}"));
        let b = bundle(&mut env, &id, &["sleep", MARK]);
        runs.push((id.clone(), vec!["create".into(), "--bundle".into(), b, id]));
    }
    let made = all_at_once(&env, &runs);
    eprintln!("{made} of {n} concurrent creates succeeded");
    assert!(made > 0);
    for (id, _) in &runs {
        force_delete(&env, id);
    }
    before.settle(&env.root, "100 concurrent creates, deleted");

    let up = Upstream::new("sc", 207, &[2]);
    let allow = format!("{}:8001", up.v4(2));
    let runs: Vec<_> = (0..n)
        .map(|i| {
            let id = env.id(&format!("s{i}"));
            let args = ["sandbox", "create", "--allow", &allow, &id];
            (id.clone(), args.map(str::to_owned).to_vec())
        })
        .collect();
    let before = Host::now(&env.root);
    let made = all_at_once(&env, &runs);
    eprintln!("{made} of {n} concurrent sandbox creates succeeded");
    assert!(made > 0);
    let links = Host::now(&env.root).links.len() - before.links.len();
    assert_eq!(links, made, "one link per sandbox");
    for (id, _) in &runs {
        force_delete(&env, id);
    }
    before.settle(&env.root, "100 concurrent sandbox creates, deleted");
}

/// A state root on a small tmpfs that is full or nearly full: create and
/// start fail with a clear error or succeed; a failed create leaves no state,
/// a container's state is never left half-written, and everything can be
/// deleted.
#[test]
fn a_full_disk_under_the_state_root_is_a_clear_error_and_leaves_no_half_written_state() {
    let _one = serial();
    let mut env = Env::new("soakfull");
    fs::create_dir_all(&env.root).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "soakfull"])
        .arg(&env.root)
        .status()
        .unwrap();
    assert!(mounted.success());
    let _unmount = Unmount(env.root.clone());
    let id = env.id("f");
    let sid = env.id("s");
    let b = bundle(&mut env, &id, &["sleep", MARK]);
    let filler = env.root.join("@filler");
    let before = Host::now(&env.root);
    let mut clear_errors = 0;
    let mut sandbox_ran = 0;
    // Free space left by the filler: 0 bytes, then a page at a time.
    for free_pages in (0..16u64).chain([24, 32, 48, 64, 96, 128, 192]) {
        fill(&env.root, &filler, free_pages * 4096);
        let out = env.sbx(&["create", "--bundle", &b, &id]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!(
            "{free_pages} pages free: create {}",
            if out.status.success() {
                "succeeded"
            } else {
                err.trim_end()
            }
        );
        if out.status.success() {
            // Created: its state reads back whole, and start either works
            // or says why.
            assert_eq!(env.status(&id), "created", "free {free_pages} pages");
            // Then no space at all for start's state update.
            let more = env.root.join("@filler2");
            fill(&env.root, &more, 0);
            let out = env.sbx(&["start", &id]);
            if !out.status.success() {
                let err = String::from_utf8_lossy(&out.stderr);
                eprintln!("  start: {}", err.trim_end());
                assert!(err.contains("error") && err.contains("space"), "{err}");
            }
            let state = env.sbx(&["state", &id]);
            assert!(
                state.status.success(),
                "free {free_pages} pages: the state is unreadable after start: {}",
                String::from_utf8_lossy(&state.stderr)
            );
            fs::remove_file(&more).unwrap();
        } else {
            clear_errors += 1;
            assert!(
                err.starts_with("sbx-oci: error: ")
                    && err.contains("No space left on device")
                    && err.contains("is full")
                    && err.trim_end().lines().count() == 1,
                "free {free_pages} pages: {err:?}"
            );
            assert!(
                !env.root.join(&id).exists(),
                "free {free_pages} pages: a failed create left state"
            );
        }
        force_delete(&env, &id);
        // A sandbox writes more (its bundle, the root skeleton): the same.
        let out = env.sbx(&["sandbox", "run", "--name", &sid, "--", "true", MARK]);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!(
            "{free_pages} pages free: sandbox run {}",
            if out.status.success() {
                "succeeded"
            } else {
                err.trim_end()
            }
        );
        if !out.status.success() {
            assert!(
                err.starts_with("sbx-oci: error: ")
                    && err.contains("No space left on device")
                    && err.trim_end().lines().count() == 1,
                "free {free_pages} pages: {err:?}"
            );
            assert!(
                !env.root.join(&sid).exists(),
                "a failed sandbox run left state"
            );
        } else {
            sandbox_ran += 1;
        }
        // No half-built root skeleton is left either.
        let partial: Vec<_> = fs::read_dir(env.root.join("@rootfs"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        assert!(partial.is_empty(), "half-built skeletons: {partial:?}");
        fs::remove_file(&filler).unwrap();
        fill(&env.root, &filler, 0);
        fs::remove_file(&filler).unwrap();
        before.settle(&env.root, &format!("full disk, {free_pages} pages free"));
    }
    assert!(clear_errors > 0, "the disk was never full enough");
    assert!(
        sandbox_ran > 0,
        "the disk was never empty enough for a sandbox"
    );
}

/// Fills the file system of `dir` with `file` until `free` bytes are left.
fn fill(dir: &Path, file: &Path, free: u64) {
    let _ = fs::remove_file(file);
    let st = nix::sys::statvfs::statvfs(dir).unwrap();
    let avail = st.blocks_available() as u64 * st.fragment_size() as u64;
    let size = avail.saturating_sub(free);
    let data = vec![0xa5u8; size as usize];
    let _ = fs::write(file, &data);
}

/// The state root's tmpfs, unmounted on drop, also after a failure: what a
/// failing run left in it is deleted first (the Env's own cleanup comes
/// after this guard's, and would find the root unmounted), and the unmount
/// is tried again while something still holds it, then detached.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        if let Ok(entries) = fs::read_dir(&self.0) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('@') {
                    let _ = fs::remove_file(e.path());
                    continue;
                }
                let _ = Command::new(common::bin())
                    .arg("--root")
                    .arg(&self.0)
                    .args(["delete", "--force", &name])
                    .output();
            }
        }
        for _ in 0..50 {
            if Command::new("umount")
                .arg(&self.0)
                .status()
                .is_ok_and(|s| s.success())
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `pids.limit: 0` (runc reads it as "no limit" on cgroup v1, and cgroup v2
/// has no such value): whatever create makes of it, delete leaves no cgroup.
#[test]
fn a_zero_pids_limit_leaves_no_cgroup_behind() {
    let _one = serial();
    let mut env = Env::new("soakpids0");
    let id = env.id("z");
    let b = env
        .bundle_with(&id, &["sleep", MARK], |c| {
            c["linux"]["resources"]["pids"] = serde_json::json!({ "limit": 0 });
        })
        .to_str()
        .unwrap()
        .to_owned();
    let before = Host::now(&env.root);
    for _ in 0..3 {
        let out = env.sbx(&["run", "--detach", "--bundle", &b, &id]);
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "pids.limit 0: run {}",
            if out.status.success() {
                "succeeded"
            } else {
                err.trim_end()
            }
        );
        assert!(
            out.status.success() || err.starts_with("sbx-oci: error: "),
            "{err}"
        );
        force_delete(&env, &id);
        before.settle(&env.root, "a zero pids limit");
    }
}
