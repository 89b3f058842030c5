//! POSIX-platform hooks through the real binary: what a failing poststart or
//! poststop hook does to the lifecycle, and the state hooks read on stdin.

mod common;

use std::fs;
use std::path::Path;

use common::Env;
use serde_json::{Value, json};

/// A host hook appending its stdin (the container state) to `out`, then a
/// newline.
fn record(out: &Path) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("cat >> {0}; echo >> {0}", out.display())],
    })
}

fn failing() -> Value {
    json!({ "path": "/bin/false", "args": ["false"] })
}

fn states(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// runtime-spec runtime.md, Lifecycle step 9: "If any poststart hook fails,
/// the runtime MUST log a warning, but the remaining hooks and lifecycle
/// continue as if the hook had succeeded." And step 12, the same for
/// poststop. Also config.md, POSIX-platform Hooks: "The state of the
/// container MUST be passed to hooks over stdin".
#[test]
fn failing_poststart_and_poststop_hooks_are_warnings() {
    let mut env = Env::new("hookfail");
    let id = env.id("c");
    let poststart = env.dir.join("poststart");
    let poststop = env.dir.join("poststop");
    let (start_rec, stop_rec) = (record(&poststart), record(&poststop));
    let bundle = env.bundle_with(&id, &["sleep", "60"], |c| {
        c["hooks"] = json!({
            "poststart": [failing(), start_rec],
            "poststop": [failing(), stop_rec],
        });
    });
    env.ok(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    let pid = env.pid(&id);

    let out = env.sbx(&["start", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "start failed: {stderr}");
    assert!(
        stderr.contains("warning: poststart hook 0 (/bin/false)"),
        "{stderr:?}"
    );
    assert_eq!(env.status(&id), "running");
    // The hook after the failing one ran, with the running state.
    let seen = states(&poststart);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["status"], "running");
    assert_eq!(seen[0]["pid"], pid);
    assert_eq!(seen[0]["id"], Value::from(id.as_str()));
    assert_eq!(seen[0]["bundle"], Value::from(bundle.to_str().unwrap()));
    // poststart runs after the user's program is executed.
    let cmdline = fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.starts_with("sleep\u{0}60"), "{cmdline:?}");

    env.ok(&["kill", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    let out = env.sbx(&["delete", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "delete failed: {stderr}");
    assert!(
        stderr.contains("warning: poststop hook 0 (/bin/false)"),
        "{stderr:?}"
    );
    let seen = states(&poststop);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["status"], "stopped");
    assert_eq!(seen[0]["id"], Value::from(id.as_str()));
    // The delete went through: nothing is left.
    env.assert_gone(&id);
}

/// The same rules on `run`'s path (create, start, wait, delete in one call).
#[test]
fn run_continues_past_failing_poststart_and_poststop_hooks() {
    let mut env = Env::new("hookrun");
    let id = env.id("c");
    let poststop = env.dir.join("poststop");
    let stop_rec = record(&poststop);
    let bundle = env.bundle_with(&id, &["sh", "-c", "exit 3"], |c| {
        c["hooks"] = json!({
            "poststart": [failing()],
            "poststop": [failing(), stop_rec],
        });
    });
    let out = env.sbx(&["run", "--bundle", bundle.to_str().unwrap(), &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("warning: poststart hook 0"), "{stderr:?}");
    assert!(stderr.contains("warning: poststop hook 0"), "{stderr:?}");
    assert_eq!(states(&poststop).len(), 1);
    env.assert_gone(&id);
}

/// config.md, POSIX-platform Hooks: "The state of the container MUST be passed
/// to hooks over stdin"; runtime.md: "created: the runtime has finished the
/// create operation (after step 2 in the lifecycle)", and the prestart and
/// createRuntime hooks are steps 3 and 4. So they read status "created", with
/// the container's pid, id, bundle and annotations.
#[test]
fn prestart_and_create_runtime_hooks_read_the_created_state() {
    let mut env = Env::new("hookstate");
    let id = env.id("c");
    let prestart = env.dir.join("prestart");
    let create_runtime = env.dir.join("createRuntime");
    let (pre, cr) = (record(&prestart), record(&create_runtime));
    let bundle = env.bundle_with(&id, &["true"], |c| {
        c["annotations"] = json!({ "org.example.key": "value" });
        // A hook without args runs with its path as argv[0].
        c["hooks"] = json!({
            "prestart": [pre, { "path": "/bin/true" }],
            "createRuntime": [cr],
        });
    });
    env.ok(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    let pid = env.pid(&id);
    for path in [&prestart, &create_runtime] {
        let seen = states(path);
        assert_eq!(seen.len(), 1, "{}: {seen:?}", path.display());
        let s = &seen[0];
        assert_eq!(s["status"], "created", "{s}");
        assert_eq!(s["pid"], pid, "{s}");
        assert_eq!(s["id"], Value::from(id.as_str()));
        assert_eq!(s["bundle"], Value::from(bundle.to_str().unwrap()));
        assert_eq!(s["annotations"]["org.example.key"], "value");
    }
    assert_eq!(
        env.state(&id)["bundle"],
        Value::from(bundle.to_str().unwrap())
    );
    env.ok(&["delete", "--force", &id]);
    env.assert_gone(&id);
}

/// runtime.md, Lifecycle step 4: "If any createRuntime hook fails, the
/// runtime MUST generate an error, stop the container, and continue the
/// lifecycle at step 12" -- still so with the hook run through sbx-oci.
#[test]
fn failing_create_runtime_hook_fails_create() {
    let mut env = Env::new("hookcr");
    let id = env.id("c");
    let bundle = env.bundle_with(&id, &["true"], |c| {
        c["hooks"] = json!({ "createRuntime": [failing()] });
    });
    env.fails(
        &["create", "--bundle", bundle.to_str().unwrap(), &id],
        "non-zero exit code: 1",
    );
    env.assert_gone(&id);
}

/// A hook appending `stage` and its state's status to `out`.
fn stage(out: &Path, stage: &str) -> Value {
    json!({
        "path": "/bin/sh",
        "args": ["sh", "-c", format!(
            "printf '%s ' {stage} >> {0}; grep -o '\"status\":\"[a-z]*\"' >> {0}",
            out.display()
        )],
    })
}

/// runtime.md, Lifecycle: prestart and createRuntime hooks run during
/// `create` (steps 3–4), before the user's process; poststart after it has
/// started (step 9, on `start`); poststop after the container is deleted
/// (step 12). Each stage sees the state the lifecycle has reached, and the
/// hooks of one stage run in the order they are listed (config.md: "Hooks
/// MUST be called in the listed order").
#[test]
fn hooks_run_in_lifecycle_order_with_each_stage_state() {
    let mut env = Env::new("hookorder");
    let id = env.id("c");
    let log = env.dir.join("order");
    let hooks = json!({
        "prestart": [stage(&log, "prestart-1"), stage(&log, "prestart-2")],
        "createRuntime": [stage(&log, "createRuntime")],
        "poststart": [stage(&log, "poststart")],
        "poststop": [stage(&log, "poststop")],
    });
    let bundle = env.bundle_with(&id, &["sleep", "30"], |c| c["hooks"] = hooks);
    let read = || fs::read_to_string(&log).unwrap_or_default();
    env.ok(&["create", "--bundle", bundle.to_str().unwrap(), &id]);
    assert_eq!(
        read(),
        "prestart-1 \"status\":\"created\"\nprestart-2 \"status\":\"created\"\n\
         createRuntime \"status\":\"created\"\n"
    );
    env.ok(&["start", &id]);
    assert!(
        read().ends_with("poststart \"status\":\"running\"\n"),
        "{}",
        read()
    );
    env.ok(&["kill", &id, "KILL"]);
    env.wait_status(&id, "stopped");
    env.ok(&["delete", &id]);
    assert!(
        read().ends_with("poststop \"status\":\"stopped\"\n"),
        "{}",
        read()
    );
    assert_eq!(read().lines().count(), 5);
    env.assert_gone(&id);
}
