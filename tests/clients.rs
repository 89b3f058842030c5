//! The exact calls podman 4.3 and containerd 1.6 make (captured on this
//! machine: ../shared/reference/clients.md), replayed against real
//! containers, including the console socket used for `-t`.

mod common;

use std::io::{IoSliceMut, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::Duration;

use common::Env;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use serde_json::{Value, json};

/// Listens on `path` like conmon and containerd do, receives the pty master
/// over SCM_RIGHTS, and returns what the terminal printed until EOF.
fn console_socket(path: &Path) -> JoinHandle<String> {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            std::os::fd::AsRawFd::as_raw_fd(&conn),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .unwrap();
        let fd = msg
            .cmsgs()
            .unwrap()
            .find_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                _ => None,
            })
            .expect("a pty master over SCM_RIGHTS");
        // SAFETY: the fd was just received and is owned by nobody else.
        let mut master = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let mut out = Vec::new();
        let mut chunk = [0u8; 1024];
        // The slave closing ends the read with EIO.
        while let Ok(n) = master.read(&mut chunk) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    })
}

fn write_process(path: &Path, args: &[&str], terminal: bool) {
    let process = json!({
        "terminal": terminal, "user": {"uid": 0, "gid": 0}, "args": args,
        "env": ["PATH=/bin", "TERM=xterm"], "cwd": "/",
    });
    std::fs::write(path, process.to_string()).unwrap();
}

