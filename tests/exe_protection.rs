//! The runtime binary is out of the container's reach (CVE-2019-5736 class):
//! a process in the container cannot overwrite sbx-oci through
//! /proc/<pid>/exe of a runtime process that joins the container.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;
use serde_json::{Value, json};

/// While a container is created, its init process is still a fork of the
/// runtime: its /proc/<pid>/exe must not be writable, even by root.
#[test]
fn init_exe_cannot_be_opened_for_writing() {
    let mut env = Env::new("exe");
    let id = env.id("c");
    let bundle = env.bundle(&id, &["true"]);
    env.ok(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    assert_init_exe_refused(&env, &id);
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// A runtime started with more environment variables than the entry point
/// (early/) copies on its stack takes selfexe's way to the protected view:
/// slower, protected all the same.
#[test]
fn a_large_environment_is_protected_all_the_same() {
    let mut env = Env::new("exe-env");
    let id = env.id("c");
    let bundle = env.bundle(&id, &["true"]);
    let mut create = env.command(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    create.envs((0..2000).map(|i| (format!("SBX_TEST_VAR_{i}"), "x")));
    // Not piped: the created container's init keeps its stdio until start.
    let log = env.dir.join("large-env.stderr");
    create
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let status = create.status().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_init_exe_refused(&env, &id);
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// The attack itself: the container holds /proc/<pid>/exe of a runtime
/// process that `exec` made re-execute the runtime binary inside the
/// container (a `#!/proc/self/exe` script), then writes through it once that
/// process has exited. The binary on the host must stay intact.
#[test]
fn container_cannot_overwrite_runtime_binary() {
    let mut env = Env::new("cve");
    // Attack a copy, so a failure cannot damage the binary under test.
    let victim = env.dir.join("sbx-oci-victim");
    std::fs::copy(common::bin(), &victim).unwrap();
    let (opened, log) = attack(&mut env, &victim);
    assert!(
        log.contains("Read-only file system")
            || (opened.contains("/memfd:sbx-oci")
                && (log.contains("Text file busy") || log.contains("Operation not permitted"))),
        "writes were refused: {log}"
    );
}

/// A binary installed on a read-only mount is protected as it is: create,
/// run and exec execute it once (no re-execution: the runtime's processes
/// show its own path), and the attack meets EROFS all the same.
#[test]
fn a_binary_installed_read_only_runs_once_and_stays_out_of_reach() {
    let mut env = Env::new("roexe");
    let dir = env.dir.join("ro-install");
    std::fs::create_dir_all(&dir).unwrap();
    let victim = dir.join("sbx-oci");
    std::fs::copy(common::bin(), &victim).unwrap();
    let _mount = ReadOnlyBind::new(&dir);

    let id = env.id("c");
    let bundle = env.bundle(&id, &["true"]);
    let create = Command::new(&victim)
        .arg("--root")
        .arg(&env.root)
        .args(["create", "--bundle", bundle.to_str().unwrap(), &id])
        .status()
        .unwrap();
    assert!(create.success());
    let exe = format!("/proc/{}/exe", env.pid(&id));
    assert_eq!(std::fs::read_link(&exe).unwrap(), victim, "re-executed");
    // With O_TRUNC the mount is checked before the file's use (ETXTBSY).
    let err = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&exe)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    env.ok(&["delete", "--force", &id]);

    let (opened, log) = attack(&mut env, &victim);
    assert!(opened.contains(victim.to_str().unwrap()), "{opened}");
    assert!(log.contains("Read-only file system"), "{log}");
}

/// The API starts the runtime from a protected view of the binary that the
/// client makes once (so the runtime executes once, not twice): the
/// runtime's process in the sandbox is as far out of reach through it, and
/// the view shows the binary as it is on disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_started_by_the_api_is_protected() {
    let env = Env::new("apiexe");
    let victim = env.dir.join("sbx-oci-victim");
    std::fs::copy(common::bin(), &victim).unwrap();
    let client = sbx_oci::api::Client::with_binary(&env.root, &victim);
    let id = env.id("s");
    let sandbox = client
        .create(&id, &sbx_oci::sandbox::SandboxSpec::default())
        .await
        .unwrap();
    // The sandbox's init is a fork of the runtime the client started.
    let exe = format!("/proc/{}/exe", env.pid(&id));
    let err = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&exe)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{exe}: {err}");
    assert!(
        std::fs::read(&exe).unwrap() == std::fs::read(&victim).unwrap(),
        "{exe} is not the binary"
    );
    sandbox.destroy().await.unwrap();
    env.assert_gone(&id);
}

/// A read-only bind mount of a directory over itself, undone on drop.
struct ReadOnlyBind(std::path::PathBuf);

impl ReadOnlyBind {
    fn new(dir: &Path) -> ReadOnlyBind {
        let mount = |args: &[&str]| {
            let status = Command::new("mount").args(args).arg(dir).arg(dir).status();
            assert!(status.unwrap().success(), "mount {args:?}");
        };
        mount(&["--bind"]);
        let guard = ReadOnlyBind(dir.to_owned());
        mount(&["-o", "remount,bind,ro"]);
        guard
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Runs the attack of [`container_cannot_overwrite_runtime_binary`] with the
/// runtime binary `victim`; checks that it reached a runtime process and
/// that the binary is intact, and returns what the attacker logged when it
/// opened the exe and at the end.
fn attack(env: &mut Env, victim: &Path) -> (String, String) {
    let before = std::fs::read(victim).unwrap();
    let attack = env.dir.join("attack");
    std::fs::create_dir_all(&attack).unwrap();
    // `--log` swallows the script path the kernel inserts, so the runtime
    // parses `update --resources -` and waits on stdin: it stays alive
    // inside the container until the test closes that pipe.
    std::fs::write(attack.join("evil"), "#!/proc/self/exe --log\n").unwrap();
    std::fs::set_permissions(attack.join("evil"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(attack.join("attacker.sh"), ATTACKER).unwrap();

    // A rootfs that can run the (dynamically linked) runtime binary, as any
    // glibc-based image can: busybox plus the binary's libraries.
    let rootfs = rootfs_with_libraries_of(env, victim);

    let id = env.id("c");
    let bundle = env.bundle_with(&id, &["sh", "/root/attacker.sh"], |c| {
        c["root"]["path"] = Value::from(rootfs.to_str().unwrap());
        c["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/root", "type": "bind",
            "source": attack.to_str().unwrap(), "options": ["rbind", "rw"]
        }));
    });
    let run = |args: &[&str]| {
        Command::new(victim)
            .arg("--root")
            .arg(&env.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
    };
    assert!(run(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]).success());
    wait_for(&attack.join("ready"), "", Duration::from_secs(10));

    // The trigger: exec the script; the kernel runs /proc/self/exe.
    let mut exec = Command::new(victim)
        .arg("--root")
        .arg(&env.root)
        .args([
            "exec",
            &id,
            "/root/evil",
            "update",
            "--resources",
            "-",
            "ghost",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let opened = wait_for(&attack.join("log"), "opened", Duration::from_secs(20));
    // Let the runtime process exit; the attacker now tries to write.
    exec.stdin.take().unwrap().write_all(b"{}").unwrap();
    let _ = exec.wait();
    let log = wait_for(&attack.join("log"), "done", Duration::from_secs(30));

    let after = std::fs::read(victim).unwrap();
    assert!(after == before, "the runtime binary was modified: {log}");
    assert!(
        opened.contains("opened"),
        "the attack reached the runtime process: {log}"
    );
    assert!(!log.contains("WROTE"), "{log}");
    assert!(run(&["delete", "--force", &id]).success());
    env.assert_gone(&id);
    (opened, log)
}

/// The created container `id`'s init (still a fork of the runtime) cannot
/// have its /proc/<pid>/exe opened for writing.
fn assert_init_exe_refused(env: &Env, id: &str) {
    let pid = env.pid(id);
    let exe = format!("/proc/{pid}/exe");
    let err = std::fs::OpenOptions::new()
        .write(true)
        .open(&exe)
        .unwrap_err();
    let target = std::fs::read_link(&exe).unwrap();
    assert!(
        refused(&target.to_string_lossy(), err.raw_os_error()),
        "{exe} ({}): {err}",
        target.display()
    );
}

/// Whether a write-open of the runtime binary behind `exe` (a readlink of
/// /proc/<pid>/exe) failed the way the protection in use refuses it: EROFS
/// through the read-only overlay view; where the kernel cannot make that
/// view (before 6.? a detached mount cannot be an overlay layer: Debian
/// 12's 6.1), through the write-sealed memfd copy: ETXTBSY while it runs,
/// EPERM (the seal).
fn refused(exe: &str, errno: Option<i32>) -> bool {
    match exe.starts_with("/memfd:sbx-oci") {
        true => matches!(errno, Some(libc::ETXTBSY | libc::EPERM)),
        false => errno == Some(libc::EROFS),
    }
}

/// A copy of the busybox rootfs plus every library `ldd` lists for `binary`.
fn rootfs_with_libraries_of(env: &Env, binary: &Path) -> std::path::PathBuf {
    let rootfs = env.dir.join("rootfs");
    let status = Command::new("cp")
        .arg("-a")
        .arg(common::busybox_rootfs())
        .arg(&rootfs)
        .status()
        .unwrap();
    assert!(status.success());
    let ldd = Command::new("ldd").arg(binary).output().unwrap();
    let text = String::from_utf8_lossy(&ldd.stdout);
    let libs = text
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(Path::new);
    for lib in libs {
        let dest = rootfs.join(lib.strip_prefix("/").unwrap());
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(lib, &dest).unwrap();
    }
    rootfs
}

/// Waits until `path` exists and contains `needle`; returns its text.
fn wait_for(path: &Path, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && text.contains(needle)
        {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {needle:?} in {}: {:?}",
            path.display(),
            std::fs::read_to_string(path)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Finds a process whose exe is not busybox (the runtime), holds its exe
/// open, and once it has exited tries to write through the held file.
const ATTACKER: &str = r#"
cd /root
echo ready > ready
while true; do
  for p in /proc/[0-9]*; do
    exe=$(readlink $p/exe 2>/dev/null) || continue
    case "$exe" in *busybox*|"") continue;; esac
    exec 3< $p/exe 2>/dev/null || continue
    echo "opened $p $exe" >> log
    i=0
    while [ $i -lt 40 ]; do
      if { printf 'PWNED' > /proc/self/fd/3; } 2>> log; then
        echo WROTE >> log
        break
      fi
      i=$((i+1))
      sleep 0.05
    done
    echo done >> log
    sleep 3600
  done
done
"#;
