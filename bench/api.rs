//! The async API against the command lines, in one run and one rotation:
//!
//! - exec of `true` into a running container: through the API
//!   (`Sandbox::exec`, a persistent sandbox), `sbx-oci sandbox exec`,
//!   `sbx-oci exec` (the busybox bundle) and `runc exec` (the same bundle);
//! - a sandbox's whole life: the API's one-shot `run` and its `create` +
//!   `destroy` against the CLI's `sandbox run -- true`.
//!
//! Medians, p10/p90 and the ratios are printed. Root; needs runc and
//! busybox-static, and the release binary:
//!
//!     cargo build --release && cargo run --release --example api_bench [-- RUNS]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sbx_oci::api::{Client, ExecRequest};
use sbx_oci::sandbox::SandboxSpec;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(100);
    let bin = binary();
    let runc = which("runc").expect("runc: apt-get install runc");
    let dir = std::env::temp_dir().join(format!("sbx-api-bench-{}", std::process::id()));
    // State roots and bundle on a tmpfs, as under a production /run: on a
    // disk file system (this machine's /tmp is ext4) every run's new inodes
    // grow slower as runs are deleted, and the medians drift by milliseconds
    // over a benchmark (see bench/lifecycle.py).
    let _tmpfs = Tmpfs::mount(&dir);
    let bundle = dir.join("bundle");
    let built = Command::new("bash")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("bundles/busybox.sh"))
        .arg(&bundle)
        .status()
        .unwrap();
    assert!(built.success(), "bundles/busybox.sh failed");
    let mut config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    config["process"]["args"] = serde_json::json!(["sleep", "1000000"]);
    config["process"]["terminal"] = false.into();
    std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
    let (sbx_root, runc_root) = (dir.join("sbx"), dir.join("runc"));
    let run = |prog: &Path, root: &Path, args: &[&str]| {
        let ok = Command::new(prog)
            .arg("--root")
            .arg(root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "{} {args:?} failed", prog.display());
    };
    let b = bundle.to_str().unwrap();
    run(
        &bin,
        &sbx_root,
        &["run", "--detach", "--bundle", b, "plain"],
    );
    run(
        &runc,
        &runc_root,
        &["run", "--detach", "--bundle", b, "plain"],
    );
    let client = Client::with_binary(&sbx_root, &bin);
    let sandbox = client.create("box", &SandboxSpec::default()).await.unwrap();

    const N: usize = 7;
    let names: [&str; N] = [
        "API Sandbox::exec",
        "sbx-oci sandbox exec",
        "sbx-oci exec",
        "runc exec",
        "API run (one-shot)",
        "sbx-oci sandbox run",
        "API create+destroy",
    ];
    let mut t: [Vec<Duration>; N] = Default::default();
    // The two halves of "API create+destroy", for where its time goes.
    let (mut created, mut destroyed) = (Vec::new(), Vec::new());
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..runs {
        // A new order each iteration, so that no measurement always
        // follows the same neighbour: a sandbox's teardown goes on in the
        // kernel after its command has returned, and costs the next one.
        let mut order: [usize; N] = std::array::from_fn(|k| k);
        for k in (1..N).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            order.swap(k, (seed % (k as u64 + 1)) as usize);
        }
        for which in order {
            let id = format!("life{i}-{which}");
            let s = Instant::now();
            match which {
                0 => {
                    let out = sandbox.exec(ExecRequest::new("true")).await.unwrap();
                    assert_eq!(out.status.code, 0);
                }
                1 => run(&bin, &sbx_root, &["sandbox", "exec", "box", "--", "true"]),
                2 => run(&bin, &sbx_root, &["exec", "plain", "true"]),
                3 => run(&runc, &runc_root, &["exec", "plain", "true"]),
                4 => {
                    let stream = client
                        .run(Some(&id), &SandboxSpec::default(), ExecRequest::new("true"))
                        .await
                        .unwrap();
                    assert_eq!(stream.wait().await.unwrap().code, 0);
                }
                5 => run(
                    &bin,
                    &sbx_root,
                    &["sandbox", "run", "--name", &id, "--", "true"],
                ),
                _ => {
                    let sb = client.create(&id, &SandboxSpec::default()).await.unwrap();
                    created.push(s.elapsed());
                    let d = Instant::now();
                    sb.destroy().await.unwrap();
                    destroyed.push(d.elapsed());
                }
            }
            t[which].push(s.elapsed());
        }
    }
    sandbox.destroy().await.unwrap();
    run(&bin, &sbx_root, &["delete", "--force", "plain"]);
    run(&runc, &runc_root, &["delete", "--force", "plain"]);

    println!("{runs} runs each, in a new shuffled order every round");
    let med: Vec<f64> = t.iter_mut().map(|v| stats(v).0).collect();
    for (name, v) in names.iter().zip(t.iter_mut()) {
        let (m, p10, p90) = stats(v);
        println!("{name:<26} median {m:7.2} ms   p10 {p10:7.2}   p90 {p90:7.2}");
    }
    for (name, v) in [
        ("  of which create", &mut created),
        ("  of which destroy", &mut destroyed),
    ] {
        let (m, p10, p90) = stats(v);
        println!("{name:<26} median {m:7.2} ms   p10 {p10:7.2}   p90 {p90:7.2}");
    }
    println!("API exec / runc exec:               {:.2}", med[0] / med[3]);
    println!("API exec / sbx-oci sandbox exec:    {:.2}", med[0] / med[1]);
    println!("sbx-oci exec / runc exec:           {:.2}", med[2] / med[3]);
    println!("API run / CLI sandbox run:          {:.2}", med[4] / med[5]);
    println!(
        "API create+destroy / CLI sandbox run: {:.2}",
        med[6] / med[5]
    );
}

/// A tmpfs mounted on a new directory, unmounted and removed on drop (also
/// when the benchmark panics).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let guard = Tmpfs(dir.to_owned());
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "sbx-api-bench"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot mount a tmpfs on {}", dir.display());
        println!("state roots and bundle on a tmpfs ({})", dir.display());
        guard
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        for _ in 0..50 {
            let done = Command::new("umount").arg(&self.0).status();
            if done.is_ok_and(|s| s.success()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Median, p10 and p90 in ms.
fn stats(v: &mut [Duration]) -> (f64, f64, f64) {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1000.0;
    (at(0.5), at(0.1), at(0.9))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn binary() -> PathBuf {
    let here = std::env::current_exe().unwrap();
    // target/<tuple>/release/examples/api_bench → target/<tuple>/release/sbx-oci
    let bin = here.parent().unwrap().parent().unwrap().join("sbx-oci");
    assert!(
        bin.exists(),
        "build the release binary first: {}",
        bin.display()
    );
    bin
}
