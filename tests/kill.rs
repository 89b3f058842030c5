//! runtime-spec runtime.md, Operations, "Kill" (`kill <container-id>
//! <signal>`), through the real binary. An unknown id is in errors.rs
//! (`unknown_id`); kill by name and number and --all's SIGKILL in
//! lifecycle.rs (`kill_signals_and_all`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Env, read_in};

/// Waits (up to 5 s) for `path` inside the container of `pid`.
fn wait_file(pid: i32, path: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(s) = read_in(pid, path) {
            return Some(s);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (up to 5 s) for `path` inside the container of `pid` to hold
/// `want`, and returns what it last held. A shell's `>>` creates the file
/// before it writes, so the file's existence is not enough.
fn wait_content(pid: i32, path: &str, want: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let got = read_in(pid, path);
        if got.as_deref() == Some(want) || Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// "This operation MUST generate an error if it is not provided the
/// container ID."
#[test]
fn kill_without_a_container_id_is_an_error() {
    let env = Env::new("killnoid");
    for args in [&["kill"][..], &["kill", "--all"]] {
        let out = env.sbx(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("<CONTAINER_ID>"), "{args:?}: {err}");
    }
    env.fails(&["kill", "", "9"], "invalid container id \"\": it is empty");
}

/// "This operation MUST send the specified signal to the container
/// process": a caught signal runs the init's trap, and the container keeps
/// running (the signal is not treated as a stop).
#[test]
fn kill_delivers_the_signal_to_the_container_process() {
    let mut env = Env::new("killsig");
    let id = env.id("c");
    let script = "trap 'echo usr2 >> /tmp/got' USR2; trap 'echo hup >> /tmp/got' HUP; \
                  touch /tmp/ready; while :; do sleep 0.05; done";
    let bundle = env.bundle(&id, &["sh", "-c", script]);
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    let pid = env.pid(&id);
    assert!(wait_file(pid, "/tmp/ready").is_some(), "traps never set");
    env.ok(&["kill", &id, "USR2"]);
    let want = "usr2\n";
    assert_eq!(wait_content(pid, "/tmp/got", want).as_deref(), Some(want));
    env.ok(&["kill", &id, "1"]); // by number: SIGHUP
    let want = "usr2\nhup\n";
    assert_eq!(wait_content(pid, "/tmp/got", want).as_deref(), Some(want));
    assert_eq!(env.status(&id), "running");
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// "Attempting to send a signal to a container that is neither created nor
/// running MUST have no effect on the container and MUST generate an
/// error", read the other way: a created container may be signalled (runc
/// allows it too). Before `start` the container process is the runtime's
/// init, pid 1 of its namespace with no handlers, so the kernel drops a
/// catchable signal (the user's trap, set after start, never sees it) and
/// SIGKILL ends it: the container is then stopped and cannot be started.
#[test]
fn a_created_container_can_be_signalled() {
    let mut env = Env::new("killcreated");
    let id = env.id("c");
    let script = "trap 'echo usr1 >> /tmp/got' USR1; touch /tmp/started; \
                  while :; do sleep 0.05; done";
    let bundle = env.bundle(&id, &["sh", "-c", script]);
    let b = bundle.to_str().unwrap();
    env.ok(&["create", "--bundle", b, &id]);
    let pid = env.pid(&id);
    env.ok(&["kill", &id, "USR1"]);
    assert_eq!(env.status(&id), "created");
    env.ok(&["start", &id]);
    assert!(wait_file(pid, "/tmp/started").is_some());
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        read_in(pid, "/tmp/got"),
        None,
        "a signal before start is lost"
    );
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);

    let id = env.id("k");
    let bundle = env.bundle(&id, &["sh", "-c", script]);
    env.ok(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    let pid = env.pid(&id);
    env.ok(&["kill", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Path::new(&format!("/proc/{pid}")).exists() && !zombie(pid) {
        assert!(Instant::now() < deadline, "init {pid} survived SIGKILL");
        std::thread::sleep(Duration::from_millis(20));
    }
    // runtime.md, Start: "Attempting to start a container that is not
    // created MUST have no effect on the container and MUST generate an
    // error."
    env.fails(&["start", &id], "it is stopped");
    assert_eq!(env.status(&id), "stopped");
    env.ok(&["delete", &id]);
    env.assert_gone(&id);
}

fn zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| Some(s.rsplit_once(')')?.1.split_whitespace().next()? == "Z"))
        .unwrap_or(false)
}

/// "Attempting to send a signal to a container that is neither created nor
/// running MUST have no effect on the container and MUST generate an
/// error": a stopped container's state, before and after, is the same, and
/// it can still be deleted.
#[test]
fn kill_of_a_stopped_container_errors_and_changes_nothing() {
    let mut env = Env::new("killstopped");
    let id = env.id("c");
    let bundle = env.bundle(&id, &["true"]);
    env.ok(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    env.ok(&["start", &id]);
    env.wait_status(&id, "stopped");
    let before = env.state(&id);
    for sig in ["TERM", "9", "SIGUSR1"] {
        env.fails(&["kill", &id, sig], "it is stopped");
        assert_eq!(env.state(&id), before, "after kill {sig}");
    }
    assert!(env.root.join(&id).is_dir());
    env.ok(&["delete", &id]);
    env.assert_gone(&id);
}

/// "This operation MUST send the specified signal to the container
/// process", and runc's `--all`: to every process of the container. The
/// init ignores TERM, a second process traps it: a plain kill reaches only
/// the init (the trap never runs), `kill --all` reaches both (the trap runs,
/// the init keeps running).
#[test]
fn kill_all_reaches_every_process_and_plain_kill_only_the_init() {
    let mut env = Env::new("killall");
    let id = env.id("c");
    // The init ignores TERM only once the child runs: a signal ignored on
    // entry to a shell cannot be trapped there.
    let script = "sh -c \"trap 'echo term > /tmp/child; exit 0' TERM; touch /tmp/child-ready; \
                          while :; do sleep 0.05; done\" & \
                  trap '' TERM; touch /tmp/init-ready; while :; do sleep 0.05; done";
    let bundle = env.bundle(&id, &["sh", "-c", script]);
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    let pid = env.pid(&id);
    assert!(
        wait_file(pid, "/tmp/child-ready").is_some(),
        "child never started"
    );
    assert!(
        wait_file(pid, "/tmp/init-ready").is_some(),
        "init trap never set"
    );

    env.ok(&["kill", &id, "TERM"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        read_in(pid, "/tmp/child"),
        None,
        "plain kill reached the child"
    );
    assert_eq!(env.status(&id), "running", "the init ignores TERM");

    env.ok(&["kill", "--all", &id, "TERM"]);
    let want = "term\n";
    assert_eq!(wait_content(pid, "/tmp/child", want).as_deref(), Some(want));
    assert_eq!(env.status(&id), "running", "the init still ignores TERM");
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// A pid is not a process: once a container's init has exited and been
/// reaped, its pid may be handed to another process (pids wrap, at 32768 by
/// default). That process is not the container's: `state` says stopped,
/// `kill` refuses without signalling it, `exec` refuses to enter its
/// namespaces, `delete` leaves it alone (runc compares the start time the
/// same way; libcontainer alone took it for the running init).
#[test]
fn a_reused_pid_is_not_the_container() {
    let mut env = Env::new("killreuse");
    let id = env.id("c");
    // Long enough for `state` to see it running on a slow guest (a stopped
    // container's state has no pid).
    let bundle = env.bundle(&id, &["sleep", "2"]);
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    let pid = env.pid(&id);
    assert!(pid > 0, "{id} had exited before its pid was read");
    env.wait_status(&id, "stopped");
    let proc_dir = format!("/proc/{pid}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&proc_dir).exists() {
        assert!(Instant::now() < deadline, "pid {pid} was never reaped");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The next pid handed out is the one after ns_last_pid (root only).
    let mut other: Option<Reaped> = None;
    for _ in 0..500 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        if child.id() as i32 == pid {
            other = Some(Reaped(child));
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut other = other.unwrap_or_else(|| panic!("pid {pid} was never handed out again"));

    let state = env.state(&id);
    assert_eq!(
        (state["status"].as_str(), state["pid"].as_i64()),
        (Some("stopped"), Some(0)),
        "{state}"
    );
    env.fails(&["kill", &id, "KILL"], "it is stopped");
    env.fails(&["exec", &id, "true"], "it is stopped");
    env.ok(&["delete", &id]);
    env.assert_gone(&id);
    assert!(
        other.0.try_wait().unwrap().is_none(),
        "the process that took pid {pid} was signalled"
    );
}

/// A child killed and reaped when dropped, even by a failing test.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
