//! Test harness: real containers through the built `sbx-oci` binary, as root.
//!
//! Each test gets its own state root, bundle directory and cgroup path, so
//! tests run in parallel, and [`Env`]'s drop checks that nothing was left
//! behind: no state, no cgroup in any controller, no host mount under the
//! test's directory.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod netns;

/// The binary under test: the one cargo built with these tests, or the one
/// SBX_OCI_BIN names (CI runs some of the tests again against the release
/// build, whose code layout and link differ).
pub fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        std::env::var("SBX_OCI_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_sbx-oci").to_owned())
    })
}

/// The busybox rootfs every test bundle shares read-only. Built once under
/// cargo's target/tmp and reused; a build races safely with another test
/// process (nextest) through an atomic rename.
pub fn busybox_rootfs() -> &'static Path {
    static ROOTFS: OnceLock<PathBuf> = OnceLock::new();
    ROOTFS.get_or_init(|| {
        assert!(
            nix::unistd::geteuid().is_root(),
            "the integration tests run real containers: run them as root"
        );
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("busybox-bundle");
        if !dir.join(".complete").exists() {
            let tmp = dir.with_extension(format!("tmp{}", std::process::id()));
            let _ = fs::remove_dir_all(&tmp);
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/busybox.sh");
            let out = Command::new("bash")
                .arg(&script)
                .arg(&tmp)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "bundles/busybox.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            fs::write(tmp.join(".complete"), "").unwrap();
            if dir.exists() && !dir.join(".complete").exists() {
                let _ = fs::remove_dir_all(&dir); // a crashed build's remains
            }
            if fs::rename(&tmp, &dir).is_err() {
                let _ = fs::remove_dir_all(&tmp);
            }
        }
        dir.join("rootfs")
    })
}

/// The bundle's default config.json, as committed.
pub fn template() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/config.json");
    serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap()
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A private state root and a directory for bundles, checked on drop.
pub struct Env {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub tag: String,
    cgroups: Vec<String>,
}

