//! Sandboxes, for real: every promise of the SandboxSpec checked by running
//! commands in sandboxes through the binary, as root.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Env, cgroup_dirs, sandbox_run as run};
use serde_json::Value;

/// A run sandbox leaves nothing: no state, no cgroup.
fn assert_sandbox_gone(env: &Env, id: &str) {
    assert!(!env.root.join(id).exists(), "state of {id} left");
    let left = cgroup_dirs(&format!("sbx-oci-{id}"));
    assert!(left.is_empty(), "cgroups of {id} left: {left:?}");
}

#[test]
fn runs_as_unprivileged_user_without_capabilities() {
    let env = Env::new("sbxuser");
    let (code, out, err) = run(&env, &["--", "cat", "/proc/self/status"]);
    assert_eq!(code, 0, "{err}");
    let field = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_owned())
            .unwrap_or_default()
    };
    assert!(field("Uid:").starts_with("65534"), "{out}");
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapBnd:"), "0000000000000000");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("Seccomp:"), "2");

    let (code, out, _) = run(&env, &["--user", "1234:4321", "--", "id"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("uid=1234 gid=4321"), "{out}");
}

#[test]
fn message_queues_work_without_their_file_system() {
    // No /dev/mqueue is mounted (a mount less per start): mq_open is a
    // system call, in the sandbox's own IPC namespace.
    let env = Env::new("sbxmq");
    let script = "import ctypes, os\n\
        libc = ctypes.CDLL(None, use_errno=True)\n\
        fd = libc.mq_open(b'/sbx-q', os.O_CREAT | os.O_RDWR, 0o600, None)\n\
        print('mq_open', 'ok' if fd >= 0 else os.strerror(ctypes.get_errno()))\n\
        print('/dev/mqueue', os.path.exists('/dev/mqueue'))\n";
    let (code, out, err) = run(&env, &["--", "python3", "-c", script]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "mq_open ok\n/dev/mqueue False\n", "{err}");
    // Its own namespace: the queue went with it, the host never had it.
    // SAFETY: a NUL-terminated name.
    let rc = unsafe { libc::mq_unlink(c"/sbx-q".as_ptr()) };
    let errno = std::io::Error::last_os_error().raw_os_error();
    assert_eq!((rc, errno), (-1, Some(libc::ENOENT)));
}

