//! The root skeletons of "host" sandboxes: the curated /etc they carry,
//! their renewal when the host's files change, and their pruning. A test
//! binary of its own: it changes the times of the host's /etc/hosts, which
//! makes every sandbox started meanwhile build a new skeleton, and the
//! sandbox tests count skeletons.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use common::{Env, sandbox_run as run};
use serde_json::Value;

/// Held by the tests that change the host's /etc: each counts the
/// skeletons a change makes, and another's change would make more.
static HOST_ETC: Mutex<()> = Mutex::new(());

/// Past the window in which a change may not show in a file's times: a
/// skeleton built after it is indexed and reused.
fn settle() {
    std::thread::sleep(Duration::from_secs(3));
}

/// Sets the modification time of `path` (a skeleton) an hour back, as if
/// nobody had used it since.
fn age(path: &std::path::Path) {
    let hour_ago = nix::sys::time::TimeSpec::new(
        (std::time::SystemTime::now() - Duration::from_secs(3600))
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
        0,
    );
    nix::sys::stat::utimensat(
        None,
        path,
        &hour_ago,
        &hour_ago,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

/// The skeletons (directories; beside them, the indexes naming a plan's
/// current one).
fn skeleton_names(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.root.join("@rootfs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The curated /etc: the host's files as they are (copied into the shared
/// skeleton, which a change on the host replaces), its certificates, and
/// not its private keys.
#[test]
fn etc_is_the_hosts_curated_subset() {
    let _host = HOST_ETC.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("sbxetc");
    let (code, out, err) = run(
        &env,
        &[
            "--profile",
            "full",
            "--",
            "sh",
            "-c",
            "cat /etc/passwd /etc/hosts; ls /etc/ssl; \
             test -d /etc/ssl/certs && echo certs; \
             touch /etc/passwd 2>/dev/null || echo read-only; \
             touch /etc/ssl/certs/x 2>/dev/null || echo read-only",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let host = std::fs::read_to_string("/etc/passwd").unwrap()
        + &std::fs::read_to_string("/etc/hosts").unwrap();
    assert!(out.starts_with(&host), "{out}");
    let rest = &out[host.len()..];
    let mut want = String::from("certs\n");
    if std::path::Path::new("/etc/ssl/openssl.cnf").exists() {
        want.push_str("openssl.cnf\n");
    }
    want.push_str("certs\nread-only\nread-only\n");
    assert_eq!(rest, want, "no /etc/ssl/private, even for root");

    // A change on the host (here only its times, so the content stays) is a
    // new skeleton for the next sandbox, not a stale copy.
    let first = skeleton_names(&env);
    assert_eq!(first.len(), 1, "{first:?}");
    run(&env, &["--", "true"]);
    assert_eq!(skeleton_names(&env), first);
    let hosts = std::path::Path::new("/etc/hosts");
    let before = std::fs::metadata(hosts).unwrap();
    std::fs::File::options()
        .append(true)
        .open(hosts)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + Duration::from_secs(1))
        .unwrap();
    let (code, out, err) = run(&env, &["--", "cat", "/etc/hosts"]);
    std::fs::File::options()
        .append(true)
        .open(hosts)
        .unwrap()
        .set_modified(before.modified().unwrap())
        .unwrap();
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, std::fs::read_to_string(hosts).unwrap());
    // (More than two if the host changed another file meanwhile.)
    assert!(
        skeleton_names(&env).len() >= 2,
        "{:?}",
        skeleton_names(&env)
    );
    // Other tests expect a settled /etc: past the racy window.
    settle();
}

/// `find`'s description of trees (path, type, link target, size, mode,
/// owner), in a stable order.
fn describe(lines: &str) -> Vec<String> {
    let mut v: Vec<String> = lines.lines().map(str::to_owned).collect();
    v.sort();
    v
}

/// Sizes of entries that are not directories: a directory's size is its
/// file system's business (the copy may sit on a tmpfs), not its content.
const FIND_FORMAT: &str = "%p %y %l %s %m %U %G\\n";
const FIND_DIR_FORMAT: &str = "%p %y %m %U %G\\n";

/// Removes a directory made in the host's /etc, even when the test fails.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The /etc directories are copied too (a bind of each cost ~0.1 ms on
/// every start): the host's trees exactly (links as links), reused while
/// they are unchanged, and copied again after any change, even a file
/// edited in place in a subdirectory (which changes no directory's times).
#[test]
fn etc_directories_are_copies_renewed_on_change() {
    let _host = HOST_ETC.lock().unwrap_or_else(|e| e.into_inner());
    let env = Env::new("sbxtrees");
    let trees: Vec<&str> = ["/etc/ssl/certs", "/etc/alternatives"]
        .into_iter()
        .filter(|p| Path::new(p).is_dir())
        .collect();
    assert!(!trees.is_empty(), "this host has neither tree");
    let find = format!(
        "find {t} ! -type d -printf '{FIND_FORMAT}'; find {t} -type d -printf '{FIND_DIR_FORMAT}'",
        t = trees.join(" ")
    );
    let host = std::process::Command::new("sh")
        .args(["-c", &find])
        .output()
        .unwrap();
    assert!(host.status.success());
    let (code, out, err) = run(&env, &["--", "sh", "-c", &find]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        describe(&out),
        describe(&String::from_utf8_lossy(&host.stdout)),
        "the sandbox's trees are the host's"
    );
    let (code, out, err) = run(&env, &["--", "cat", "/proc/self/mountinfo"]);
    assert_eq!(code, 0, "{err}");
    let mounted: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| trees.contains(m))
        .collect();
    assert!(mounted.is_empty(), "copied, not mounted: {mounted:?}");

    // A directory with a file, in the first tree, for the rest.
    let dir = Path::new(trees[0]).join(format!("sbx-oci-test-{}", std::process::id()));
    std::fs::create_dir(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    let file = dir.join("f");
    std::fs::write(&file, "one\n").unwrap();
    settle();
    let cat = ["--", "cat", file.to_str().unwrap()];
    let (code, out, err) = run(&env, &cat);
    assert_eq!((code, out.as_str()), (0, "one\n"), "{err}");
    let names = skeleton_names(&env);
    let (code, out, err) = run(&env, &cat);
    assert_eq!((code, out.as_str()), (0, "one\n"), "{err}");
    assert_eq!(skeleton_names(&env), names, "unchanged: reused");

    // Edited in place, below a subdirectory.
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(b"two\n")
        .unwrap();
    settle();
    let (code, out, err) = run(&env, &cat);
    assert_eq!((code, out.as_str()), (0, "one\ntwo\n"), "{err}");
    assert_eq!(skeleton_names(&env).len(), names.len() + 1);

    // Gone from the host, gone from the next sandbox.
    std::fs::remove_dir_all(&dir).unwrap();
    let (code, _, _) = run(&env, &cat);
    assert_eq!(code, 1, "the file is gone");
    settle();
}

/// Skeletons nobody uses go (after a while, and never one a sandbox's
/// config names), with the leftovers of interrupted builds.
#[test]
fn gc_prunes_idle_skeletons_only() {
    let env = Env::new("sbxprune");
    let id = env.id("keep");
    env.ok(&["sandbox", "create", &id]);
    let used = skeleton_names(&env);
    assert_eq!(used.len(), 1, "{used:?}");
    let skeletons = env.root.join("@rootfs");
    std::fs::create_dir_all(skeletons.join("00000000deadbeef/etc")).unwrap();
    std::fs::create_dir_all(skeletons.join(".00000000deadbeef.1")).unwrap();
    std::fs::create_dir_all(skeletons.join("00000000cafef00d")).unwrap();
    for name in [&used[0], "00000000deadbeef", ".00000000deadbeef.1"] {
        age(&skeletons.join(name));
    }
    // An interrupted compilation's file in the seccomp cache goes too.
    let cache = env.root.join("@seccomp");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join(".00000000deadbeef.1"), b"half").unwrap();
    age(&cache.join(".00000000deadbeef.1"));
    let report: Value = serde_json::from_str(&env.ok(&["gc"])).unwrap();
    assert_eq!(
        report["seccomp_leftovers"],
        serde_json::json!([".00000000deadbeef.1"])
    );
    assert!(
        std::fs::read_dir(&cache)
            .unwrap()
            .all(|e| { !e.unwrap().file_name().to_string_lossy().starts_with('.') })
    );
    let mut removed: Vec<&str> = report["skeletons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    removed.sort();
    assert_eq!(removed, [".00000000deadbeef.1", "00000000deadbeef"]);
    assert_eq!(
        skeleton_names(&env),
        ["00000000cafef00d", used[0].as_str()],
        "in use, or used lately: kept"
    );
    assert_eq!(env.status(&id), "running");
    env.ok(&["delete", "--force", &id]);
    age(&skeletons.join(&used[0]));
    let report: Value = serde_json::from_str(&env.ok(&["gc"])).unwrap();
    // With the index that named it (the plan copies /etc directories).
    let index = format!("{}.trees", used[0].split('-').next().unwrap());
    assert_eq!(report["skeletons"], serde_json::json!([used[0], index]));
    assert_eq!(
        std::fs::read_dir(&skeletons).unwrap().count(),
        1,
        "only 00000000cafef00d is left"
    );
}
