//! Every bad input gives one clear line on stderr (and a JSON error line in
//! --log), exits non-zero, and leaves nothing behind.

mod common;

use std::sync::{Arc, Barrier};

use common::Env;
use serde_json::{Value, json};

#[test]
fn unknown_id() {
    let env = Env::new("unknown");
    let id = env.id("ghost");
    for cmd in [
        vec!["state", id.as_str()],
        vec!["start", id.as_str()],
        vec!["kill", id.as_str(), "9"],
        vec!["delete", id.as_str()],
        vec!["pause", id.as_str()],
        vec!["resume", id.as_str()],
        vec!["ps", id.as_str()],
        vec!["events", "--stats", id.as_str()],
        vec!["update", "--memory", "1m", id.as_str()],
        vec!["exec", id.as_str(), "true"],
    ] {
        env.fails(&cmd, &format!("container \"{id}\" does not exist"));
    }
    // containerd's shim deletes twice; the second, forced, must succeed.
    env.ok(&["delete", "--force", &id]);
    assert_eq!(env.ok(&["list", "-q"]), "");
}

#[test]
fn invalid_ids() {
    let mut env = Env::new("badid");
    let bundle = env.bundle("unused", &["true"]);
    let b = bundle.to_str().unwrap();
    for (id, why) in [
        ("a/b", "character '/' is not allowed"),
        ("..", "'.' and '..' are not allowed"),
        ("", "it is empty"),
        ("x y", "character ' ' is not allowed"),
    ] {
        env.fails(
            &["create", "--bundle", b, id],
            &format!("invalid container id {id:?}: {why}"),
        );
        env.fails(&["state", id], "invalid container id");
        env.fails(&["delete", "--force", id], "invalid container id");
    }
    assert!(!env.root.exists() || std::fs::read_dir(&env.root).unwrap().count() == 0);
}

#[test]
fn missing_bundle_and_config() {
    let mut env = Env::new("nobundle");
    let id = env.id("c");
    let missing = env.dir.join("no-such-bundle");
    env.fails(
        &["create", "--bundle", missing.to_str().unwrap(), &id],
        "cannot open the bundle directory",
    );
    let empty = env.dir.join("empty-bundle");
    std::fs::create_dir_all(&empty).unwrap();
    env.fails(
        &["create", "--bundle", empty.to_str().unwrap(), &id],
        "no config.json in it",
    );
    env.assert_gone(&id);
    let _ = env.bundle(&id, &["true"]); // registers the cgroup for the final check
}

#[test]
fn malformed_config() {
    let mut env = Env::new("badcfg");
    let id = env.id("c");
    let bundle = env.bundle(&id, &["true"]);
    let b = bundle.to_str().unwrap();

    std::fs::write(bundle.join("config.json"), "{ this is not json").unwrap();
    env.fails(
        &["create", "--bundle", b, &id],
        "config.json is not a valid OCI config",
    );
    env.assert_gone(&id);

    std::fs::write(
        bundle.join("config.json"),
        r#"{"ociVersion": "1.0.2", "root": {"path": 5}}"#,
    )
    .unwrap();
    env.fails(
        &["run", "--bundle", b, &id],
        "config.json is not a valid OCI config",
    );
    env.assert_gone(&id);
}

#[test]
fn missing_rootfs() {
    let mut env = Env::new("norootfs");
    let id = env.id("c");
    let bundle = env.bundle_with(&id, &["true"], |c| {
        c["root"]["path"] = Value::from("/nonexistent/rootfs");
    });
    env.fails(
        &["create", "--bundle", bundle.to_str().unwrap(), &id],
        "root.path /nonexistent/rootfs does not exist",
    );
    env.assert_gone(&id);
}

