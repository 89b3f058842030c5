//! cri-check: drives a containerd's CRI v1 service (over its unix socket)
//! through pods run with a given runtime handler, as the kubelet would, and
//! checks each step: one `ok   <what>` or `FAIL <what>: <why>` line per
//! check, then `N passed, M failed`; the exit status is 1 when any failed.
//!
//! Run by conformance/kubernetes.sh, which starts the private containerd,
//! imports the images, makes the test host and the CNI plugin, and then
//! checks what must be gone afterwards (processes, mounts, netns). Options:
//!
//!   --socket PATH         containerd's grpc socket
//!   --handler NAME        the runtime handler (sbx-oci)
//!   --image REF           the busybox image, imported beforehand
//!   --log-dir DIR         where the pods' log directories go
//!   --cgroup-parent PATH  the cgroup the pods go under (cgroupfs: /a/b)
//!   --runtime-root DIR    the runtime's state root the shim uses
//!   --test-host IP        the test host's address, reached through CNI
//!   --open-port N         a port the test host listens on, allowed
//!   --closed-port N       a port the test host listens on, not allowed
//!   --service-name NAME   the test host's name, which --resolver knows
//!   --resolver IP         a resolver on the host's loopback (port 53)
//!   --streaming           also check Exec through the streaming server
//!
//! Every wait is bounded in time; the only network peers are the test host
//! the script made and containerd's streaming server on loopback.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus, ContainerStatusRequest,
    CreateContainerRequest, DnsConfig, ExecRequest, ExecSyncRequest, ImageSpec,
    LinuxContainerConfig, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, ListContainersRequest, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, PodSandboxState,
    PodSandboxStatusRequest, RemoveContainerRequest, RemovePodSandboxRequest,
    ReopenContainerLogRequest, RunPodSandboxRequest, StartContainerRequest, StopContainerRequest,
    StopPodSandboxRequest, VersionRequest,
};
use tonic::transport::{Channel, Endpoint, Uri};

mod websocket;

type Client = RuntimeServiceClient<Channel>;
type Check = Result<(), String>;

/// How long one CRI call may take.
const CALL: Duration = Duration::from_secs(60);

struct Opts {
    socket: String,
    handler: String,
    image: String,
    log_dir: PathBuf,
    cgroup_parent: String,
    runtime_root: PathBuf,
    test_host: String,
    open_port: u16,
    closed_port: u16,
    service_name: String,
    resolver: String,
    streaming: bool,
}

fn opts() -> Result<Opts, String> {
    let mut m = HashMap::new();
    let mut streaming = false;
    let mut args = std::env::args().skip(1);
    while let Some(k) = args.next() {
        if k == "--streaming" {
            streaming = true;
            continue;
        }
        let key = k
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {k:?}"))?;
        let v = args.next().ok_or_else(|| format!("{k} needs a value"))?;
        m.insert(key.to_owned(), v);
    }
    let mut get = |k: &str| m.remove(k).ok_or_else(|| format!("--{k} is required"));
    let port = |v: String| v.parse::<u16>().map_err(|e| format!("port {v:?}: {e}"));
    Ok(Opts {
        socket: get("socket")?,
        handler: get("handler")?,
        image: get("image")?,
        log_dir: get("log-dir")?.into(),
        cgroup_parent: get("cgroup-parent")?,
        runtime_root: get("runtime-root")?.into(),
        test_host: get("test-host")?,
        open_port: port(get("open-port")?)?,
        closed_port: port(get("closed-port")?)?,
        service_name: get("service-name")?,
        resolver: get("resolver")?,
        streaming,
    })
}

#[derive(Default)]
struct Report {
    passed: u32,
    failed: u32,
}

impl Report {
    fn check(&mut self, what: &str, r: Check) -> bool {
        match r {
            Ok(()) => {
                self.passed += 1;
                println!("ok   {what}");
                true
            }
            Err(why) => {
                self.failed += 1;
                println!("FAIL {what}: {why}");
                false
            }
        }
    }
}

fn ensure(cond: bool, why: impl FnOnce() -> String) -> Check {
    if cond { Ok(()) } else { Err(why()) }
}

