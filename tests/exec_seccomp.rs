//! An exec'd process gets the container's seccomp filter, as with runc.
//! libcontainer 0.7 builds an exec'd process's spec without linux.seccomp,
//! so sbx-oci compiles it and its executor installs it (src/seccomp.rs); a
//! process without CAP_SYS_ADMIN then runs with no_new_privs, which
//! installing a filter after the capabilities are set needs.

mod common;

use common::Env;
use serde_json::json;

#[test]
fn exec_gets_the_containers_seccomp_filter() {
    let mut env = Env::new("execsc");
    let id = env.id("c");
    let bundle = env.bundle_with(&id, &["sleep", "30"], |c| {
        // Absent, as podman and containerd leave it when off (libcontainer
        // 0.7 mistakes an explicit false for true and fails the create).
        c["process"]
            .as_object_mut()
            .unwrap()
            .remove("noNewPrivileges");
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{ "names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO",
                           "errnoRet": 1 }],
        });
    });
    env.ok(&["run", "-d", "--bundle", bundle.to_str().unwrap(), &id]);
    let probe = "grep -E '^(Seccomp|NoNewPrivs)' /proc/self/status; \
                 mkdir /tmp/x 2>/dev/null || echo mkdir-refused";
    let filtered = |out: &str| {
        out.starts_with("NoNewPrivs:\t1\nSeccomp:\t2\n") && out.ends_with("mkdir-refused\n")
    };
    // The argv form.
    let out = env.ok(&["exec", &id, "sh", "-c", probe]);
    assert!(filtered(&out), "{out}");
    // A --process file, as podman and containerd pass one (no_new_privs
    // not asked for).
    let process = env.dir.join("process.json");
    std::fs::write(
        &process,
        json!({ "terminal": false, "user": { "uid": 0, "gid": 0 },
                "args": ["sh", "-c", probe], "env": ["PATH=/bin:/usr/bin"], "cwd": "/" })
        .to_string(),
    )
    .unwrap();
    let out = env.ok(&["exec", "--process", process.to_str().unwrap(), &id]);
    assert!(filtered(&out), "{out}");
    assert!(
        !std::fs::read_to_string(&process)
            .unwrap()
            .contains("noNewPrivileges"),
        "the caller's file is left as it was"
    );

    // A process that keeps CAP_SYS_ADMIN installs the filter without
    // no_new_privs, as runc leaves it.
    let admin = env.dir.join("admin.json");
    let caps = json!(["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"]);
    std::fs::write(
        &admin,
        json!({ "terminal": false, "user": { "uid": 0, "gid": 0 },
                "args": ["sh", "-c", probe], "env": ["PATH=/bin:/usr/bin"], "cwd": "/",
                "capabilities": { "bounding": caps, "effective": caps, "permitted": caps } })
        .to_string(),
    )
    .unwrap();
    let out = env.ok(&["exec", "--process", admin.to_str().unwrap(), &id]);
    assert!(
        out.starts_with("NoNewPrivs:\t0\nSeccomp:\t2\n") && out.ends_with("mkdir-refused\n"),
        "{out}"
    );

    env.ok(&["delete", "--force", &id]);
}