#[test]
fn command_that_cannot_start() {
    let mut env = Env::new("noexec");
    let id = env.id("c");
    let bundle = env.bundle(&id, &["/no/such/program"]);
    let err = env.fails(
        &["run", "--bundle", bundle.to_str().unwrap(), &id],
        "/no/such/program",
    );
    assert!(err.contains(&id), "{err}");
    env.assert_gone(&id);
}

#[test]
fn duplicate_create() {
    let mut env = Env::new("dup");
    let id = env.id("c");
    let bundle = env.bundle(&id, &["sleep", "60"]);
    let b = bundle.to_str().unwrap();
    env.ok(&["create", "--bundle", b, &id]);
    env.fails(
        &["create", "--bundle", b, &id],
        &format!("container \"{id}\" already exists"),
    );
    assert_eq!(
        env.status(&id),
        "created",
        "the first container is untouched"
    );
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// Two creates of one id at the same moment: exactly one wins.
#[test]
fn concurrent_create_of_one_id() {
    let mut env = Env::new("race");
    for round in 0..5 {
        let id = env.id(&format!("r{round}"));
        let bundle = env.bundle(&id, &["sleep", "60"]);
        let env_ref = &env;
        let barrier = Arc::new(Barrier::new(2));
        let outcomes: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let barrier = Arc::clone(&barrier);
                    let (id, bundle) = (id.clone(), bundle.clone());
                    s.spawn(move || {
                        barrier.wait();
                        env_ref.sbx(&["create", "--bundle", bundle.to_str().unwrap(), &id])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let wins = outcomes.iter().filter(|o| o.status.success()).count();
        assert_eq!(wins, 1, "round {round}: exactly one create wins");
        let loser = outcomes.iter().find(|o| !o.status.success()).unwrap();
        let err = String::from_utf8_lossy(&loser.stderr);
        assert!(err.contains("already exists"), "{err}");
        assert_eq!(env.status(&id), "created");
        env.ok(&["delete", "--force", &id]);
        env.assert_gone(&id);
    }
}

/// The OCI state machine: start only from created, delete only when stopped
/// (unless --force), pause only when running.
#[test]
fn operations_in_the_wrong_state() {
    let mut env = Env::new("state");
    let id = env.id("c");
    let bundle = env.bundle(&id, &["sleep", "60"]);
    env.ok(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    env.fails(
        &["delete", &id],
        "it is created (stop it first, or use delete --force)",
    );
    env.fails(&["pause", &id], "only a running container can be paused");
    env.ok(&["start", &id]);
    env.fails(
        &["start", &id],
        &format!("cannot start container \"{id}\": it is running"),
    );
    env.fails(
        &["delete", &id],
        "it is running (stop it first, or use delete --force)",
    );
    assert_eq!(
        env.status(&id),
        "running",
        "a refused delete changes nothing"
    );
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// containerd shows only the --log file: the error is there as runc's JSON.
#[test]
fn errors_reach_the_json_log() {
    let mut env = Env::new("log");
    let id = env.id("c");
    let bundle = env.bundle_with(&id, &["true"], |c| {
        c["root"]["path"] = Value::from("/nonexistent/rootfs");
    });
    let log = env.dir.join("log.json");
    let out = env.sbx(&[
        "--log",
        log.to_str().unwrap(),
        "--log-format",
        "json",
        "create",
        "--bundle",
        bundle.to_str().unwrap(),
        &id,
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let text = std::fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["level"], "error");
    let msg = last["msg"].as_str().unwrap();
    assert!(
        msg.contains("root.path /nonexistent/rootfs does not exist"),
        "{msg}"
    );
    assert_eq!(stderr.trim(), format!("sbx-oci: error: {msg}"));
    chrono_like(last["time"].as_str().unwrap());
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).expect("every log line is JSON");
        assert!(v["level"].is_string() && v["msg"].is_string() && v["time"].is_string());
    }
    env.assert_gone(&id);
}

fn chrono_like(time: &str) {
    assert!(
        time.len() > 20 && time.as_bytes()[4] == b'-' && time.contains('T'),
        "{time}"
    );
}

#[test]
fn systemd_cgroup_without_systemd() {
    if std::path::Path::new("/run/systemd/system").exists() {
        return; // this check is about hosts without systemd
    }
    let env = Env::new("systemd");
    env.fails(
        &["--systemd-cgroup", "list"],
        "--systemd-cgroup needs systemd running as init",
    );
}

#[test]
fn bad_arguments() {
    let env = Env::new("args");
    env.fails(&["exec", "x", "--user", "bob", "true"], "does not exist");
    let out = env.sbx(&["create"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CONTAINER_ID"));
}

/// config.md, Linux process capabilities: "Any value which cannot be mapped
/// to a relevant kernel interface, or cannot be granted otherwise MUST cause
/// the runtime to fail" — an unknown capability is refused before anything
/// exists.
#[test]
fn unknown_capability_is_refused() {
    let mut env = Env::new("badcap");
    let id = env.id("c");
    let bundle = env.bundle_with(&id, &["true"], |c| {
        c["process"]["capabilities"]["bounding"] = serde_json::json!(["CAP_KILL", "CAP_FLY"]);
    });
    env.fails(
        &["create", "--bundle", bundle.to_str().unwrap(), &id],
        "CAP_FLY",
    );
    env.assert_gone(&id);
}

/// Mounts into /proc are refused at create, as runc ≥ 1.2 refuses them
/// (CVE-2019-16884, CVE-2025-52881: they defeat the protections of /proc),
/// also when the path gets there through `..` or a symlink of the rootfs;
/// /proc itself as procfs and lxcfs's files stay allowed. Nothing is left.
#[test]
fn mounts_into_proc_are_refused() {
    let mut env = Env::new("procmount");
    for (i, (dest, ty, want)) in [
        ("/proc/self/attr", "tmpfs", "inside /proc (/proc/self/attr)"),
        (
            "/proc/sys/kernel",
            "tmpfs",
            "inside /proc (/proc/sys/kernel)",
        ),
        ("/tmp/../proc/sys", "tmpfs", "inside /proc (/proc/sys)"),
        ("/proc", "tmpfs", "/proc must be mounted as type \"proc\""),
    ]
    .into_iter()
    .enumerate()
    {
        let id = env.id(&format!("p{i}"));
        let bundle = env.bundle_with(&id, &["true"], |c| {
            let mounts = c["mounts"].as_array_mut().unwrap();
            mounts.push(json!({"destination": dest, "type": ty, "source": ty}));
        });
        let err = env.fails(&["create", "--bundle", bundle.to_str().unwrap(), &id], want);
        assert!(err.contains("mounts["), "{err}");
        env.assert_gone(&id);
    }
    // lxcfs's files are fine.
    let id = env.id("lxcfs");
    let bundle = env.bundle_with(&id, &["cat", "/proc/meminfo"], |c| {
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/proc/meminfo", "type": "bind",
            "source": "/proc/meminfo", "options": ["bind", "ro"]
        }));
    });
    env.ok(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    env.assert_gone(&id);
}

/// A config whose device cgroup does not start with a deny-all (or has
/// none) gets one first, as runc puts it: otherwise the container's
/// devices cgroup keeps its parent's allow-all (GHSA-g54h-m393-cpwq).
#[test]
fn the_device_cgroup_always_starts_from_deny_all() {
    let mut env = Env::new("devices");
    for (name, devices) in [
        ("none", None),
        (
            "allow-null",
            Some(json!([{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}])),
        ),
    ] {
        let id = env.id(name);
        // The device cgroup alone decides what may be opened (any node may
        // be made: "b *:* m" is a default): /dev/null's class (c 1:3, a
        // default) may, /dev/sda's (b 8:0) may not. This holds for v1's
        // devices.list and v2's eBPF program alike.
        let script = "mknod /dev/t-null c 1 3 && echo x > /dev/t-null && echo null-ok; \
                      mknod /dev/t-sda b 8 0 && head -c 1 /dev/t-sda 2>&1; echo sda-$?";
        let bundle = env.bundle_with(&id, &["sh", "-c", script], |c| {
            match &devices {
                None => {
                    c["linux"]["resources"]
                        .as_object_mut()
                        .unwrap()
                        .remove("devices");
                }
                Some(d) => c["linux"]["resources"]["devices"] = d.clone(),
            }
            for set in ["bounding", "effective", "permitted"] {
                c["process"]["capabilities"][set]
                    .as_array_mut()
                    .unwrap()
                    .push("CAP_MKNOD".into());
            }
        });
        if !common::cgroup_v2() {
            env.ok(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
            let list = common::cgroup_read(&id, ("devices", "devices.list"), "");
            assert!(!list.contains("a *:* rwm"), "{name}: {list}");
            // /dev/sda's class (block 8) is not there; the defaults are.
            assert!(!list.contains("b 8:"), "{name}: {list}");
            assert!(list.contains("c 1:3 rwm"), "{name}: {list}");
            env.ok(&["delete", "--force", &id]);
            env.assert_gone(&id);
        }
        let out = env.ok(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
        assert!(out.contains("null-ok"), "{name}: {out}");
        assert!(
            out.contains("Operation not permitted") && out.contains("sda-1"),
            "{name}: {out}"
        );
        env.assert_gone(&id);
    }
}

/// A rootfs whose /proc or /sys is a symbolic link is refused (libcontainer
/// would mount there through the link), with a message that says so rather
/// than "failed to prepare rootfs"; nothing is left.
#[test]
fn a_symlinked_proc_or_sys_is_named() {
    let mut env = Env::new("symproc");
    for dir in ["proc", "sys"] {
        let rootfs = env.dir.join(format!("rootfs-{dir}"));
        for d in ["proc", "sys", "dev", "tmp"] {
            if d != dir {
                std::fs::create_dir_all(rootfs.join(d)).unwrap();
            }
        }
        std::os::unix::fs::symlink("/tmp", rootfs.join(dir)).unwrap();
        let id = env.id(dir);
        let bundle = env.bundle_with(&id, &["true"], |c| {
            c["root"]["path"] = Value::from(rootfs.to_str().unwrap());
        });
        env.fails(
            &["create", "--bundle", bundle.to_str().unwrap(), &id],
            &format!(
                "/{dir} must be mounted on an ordinary directory, but the rootfs's /{dir} is a \
                 symbolic link (to /tmp)"
            ),
        );
        env.assert_gone(&id);
    }
}

/// A capability the runtime itself does not hold (here dropped from its
/// bounding set by setpriv) cannot be granted: `create` names it and says
/// EPERM instead of libcontainer's "failed syscall"; nothing is left.
#[test]
fn a_capability_the_runtime_lacks_is_named() {
    let mut env = Env::new("capmissing");
    let id = env.id("c");
    let bundle = env.bundle_with(&id, &["true"], |c| {
        for set in ["bounding", "effective", "permitted"] {
            c["process"]["capabilities"][set]
                .as_array_mut()
                .unwrap()
                .push(Value::from("CAP_NET_RAW"));
        }
    });
    let out = create_without("net_raw", &env, &[], &bundle, &id);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("CAP_NET_RAW cannot be granted") && err.contains("EPERM"),
        "{err}"
    );
    env.assert_gone(&id);
}

/// An oomScoreAdj below the runtime's own (containerd's CRI plugin asks
/// -998 for a pod's sandbox) needs CAP_SYS_RESOURCE: without it (dropped
/// by setpriv, as on hosts whose root lacks it) `create` names the field
/// and the fix instead of libcontainer's bare "io error"; nothing is left.
#[test]
fn an_oom_score_adj_the_runtime_cannot_set_is_named() {
    let mut env = Env::new("oomadj");
    let id = env.id("c");
    let bundle = env.bundle_with(&id, &["true"], |c| {
        c["process"]["oomScoreAdj"] = json!(-998);
    });
    let log = env.dir.join("oom-log.json");
    let log_args = ["--log", log.to_str().unwrap(), "--log-format", "json"];
    let out = create_without("sys_resource", &env, &log_args, &bundle, &id);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("process.oomScoreAdj -998 is below the runtime's own")
            && err.contains("CAP_SYS_RESOURCE"),
        "{err}"
    );
    // The shim shows the last JSON message of --log: this one.
    let last = std::fs::read_to_string(&log).unwrap();
    let last: Value = serde_json::from_str(last.lines().last().unwrap()).unwrap();
    assert!(
        last["msg"]
            .as_str()
            .unwrap()
            .contains("process.oomScoreAdj -998"),
        "{last}"
    );
    env.assert_gone(&id);
}

/// libcontainer rewrites state.json in place; a runtime killed in between
/// leaves it empty. `delete --force` still removes the container: its
/// processes (found through the cgroup libcontainer saved beside the
/// state) killed, the cgroup and the directory gone. Without --force the
/// error says what is wrong.
#[test]
fn delete_force_removes_a_container_whose_state_was_cut_short() {
    force_delete_with_a_file_cut_short("cutstate", "state.json", Some("state"));
}

/// The same for libcontainer's saved config (youki_config.json), which an
/// older runtime truncated and rewrote when it took the hooks out of it:
/// `delete --force` of the live container makes it again from the bundle.
#[test]
fn delete_force_removes_a_container_whose_saved_config_was_cut_short() {
    force_delete_with_a_file_cut_short("cutconfig", "youki_config.json", None);
}

/// A running container whose state directory's `file` is emptied: a plain
/// delete fails saying `plain_error` (when given), `delete --force` kills
/// its process and leaves nothing.
fn force_delete_with_a_file_cut_short(name: &str, file: &str, plain_error: Option<&str>) {
    let mut env = Env::new(name);
    let id = env.id("c");
    let bundle = env.bundle(&id, &["sleep", "60"]);
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    let pid = env.pid(&id);
    let path = env.root.join(&id).join(&id).join(file);
    assert!(path.exists(), "{}", path.display());
    std::fs::write(&path, "").unwrap();
    if let Some(needle) = plain_error {
        env.fails(&["delete", &id], needle);
    }
    env.ok(&["delete", "--force", &id]);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z ")),
        "the container's process {pid} survived"
    );
    env.assert_gone(&id);
}

/// `sbx-oci [global...] create` of `bundle` as `id`, run by setpriv with
/// `cap` out of the bounding set (as on hosts whose root lacks it).
fn create_without(
    cap: &str,
    env: &Env,
    global: &[&str],
    bundle: &std::path::Path,
    id: &str,
) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args(["--bounding-set", &format!("-{cap}"), "--"])
        .arg(common::bin())
        .arg("--root")
        .arg(&env.root)
        .args(global)
        .args(["create", "--bundle", bundle.to_str().unwrap(), id])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("setpriv (util-linux)")
}

/// A reader that stops reading (`sbx-oci list | head`) ends the command
/// without a message, with the status of one that SIGPIPE killed (runc's
/// SIGPIPE kills it silently).
#[test]
fn output_to_a_closed_pipe_ends_quietly() {
    use std::os::fd::OwnedFd;
    let env = Env::new("epipe");
    for args in [&["list"][..], &["sandbox", "list"][..]] {
        // The read end closed before the runtime starts: its first write
        // meets EPIPE.
        let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
        drop(read);
        let out = std::process::Command::new(common::bin())
            .arg("--root")
            .arg(&env.root)
            .args(args)
            .stdout(std::process::Stdio::from(write))
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(141), "{args:?}: {out:?}");
        assert!(out.stderr.is_empty(), "{args:?}: {out:?}");
    }
}