fn read_pid(path: &Path) -> i32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// podman: conmon's create with --pid-file, start, exec --process --detach
/// (plain and --tty with a console socket), pause/resume, kill by number,
/// update --resources=FILE, --version, then stop and rm -f.
#[test]
fn podman_calls() {
    let mut env = Env::new("podman");
    let id = env.id("c");
    let bundle = env.bundle(&id, &["sh", "-c", "trap 'exit 10' USR1; sleep 60 & wait"]);
    let userdata = bundle.to_str().unwrap();
    let pidfile = env.dir.join("pidfile");
    env.ok(&[
        "create",
        "--bundle",
        userdata,
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ]);
    env.ok(&["start", &id]);
    assert_eq!(read_pid(&pidfile), env.pid(&id));

    let exec_dir = env.dir.join("exec");
    std::fs::create_dir_all(&exec_dir).unwrap();
    let process = exec_dir.join("exec-process-1");
    write_process(
        &process,
        &["sh", "-c", "echo exec-ran > /tmp/marker; sleep 1"],
        false,
    );
    let exec_pid = exec_dir.join("exec_pid");
    env.ok(&[
        "exec",
        "--pid-file",
        exec_pid.to_str().unwrap(),
        "--process",
        process.to_str().unwrap(),
        "--detach",
        &id,
    ]);
    let pid = read_pid(&exec_pid);
    assert!(pid > 0);
    // A detached exec returns once its process runs, not once it is done.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let marker = loop {
        let marker = common::read_in(env.pid(&id), "/tmp/marker");
        if marker.as_deref() == Some("exec-ran\n") || std::time::Instant::now() > deadline {
            break marker;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(marker.as_deref(), Some("exec-ran\n"));

    // exec -t: the pty master goes to conmon's socket.
    let socket = env.dir.join("conmon-term.sock");
    let term = console_socket(&socket);
    write_process(&process, &["sh", "-c", "echo tty is $(tty)"], true);
    env.ok(&[
        "exec",
        "--pid-file",
        exec_pid.to_str().unwrap(),
        "--process",
        process.to_str().unwrap(),
        "--detach",
        "--tty",
        "--console-socket",
        socket.to_str().unwrap(),
        &id,
    ]);
    let printed = term.join().unwrap();
    assert!(printed.contains("tty is /dev/pts/"), "{printed:?}");

    env.ok(&["pause", &id]);
    assert_eq!(env.status(&id), "paused");
    env.ok(&["resume", &id]);
    let resources = env.dir.join("podman-resources");
    std::fs::write(&resources, r#"{"memory": {"limit": 33554432}}"#).unwrap();
    env.ok(&[
        "update",
        &format!("--resources={}", resources.display()),
        &id,
    ]);
    assert_eq!(
        common::cgroup_read(&id, ("memory", "memory.limit_in_bytes"), "memory.max"),
        "33554432"
    );

    // The init's USR1 trap ends the container (sent after update: on a
    // slow machine the container would be gone before update ran).
    env.ok(&["kill", &id, "10"]);
    env.wait_status(&id, "stopped");
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);

    let version = env.ok(&["--version"]);
    assert!(version.starts_with("sbx-oci version "), "{version}");
}

/// podman run -t: create with --console-socket for a terminal process.
#[test]
fn create_with_console_socket() {
    let mut env = Env::new("tty");
    let id = env.id("c");
    let bundle = env.bundle_with(&id, &["sh", "-c", "echo hello on $(tty)"], |c| {
        c["process"]["terminal"] = Value::from(true);
    });
    let socket = env.dir.join("pty.sock");
    let term = console_socket(&socket);
    env.ok(&[
        "create",
        "--bundle",
        bundle.to_str().unwrap(),
        "--console-socket",
        socket.to_str().unwrap(),
        &id,
    ]);
    env.ok(&["start", &id]);
    let printed = term.join().unwrap();
    assert!(printed.contains("hello on /dev/pts/0"), "{printed:?}");
    env.wait_status(&id, "stopped");
    env.ok(&["delete", &id]);
    env.assert_gone(&id);

    // A terminal process with no socket to send it to is refused clearly.
    let id = env.id("nosock");
    let bundle = env.bundle_with(&id, &["true"], |c| {
        c["process"]["terminal"] = Value::from(true);
    });
    env.fails(
        &["create", "--bundle", bundle.to_str().unwrap(), &id],
        "console socket",
    );
    env.assert_gone(&id);
}

/// containerd's runc shim: global --root/--log/--log-format json on every
/// call, ps --format json, exec --process --detach --pid-file, kill --all,
/// and its double delete (plain, then --force from `shim delete`).
#[test]
fn containerd_calls() {
    let mut env = Env::new("ctrd");
    let id = env.id("t3");
    let bundle = env.bundle(&id, &["sleep", "60"]);
    let b = bundle.to_str().unwrap().to_owned();
    let log = bundle.join("log.json");
    let shim = |args: &[&str]| -> String {
        let mut full = vec!["--log", log.to_str().unwrap(), "--log-format", "json"];
        full.extend_from_slice(args);
        env.ok(&full)
    };
    let init_pid = bundle.join("init.pid");
    shim(&[
        "create",
        "--bundle",
        &b,
        "--pid-file",
        init_pid.to_str().unwrap(),
        &id,
    ]);
    shim(&["start", &id]);
    let process = env.dir.join("runc-process1");
    write_process(&process, &["sleep", "30"], false);
    let e1 = bundle.join("e1.pid");
    shim(&[
        "exec",
        "--process",
        process.to_str().unwrap(),
        "--detach",
        "--pid-file",
        e1.to_str().unwrap(),
        &id,
    ]);
    let pids: Vec<i32> = serde_json::from_str(&shim(&["ps", "--format", "json", &id])).unwrap();
    assert!(
        pids.contains(&read_pid(&init_pid)) && pids.contains(&read_pid(&e1)),
        "{pids:?}"
    );
    shim(&["pause", &id]);
    shim(&["resume", &id]);
    shim(&["kill", "--all", &id, "9"]);
    env.wait_status(&id, "stopped");
    shim(&["delete", &id]);
    shim(&["delete", "--force", &id]);
    env.assert_gone(&id);
    // Nothing but well-formed JSON lines went to the log, and none of
    // libcgroups' per-start warnings about the host's unmounted v1
    // controllers (they are facts of the host: --debug shows them).
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    for line in logged.lines() {
        let _: Value = serde_json::from_str(line).unwrap();
    }
    assert!(!logged.contains("not supported on this system"), "{logged}");
}

#[test]
fn features_and_spec() {
    let env = Env::new("docs");
    let features: Value = serde_json::from_str(&env.ok(&["features"])).unwrap();
    assert_eq!(features["ociVersionMin"], "1.0.0");
    let caps = features["linux"]["capabilities"].as_array().unwrap();
    assert!(caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
    assert_eq!(features["linux"]["seccomp"]["enabled"], true);
    assert_eq!(features["linux"]["cgroup"]["v1"], true);

    let bundle = env.dir.join("spec-bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    env.ok(&["spec", "--bundle", bundle.to_str().unwrap()]);
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(spec["root"]["path"], "rootfs");
    assert!(spec["process"]["args"].is_array());
    env.fails(
        &["spec", "--bundle", bundle.to_str().unwrap()],
        "already exists",
    );

    let rootless = env.dir.join("rootless");
    std::fs::create_dir_all(&rootless).unwrap();
    env.ok(&["spec", "--rootless", "--bundle", rootless.to_str().unwrap()]);
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(rootless.join("config.json")).unwrap())
            .unwrap();
    let namespaces = spec["linux"]["namespaces"].as_array().unwrap();
    assert!(namespaces.iter().any(|n| n["type"] == "user"));
}

/// podman --read-only / --tmpfs: a tmpfs with runc's `tmpcopyup` option
/// starts with the content of the directory it covers; the copy follows no
/// symlink out of the rootfs.
#[test]
fn podman_tmpcopyup() {
    let mut env = Env::new("copyup");
    let id = env.id("c");
    // A private rootfs with an /etc holding a symlink that points outside.
    let rootfs = env.dir.join("rootfs");
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(common::busybox_rootfs())
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink("/proc/1/root/etc/shadow", rootfs.join("etc/escape")).unwrap();
    let bundle = env.bundle_with(
        &id,
        &[
            "sh",
            "-c",
            "cat /etc/passwd; readlink /etc/escape; echo w > /etc/new && cat /etc/new",
        ],
        |c| {
            c["root"]["path"] = Value::from(rootfs.to_str().unwrap());
            c["mounts"].as_array_mut().unwrap().push(json!({
                "destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                "options": ["rw", "rprivate", "nosuid", "nodev", "tmpcopyup"]
            }));
        },
    );
    let out = env.ok(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    assert!(out.starts_with("root:x:0:0:"), "{out}");
    assert!(
        out.contains("/proc/1/root/etc/shadow\n"),
        "the symlink is copied as a link: {out}"
    );
    assert!(out.ends_with("w\n"), "the tmpfs is writable: {out}");
    // The rootfs itself was not written to.
    assert!(!rootfs.join("etc/new").exists());
    env.assert_gone(&id);
}
