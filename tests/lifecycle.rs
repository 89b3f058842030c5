//! The OCI lifecycle through the real binary: state at every step, exit
//! status passthrough, output, exec, ps, pause/resume, update, events.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Env, cgroup_read, cgroup_v2, read_in};
use serde_json::Value;

/// created -> running -> stopped -> deleted, with the OCI state checked at
/// each step (runtime-spec runtime.md "State").
#[test]
fn lifecycle_states() {
    let mut env = Env::new("life");
    let id = env.id("c");
    let bundle = env.bundle(&id, &["sleep", "60"]);
    let pid_file = env.dir.join("init.pid");
    env.ok(&[
        "create",
        "--bundle",
        bundle.to_str().unwrap(),
        "--pid-file",
        pid_file.to_str().unwrap(),
        &id,
    ]);

    let state = env.state(&id);
    assert_eq!(state["status"], "created");
    assert_eq!(state["id"], Value::from(id.as_str()));
    assert_eq!(state["bundle"], Value::from(bundle.to_str().unwrap()));
    assert!(state["ociVersion"].as_str().unwrap().starts_with("1."));
    assert!(state["annotations"].is_object());
    let pid = state["pid"].as_i64().unwrap();
    assert!(pid > 0);
    let written: i64 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(written, pid, "--pid-file holds the init pid");
    // The process exists but the user's program has not run yet.
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    env.ok(&["start", &id]);
    let state = env.state(&id);
    assert_eq!(state["status"], "running");
    assert_eq!(state["pid"].as_i64().unwrap(), pid);
    // start returns once the process was told to go; its exec follows.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let cmdline = loop {
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
        if cmdline.starts_with("sleep\u{0}60") || std::time::Instant::now() > deadline {
            break cmdline;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(cmdline.starts_with("sleep\u{0}60"), "{cmdline:?}");

    let list = env.ok(&["list", "--format", "json"]);
    let list: Value = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["id"], Value::from(id.as_str()));
    assert_eq!(list[0]["status"], "running");
    assert_eq!(env.ok(&["list", "-q"]).trim(), id);

    env.ok(&["kill", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    assert_eq!(env.state(&id)["pid"], 0);

    env.ok(&["delete", &id]);
    env.assert_gone(&id);
    env.fails(&["state", &id], "does not exist");
}

/// runtime.md, State: ociVersion, id, status and bundle are REQUIRED, pid
/// is "REQUIRED when status is created or running on Linux", bundle "is the
/// absolute path to the container's bundle directory", and annotations
/// "contains the list of annotations associated with the container" -- in
/// every status (created, running, sbx-oci's and runc's extra paused,
/// stopped), with the container created from a relative --bundle. And Query
/// State: "This operation MUST generate an error if it is not provided the
/// ID of a container."
#[test]
fn state_has_the_required_fields_in_every_status() {
    let mut env = Env::new("statefields");
    let id = env.id("c");
    let annotations = serde_json::json!({ "org.example.a": "1", "org.example.b": "two" });
    let bundle = env.bundle_with(&id, &["sleep", "60"], |c| {
        c["annotations"] = annotations.clone();
    });
    // Relative to the working directory; the state holds the absolute path.
    let relative = bundle.strip_prefix(&env.dir).unwrap().to_str().unwrap();
    let status = env
        .command(&["create", "--bundle", relative, &id])
        .current_dir(&env.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "create with a relative bundle");
    let check = |want: &str| -> i64 {
        let s = env.state(&id);
        assert_eq!(s["status"], want, "{s}");
        let v = s["ociVersion"].as_str().unwrap_or_default();
        assert!(
            v.split('.').count() == 3 && v.split('.').all(|n| n.parse::<u32>().is_ok()),
            "ociVersion {v:?}"
        );
        assert_eq!(s["id"], Value::from(id.as_str()), "{s}");
        assert_eq!(s["bundle"], Value::from(bundle.to_str().unwrap()), "{s}");
        assert_eq!(s["annotations"], annotations, "{s}");
        s["pid"].as_i64().unwrap_or(0)
    };
    let pid = check("created");
    assert!(pid > 0, "created: a pid");
    env.ok(&["start", &id]);
    assert_eq!(check("running"), pid);
    env.ok(&["pause", &id]);
    assert_eq!(check("paused"), pid);
    env.ok(&["resume", &id]);
    env.ok(&["kill", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    assert!(check("stopped") >= 0, "a pid, if any, is not negative");
    env.ok(&["delete", &id]);
    env.assert_gone(&id);

    let out = env.sbx(&["state"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<CONTAINER_ID>"));
}

/// `run` exits with the container's status; 128+N when killed by signal N.
#[test]
fn run_exit_status_passthrough() {
    let mut env = Env::new("exit");
    for (name, script, expected) in [
        ("three", "exit 3", 3),
        ("zero", "true", 0),
        ("killed", "sh -c 'kill -9 $$'; exit $?", 137),
    ] {
        let id = env.id(name);
        let bundle = env.bundle(&id, &["sh", "-c", script]);
        let out = env.sbx(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
        assert_eq!(out.status.code(), Some(expected), "{script}");
        env.assert_gone(&id);
    }
}

/// A foreground `run` passes signals on to the container, and reports a
/// container killed by SIGKILL as 137.
#[test]
fn run_forwards_signals_and_reports_kill() {
    let mut env = Env::new("sig");
    for (name, how, expected) in [("forward", "TERM", 7), ("sigkill", "KILL", 137)] {
        let id = env.id(name);
        let bundle = env.bundle(
            &id,
            &[
                "sh",
                "-c",
                "trap 'exit 7' TERM; touch /tmp/ready; sleep 60 & wait",
            ],
        );
        let mut run = env
            .command(&["run", "--bundle", bundle.to_str().unwrap(), &id])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        env.wait_status(&id, "running");
        // Once the trap is set: a TERM before it would be dropped (the
        // shell is its namespace's pid 1, with the default action).
        let pid = env.pid(&id);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while read_in(pid, "/tmp/ready").is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "the trap was never set"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if how == "TERM" {
            // To the `run` process, which passes it on.
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(run.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            )
            .unwrap();
        } else {
            env.ok(&["kill", &id, how]);
        }
        assert_eq!(run.wait().unwrap().code(), Some(expected), "{how}");
        env.assert_gone(&id);
    }
}

/// The container's stdout and stderr reach the caller, separately and live.
#[test]
fn run_stdout_stderr_reach_caller() {
    let mut env = Env::new("stdio");
    let id = env.id("c");
    let bundle = env.bundle(&id, &["sh", "-c", "echo to-out; echo to-err >&2; cat"]);
    let mut child = env
        .command(&["run", "--bundle", bundle.to_str().unwrap(), &id])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"from-stdin\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "to-out\nfrom-stdin\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-err\n");
    env.assert_gone(&id);
}

/// exec: output, exit status, same pid namespace; ps lists both processes.
#[test]
fn exec_and_ps() {
    let mut env = Env::new("exec");
    let id = env.id("c");
    let bundle = env.bundle(&id, &["sleep", "60"]);
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    assert_eq!(env.status(&id), "running");

    let out = env.sbx(&["exec", &id, "sh", "-c", "echo hello from exec; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from exec\n");

    // Same pid namespace: the init is pid 1 as seen from the exec'd process.
    let out = env.ok(&["exec", &id, "cat", "/proc/1/cmdline"]);
    assert_eq!(out, "sleep\u{0}60\u{0}");
    let out = env.ok(&[
        "exec",
        "--env",
        "GREETING=hi",
        "--cwd",
        "/tmp",
        &id,
        "sh",
        "-c",
        "echo $GREETING $PWD",
    ]);
    assert_eq!(out, "hi /tmp\n");

    env.ok(&["exec", "--detach", &id, "sleep", "30"]);
    let pids: Vec<i32> = serde_json::from_str(&env.ok(&["ps", "--format", "json", &id])).unwrap();
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(pids.contains(&env.pid(&id)));
    let table = env.ok(&["ps", &id]);
    assert!(table.lines().next().unwrap().contains("PID"));
    assert!(
        table.contains("sleep 60") && table.contains("sleep 30"),
        "{table}"
    );

    env.fails(&["exec", &id], "needs a command");
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// `exec --cap CAP` gives the exec'd process the capability, also when it
/// is not root (then only the ambient set survives its execve), and
/// nothing else: it has exactly the config's capabilities plus it.
#[test]
fn exec_cap_adds_a_capability() {
    let mut env = Env::new("execcap");
    let id = env.id("c");
    // All five sets, as `runc spec` writes them for a non-root user.
    let bundle = env.bundle_with(&id, &["sleep", "60"], |c| {
        let set = serde_json::json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
        for s in [
            "bounding",
            "effective",
            "permitted",
            "inheritable",
            "ambient",
        ] {
            c["process"]["capabilities"][s] = set.clone();
        }
        c["process"]["user"] = serde_json::json!({"uid": 1000, "gid": 1000});
    });
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    let caps = |args: &[&str]| -> u64 {
        let mut cmd = vec!["exec"];
        cmd.extend_from_slice(args);
        cmd.extend_from_slice(&[id.as_str(), "grep", "CapEff", "/proc/self/status"]);
        let out = env.ok(&cmd);
        u64::from_str_radix(out.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    const NET_RAW: u64 = 1 << 13;
    const SYS_ADMIN: u64 = 1 << 21;
    let plain = caps(&[]);
    assert_eq!(plain & NET_RAW, 0, "{plain:x}");
    let with = caps(&["--cap", "CAP_NET_RAW"]);
    assert_eq!(with, plain | NET_RAW, "{with:x}");
    let two = caps(&["--cap", "CAP_NET_RAW", "--cap", "sys_admin"]);
    assert_eq!(two, plain | NET_RAW | SYS_ADMIN, "{two:x}");
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// pause freezes the container (a counter it writes stops advancing);
/// resume thaws it.
#[test]
fn pause_freezes_and_resume_thaws() {
    let mut env = Env::new("pause");
    let id = env.id("c");
    let script = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.01; done";
    let bundle = env.bundle(&id, &["sh", "-c", script]);
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    let pid = env.pid(&id);
    // `echo > file` truncates before it writes: a read that finds the file
    // empty is tried again (a container frozen in between stays that way,
    // which the 0 after 1 s shows).
    let count = || -> u64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        loop {
            let n = read_in(pid, "/tmp/count").and_then(|s| s.trim().parse().ok());
            match n {
                Some(n) => return n,
                None if std::time::Instant::now() > deadline => return 0,
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(count() > 0, "the counter runs");

    env.ok(&["pause", &id]);
    assert_eq!(env.status(&id), "paused");
    let frozen_state = cgroup_read(&id, ("freezer", "freezer.state"), "cgroup.freeze");
    assert!(
        matches!(frozen_state.as_str(), "FROZEN" | "1"),
        "{frozen_state}"
    );
    let frozen = count();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(count(), frozen, "a paused container does not run");
    env.fails(&["pause", &id], "it is paused");
    env.fails(&["exec", &id, "true"], "it is paused");

    env.ok(&["resume", &id]);
    assert_eq!(env.status(&id), "running");
    std::thread::sleep(Duration::from_millis(300));
    assert!(count() > frozen, "resumed container runs again");
    env.fails(&["resume", &id], "it is running");

    // SIGKILL reaches a paused container too (the freezer is thawed for it).
    env.ok(&["pause", &id]);
    env.ok(&["kill", &id, "9"]);
    env.wait_status(&id, "stopped");
    env.ok(&["delete", &id]);
    env.assert_gone(&id);

    // So does delete --force (it thaws the cgroup before its kill sweep).
    let id = env.id("d");
    let bundle = env.bundle(&id, &["sleep", "1000"]);
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    env.ok(&["pause", &id]);
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// update changes limits that read back from cgroupfs, from flags and from
/// an OCI resources file.
#[test]
fn update_changes_cgroup_limits() {
    let mut env = Env::new("update");
    let id = env.id("c");
    let bundle = env.bundle(&id, &["sleep", "60"]);
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);

    let memory_limit = || cgroup_read(&id, ("memory", "memory.limit_in_bytes"), "memory.max");
    let pids_max = || cgroup_read(&id, ("pids", "pids.max"), "pids.max");
    env.ok(&["update", "--memory", "64m", "--pids-limit", "20", &id]);
    assert_eq!(memory_limit(), "67108864");
    assert_eq!(pids_max(), "20");

    let resources = env.dir.join("resources.json");
    std::fs::write(
        &resources,
        r#"{"cpu": {"shares": 512, "quota": 50000, "period": 100000}, "pids": {"limit": 33}}"#,
    )
    .unwrap();
    env.ok(&["update", "--resources", resources.to_str().unwrap(), &id]);
    if cgroup_v2() {
        // Shares become a weight by libcgroups' (and runc 1.3's) curve,
        // which maps 2, 1024 and 262144 shares to 1, 100 and 10000.
        assert_eq!(cgroup_read(&id, ("", ""), "cpu.weight"), "59");
        assert_eq!(cgroup_read(&id, ("", ""), "cpu.max"), "50000 100000");
    } else {
        assert_eq!(cgroup_read(&id, ("cpu", "cpu.shares"), ""), "512");
        assert_eq!(cgroup_read(&id, ("cpu", "cpu.cfs_quota_us"), ""), "50000");
    }
    assert_eq!(pids_max(), "33");
    // The memory limit set before is untouched.
    assert_eq!(memory_limit(), "67108864");

    env.fails(&["update", "--memory", "lots", &id], "--memory \"lots\"");
    std::fs::write(&resources, "not json").unwrap();
    env.fails(
        &["update", "--resources", resources.to_str().unwrap(), &id],
        "not a JSON object",
    );

    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// events --stats reports the container's real memory, cpu and pids figures.
#[test]
fn events_stats_report_real_usage() {
    let mut env = Env::new("events");
    let id = env.id("c");
    // Burn some CPU and hold some memory, then idle.
    let script = "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; \
                  dd if=/dev/zero of=/dev/shm/blob bs=1M count=8 2>/dev/null; sleep 60";
    let bundle = env.bundle(&id, &["sh", "-c", script]);
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    let pid = env.pid(&id);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while read_in(pid, "/dev/shm/blob").map(|_| ()).is_none()
        || std::fs::metadata(format!("/proc/{pid}/root/dev/shm/blob"))
            .unwrap()
            .len()
            < 8 << 20
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }

    let event: Value = serde_json::from_str(&env.ok(&["events", "--stats", &id])).unwrap();
    assert_eq!(event["type"], "stats");
    assert_eq!(event["id"], Value::from(id.as_str()));
    let data = &event["data"];
    let mem = data["memory"]["usage"]["usage"].as_u64().unwrap();
    assert!(
        mem >= 8 << 20,
        "memory usage {mem} includes the 8 MiB in /dev/shm"
    );
    let expected_mem: u64 = cgroup_read(&id, ("memory", "memory.usage_in_bytes"), "memory.current")
        .parse()
        .unwrap();
    assert!(
        mem.abs_diff(expected_mem) < 4 << 20,
        "{mem} vs cgroupfs {expected_mem}"
    );
    let cpu = data["cpu"]["usage"]["total"].as_u64().unwrap();
    assert!(cpu > 1_000_000, "cpu usage {cpu} ns");
    assert!(data["pids"]["current"].as_u64().unwrap() >= 1);

    env.fails(&["events", "--interval", "soon", &id], "--interval");
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// kill by name and number, and --all reaches every process.
#[test]
fn kill_signals_and_all() {
    let mut env = Env::new("kill");
    let id = env.id("c");
    // The init ignores TERM; a second process does not.
    let bundle = env.bundle(
        &id,
        &["sh", "-c", "trap '' TERM; sleep 60 & wait; sleep 60"],
    );
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    std::thread::sleep(Duration::from_millis(100));
    env.ok(&["kill", &id, "SIGTERM"]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(env.status(&id), "running", "TERM is ignored by the init");
    env.fails(&["kill", &id, "SIGFOO"], "invalid signal");

    env.ok(&["kill", "--all", &id, "9"]);
    env.wait_status(&id, "stopped");
    env.fails(&["kill", &id, "15"], "it is stopped");
    env.ok(&["delete", &id]);
    env.assert_gone(&id);
}