impl Env {
    pub fn new(name: &str) -> Env {
        busybox_rootfs();
        let tag = format!(
            "sbx-oci-test-{}-{}-{}",
            name,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        // $TMPDIR or /tmp (guest/job.sh points it at an ext4 disk: a stock
        // host's /tmp is on its root file system).
        let dir = std::env::temp_dir().join(&tag);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let root = dir.join("state");
        Env {
            dir,
            root,
            tag,
            cgroups: Vec::new(),
        }
    }

    /// A unique container id for this test.
    pub fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.tag)
    }

    /// Writes a bundle running `args`; `edit` may change the config further.
    /// The container's cgroup is `/<id>` (one level, so delete removes it all).
    pub fn bundle_with(
        &mut self,
        id: &str,
        args: &[&str],
        edit: impl FnOnce(&mut Value),
    ) -> PathBuf {
        let bundle = self.dir.join(format!("bundle-{id}"));
        fs::create_dir_all(&bundle).unwrap();
        let mut config = template();
        config["root"]["path"] = Value::from(busybox_rootfs().to_str().unwrap());
        config["process"]["args"] = Value::from(args.to_vec());
        config["linux"]["cgroupsPath"] = Value::from(format!("/{id}"));
        edit(&mut config);
        fs::write(bundle.join("config.json"), config.to_string()).unwrap();
        self.cgroups.push(id.to_owned());
        bundle
    }

    pub fn bundle(&mut self, id: &str, args: &[&str]) -> PathBuf {
        self.bundle_with(id, args, |_| {})
    }

    /// `sbx-oci --root <root> ARGS`, waiting for it; stdin is /dev/null.
    /// Output goes through files, not pipes: a detached container inherits
    /// them and would hold a pipe open long after sbx-oci has exited.
    pub fn sbx(&self, args: &[&str]) -> Output {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let (out_path, err_path) = (
            self.dir.join(format!("out-{n}")),
            self.dir.join(format!("err-{n}")),
        );
        let status = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).unwrap())
            .stderr(fs::File::create(&err_path).unwrap())
            .status()
            .unwrap();
        let output = Output {
            status,
            stdout: fs::read(&out_path).unwrap(),
            stderr: fs::read(&err_path).unwrap(),
        };
        let _ = fs::remove_file(out_path);
        let _ = fs::remove_file(err_path);
        output
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("--root").arg(&self.root).args(args);
        cmd
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.sbx(args);
        assert!(
            out.status.success(),
            "sbx-oci {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and asserts failure; returns stderr, which must be one line
    /// containing `needle`.
    pub fn fails(&self, args: &[&str], needle: &str) -> String {
        let out = self.sbx(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "sbx-oci {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(
            err.contains(needle),
            "sbx-oci {args:?}: expected {needle:?} in {err:?}"
        );
        assert_eq!(
            err.trim_end().lines().count(),
            1,
            "one line on stderr: {err:?}"
        );
        assert!(
            err.starts_with("sbx-oci: error: ") || err.starts_with("error: "),
            "the line says \"error\": {err:?}"
        );
        err
    }

    pub fn state(&self, id: &str) -> Value {
        serde_json::from_str(&self.ok(&["state", id])).unwrap()
    }

    pub fn status(&self, id: &str) -> String {
        self.state(id)["status"].as_str().unwrap().to_owned()
    }

    pub fn pid(&self, id: &str) -> i32 {
        self.state(id)["pid"].as_i64().unwrap() as i32
    }

    /// Waits (up to 10 s) until `id` exists and has `status`.
    pub fn wait_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let current = || {
            let out = self.sbx(&["state", id]);
            serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .and_then(|v| v["status"].as_str().map(str::to_owned))
        };
        while current().as_deref() != Some(status) {
            assert!(Instant::now() < deadline, "{id} never became {status}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Nothing of `id` is left: no state, no cgroup in any controller.
    pub fn assert_gone(&self, id: &str) {
        assert!(
            !self.root.join(id).exists(),
            "state dir of {id} left behind"
        );
        let left = cgroup_dirs(id);
        assert!(left.is_empty(), "cgroups of {id} left behind: {left:?}");
    }

    /// Host mounts under this test's directory (none should ever appear).
    pub fn host_mounts(&self) -> Vec<String> {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        mountinfo
            .lines()
            .filter(|l| l.contains(self.dir.to_str().unwrap()))
            .map(str::to_owned)
            .collect()
    }
}

/// Every cgroup directory named `id` at the top of a hierarchy: of each v1
/// controller and the hybrid layout's unified tree, or of cgroup v2 alone.
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let Ok(entries) = fs::read_dir(root) else {
        return Vec::new();
    };
    std::iter::once(root.join(id))
        .chain(entries.flatten().map(|e| e.path().join(id)))
        .filter(|p| p.is_dir())
        .collect()
}

/// Whether /sys/fs/cgroup is cgroup v2 alone (the unified hierarchy), as on
/// a stock systemd host; otherwise it holds v1 controllers.
pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A file of the cgroup `/<id>`: `v1` is (controller, file) in a v1
/// hierarchy, `v2` the file in the unified one; the host's layout picks.
pub fn cgroup_read(id: &str, v1: (&str, &str), v2: &str) -> String {
    let path = if cgroup_v2() {
        Path::new("/sys/fs/cgroup").join(id).join(v2)
    } else {
        Path::new("/sys/fs/cgroup").join(v1.0).join(id).join(v1.1)
    };
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
        .trim()
        .to_owned()
}

impl Drop for Env {
    fn drop(&mut self) {
        // Clean up whatever a failing test left, then check.
        if let Ok(entries) = fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                let _ = self.command(&["delete", "--force", &id]).output();
            }
        }
        let mounts = self.host_mounts();
        let leftovers: Vec<String> = self
            .cgroups
            .iter()
            .flat_map(|id| cgroup_dirs(id))
            .map(|p| p.display().to_string())
            .collect();
        // Entries named @... are the runtime's shared caches (the sandboxes'
        // root skeletons), not any container's state.
        let state_left = fs::read_dir(&self.root)
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('@'))
                    .count()
            })
            .unwrap_or(0);
        let _ = fs::remove_dir_all(&self.dir);
        if !std::thread::panicking() {
            assert!(mounts.is_empty(), "host mounts left: {mounts:?}");
            assert!(leftovers.is_empty(), "cgroups left: {leftovers:?}");
            assert_eq!(state_left, 0, "state dirs left in {}", self.root.display());
        }
    }
}

/// `sandbox run ARGS`, returning (exit code, stdout, stderr).
pub fn sandbox_run(env: &Env, args: &[&str]) -> (i32, String, String) {
    let mut full = vec!["sandbox", "run"];
    full.extend_from_slice(args);
    let out = env.sbx(&full);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Reads a file inside a running container through /proc/<pid>/root.
pub fn read_in(pid: i32, path: &str) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/root{path}")).ok()
}

/// `label=state` lines of a probe script's output.
pub fn probe_results(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Each `(label, state)` of `want` is what the probe script printed for
/// that label (its first line of that label).
pub fn expect_probes(out: &str, want: &[(&str, &str)]) {
    let got = probe_results(out);
    for (label, state) in want {
        let seen = got
            .iter()
            .find(|(k, _)| k == label)
            .map(|(_, v)| v.as_str());
        assert_eq!(seen, Some(*state), "{label}: output was {out}");
    }
}

/// Waits (at most 10 s) until no exec watchdog (`sbx-oci-watch`, a fork of
/// the runtime: its command line names the sandbox) of sandbox `id` is
/// left; fails the test if one stays.
pub fn wait_for_no_watchdog(id: &str) {
    let watchdogs = || {
        fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter(|e| {
                fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c == "sbx-oci-watch\n")
                    && fs::read(e.path().join("cmdline"))
                        .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == id.as_bytes()))
            })
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while watchdogs() > 0 {
        assert!(Instant::now() < deadline, "a watchdog of {id} stays");
        std::thread::sleep(Duration::from_millis(20));
    }
}
