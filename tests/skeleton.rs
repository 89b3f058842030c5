//! The root skeletons of "host" sandboxes: the curated /etc they carry,
//! their renewal when the host's files change, and their pruning. A test
//! binary of its own: it changes the times of the host's /etc/hosts, which
//! makes every sandbox started meanwhile build a new skeleton, and the
//! sandbox tests count skeletons.

mod common;

use std::time::Duration;

use common::{Env, sandbox_run as run};
use serde_json::Value;

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

fn skeleton_names(env: &Env) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(env.root.join("@rootfs"))
        .map(|d| {
            d.flatten()
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
    // Other test binaries expect a settled /etc: past the racy window.
    std::thread::sleep(Duration::from_secs(3));
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
    assert_eq!(report["skeletons"], serde_json::json!([used[0]]));
}