/// A CRI call with a time bound; the error is the gRPC status message.
macro_rules! call {
    ($c:expr, $method:ident, $req:expr) => {
        match tokio::time::timeout(CALL, $c.$method($req)).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(format!("{:?}: {}", s.code(), s.message())),
            Err(_) => Err(format!("no answer in {CALL:?}")),
        }
    };
}

async fn connect(socket: &str) -> Result<Client, String> {
    let path = socket.to_owned();
    // The URI is not used: every connection is the unix socket.
    let channel = Endpoint::try_from("http://[::1]:50051")
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            tokio::net::UnixStream::connect(path.clone())
        }))
        .await
        .map_err(|e| format!("cannot connect to {socket}: {e}"))?;
    Ok(RuntimeServiceClient::new(channel))
}

fn own_namespaces() -> Option<NamespaceOption> {
    // As the kubelet asks for a pod without shareProcessNamespace: a pid
    // namespace per container, the pod's network and ipc.
    Some(NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        target_id: String::new(),
    })
}

fn pod_config(o: &Opts, name: &str, annotations: &[(&str, &str)]) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: format!("{name}-{}", std::process::id()),
            namespace: "sbx-cri".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: o.log_dir.join(name).to_string_lossy().into_owned(),
        annotations: annotations
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        linux: Some(LinuxPodSandboxConfig {
            cgroup_parent: format!("{}/{name}", o.cgroup_parent),
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: own_namespaces(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Pod {
    id: String,
    config: PodSandboxConfig,
}

async fn run_pod(c: &mut Client, o: &Opts, config: PodSandboxConfig) -> Result<Pod, String> {
    let req = RunPodSandboxRequest {
        config: Some(config.clone()),
        runtime_handler: o.handler.clone(),
    };
    let id = call!(c, run_pod_sandbox, req)?.pod_sandbox_id;
    Ok(Pod { id, config })
}

/// CreateContainer then StartContainer; returns the container's id.
async fn start(
    c: &mut Client,
    o: &Opts,
    pod: &Pod,
    name: &str,
    script: &str,
) -> Result<String, String> {
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: o.image.clone(),
            ..Default::default()
        }),
        command: vec!["sh".into(), "-c".into(), script.into()],
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: own_namespaces(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let req = CreateContainerRequest {
        pod_sandbox_id: pod.id.clone(),
        config: Some(config),
        sandbox_config: Some(pod.config.clone()),
    };
    let id = call!(c, create_container, req)
        .map_err(|e| format!("CreateContainer: {e}"))?
        .container_id;
    let req = StartContainerRequest {
        container_id: id.clone(),
    };
    call!(c, start_container, req).map_err(|e| format!("StartContainer: {e}"))?;
    Ok(id)
}

async fn status(c: &mut Client, id: &str) -> Result<ContainerStatus, String> {
    let req = ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    };
    call!(c, container_status, req)?
        .status
        .ok_or_else(|| "ContainerStatus without a status".into())
}

/// Polls ContainerStatus until the container has exited (at most `limit`).
async fn wait_exited(c: &mut Client, id: &str, limit: Duration) -> Result<ContainerStatus, String> {
    let t0 = Instant::now();
    loop {
        let s = status(c, id).await?;
        if s.state == ContainerState::ContainerExited as i32 {
            return Ok(s);
        }
        if t0.elapsed() > limit {
            return Err(format!("not exited after {limit:?} (state {})", s.state));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Exec {
    stdout: String,
    stderr: String,
    code: i32,
}

async fn exec_sync(c: &mut Client, id: &str, cmd: &[&str]) -> Result<Exec, String> {
    let req = ExecSyncRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        timeout: 20,
    };
    let r = call!(c, exec_sync, req)?;
    Ok(Exec {
        stdout: String::from_utf8_lossy(&r.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&r.stderr).into_owned(),
        code: r.exit_code,
    })
}

fn sh(cmd: &str) -> [&str; 3] {
    ["sh", "-c", cmd]
}

/// Whether `ts` looks like RFC 3339 with nanoseconds as containerd writes
/// it: `2006-01-02T15:04:05.999999999Z07:00` (trailing zeros dropped).
fn rfc3339nano(ts: &str) -> bool {
    let b = ts.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20 || !digits(0..4) || b[4] != b'-' || !digits(5..7) || b[7] != b'-' {
        return false;
    }
    if !digits(8..10) || b[10] != b'T' || !digits(11..13) || b[13] != b':' || !digits(14..16) {
        return false;
    }
    if b[16] != b':' || !digits(17..19) {
        return false;
    }
    let mut rest = &ts[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 || n > 9 {
            return false;
        }
        rest = &frac[n..];
    }
    rest == "Z" || (rest.len() == 6 && (rest.starts_with('+') || rest.starts_with('-')))
}

/// The (stream, line) pairs of a CRI log file, checking every line's shape:
/// `<RFC3339Nano> <stdout|stderr> <F|P> <content>`.
fn read_cri_log(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let mut f = line.splitn(4, ' ');
        let (ts, stream, tag) = (f.next().unwrap_or(""), f.next(), f.next());
        let content = f.next().unwrap_or("");
        let ok = rfc3339nano(ts)
            && matches!(stream, Some("stdout" | "stderr"))
            && matches!(tag, Some("F" | "P"));
        if !ok {
            return Err(format!("not a CRI log line: {line:?}"));
        }
        out.push((stream.unwrap_or("").to_owned(), content.to_owned()));
    }
    Ok(out)
}

/// Waits (at most 5 s) for the log at `path` to hold every `(stream, line)`
/// of `want`; an error names what is missing and shows the file.
async fn expect_log(path: &Path, want: &[(&str, &str)]) -> Check {
    let t0 = Instant::now();
    loop {
        let got = read_cri_log(path);
        let missing: Vec<_> = match &got {
            Ok(lines) => want
                .iter()
                .filter(|(s, l)| !lines.iter().any(|(gs, gl)| gs == s && gl == l))
                .collect(),
            Err(_) => want.iter().collect(),
        };
        if missing.is_empty() {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(5) {
            let file = std::fs::read_to_string(path).unwrap_or_default();
            return Err(match got {
                Err(e) => e,
                Ok(_) => format!("missing {missing:?} in {}: {file:?}", path.display()),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The cgroup directories named `<parent>/<id>` under any hierarchy.
fn cgroups_of(parent: &str, id: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .map(|h| h.path().join(parent.trim_start_matches('/')).join(id))
        .filter(|p| p.is_dir())
        .collect()
}

fn stop_req(id: &str, timeout: i64) -> StopContainerRequest {
    StopContainerRequest {
        container_id: id.into(),
        timeout,
    }
}

fn rm_req(id: &str) -> RemoveContainerRequest {
    RemoveContainerRequest {
        container_id: id.into(),
    }
}

/// Stops and removes a pod, checking that its sandbox, its containers'
/// state in the runtime root and their cgroups are gone.
async fn end_pod(r: &mut Report, c: &mut Client, o: &Opts, pod: &Pod, name: &str, ids: &[String]) {
    let req = StopPodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    };
    r.check(
        &format!("{name}: StopPodSandbox"),
        call!(c, stop_pod_sandbox, req).map(drop),
    );
    let req = RemovePodSandboxRequest {
        pod_sandbox_id: pod.id.clone(),
    };
    r.check(
        &format!("{name}: RemovePodSandbox"),
        call!(c, remove_pod_sandbox, req).map(drop),
    );
    let listed = call!(c, list_pod_sandbox, ListPodSandboxRequest::default())
        .map(|l| l.items.iter().any(|p| p.id == pod.id));
    r.check(
        &format!("{name}: ListPodSandbox no longer lists it"),
        match listed {
            Ok(false) => Ok(()),
            Ok(true) => Err("still listed".into()),
            Err(e) => Err(e),
        },
    );
    let all: Vec<&String> = std::iter::once(&pod.id).chain(ids).collect();
    let state: Vec<_> = all
        .iter()
        .map(|id| o.runtime_root.join(id))
        .filter(|p| p.exists())
        .collect();
    r.check(
        &format!(
            "{name}: no state of the sandbox or its containers left in {}",
            o.runtime_root.display()
        ),
        ensure(state.is_empty(), || format!("left: {state:?}")),
    );
    let parent = format!("{}/{name}", o.cgroup_parent);
    let t0 = Instant::now();
    let mut cgroups;
    loop {
        cgroups = all
            .iter()
            .flat_map(|id| cgroups_of(&parent, id))
            .collect::<Vec<_>>();
        if cgroups.is_empty() || t0.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    r.check(
        &format!("{name}: no cgroup of the sandbox or its containers left under {parent}"),
        ensure(cgroups.is_empty(), || format!("left: {cgroups:?}")),
    );
}

/// The basic pod: lifecycle, exit codes, ExecSync, logs, ReopenContainerLog,
/// StopContainer's grace period, removal.
async fn basic(r: &mut Report, c: &mut Client, o: &Opts) {
    let name = "basic";
    let pod = match run_pod(c, o, pod_config(o, name, &[])).await {
        Ok(p) => p,
        Err(e) => {
            r.check("basic: RunPodSandbox with the sbx-oci handler", Err(e));
            return;
        }
    };
    r.check("basic: RunPodSandbox with the sbx-oci handler", Ok(()));
    let req = PodSandboxStatusRequest {
        pod_sandbox_id: pod.id.clone(),
        verbose: false,
    };
    let st = call!(c, pod_sandbox_status, req).and_then(|s| s.status.ok_or("no status".into()));
    r.check(
        "basic: PodSandboxStatus READY, handler sbx-oci, an address from the CNI plugin",
        st.and_then(|s| {
            let ip = s.network.map(|n| n.ip).unwrap_or_default();
            ensure(
                s.state == PodSandboxState::SandboxReady as i32
                    && s.runtime_handler == o.handler
                    && ip.starts_with("10.213."),
                || {
                    format!(
                        "state {}, handler {:?}, ip {ip:?}",
                        s.state, s.runtime_handler
                    )
                },
            )
        }),
    );
    let parent = format!("{}/{name}", o.cgroup_parent);
    r.check(
        "basic: the sandbox's state is in the runtime root, its cgroup under cgroup_parent",
        ensure(o.runtime_root.join(&pod.id).is_dir(), || {
            format!("no {}", o.runtime_root.join(&pod.id).display())
        })
        .and_then(|_| {
            ensure(!cgroups_of(&parent, &pod.id).is_empty(), || {
                format!("no /sys/fs/cgroup/*{parent}/{}", pod.id)
            })
        }),
    );
    let mut ids = Vec::new();
    let log_dir = o.log_dir.join(name);

    // A container that prints on both streams and exits 3.
    let what = "basic: a container exits with its status (3), ContainerStatus EXITED";
    match start(
        c,
        o,
        &pod,
        "exit3",
        "echo to-stdout; echo to-stderr >&2; exit 3",
    )
    .await
    {
        Ok(id) => {
            ids.push(id.clone());
            let s = wait_exited(c, &id, Duration::from_secs(20)).await;
            r.check(
                what,
                s.and_then(|s| {
                    ensure(s.exit_code == 3 && s.reason == "Error", || {
                        format!("exit code {}, reason {:?}", s.exit_code, s.reason)
                    })
                }),
            );
            r.check(
                "basic: the log file at log_path, in CRI format, has both streams",
                expect_log(
                    &log_dir.join("exit3.log"),
                    &[("stdout", "to-stdout"), ("stderr", "to-stderr")],
                )
                .await,
            );
        }
        Err(e) => {
            r.check(what, Err(e));
        }
    }

    // A long-running container: TERM is trapped, USR1 writes a line.
    let script = "trap 'echo term-trapped; exit 0' TERM; n=0; \
                  trap 'echo usr1-$n; n=$((n+1))' USR1; echo started; \
                  while :; do sleep 0.1; done";
    let what = "basic: CreateContainer and StartContainer, ContainerStatus RUNNING";
    let serve = match start(c, o, &pod, "serve", script).await {
        Ok(id) => id,
        Err(e) => {
            r.check(what, Err(e));
            end_pod(r, c, o, &pod, name, &ids).await;
            return;
        }
    };
    ids.push(serve.clone());
    let s = status(c, &serve).await;
    r.check(
        what,
        s.and_then(|s| {
            ensure(s.state == ContainerState::ContainerRunning as i32, || {
                format!("state {}", s.state)
            })
        }),
    );
    r.check(
        "basic: the container's cgroup is <cgroup_parent>/<id>",
        ensure(!cgroups_of(&parent, &serve).is_empty(), || {
            format!("no /sys/fs/cgroup/*{parent}/{serve}")
        }),
    );
    let e = exec_sync(
        c,
        &serve,
        &sh("echo exec says $((6*7)); echo on-stderr >&2"),
    )
    .await;
    r.check(
        "basic: ExecSync: stdout and stderr",
        e.and_then(|e| {
            ensure(
                e.code == 0 && e.stdout == "exec says 42\n" && e.stderr == "on-stderr\n",
                || {
                    format!(
                        "code {}, stdout {:?}, stderr {:?}",
                        e.code, e.stdout, e.stderr
                    )
                },
            )
        }),
    );
    let e = exec_sync(c, &serve, &sh("exit 5")).await;
    r.check(
        "basic: ExecSync: a non-zero exit status (5)",
        e.and_then(|e| ensure(e.code == 5, || format!("code {}", e.code))),
    );
    let e = exec_sync(c, &serve, &["cat", "/proc/1/cmdline"]).await;
    r.check(
        "basic: ExecSync runs in the container's own pid namespace",
        e.and_then(|e| {
            ensure(e.stdout.starts_with("sh\0-c\0trap"), || {
                format!("pid 1 is {:?}", e.stdout)
            })
        }),
    );
    if o.streaming {
        r.check(
            "basic: Exec through the streaming server (websocket): stdout, exit status",
            streaming_exec(c, &serve).await,
        );
    }
    // No policy in this pod: the closed port answers, so the egress pod's
    // refusal below is the policy's doing.
    let nc = format!("nc -w 3 {} {} </dev/null", o.test_host, o.closed_port);
    let e = exec_sync(c, &serve, &sh(&nc)).await;
    r.check(
        &format!(
            "basic: without a policy the test host answers on {}:{} (through the CNI veth)",
            o.test_host, o.closed_port
        ),
        e.and_then(|e| {
            let want = format!("hello-{}", o.closed_port);
            ensure(e.stdout.trim() == want, || {
                format!(
                    "code {}, stdout {:?}, stderr {:?}",
                    e.code, e.stdout, e.stderr
                )
            })
        }),
    );

    // The log, then its rotation: moved away, ReopenContainerLog, new lines
    // go to a new file at log_path.
    let log = log_dir.join("serve.log");
    let kill_usr1 = exec_sync(c, &serve, &["kill", "-USR1", "1"]).await;
    r.check(
        "basic: a running container's output reaches its log",
        match kill_usr1 {
            Ok(e) if e.code != 0 => Err(format!("kill -USR1 1: code {}", e.code)),
            Err(e) => Err(e),
            Ok(_) => expect_log(&log, &[("stdout", "started"), ("stdout", "usr1-0")]).await,
        },
    );
    let moved = log_dir.join("serve.log.1");
    let reopened = async {
        std::fs::rename(&log, &moved).map_err(|e| format!("mv: {e}"))?;
        let req = ReopenContainerLogRequest {
            container_id: serve.clone(),
        };
        call!(c, reopen_container_log, req)?;
        let e = exec_sync(c, &serve, &["kill", "-USR1", "1"]).await?;
        ensure(e.code == 0, || format!("kill -USR1 1: code {}", e.code))?;
        expect_log(&log, &[("stdout", "usr1-1")]).await?;
        let old = read_cri_log(&moved)?;
        ensure(!old.iter().any(|(_, l)| l == "usr1-1"), || {
            "the moved file got the new line too".into()
        })
    };
    r.check(
        "basic: ReopenContainerLog: after the log is moved away, new output goes to a new file at log_path",
        reopened.await,
    );

    // StopContainer: TERM reaches the trap, well within the timeout.
    let t0 = Instant::now();
    let stopped = call!(c, stop_container, stop_req(&serve, 10));
    let took = t0.elapsed();
    let s = status(c, &serve).await;
    r.check(
        "basic: StopContainer (timeout 10 s) on a process that traps TERM: exits 0 at once",
        stopped.and(s).and_then(|s| {
            ensure(
                s.state == ContainerState::ContainerExited as i32
                    && s.exit_code == 0
                    && took < Duration::from_secs(5),
                || {
                    format!(
                        "state {}, exit code {}, took {took:?}",
                        s.state, s.exit_code
                    )
                },
            )
        }),
    );
    r.check(
        "basic: the trap's output is in the log",
        expect_log(&log, &[("stdout", "term-trapped")]).await,
    );

    // StopContainer on a process that ignores TERM: KILL after the timeout.
    let what =
        "basic: StopContainer (timeout 2 s) on a process that ignores TERM: KILLed after 2 s";
    match start(
        c,
        o,
        &pod,
        "stubborn",
        "trap '' TERM; while :; do sleep 0.1; done",
    )
    .await
    {
        Ok(id) => {
            ids.push(id.clone());
            let t0 = Instant::now();
            let stopped = call!(c, stop_container, stop_req(&id, 2));
            let took = t0.elapsed();
            let s = status(c, &id).await;
            r.check(
                what,
                stopped.and(s).and_then(|s| {
                    ensure(
                        s.state == ContainerState::ContainerExited as i32
                            && s.exit_code == 137
                            && took >= Duration::from_secs(2)
                            && took < Duration::from_secs(7),
                        || {
                            format!(
                                "state {}, exit code {}, took {took:?}",
                                s.state, s.exit_code
                            )
                        },
                    )
                }),
            );
        }
        Err(e) => {
            r.check(what, Err(e));
        }
    }

    for id in &ids {
        let removed = call!(c, remove_container, rm_req(id));
        if removed.is_err() {
            r.check(&format!("basic: RemoveContainer {id}"), removed.map(drop));
        }
    }
    let req = ListContainersRequest::default();
    let left = call!(c, list_containers, req).map(|l| {
        l.containers
            .into_iter()
            .filter(|x| x.pod_sandbox_id == pod.id)
            .count()
    });
    r.check(
        "basic: RemoveContainer of every container; none listed, no state left",
        left.and_then(|n| ensure(n == 0, || format!("{n} still listed")))
            .and_then(|_| {
                let state: Vec<_> = ids
                    .iter()
                    .map(|id| o.runtime_root.join(id))
                    .filter(|p| p.exists())
                    .collect();
                ensure(state.is_empty(), || format!("left: {state:?}"))
            }),
    );
    end_pod(r, c, o, &pod, name, &ids).await;
}

/// The egress pod: the policy rides in the pod's annotations.
async fn egress(r: &mut Report, c: &mut Client, o: &Opts) {
    let name = "egress";
    let allow = format!("{}:{}", o.test_host, o.open_port);
    let annotations = [
        ("org.sbx-oci.network.allow", allow.as_str()),
        // No resolver: names are refused, nothing is asked outside.
        ("org.sbx-oci.network.dns", ""),
    ];
    let pod = match run_pod(c, o, pod_config(o, name, &annotations)).await {
        Ok(p) => p,
        Err(e) => {
            r.check(
                &format!("egress: RunPodSandbox with org.sbx-oci.network.allow={allow}"),
                Err(e),
            );
            return;
        }
    };
    r.check(
        &format!("egress: RunPodSandbox with org.sbx-oci.network.allow={allow}"),
        Ok(()),
    );
    let mut ids = Vec::new();
    let open = format!("nc -w 3 {} {} </dev/null", o.test_host, o.open_port);
    let closed = format!("nc -w 2 {} {} </dev/null", o.test_host, o.closed_port);
    let hello_open = format!("hello-{}", o.open_port);
    let hello_closed = format!("hello-{}", o.closed_port);

    let agent = match start(c, o, &pod, "agent", "while :; do sleep 0.1; done").await {
        Ok(id) => id,
        Err(e) => {
            r.check("egress: a container starts in the pod", Err(e));
            end_pod(r, c, o, &pod, name, &ids).await;
            return;
        }
    };
    ids.push(agent.clone());
    let allowed = async |c: &mut Client| -> Check {
        let e = exec_sync(c, &agent, &sh(&open)).await?;
        ensure(e.code == 0 && e.stdout.trim() == hello_open, || {
            format!(
                "code {}, stdout {:?}, stderr {:?}",
                e.code, e.stdout, e.stderr
            )
        })
    };
    let refused = async |c: &mut Client| -> Check {
        let e = exec_sync(c, &agent, &sh(&closed)).await?;
        ensure(e.code != 0 && !e.stdout.contains(&hello_closed), || {
            format!("code {}, stdout {:?}", e.code, e.stdout)
        })
    };
    r.check(
        &format!("egress: ExecSync: the allowed destination {allow} answers"),
        allowed(c).await,
    );
    r.check(
        &format!(
            "egress: ExecSync: {}:{} on the same test host is blocked",
            o.test_host, o.closed_port
        ),
        refused(c).await,
    );

    // A second container of the pod, checked by its own exit status: it
    // reaches the allowed port (0), not the other one (not 0).
    let script = format!(
        "{open} | grep -qx {hello_open} || exit 10; {closed} | grep -q . && exit 11; exit 0"
    );
    let what = "egress: a second container: allowed port reached, other refused (exit status 0)";
    match start(c, o, &pod, "probe", &script).await {
        Ok(id) => {
            ids.push(id.clone());
            let s = wait_exited(c, &id, Duration::from_secs(20)).await;
            r.check(
                what,
                s.and_then(|s| ensure(s.exit_code == 0, || format!("exit code {}", s.exit_code))),
            );
            let removed = call!(c, remove_container, rm_req(&id));
            r.check(
                "egress: RemoveContainer of the exited container",
                removed.map(drop),
            );
        }
        Err(e) => {
            r.check(what, Err(e));
        }
    }
    // The pod's namespace is shared: removing one container must leave the
    // policy in place for the others.
    r.check(
        "egress: after another container of the pod is removed, the policy still holds (blocked)",
        refused(c).await,
    );
    r.check(
        "egress: ... and the allowed destination still answers",
        allowed(c).await,
    );
    let stopped = call!(c, stop_container, stop_req(&agent, 2));
    let removed = call!(c, remove_container, rm_req(&agent));
    r.check(
        "egress: StopContainer and RemoveContainer",
        stopped.map(drop).and(removed.map(drop)),
    );
    end_pod(r, c, o, &pod, name, &ids).await;
}

/// A pod whose allowlist names a host: its DNS gatekeeper (one per pod)
/// answers every container of the pod and pins what the resolver says.
async fn dns(r: &mut Report, c: &mut Client, o: &Opts) {
    let name = "dns";
    let allow = format!("{}:{}", o.service_name, o.open_port);
    let annotations = [
        ("org.sbx-oci.network.allow", allow.as_str()),
        ("org.sbx-oci.network.dns", o.resolver.as_str()),
    ];
    let mut config = pod_config(o, name, &annotations);
    // The pod's resolv.conf names the test host; the policy sends all DNS
    // to the gatekeeper whatever the address.
    config.dns_config = Some(DnsConfig {
        servers: vec![o.test_host.clone()],
        ..Default::default()
    });
    let what = format!(
        "dns: RunPodSandbox with org.sbx-oci.network.allow={allow}, org.sbx-oci.network.dns={}",
        o.resolver
    );
    let pod = match run_pod(c, o, config).await {
        Ok(p) => p,
        Err(e) => {
            r.check(&what, Err(e));
            return;
        }
    };
    r.check(&what, Ok(()));
    let mut ids = Vec::new();
    let by_name = format!("nc -w 3 {} {} </dev/null", o.service_name, o.open_port);
    let closed = format!("nc -w 2 {} {} </dev/null", o.test_host, o.closed_port);
    let hello_open = format!("hello-{}", o.open_port);
    let agent = match start(c, o, &pod, "agent", "while :; do sleep 0.1; done").await {
        Ok(id) => id,
        Err(e) => {
            r.check(
                "dns: a container starts in the pod (the pod's gatekeeper runs)",
                Err(e),
            );
            end_pod(r, c, o, &pod, name, &ids).await;
            return;
        }
    };
    r.check(
        "dns: a container starts in the pod (the pod's gatekeeper runs)",
        Ok(()),
    );
    ids.push(agent.clone());
    let reach = async |c: &mut Client, id: &str| -> Check {
        let e = exec_sync(c, id, &sh(&by_name)).await?;
        ensure(e.code == 0 && e.stdout.trim() == hello_open, || {
            format!(
                "code {}, stdout {:?}, stderr {:?}",
                e.code, e.stdout, e.stderr
            )
        })
    };
    r.check(
        &format!("dns: ExecSync: {allow} by name (resolved by the gatekeeper, pinned) answers"),
        reach(c, &agent).await,
    );
    let e = exec_sync(c, &agent, &sh(&closed)).await;
    r.check(
        &format!(
            "dns: ExecSync: {}:{} stays blocked",
            o.test_host, o.closed_port
        ),
        e.and_then(|e| {
            ensure(e.code != 0, || {
                format!("code {}, stdout {:?}", e.code, e.stdout)
            })
        }),
    );
    let what = "dns: a second container of the pod resolves and reaches the name too";
    match start(c, o, &pod, "second", "while :; do sleep 0.1; done").await {
        Ok(id) => {
            ids.push(id.clone());
            r.check(what, reach(c, &id).await);
            let stopped = call!(c, stop_container, stop_req(&id, 2));
            let removed = call!(c, remove_container, rm_req(&id));
            r.check(
                "dns: the second container stopped and removed",
                stopped.map(drop).and(removed.map(drop)),
            );
            r.check(
                "dns: ... the first still resolves and reaches the name",
                reach(c, &agent).await,
            );
        }
        Err(e) => {
            r.check(what, Err(e));
        }
    }
    let stopped = call!(c, stop_container, stop_req(&agent, 2));
    let removed = call!(c, remove_container, rm_req(&agent));
    r.check(
        "dns: StopContainer and RemoveContainer",
        stopped.map(drop).and(removed.map(drop)),
    );
    end_pod(r, c, o, &pod, name, &ids).await;
}

/// Exec through containerd's streaming server: the URL from Exec, then a
/// websocket (channel.k8s.io) to it on loopback.
async fn streaming_exec(c: &mut Client, id: &str) -> Check {
    let req = ExecRequest {
        container_id: id.into(),
        cmd: ["sh", "-c", "echo streamed $((6*7)); exit 4"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        tty: false,
        stdin: false,
        stdout: true,
        stderr: true,
    };
    let url = call!(c, exec, req)?.url;
    let out = tokio::time::timeout(Duration::from_secs(30), websocket::exec(&url))
        .await
        .map_err(|_| "no end of the stream in 30 s".to_string())??;
    ensure(
        out.stdout == "streamed 42\n" && out.exit_code == Some(4),
        || format!("{out:?}"),
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let o = match opts() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cri-check: {e}");
            std::process::exit(2);
        }
    };
    let mut r = Report::default();
    let t0 = Instant::now();
    match connect(&o.socket).await {
        Ok(mut c) => {
            let v = call!(c, version, VersionRequest::default());
            let v_ok = r.check(
                "Version: runtime containerd, CRI v1",
                v.and_then(|v| {
                    ensure(
                        v.runtime_name == "containerd" && v.runtime_api_version == "v1",
                        || {
                            format!(
                                "{} {}, API {}",
                                v.runtime_name, v.runtime_version, v.runtime_api_version
                            )
                        },
                    )
                }),
            );
            if v_ok {
                basic(&mut r, &mut c, &o).await;
                egress(&mut r, &mut c, &o).await;
                dns(&mut r, &mut c, &o).await;
            }
        }
        Err(e) => {
            r.check("connect to the CRI socket", Err(e));
        }
    }
    eprintln!("cri-check: {:.1} s", t0.elapsed().as_secs_f64());
    println!("{} passed, {} failed", r.passed, r.failed);
    // Flush before exiting: stdout is a pipe under the script.
    let _ = std::io::Write::flush(&mut std::io::stdout());
    std::process::exit(if r.failed == 0 { 0 } else { 1 });
}