#[test]
fn exit_status_output_stdin_and_environment() {
    let env = Env::new("sbxio");
    let (code, out, err) = run(&env, &["--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!((code, out.as_str(), err.as_str()), (7, "out\n", "err\n"));

    // stdin is passed through.
    let mut child = env
        .command(&[
            "sandbox",
            "run",
            "--",
            "sh",
            "-c",
            "read line; echo got $line",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"data\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got data\n");

    // Only LANG, LC_*, PATH and TERM come from the caller.
    let out = env
        .command(&[
            "sandbox",
            "run",
            "--name",
            &env.id("envs"),
            "--env",
            "MINE=1",
            "--",
            "env",
        ])
        .env("SECRET_TOKEN", "leak")
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("SECRET_TOKEN"), "{text}");
    for want in [
        "LANG=C.UTF-8",
        "LC_ALL=C",
        "HOME=/workspace",
        "TMPDIR=/tmp",
        "MINE=1",
        &format!("SANDBOX_ID={}", env.id("envs")),
    ] {
        assert!(text.lines().any(|l| l == want), "{want} in {text}");
    }
    assert!(text.lines().any(|l| l.starts_with("PATH=")));
}

#[test]
fn output_streams_before_the_command_ends() {
    let env = Env::new("sbxstream");
    let mut child = env
        .command(&[
            "sandbox",
            "run",
            "--",
            "sh",
            "-c",
            "echo first; sleep 3; echo second",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "first");
    // The first line came while the command still ran: the second, 3 s
    // later, is still to come (timed from the first, so that a slow start
    // of the sandbox does not count).
    let first = Instant::now();
    assert_eq!(lines.next().unwrap().unwrap(), "second");
    assert!(
        first.elapsed() > Duration::from_millis(2000),
        "the first line came only with the second"
    );
    assert!(child.wait().unwrap().success());
}

#[test]
fn filesystem_allowlists() {
    let env = Env::new("sbxfs");
    let ro = env.dir.join("ro");
    let rw = env.dir.join("rw");
    let hidden = env.dir.join("hidden");
    for d in [&ro, &rw, &hidden] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(ro.join("input"), "readable").unwrap();
    std::fs::write(hidden.join("secret"), "nope").unwrap();
    let uid_rw = rw.to_str().unwrap();
    nix::unistd::chown(&rw, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
    let script = format!(
        "cat {ro}/input; echo; \
         echo x > {ro}/new 2>/dev/null && echo RO-WRITABLE; \
         echo result > {rw}/output && echo wrote; \
         cat {hidden}/secret 2>/dev/null && echo HIDDEN-VISIBLE; \
         ls /root /home 2>/dev/null | head -1; \
         test -e /etc/shadow && echo SHADOW-VISIBLE; \
         echo work > /workspace/f && cat /workspace/f",
        ro = ro.display(),
        rw = uid_rw,
        hidden = hidden.display()
    );
    let (code, out, err) = run(
        &env,
        &[
            "--ro",
            ro.to_str().unwrap(),
            "--rw",
            uid_rw,
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "readable\nwrote\nwork\n");
    assert_eq!(
        std::fs::read_to_string(rw.join("output")).unwrap(),
        "result\n"
    );
    assert!(!ro.join("new").exists());

    // A bind mount to another path, read-only.
    let (code, out, _) = run(
        &env,
        &[
            "--bind",
            &format!("{}:/data:ro", ro.display()),
            "--",
            "sh",
            "-c",
            "cat /data/input; touch /data/x 2>/dev/null || echo refused",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "readablerefused\n"));
}

#[test]
fn memory_hog_is_oom_killed_and_reported() {
    let env = Env::new("sbxoom");
    let id = env.id("hog");
    let report = env.dir.join("report.json");
    let (code, _, err) = run(
        &env,
        &[
            "--name",
            &id,
            "--memory",
            "48M",
            "--report",
            report.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    assert_eq!(code, 137, "{err}");
    assert!(err.contains("out of memory"), "{err}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["oom_killed"], true);
    assert_eq!(r["exit_code"], 137);
    assert_eq!(r["signal"], 9);
    assert_eq!(r["timed_out"], false);
    let peak = r["peak_memory_bytes"].as_u64().unwrap();
    assert!(peak > 40 << 20 && peak <= 48 << 20, "peak {peak}");
    assert!(r["cpu_time_ms"].as_u64().unwrap() > 0);
    assert_sandbox_gone(&env, &id);

    // Without --report too, the user is told why the command died.
    let (code, _, err) = run(
        &env,
        &[
            "--memory",
            "32M",
            "--",
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a)",
        ],
    );
    assert_eq!(code, 137);
    assert!(err.contains("out of memory"), "{err}");
}

#[test]
fn fork_loop_stops_at_the_pids_limit() {
    let env = Env::new("sbxpids");
    let (code, out, err) = run(
        &env,
        &[
            "--pids",
            "16",
            "--",
            "sh",
            "-c",
            // The forks happen in a subshell (a shell gives up at its first
            // failed fork); the count uses builtins only.
            "(i=0; while [ $i -lt 60 ]; do sleep 5 & i=$((i+1)); done); \
           set -- /proc/[0-9]*; echo $#",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let count: u32 = out.trim().parse().unwrap();
    assert!(count <= 16, "{count} processes under a limit of 16");
    assert!(
        err.contains("fork") || err.contains("Resource temporarily unavailable"),
        "{err}"
    );
}

#[test]
fn sleeper_is_killed_at_the_wall_time_limit() {
    let env = Env::new("sbxtime");
    let id = env.id("sleeper");
    let start = Instant::now();
    let (code, _, err) = run(
        &env,
        &[
            "--name",
            &id,
            "--timeout",
            "400ms",
            "--report",
            "-",
            "--",
            "sh",
            "-c",
            "sleep 30 & sleep 30",
        ],
    );
    assert_eq!(code, 124);
    // Well before the sleeps' 30 s (a TCG guest runs the whole of it in
    // seconds).
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(
        err.contains("killed at the wall-time limit of 400 ms"),
        "{err}"
    );
    let report: Value = serde_json::from_str(err.lines().last().unwrap()).unwrap();
    assert_eq!(report["timed_out"], true);
    assert_eq!(report["exit_code"], 124);
    assert_sandbox_gone(&env, &id);
}

#[test]
fn denied_system_calls_fail() {
    let env = Env::new("sbxseccomp");
    // Even as root with the full profile's capabilities.
    let (code, out, err) = run(
        &env,
        &[
            "--profile",
            "full",
            "--",
            "sh",
            "-c",
            "unshare -U true 2>&1 || echo unshare-refused; \
           mount -t tmpfs none /mnt 2>&1 || echo mount-refused; id -u",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("unshare-refused") && out.contains("mount-refused"),
        "{out}"
    );
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.ends_with("0\n"), "full runs as root: {out}");

    // The 32-bit entry point is no way around the filter: a system call
    // through `int 0x80` kills the process (SIGSYS), where the host allows it.
    let script = env.dir.join("int80.py");
    std::fs::write(&script, INT80).unwrap();
    let host = std::process::Command::new("python3")
        .arg(&script)
        .output()
        .unwrap();
    assert!(host.status.success(), "the host runs 32-bit system calls");
    let (code, out, _) = run(
        &env,
        &[
            "--ro",
            script.to_str().unwrap(),
            "--",
            "python3",
            script.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 128 + 31, "killed by SIGSYS: {out}");
}

/// Calls getpid through the 32-bit `int 0x80` entry point.
const INT80: &str = r#"
import ctypes, mmap
code = bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3])  # mov eax, 20; int 0x80; ret
buf = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
buf.write(code)
fn = ctypes.CFUNCTYPE(ctypes.c_int)(ctypes.addressof(ctypes.c_char.from_buffer(buf)))
print("int 0x80 getpid:", fn(), flush=True)
"#;

#[test]
fn persistent_sandbox_exec_stats_snapshot_restore() {
    let env = Env::new("sbxbox");
    let id = env.id("box");
    env.ok(&["sandbox", "create", "--profile", "minimal", &id]);
    assert_eq!(env.status(&id), "running");

    let exec = |script: &str| -> (i32, String) {
        let out = env.sbx(&["sandbox", "exec", &id, "--", "sh", "-c", script]);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(
        exec("echo v1 > file; mkdir d; echo inner > d/x; ln -s /etc/passwd link; pwd"),
        (0, "/workspace\n".into())
    );
    assert_eq!(exec("exit 3").0, 3);

    let stats: Value = serde_json::from_str(&env.ok(&["sandbox", "stats", &id])).unwrap();
    assert_eq!(stats["status"], "running");
    assert!(stats["memory_bytes"].as_u64().unwrap() > 0);
    assert_eq!(stats["pids_limit"], 64);
    assert_eq!(stats["memory_limit_bytes"], 256u64 << 20);

    env.ok(&["sandbox", "snapshot", &id, "s1"]);
    exec("echo v2 > file; rm -r d; echo new > new");
    assert_eq!(exec("ls; cat file").1, "file\nlink\nnew\nv2\n");
    env.ok(&["sandbox", "restore", &id, "s1"]);
    assert_eq!(
        exec("ls; cat file d/x; readlink link").1,
        "d\nfile\nlink\nv1\ninner\n/etc/passwd\n"
    );
    env.fails(&["sandbox", "snapshot", &id, "s1"], "already exists");
    env.fails(
        &["sandbox", "restore", &id, "nope"],
        "has no snapshot \"nope\"",
    );

    // A per-exec timeout kills the command and what it started.
    let start = Instant::now();
    let out = env.sbx(&[
        "sandbox",
        "exec",
        "--timeout",
        "300ms",
        &id,
        "--",
        "sh",
        "-c",
        "sleep 30 & sleep 30",
    ]);
    assert_eq!(out.status.code(), Some(124));
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    // Dead when the exec returns (zombies are the sandbox's init's to reap).
    assert_eq!(
        exec("ps -e -o stat=,comm= | grep -v '^Z' | grep -c sleep")
            .1
            .trim(),
        "0"
    );

    env.ok(&["delete", "--force", &id]);
    assert_sandbox_gone(&env, &id);
    env.fails(&["sandbox", "exec", &id, "--", "true"], "does not exist");
}

#[test]
fn bad_specs_are_refused_before_anything_is_created() {
    let env = Env::new("sbxbad");
    let spec = env.dir.join("spec.json");
    let missing = env.dir.join("missing");
    let cases: Vec<(String, Vec<String>, &str)> = vec![
        (
            r#"{"colour": "blue"}"#.into(),
            vec![],
            "unknown field `colour`",
        ),
        (
            r#"{"allowed_paths_ro": ["rel"]}"#.into(),
            vec![],
            "allowed_paths_ro[0]: \"rel\" is a relative path",
        ),
        (
            format!(r#"{{"allowed_paths_rw": ["{}"]}}"#, missing.display()),
            vec![],
            "allowed_paths_rw[0]:",
        ),
        (
            r#"{"allowed_paths_ro": ["/usr"], "allowed_paths_rw": ["/usr/local"]}"#.into(),
            vec![],
            "a writable path cannot be nested in a read-only one",
        ),
        (
            r#"{"limits": {"pids": 0}}"#.into(),
            vec![],
            "limits.pids: 0 is out of range",
        ),
        (
            r#"{"limits": {"open_files": 100000000}}"#.into(),
            vec![],
            "limits.open_files",
        ),
        (
            r#"{"network": {"mode": "allowlist", "allow": ["10.0.0.1:443", "10.0.0.1:99999"]}}"#
                .into(),
            vec![],
            "network.allow[1]: \"10.0.0.1:99999\"",
        ),
        (
            r#"{"network": {"mode": "full", "dns": ["127.0.0.53"]}}"#.into(),
            vec![],
            "network.dns[0]: 127.0.0.53 cannot be reached from a sandbox",
        ),
        (
            r#"{"network": {"mode": "allowlist", "dns": ["0.0.0.0"]}}"#.into(),
            vec![],
            "network.dns[0]: 0.0.0.0 cannot be reached from a sandbox",
        ),
        (
            r#"{"network": {"mode": "allowlist", "dns": [], "allow": ["pypi.org:443"]}}"#.into(),
            vec![],
            "network.allow[0]: pypi.org:443 is a name, but \"dns\" is [] (no resolver to ask",
        ),
        (
            r#"{"network": {"mode": "allowlist", "allow": ["*.co.uk:443"]}}"#.into(),
            vec![],
            "network.allow[0]: \"*.co.uk:443\": ",
        ),
        (
            r#"{"network": {"mode": "allowlist", "allow": ["a.*.example.com:443"]}}"#.into(),
            vec![],
            "network.allow[0]: \"a.*.example.com:443\": ",
        ),
        (
            r#"{"network": {"mode": "allowlist", "gatekeeper": {"ttl_min_s": 60, "ttl_max_s": 30}}}"#
                .into(),
            vec![],
            "network.gatekeeper: ttl_min_s is above ttl_max_s",
        ),
        (
            r#"{"network": {"mode": "full", "learn": true}}"#.into(),
            vec![],
            "network.learn: \"mode\": \"full\" has no allowlist to audit",
        ),
        (
            r#"{"network": {"mode": "full", "ipv4_pool": "10.0.0.1/24"}}"#.into(),
            vec![],
            "network.ipv4_pool: \"10.0.0.1/24\" has host bits set (the network is 10.0.0.0/24)",
        ),
        (
            "{}".into(),
            vec!["--allow".into(), "[fd00::1]:http".into()],
            "network.allow[0]: \"[fd00::1]:http\"",
        ),
        ("{ not json".into(), vec![], "key must be a string"),
        (
            "{}".into(),
            vec!["--bind".into(), "/nowhere".into()],
            "--bind \"/nowhere\"",
        ),
        (
            "{}".into(),
            vec!["--memory".into(), "lots".into()],
            "--memory \"lots\"",
        ),
    ];
    for (text, extra, needle) in cases {
        std::fs::write(&spec, &text).unwrap();
        let mut args = vec!["sandbox", "run", "--spec", spec.to_str().unwrap()];
        args.extend(extra.iter().map(String::as_str));
        args.extend(["--", "true"]);
        let err = env.fails(&args, needle);
        assert!(err.starts_with("sbx-oci: "), "{err}");
        let left = std::fs::read_dir(&env.root).map(|d| d.count()).unwrap_or(0);
        assert_eq!(
            left, 0,
            "{text}: nothing may be created, not even a root skeleton"
        );
    }
    // No command at all.
    std::fs::write(&spec, "{}").unwrap();
    env.fails(
        &["sandbox", "run", "--spec", spec.to_str().unwrap()],
        "nothing to run",
    );
    env.fails(
        &[
            "sandbox",
            "run",
            "--spec",
            missing.to_str().unwrap(),
            "--",
            "true",
        ],
        "cannot read sandbox spec",
    );
}

/// A bundle written by `sandbox bundle` is an ordinary OCI bundle: runc
/// runs it, with the sandbox's limits.
#[test]
fn bundle_runs_under_runc() {
    let env = Env::new("sbxrunc");
    let out_dir = env.dir.join("bundle");
    let id = env.id("runc");
    env.ok(&[
        "sandbox",
        "bundle",
        "--out",
        out_dir.to_str().unwrap(),
        "--name",
        &id,
        "--pids",
        "8",
        "--",
        "sh",
        "-c",
        "id -u; (i=0; while [ $i -lt 30 ]; do sleep 5 & i=$((i+1)); done) 2>/dev/null; \
              set -- /proc/[0-9]*; echo $#",
    ]);
    assert!(out_dir.join("config.json").is_file() && out_dir.join("rootfs").is_dir());
    let runc_root = env.dir.join("runc-root");
    let out = std::process::Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["run", "--bundle", out_dir.to_str().unwrap(), &id])
        .stdin(Stdio::null())
        .output()
        .expect("runc is installed (apt-get install runc)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "runc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("65534"), "{text}");
    let count: u32 = lines.next().unwrap().parse().unwrap();
    assert!(count <= 8, "runc enforced the pids limit: {count}");
    assert!(cgroup_dirs(&format!("sbx-oci-{id}")).is_empty());
    env.fails(
        &[
            "sandbox",
            "bundle",
            "--out",
            out_dir.to_str().unwrap(),
            "--",
            "true",
        ],
        "is not empty",
    );
}

/// The example specs of bundles/specs run as documented.
#[test]
fn example_specs_run() {
    let env = Env::new("sbxexamples");
    let specs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/specs");
    let (code, out, err) = run(
        &env,
        &["--spec", specs.join("python-tool.json").to_str().unwrap()],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.starts_with("Python 3.") && out.ends_with("in a sandbox\n"),
        "{out}"
    );
    let (code, out, err) = run(
        &env,
        &[
            "--spec",
            specs.join("minimal.json").to_str().unwrap(),
            "--name",
            &env.id("min"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("hello from {} as 65534\n", env.id("min")));
}

/// The root of a "host" sandbox is a read-only skeleton, built once per plan
/// and shared: a second run with the same spec creates nothing new, and a
/// sandbox cannot write into it.
#[test]
fn root_skeleton_is_shared_and_read_only() {
    let env = Env::new("sbxskel");
    // (Directories: beside them, the index naming a plan's current one.)
    let skeletons = || -> Vec<String> {
        std::fs::read_dir(env.root.join("@rootfs"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (code, out, err) = run(
        &env,
        &[
            "--",
            "sh",
            "-c",
            "touch /new 2>/dev/null || echo root-is-read-only",
        ],
    );
    assert_eq!((code, out.as_str()), (0, "root-is-read-only\n"), "{err}");
    let first = skeletons();
    assert_eq!(first.len(), 1, "{first:?}");
    run(&env, &["--", "true"]);
    assert_eq!(skeletons(), first, "the same plan reuses the skeleton");
    let extra = env.dir.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    run(&env, &["--ro", extra.to_str().unwrap(), "--", "true"]);
    assert_eq!(skeletons().len(), 2, "another plan, another skeleton");
    let skel = env.root.join("@rootfs").join(&first[0]);
    assert!(
        std::fs::read_dir(&skel).unwrap().all(|e| {
            let name = e.unwrap().file_name();
            !name.to_string_lossy().starts_with('.')
        }),
        "no build leftovers in {}",
        skel.display()
    );
}

/// Reads the first seccomp filter of `pid` from the kernel
/// (PTRACE_SECCOMP_GET_FILTER), as raw sock_filter bytes.
fn installed_filter(pid: i32) -> Vec<u8> {
    use nix::sys::ptrace;
    use nix::unistd::Pid;
    let pid = Pid::from_raw(pid);
    ptrace::seize(pid, ptrace::Options::empty()).unwrap();
    ptrace::interrupt(pid).unwrap();
    nix::sys::wait::waitpid(pid, Some(nix::sys::wait::WaitPidFlag::__WALL)).unwrap();
    const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;
    // SAFETY: a null buffer asks for the length in instructions.
    let len = unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            pid.as_raw(),
            0usize,
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    assert!(len > 0, "{}", std::io::Error::last_os_error());
    let mut buf = vec![0u8; len as usize * 8];
    // SAFETY: `buf` holds `len` instructions.
    let got = unsafe {
        libc::ptrace(
            PTRACE_SECCOMP_GET_FILTER,
            pid.as_raw(),
            0usize,
            buf.as_mut_ptr() as *mut libc::c_void,
        )
    };
    assert_eq!(got, len);
    ptrace::detach(pid, None).unwrap();
    buf
}

/// What a classic BPF seccomp program returns for one system call
/// (struct seccomp_data: nr, arch, ip, args), interpreted as the kernel does.
fn decide(program: &[u8], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut data = [0u8; 64];
    data[0..4].copy_from_slice(&nr.to_le_bytes());
    data[4..8].copy_from_slice(&arch.to_le_bytes());
    for (i, a) in args.iter().enumerate() {
        data[16 + 8 * i..24 + 8 * i].copy_from_slice(&a.to_le_bytes());
    }
    let insns: Vec<(u16, u8, u8, u32)> = program
        .chunks_exact(8)
        .map(|c| {
            let code = u16::from_le_bytes([c[0], c[1]]);
            (
                code,
                c[2],
                c[3],
                u32::from_le_bytes([c[4], c[5], c[6], c[7]]),
            )
        })
        .collect();
    let (mut a, mut x, mut mem, mut pc) = (0u32, 0u32, [0u32; 16], 0usize);
    loop {
        let (code, jt, jf, k) = insns[pc];
        pc += 1;
        let src = if code & 0x08 != 0 { x } else { k };
        match code & 0x07 {
            0x00 => match code & 0xe0 {
                0x00 => a = k,
                0x20 => {
                    let at = k as usize;
                    a = u32::from_le_bytes(data[at..at + 4].try_into().unwrap());
                }
                0x60 => a = mem[k as usize],
                0x80 => a = 64,
                mode => panic!("BPF_LD mode {mode:#x}"),
            },
            0x01 => match code & 0xe0 {
                0x00 => x = k,
                0x60 => x = mem[k as usize],
                0x80 => x = 64,
                mode => panic!("BPF_LDX mode {mode:#x}"),
            },
            0x02 => mem[k as usize] = a,
            0x03 => mem[k as usize] = x,
            0x04 => {
                a = match code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.wrapping_shl(src),
                    0x70 => a.wrapping_shr(src),
                    0x80 => a.wrapping_neg(),
                    0xa0 => a ^ src,
                    op => panic!("BPF_ALU op {op:#x}"),
                }
            }
            0x05 => {
                let taken = match code & 0xf0 {
                    0x00 => {
                        pc += k as usize;
                        continue;
                    }
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    op => panic!("BPF_JMP op {op:#x}"),
                };
                pc += if taken { jt } else { jf } as usize;
            }
            0x06 => return if code & 0x18 == 0x10 { a } else { k },
            // BPF_MISC: TXA or TAX.
            _ if code & 0x80 != 0 => a = x,
            _ => x = a,
        }
    }
}

/// Two seccomp programs decide alike on every system call number, through
/// the native, 32-bit and x32 entry points, for argument patterns that
/// include the profile's conditions (clone's CLONE_NEWUSER).
fn same_decisions(ours: &[u8], theirs: &[u8]) {
    const ARCHES: [u32; 3] = [0xc000_003e, 0x4000_0003, 0xc000_00b7];
    let patterns: [[u64; 6]; 4] = [
        [0; 6],
        [0x1000_0000, 0, 0, 0, 0, 0],
        [0x1000_0011, 1, 2, 3, 4, 5],
        [u64::MAX; 6],
    ];
    let mut allowed = 0;
    for arch in ARCHES {
        for nr in (0..512).chain((0..512).map(|n| n | 0x4000_0000)) {
            for args in patterns {
                let (o, t) = (decide(ours, nr, arch, args), decide(theirs, nr, arch, args));
                assert_eq!(o, t, "nr {nr:#x} arch {arch:#x} args {args:x?}");
                allowed += usize::from(o == 0x7fff_0000);
            }
        }
    }
    if cfg!(target_arch = "x86_64") {
        assert_eq!(
            decide(ours, 39, ARCHES[0], [0; 6]),
            0x7fff_0000,
            "getpid: allowed"
        );
        assert_eq!(
            decide(ours, 101, ARCHES[0], [0; 6]),
            0x0005_0001,
            "ptrace: EPERM"
        );
    }
    // Not vacuous: most calls are allowed, some denied.
    assert!(allowed > 1000 && allowed < 3 * 1024 * 4, "{allowed}");
}

/// A sandbox's filter is compiled once by libseccomp and installed by
/// sbx-oci, in the init and in every exec: the kernel holds a program that
/// decides as the one libcontainer installs from the bundle's linux.seccomp
/// (laid out as a binary tree, so not the same bytes).
#[test]
fn seccomp_filter_is_precompiled_and_decides_as_libcontainers() {
    let env = Env::new("sbxbpf");
    let ours = env.id("ours");
    env.ok(&["sandbox", "create", &ours]);
    let config: Value = serde_json::from_str(
        &std::fs::read_to_string(env.root.join(&ours).join("config.json")).unwrap(),
    )
    .unwrap();
    assert!(
        config["linux"]["seccomp"].is_null(),
        "not left to libcontainer"
    );
    let hex = config["annotations"]["org.sbx-oci.seccomp.bpf"]
        .as_str()
        .unwrap()
        .to_owned();

    // The same spec as a bundle, created by libcontainer's own seccomp path.
    let bundle = env.dir.join("bundle");
    env.ok(&[
        "sandbox",
        "bundle",
        "--out",
        bundle.to_str().unwrap(),
        "--",
        "true",
    ]);
    let theirs = env.id("theirs");
    env.ok(&["create", "--bundle", bundle.to_str().unwrap(), &theirs]);

    // One filter more than this test process has (none, unless the tests
    // themselves run confined), in the init and in each exec.
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let own = status
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp_filters:"))
        .map_or(0, |n| n.trim().parse::<u32>().unwrap());
    let want = format!("Seccomp:\t2\nSeccomp_filters:\t{}\n", own + 1);
    let in_init = std::fs::read_to_string(format!("/proc/{}/status", env.pid(&ours))).unwrap();
    let in_init: String = in_init
        .lines()
        .filter(|l| l.starts_with("Seccomp"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(in_init, want);
    let out = env.ok(&[
        "sandbox",
        "exec",
        &ours,
        "--",
        "grep",
        "^Seccomp",
        "/proc/self/status",
    ]);
    assert_eq!(out, want);
    let out = env.ok(&["exec", &ours, "grep", "^Seccomp", "/proc/self/status"]);
    assert_eq!(out, want);

    // Reading a filter back needs an unconfined tracer.
    let program = if own == 0 {
        let program = installed_filter(env.pid(&ours));
        same_decisions(&program, &installed_filter(env.pid(&theirs)));
        let encoded: String = program.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(encoded, hex);
        program
    } else {
        eprintln!("confined test process: filters not compared");
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    };
    env.ok(&["delete", "--force", &ours]);
    env.ok(&["delete", "--force", &theirs]);

    // A damaged cache is compiled again, not trusted.
    let cache: Vec<_> = std::fs::read_dir(env.root.join("@seccomp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(cache.len(), 1, "{cache:?}");
    let good = std::fs::read(&cache[0]).unwrap();
    assert_eq!(&good[..good.len() - 8], program.as_slice());
    // Misaligned, and aligned but not the program its checksum says.
    let mut flipped = good.clone();
    flipped[0] ^= 0xff;
    for damaged in [b"bad".to_vec(), flipped] {
        std::fs::write(&cache[0], damaged).unwrap();
        let (code, out, err) = run(&env, &["--", "grep", "^Seccomp:", "/proc/self/status"]);
        assert_eq!((code, out.as_str()), (0, "Seccomp:\t2\n"), "{err}");
        assert_eq!(std::fs::read(&cache[0]).unwrap(), good);
    }
}

/// A persistent sandbox's init is a fork of the runtime that never execs:
/// it must hold no descriptor but stdio (not the --log file, not a handle
/// of a host directory), since the sandbox's processes run as its user and
/// could use them through /proc/1/fd.
#[test]
fn idle_init_holds_only_stdio() {
    let env = Env::new("sbxfds");
    let id = env.id("fds");
    let log = env.dir.join("log.json");
    let out = env.sbx(&[
        "--log",
        log.to_str().unwrap(),
        "sandbox",
        "create",
        "--profile",
        "full",
        &id,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", env.pid(&id)))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    assert_eq!(fds, ["0", "1", "2"]);
    env.ok(&["delete", "--force", &id]);
}

/// The command line a platform would use: exec options, list, rm, probe.
#[test]
fn exec_options_list_rm_and_probe() {
    let env = Env::new("sbxcli");
    let id = env.id("c");
    // A budget the steps below cannot use up under TCG (the `sleep 30`
    // must still run when rm is refused).
    env.ok(&["sandbox", "create", "--timeout", "60s", "--budget", &id]);
    let input = env.dir.join("input");
    std::fs::write(&input, "from a file").unwrap();
    let out = env.ok(&[
        "sandbox",
        "exec",
        "--env",
        "A=1",
        "--workdir",
        "/tmp",
        "--user",
        "1000:1001",
        "--stdin",
        input.to_str().unwrap(),
        &id,
        "--",
        "sh",
        "-c",
        "echo \"$A $(pwd) $(id -u):$(id -g) $(cat)\"",
    ]);
    assert_eq!(out, "1 /tmp 1000:1001 from a file\n");
    let env_out = env.ok(&[
        "sandbox",
        "exec",
        "--clear-env",
        "--env",
        "B=2",
        &id,
        "--",
        "env",
    ]);
    let names: Vec<&str> = env_out
        .lines()
        .filter_map(|l| l.split('=').next())
        .collect();
    assert!(names.contains(&"PATH") && names.contains(&"B"), "{env_out}");
    assert!(
        !names.contains(&"TERM") && !names.contains(&"LANG"),
        "{env_out}"
    );

    let listed: Value = serde_json::from_str(&env.ok(&["sandbox", "list", "--json"])).unwrap();
    let me = &listed.as_array().unwrap()[0];
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["state"], "running");
    assert_eq!(me["profile"], "standard");
    assert_eq!(me["network"], "none");
    assert_eq!(me["limits"]["budget"], true);
    let left = me["time_remaining_ms"].as_u64().unwrap();
    assert!(left > 0 && left < 60_000, "{me}");
    let table = env.ok(&["sandbox", "list"]);
    assert!(table.starts_with("ID") && table.contains(&id), "{table}");

    // rm leaves a sandbox with a command running unless forced.
    let mut busy = env
        .command(&["sandbox", "exec", &id, "--", "sleep", "30"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // (Once the command runs: an exec takes a while on a slow machine.)
    let deadline = Instant::now() + Duration::from_secs(30);
    while !env.ok(&["ps", &id]).contains("sleep") {
        assert!(Instant::now() < deadline, "the exec never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    env.fails(&["sandbox", "rm", &id], "give --force");
    env.ok(&["sandbox", "rm", "--force", &id]);
    let _ = busy.wait();
    assert_sandbox_gone(&env, &id);
    env.fails(&["sandbox", "rm", &id], "does not exist");

    let probe: Value = serde_json::from_str(&env.ok(&["sandbox", "probe", "--json"])).unwrap();
    assert!(
        probe["cgroup"]["controllers"].as_array().unwrap().len() > 3,
        "{probe}"
    );
    assert_eq!(probe["seccomp"]["available"], true);
    assert_eq!(probe["nftables"], true);
    assert_eq!(probe["profiles"].as_array().unwrap().len(), 3);
    let text = env.ok(&["sandbox", "probe"]);
    assert!(text.contains("profile standard: "), "{text}");
}

/// A `sandbox exec` whose runtime is SIGKILLed (a supervisor, a platform
/// dropping its stream) takes its command with it: the exec's watchdog
/// kills the command, which would otherwise run on under the host's init
/// with no limit, and charges the budget for the time it ran, no more.
#[test]
fn a_killed_exec_runtime_takes_its_command_and_is_charged() {
    let env = Env::new("sbxwatch");
    let id = env.id("w");
    env.ok(&["sandbox", "create", "--timeout", "60s", "--budget", &id]);
    let mut runtime = env
        .command(&["sandbox", "exec", &id, "--", "sleep", "41"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeping = || {
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == b"sleep\x0041\x00"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sleeping() {
        assert!(Instant::now() < deadline, "the exec never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1000));
    runtime.kill().unwrap();
    runtime.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while sleeping() {
        assert!(
            Instant::now() < deadline,
            "the command outlived its runtime"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The watchdog kills the command first and ends its lease after: the
    // budget is read once it has left (no watchdog is left waiting).
    common::wait_for_no_watchdog(&id);
    let left = || -> u64 {
        let listed: Value = serde_json::from_str(&env.ok(&["sandbox", "list", "--json"])).unwrap();
        listed[0]["time_remaining_ms"].as_u64().unwrap()
    };
    let first = left();
    assert!(
        first <= 59_000,
        "the second it ran was not charged: {first}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(left(), first, "still charged after the command ended");
    env.ok(&["sandbox", "rm", &id]);
    assert_sandbox_gone(&env, &id);
}

/// A writable path owned by another user (uid 1000, made here) is writable
/// by the sandbox's user through an idmapped mount: what it creates belongs
/// to 1000 on the host, files of others stay out of its reach, read-only
/// paths stay read-only, nothing is chowned and no mount is left on the
/// host. The same for a writable --bind and for a workdir that is one.
#[test]
fn writable_paths_of_another_user_are_idmapped() {
    use std::os::unix::fs::MetadataExt;
    let env = Env::new("sbxidmap");
    let (rw, bound, ro) = (
        env.dir.join("rw"),
        env.dir.join("bound"),
        env.dir.join("ro"),
    );
    for d in [&rw, &bound, &ro] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(1000), Some(1000)).unwrap();
    }
    std::fs::write(rw.join("root-owned"), "x").unwrap();
    std::fs::write(rw.join("mine"), "1\n").unwrap();
    std::os::unix::fs::chown(rw.join("mine"), Some(1000), Some(1000)).unwrap();
    let (rws, bounds, ros) = (
        rw.to_str().unwrap(),
        bound.to_str().unwrap(),
        ro.to_str().unwrap(),
    );
    let id = env.id("i");
    let script = format!(
        "cd {rws} && echo new > created && mkdir dir && echo 2 >> mine && echo ok=rw; \
         (echo x > root-owned) 2>/dev/null || echo ok=others-protected; \
         (chown 0 created) 2>/dev/null || echo ok=no-chown; \
         echo b > /data/b && echo ok=bind; \
         (echo r > {ros}/r) 2>/dev/null || echo ok=ro; \
         echo w > workdir-file && echo ok=workdir"
    );
    let bind = format!("{bounds}:/data");
    let (code, out, err) = run(
        &env,
        &[
            "--name",
            &id,
            "--rw",
            rws,
            "--bind",
            &bind,
            "--ro",
            ros,
            "--workdir",
            rws,
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "rw",
        "others-protected",
        "no-chown",
        "bind",
        "ro",
        "workdir",
    ] {
        assert!(out.contains(&format!("ok={want}\n")), "{want}: {out}{err}");
    }
    let owner = |p: std::path::PathBuf| {
        let m = std::fs::metadata(&p).unwrap();
        (m.uid(), m.gid())
    };
    for p in [
        rw.join("created"),
        rw.join("dir"),
        rw.join("mine"),
        rw.join("workdir-file"),
        bound.join("b"),
    ] {
        assert_eq!(owner(p.clone()), (1000, 1000), "{}", p.display());
    }
    assert_eq!(owner(rw.join("root-owned")), (0, 0));
    assert_eq!(std::fs::read_to_string(rw.join("root-owned")).unwrap(), "x");
    assert_eq!(owner(rw.clone()), (1000, 1000));
    assert!(!ro.join("r").exists());
    assert_eq!(std::fs::read_to_string(rw.join("mine")).unwrap(), "1\n2\n");
    assert!(env.host_mounts().is_empty(), "{:?}", env.host_mounts());
    assert_sandbox_gone(&env, &id);
}

/// Where the file system cannot idmap (tmpfs before Linux 6.3, as on
/// Debian 12's kernel), a writable path of another user is bound as it is
/// when its mode lets the sandbox's user write (with a warning), and is
/// refused with what to do otherwise; where it can, both are idmapped. The
/// test mounts a tmpfs of its own.
#[test]
fn writable_paths_on_tmpfs_fall_back_where_it_cannot_idmap() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let env = Env::new("sbxtmpfs");
    let fs = env.dir.join("tmpfs");
    std::fs::create_dir(&fs).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &fs,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("mode=0755"),
    )
    .unwrap();
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _unmount = Unmount(fs.clone());
    let (open, closed) = (fs.join("open"), fs.join("closed"));
    for (d, mode) in [(&open, 0o777), (&closed, 0o755)] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(1000), Some(1000)).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let release = nix::sys::utsname::uname().unwrap();
    let release = release.release().to_string_lossy();
    let mut v = release
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let tmpfs_idmaps = (v.next().unwrap(), v.next().unwrap()) >= (6, 3);

    let id = env.id("o");
    let script = format!("echo x > {}/f && echo wrote", open.display());
    let (code, out, err) = run(
        &env,
        &[
            "--name",
            &id,
            "--rw",
            open.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!((code, out.as_str()), (0, "wrote\n"), "{err}");
    let owner = std::fs::metadata(open.join("f")).unwrap().uid();
    if tmpfs_idmaps {
        assert_eq!(owner, 1000, "idmapped: the file is the directory owner's");
        assert!(!err.contains("bound as it is"), "{err}");
    } else {
        assert_eq!(
            owner, 65534,
            "bound as it is: the file is the sandbox user's"
        );
        assert!(
            err.contains("tmpfs does not support idmapped mounts here")
                && err.contains("is bound as it is")
                && err.contains("belongs to 65534:65534"),
            "{err}"
        );
    }
    assert_sandbox_gone(&env, &id);

    let id = env.id("c");
    let script = format!("echo x > {}/f && echo wrote", closed.display());
    let (code, out, err) = run(
        &env,
        &[
            "--name",
            &id,
            "--rw",
            closed.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    if tmpfs_idmaps {
        assert_eq!((code, out.as_str()), (0, "wrote\n"), "{err}");
        assert_eq!(std::fs::metadata(closed.join("f")).unwrap().uid(), 1000);
    } else {
        assert_ne!(code, 0, "{out}");
        assert!(
            err.contains("tmpfs does not support idmapped mounts here")
                && err.contains("--user 1000:1000"),
            "{err}"
        );
        assert!(!closed.join("f").exists());
    }
    assert_sandbox_gone(&env, &id);
    // No mount is left but the test's own tmpfs.
    let fs = fs.to_str().unwrap();
    let left: Vec<String> = env
        .host_mounts()
        .into_iter()
        .filter(|m| m.split(' ').nth(4) != Some(fs))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `sandbox exec -t` and `sandbox run -t`: the command is on a terminal of
/// its own with the caller's window size, and its status comes back.
#[test]
fn tty_gives_a_terminal_with_the_callers_window_size() {
    use std::os::fd::AsFd;
    let env = Env::new("sbxtty");
    let id = env.id("t");
    env.ok(&["sandbox", "create", &id]);
    let script = "tty; stty size; exit 6";
    let runs: [Vec<&str>; 2] = [
        vec!["sandbox", "exec", "-t", &id, "--", "sh", "-c", script],
        vec!["sandbox", "run", "-t", "--", "sh", "-c", script],
    ];
    for args in runs {
        let size = nix::pty::Winsize {
            ws_row: 33,
            ws_col: 91,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = nix::pty::openpty(Some(&size), None).unwrap();
        let slave = || Stdio::from(pty.slave.try_clone().unwrap());
        let mut child = env
            .command(&args)
            .stdin(slave())
            .stdout(slave())
            .stderr(slave())
            .spawn()
            .unwrap();
        drop(pty.slave);
        let mut out = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        while Instant::now() < deadline {
            let mut fds = [nix::poll::PollFd::new(
                pty.master.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u8)).unwrap_or(0) == 0 {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                continue;
            }
            match nix::unistd::read(std::os::fd::AsRawFd::as_raw_fd(&pty.master), &mut buf) {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n]),
                _ => break, // EIO: every slave end closed
            }
        }
        let status = child.wait().unwrap();
        let text = String::from_utf8_lossy(&out);
        assert_eq!(status.code(), Some(6), "{args:?}: {text}");
        assert!(text.contains("/dev/pts/"), "{args:?}: {text}");
        assert!(text.contains("33 91"), "{args:?}: {text}");
    }
    env.ok(&["delete", "--force", &id]);
    assert_sandbox_gone(&env, &id);
}
