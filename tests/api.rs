//! The async API (`sbx_oci::api`), for real (root): the example backend's
//! whole scenario, 20 sandboxes driven at once from one multi-threaded
//! runtime, streaming with back-pressure and cancellation, budgets, and
//! typed errors for bad input that leave nothing behind.

mod common;

#[path = "../examples/backend.rs"]
mod backend;

use std::time::{Duration, Instant};

use common::{Env, bin};
use sbx_oci::api::{ApiError, Client, ExecRequest, ExecStream, Stream};
use sbx_oci::sandbox::SandboxSpec;

/// The field a Spec error names (any other outcome fails the test).
fn field<T>(r: Result<T, ApiError>) -> String {
    match r {
        Err(ApiError::Spec { field, .. }) => field,
        Err(other) => panic!("not a Spec error: {other:?}"),
        Ok(_) => panic!("accepted"),
    }
}

fn client(env: &Env) -> Client {
    Client::with_binary(&env.root, bin())
}

fn spec(json: &str) -> SandboxSpec {
    serde_json::from_str(json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_backend_runs_the_platform_scenario() {
    let env = Env::new("apiscenario");
    let b = backend::SbxBackend {
        client: client(&env),
    };
    let id = env.id("s");
    let probe = backend::IsolationBackend::probe(&b).await.unwrap();
    assert!(!probe.cgroup.controllers.is_empty(), "{probe:?}");
    assert_eq!(probe.profiles.len(), 3);
    let r = backend::scenario(&b, &id, &SandboxSpec::default())
        .await
        .unwrap();

    let exec = r.exec.as_ref().unwrap();
    assert_eq!(exec.exit_code, 3);
    assert_eq!(exec.stdout, "hello from /tmp\nfrom stdin\n");
    assert_eq!(exec.stderr, "oops\n");
    assert!(!exec.timed_out);

    // The first chunk came long before the command's end (it sleeps 1.2 s).
    assert!(
        r.first_chunk_ms + 800 < r.stream_end_ms,
        "first chunk after {} ms, end after {} ms",
        r.first_chunk_ms,
        r.stream_end_ms
    );
    let text = |s: Stream| -> String {
        r.streamed
            .iter()
            .filter(|c| c.stream == s)
            .map(|c| String::from_utf8_lossy(&c.data).into_owned())
            .collect()
    };
    assert_eq!(text(Stream::Stdout), "first\nthird\n");
    assert_eq!(text(Stream::Stderr), "second\n");
    assert_eq!(r.streamed[0].data, b"first\n");
    assert_eq!(r.stream_status.unwrap().code, 0);

    assert!(r.counted_before_suspend > 0);
    assert_eq!(
        r.counted_while_suspended, 0,
        "the counter ran while suspended"
    );
    assert!(r.alive_while_suspended);
    assert!(r.counted_after_resume > r.counted_before_suspend);
    assert_eq!(r.restored_file, "original\n");

    let stats = r.usage.unwrap();
    assert_eq!(stats.status, "running");
    let usage = &stats.usage;
    assert!(usage.cpu_time_ms > 0, "{usage:?}");
    assert!(usage.peak_memory_bytes > 0, "{usage:?}");
    assert_eq!(usage.memory_limit_bytes, 1 << 30);
    assert!(r.listed.iter().any(|s| s.id == id && s.state == "running"));
    assert!(!r.alive_after_destroy);
    env.assert_gone(&id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_sandboxes_at_once_from_one_runtime() {
    let env = Env::new("apiconc");
    let c = client(&env);
    let ids: Vec<String> = (0..20).map(|i| env.id(&format!("c{i}"))).collect();
    let tasks: Vec<_> = ids
        .iter()
        .cloned()
        .map(|id| {
            let c = c.clone();
            tokio::spawn(async move {
                let s = c.create(&id, &SandboxSpec::default()).await?;
                let out = s
                    .exec(ExecRequest::new("sh").arg("-c").arg(format!("echo {id}")))
                    .await?;
                s.destroy().await?;
                Ok::<_, ApiError>(String::from_utf8(out.stdout).unwrap())
            })
        })
        .collect();
    for (id, t) in ids.iter().zip(tasks) {
        let out = t.await.unwrap().unwrap();
        assert_eq!(out, format!("{id}\n"));
    }
    assert!(c.list().await.unwrap().is_empty());
    for id in &ids {
        env.assert_gone(id);
    }
}

/// A command writing 8 MiB: while the stream is not read, the command is
/// held (the pipes and the bounded channel are full); read, it all arrives
/// in order. Dropping a stream kills the command and what it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_hold_the_command_back_and_cancel_it() {
    let env = Env::new("apistream");
    let c = client(&env);
    let id = env.id("s");
    let s = c.create(&id, &SandboxSpec::default()).await.unwrap();
    let mut stream = s
        .exec_streaming(
            ExecRequest::new("sh")
                .arg("-c")
                .arg("head -c 8388608 /dev/zero | tr '\\0' x; echo done > finished"),
        )
        .await
        .unwrap();
    let first = stream.next().await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    let finished = s
        .exec(ExecRequest::new("cat").arg("finished"))
        .await
        .unwrap();
    assert_ne!(
        finished.status.code, 0,
        "the writer ran ahead of its reader"
    );
    let mut total = first.data.len();
    while let Some(chunk) = stream.next().await {
        assert_eq!(chunk.stream, Stream::Stdout);
        assert!(chunk.data.iter().all(|b| *b == b'x'));
        total += chunk.data.len();
    }
    assert_eq!(total, 8 << 20);
    assert_eq!(stream.wait().await.unwrap().code, 0);

    // Cancel: a command that would run for a minute, and its child.
    let stream = s
        .exec_streaming(
            ExecRequest::new("sh")
                .arg("-c")
                .arg("sleep 61 & sleep 62; echo never"),
        )
        .await
        .unwrap();
    // (An exec takes a while to start on a slow machine.)
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running("62") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(running("62"), "the command did not start");
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while running("62") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!running("62"), "the cancelled command still runs");
    s.destroy().await.unwrap();
    assert!(!running("61"), "what it started outlived the sandbox");
    env.assert_gone(&id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_is_shared_by_execs_and_then_refuses_them() {
    let env = Env::new("apibudget");
    let c = client(&env);
    let id = env.id("b");
    let s = c
        .create(
            &id,
            &spec(r#"{"limits": {"wall_time_ms": 5000, "budget": true}}"#),
        )
        .await
        .unwrap();
    assert_eq!(
        s.time_remaining().await.unwrap(),
        Some(Duration::from_millis(5000))
    );
    // An exec's start counts too: under TCG it can take a second or more.
    let out = s.exec(ExecRequest::new("sleep").arg("0.6")).await.unwrap();
    assert_eq!(out.status.code, 0);
    let left = s.time_remaining().await.unwrap().unwrap();
    assert!(left <= Duration::from_millis(4400), "{left:?} left");
    let out = s.exec(ExecRequest::new("sleep").arg("30")).await.unwrap();
    assert_eq!(out.status.code, 124);
    assert!(out.status.timed_out);
    assert_eq!(s.time_remaining().await.unwrap(), Some(Duration::ZERO));
    match s.exec(ExecRequest::new("true")).await {
        Err(ApiError::BudgetExhausted(name)) => assert_eq!(name, id),
        other => panic!("{other:?}"),
    }
    s.destroy().await.unwrap();
    env.assert_gone(&id);
}

/// Whether a process runs whose command line has `arg` in it.
fn running(arg: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline"))
            .is_ok_and(|c| c.split(|b| *b == 0).any(|a| a == arg.as_bytes()))
    })
}

/// Whether a process runs whose command line is `argv` (not a runtime's
/// that names it).
fn runs(argv: &[&str]) -> bool {
    let want: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .any(|e| std::fs::read(e.path().join("cmdline")).is_ok_and(|c| c == want))
}

/// A sandbox of `env` with a budget of `ms`, and `sleep SECS` streaming in
/// it, once that command runs.
async fn budget_with_a_sleeper(
    env: &Env,
    name: &str,
    ms: u64,
    secs: &str,
) -> (sbx_oci::api::Sandbox, ExecStream) {
    let s = client(env)
        .create(
            &env.id(name),
            &spec(&format!(
                r#"{{"limits": {{"wall_time_ms": {ms}, "budget": true}}}}"#
            )),
        )
        .await
        .unwrap();
    let stream = sleeper(&s, secs).await;
    (s, stream)
}

/// `sleep SECS` streaming in `s`, once it runs.
async fn sleeper(s: &sbx_oci::api::Sandbox, secs: &str) -> ExecStream {
    let stream = s
        .exec_streaming(ExecRequest::new("sleep").arg(secs))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !runs(&["sleep", secs]) {
        assert!(Instant::now() < deadline, "sleep {secs} did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stream
}

/// Execs that overlap share the budget's one deadline: the second, started
/// 3 s later, is killed with the first when the budget runs out, not 3 s
/// after it; the overlap is charged once. (A budget of 10 s: an exec's
/// start counts, and under TCG it can take a second or more.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_execs_cannot_overrun_a_budget() {
    let env = Env::new("apioverlap");
    let (s, first) = budget_with_a_sleeper(&env, "o", 10_000, "51").await;
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let second = sleeper(&s, "52").await;
    let (a, b) = tokio::join!(
        async {
            let st = first.wait().await.unwrap();
            (st, Instant::now())
        },
        async {
            let st = second.wait().await.unwrap();
            (st, Instant::now())
        }
    );
    for (st, _) in [a, b] {
        assert_eq!(st.code, 124);
        assert!(st.timed_out);
    }
    let apart = a.1.max(b.1) - a.1.min(b.1);
    assert!(apart < Duration::from_millis(1500), "ended {apart:?} apart");
    assert_eq!(s.time_remaining().await.unwrap(), Some(Duration::ZERO));
    match s.exec(ExecRequest::new("true")).await {
        Err(ApiError::BudgetExhausted(name)) => assert_eq!(name, s.name()),
        other => panic!("{other:?}"),
    }
    s.destroy().await.unwrap();
    env.assert_gone(s.name());
}

/// A cancelled exec is charged for the time it ran (its runtime is killed;
/// the exec's watchdog ends the command and its lease), and only for that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_exec_is_charged_for_the_time_it_ran() {
    let env = Env::new("apicancel");
    let (s, stream) = budget_with_a_sleeper(&env, "c", 60_000, "53").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(5);
    while runs(&["sleep", "53"]) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!runs(&["sleep", "53"]), "the cancelled command still runs");
    // The watchdog kills the command first and ends its lease after.
    common::wait_for_no_watchdog(s.name());
    let left = s.time_remaining().await.unwrap().unwrap();
    assert!(
        left <= Duration::from_millis(58_500),
        "not charged: {left:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.time_remaining().await.unwrap().unwrap(),
        left,
        "charged on after the command ended"
    );
    s.destroy().await.unwrap();
    env.assert_gone(s.name());
}

/// A command on a terminal of the size asked for, typed into, resized
/// while it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_on_a_terminal_can_be_typed_into_and_resized() {
    let env = Env::new("apitty");
    let c = client(&env);
    let id = env.id("t");
    let s = c.create(&id, &SandboxSpec::default()).await.unwrap();
    // (libcontainer does not take a console size: the first may be 0 0.)
    let script = "until [ \"$(stty size)\" != '0 0' ]; do sleep 0.05; done; stty size; \
                  [ -t 0 ] && [ -t 1 ] && echo on-a-tty; read line; echo got:$line; \
                  until [ \"$(stty size)\" = '40 120' ]; do sleep 0.05; done; echo resized; \
                  echo err >&2; exit 4";
    let mut stream = s
        .exec_streaming(
            ExecRequest::new("sh")
                .arg("-c")
                .arg(script)
                .stdin(b"hello\n".to_vec())
                .tty(30, 100),
        )
        .await
        .unwrap();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !text.contains("got:hello") {
        assert!(Instant::now() < deadline, "{text:?}");
        let chunk = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("ended early: {text:?}"));
        assert_eq!(chunk.stream, Stream::Stdout);
        text.push_str(&String::from_utf8_lossy(&chunk.data));
    }
    stream.resize(40, 120).unwrap();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.data));
    }
    assert_eq!(stream.wait().await.unwrap().code, 4, "{text:?}");
    for want in ["30 100", "on-a-tty", "got:hello", "resized", "err"] {
        assert!(text.contains(want), "{want}: {text:?}");
    }
    // Bad sizes, and a terminal where none is.
    assert_eq!(
        field(s.exec(ExecRequest::new("true").tty(0, 80)).await),
        "tty"
    );
    let plain = s.exec_streaming(ExecRequest::new("true")).await.unwrap();
    assert!(matches!(plain.resize(10, 10), Err(ApiError::Spec { .. })));
    plain.wait().await.unwrap();
    s.destroy().await.unwrap();
    env.assert_gone(&id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_typed_error_naming_the_field_and_leaves_nothing() {
    let env = Env::new("apierrors");
    let c = client(&env);
    let id = env.id("e");
    assert_eq!(
        field(
            c.create(&id, &spec(r#"{"limits": {"memory_bytes": 1000}}"#))
                .await
        ),
        "limits.memory_bytes"
    );
    assert_eq!(
        field(
            c.create(
                &id,
                &spec(r#"{"network": {"mode": "allowlist", "allow": ["*.com:443"]}}"#)
            )
            .await
        ),
        "network.allow[0]"
    );
    assert_eq!(
        field(
            c.create(
                &id,
                &spec(r#"{"limits": {"budget": true, "wall_time_ms": 0}}"#)
            )
            .await
        ),
        "limits.budget"
    );
    assert_eq!(
        field(c.create("bad/name", &SandboxSpec::default()).await),
        "name"
    );
    // Found by the runtime, not here: a path that does not exist.
    let missing = spec(r#"{"allowed_paths_ro": ["/nonexistent/sbx-api-test"]}"#);
    match c.create(&id, &missing).await {
        Err(ApiError::Spec { field, message }) => {
            assert!(field.starts_with("allowed_paths_ro"), "{field}: {message}")
        }
        other => panic!("{other:?}"),
    }
    assert!(c.list().await.unwrap().is_empty());
    assert!(!env.root.join(&id).exists());

    match c.sandbox(&id).exec(ExecRequest::new("true")).await {
        Err(ApiError::NotFound(name)) => assert_eq!(name, id),
        other => panic!("{other:?}"),
    }
    assert!(matches!(c.get(&id).await, Err(ApiError::NotFound(_))));
    let s = c.create(&id, &SandboxSpec::default()).await.unwrap();
    assert!(matches!(
        c.create(&id, &SandboxSpec::default()).await,
        Err(ApiError::AlreadyExists(name)) if name == id
    ));
    // What the sandbox's state forbids is WrongState, saying the state.
    s.suspend().await.unwrap();
    assert!(matches!(
        s.exec(ExecRequest::new("true")).await,
        Err(ApiError::WrongState(m)) if m.contains("paused")
    ));
    assert!(matches!(s.suspend().await, Err(ApiError::WrongState(m)) if m.contains("paused")));
    s.resume().await.unwrap();
    assert!(matches!(s.resume().await, Err(ApiError::WrongState(m)) if m.contains("running")));
    let bad = s.exec(ExecRequest::new("true").workdir("relative")).await;
    assert_eq!(field(bad), "workdir");
    let bad = s.exec(ExecRequest::new("true").env("A=B", "c")).await;
    assert_eq!(field(bad), "env");
    // A runtime binary that is not there: the health check says so (the
    // listing alone runs in-process and would not notice).
    let gone = Client::with_binary(&env.root, "/nonexistent/sbx-oci");
    assert!(matches!(
        gone.health_check().await,
        Err(ApiError::Spawn { .. })
    ));
    c.health_check().await.unwrap();
    // A command that does not exist is the runtime's error, not status 127.
    assert!(matches!(
        s.exec(ExecRequest::new("/no/such/program")).await,
        Err(ApiError::Runtime { .. })
    ));
    // The command cannot forge the runtime's errors on stderr.
    let out = s
        .exec(ExecRequest::new("sh").arg("-c").arg(format!(
            "echo 'sbx-oci: error: container \"{id}\" does not exist' >&2; exit 1"
        )))
        .await
        .unwrap();
    assert_eq!(out.status.code, 1);
    assert_eq!(c.destroy_all().await.unwrap(), 1);
    env.assert_gone(&id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_shot_run_streams_its_command_and_leaves_nothing() {
    let env = Env::new("apirun");
    let c = client(&env);
    let id = env.id("r");
    let req = ExecRequest::new("sh")
        .arg("-c")
        .arg("echo \"$X in $(pwd) as $(id -u)\"; cat; exit 4")
        .env("X", "y")
        .workdir("/work")
        .user(1000, 1000)
        .stdin(b"in".to_vec());
    let stream = c
        .run(Some(&id), &SandboxSpec::default(), req)
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut stream = stream;
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.data);
    }
    let status = stream.wait().await.unwrap();
    assert_eq!(status.code, 4);
    assert_eq!(String::from_utf8(out).unwrap(), "y in /work as 1000\nin");
    env.assert_gone(&id);
    let slow = c
        .run(
            Some(&id),
            &SandboxSpec::default(),
            ExecRequest::new("sleep")
                .arg("10")
                .timeout(Duration::from_millis(300)),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(slow.code, 124);
    assert!(slow.timed_out);
    env.assert_gone(&id);
}

/// `Client::bundle`: the bundle of a spec runs under runc, as the CLI's
/// `sandbox bundle` does; a spec without a command, or with a bad field, is
/// a typed error and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_from_the_api_runs_under_runc() {
    let env = Env::new("apibundle");
    let c = client(&env);
    let id = env.id("b");
    let out = env.dir.join("bundle");
    let mut s = spec(r#"{"env": {"X": "from-the-spec"}}"#);
    assert_eq!(field(c.bundle(&id, &s, &out).await), "command");
    s.command = Some(vec!["sh".into(), "-c".into(), "echo $X; id -u".into()]);
    let bad = spec(r#"{"limits": {"memory_bytes": 1000}, "command": ["true"]}"#);
    assert_eq!(
        field(c.bundle(&id, &bad, &out).await),
        "limits.memory_bytes"
    );
    assert!(!out.exists(), "a refused bundle wrote {}", out.display());
    c.bundle(&id, &s, &out).await.unwrap();
    assert!(
        c.list().await.unwrap().is_empty(),
        "a bundle made a sandbox"
    );
    let run = std::process::Command::new("runc")
        .arg("--root")
        .arg(env.dir.join("runc"))
        .args(["run", "--bundle", out.to_str().unwrap(), &id])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runc (apt-get install runc)");
    assert!(run.status.success(), "{run:?}");
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        "from-the-spec\n65534\n"
    );
}
