//! sbx-oci as a platform's isolation backend, end to end.
//!
//! Platforms that run agents' commands drive isolation through an interface
//! like [`IsolationBackend`] and [`SandboxHandle`] below; [`SbxBackend`]
//! implements it on `sbx_oci::api`. `main` runs [`scenario`]: create, exec
//! with env/cwd/stdin, a streamed exec, suspend and resume, snapshot and
//! restore, usage, destroy, printing each step; `tests/api.rs` runs the same
//! scenario and checks it.
//!
//! ```sh
//! cargo run --example backend -- target/debug/sbx-oci /tmp/sbx-demo
//! ```

#![allow(dead_code, async_fn_in_trait)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sbx_oci::api::{
    ApiError, Chunk, Client, ExecRequest, ExecStatus, ExecStream, Probe, Sandbox, SandboxInfo,
    Stats, Stream,
};
use sbx_oci::sandbox::SandboxSpec;

/// A command as a platform describes it.
#[derive(Clone, Debug, Default)]
pub struct ExecContext {
    pub env: BTreeMap<String, String>,
    pub inherit_env: bool,
    pub cwd: Option<PathBuf>,
    pub stdin: Vec<u8>,
    pub timeout: Option<Duration>,
}

#[derive(Debug)]
pub struct CommandResult {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub duration: Duration,
}

/// What a platform's service asks of an isolation backend.
pub trait IsolationBackend {
    type Handle: SandboxHandle;
    async fn probe(&self) -> Result<Probe, ApiError>;
    async fn create_sandbox(&self, id: &str, spec: &SandboxSpec) -> Result<Self::Handle, ApiError>;
    async fn list(&self) -> Result<Vec<SandboxInfo>, ApiError>;
    async fn get(&self, id: &str) -> Result<Self::Handle, ApiError>;
    async fn destroy_all(&self) -> Result<usize, ApiError>;
    async fn health_check(&self) -> Result<(), ApiError>;
}

/// One sandbox, as the platform drives it.
pub trait SandboxHandle {
    async fn exec(&self, argv: &[&str], ctx: &ExecContext) -> Result<CommandResult, ApiError>;
    async fn exec_streaming(
        &self,
        argv: &[&str],
        ctx: &ExecContext,
    ) -> Result<ExecStream, ApiError>;
    async fn is_alive(&self) -> Result<bool, ApiError>;
    async fn suspend(&self) -> Result<(), ApiError>;
    async fn resume(&self) -> Result<(), ApiError>;
    async fn snapshot(&self, name: &str) -> Result<(), ApiError>;
    async fn restore(&self, name: &str) -> Result<(), ApiError>;
    async fn resource_usage(&self) -> Result<Stats, ApiError>;
    async fn time_remaining(&self) -> Result<Option<Duration>, ApiError>;
    async fn destroy(&self) -> Result<(), ApiError>;
}

pub struct SbxBackend {
    pub client: Client,
}

pub struct SbxSandbox(pub Sandbox);

fn request(argv: &[&str], ctx: &ExecContext) -> ExecRequest {
    let mut req = ExecRequest::new(argv[0])
        .args(argv[1..].iter().copied())
        .inherit_env(ctx.inherit_env)
        .stdin(ctx.stdin.clone());
    for (k, v) in &ctx.env {
        req = req.env(k, v);
    }
    if let Some(cwd) = &ctx.cwd {
        req = req.workdir(cwd);
    }
    if let Some(t) = ctx.timeout {
        req = req.timeout(t);
    }
    req
}

impl IsolationBackend for SbxBackend {
    type Handle = SbxSandbox;

    async fn probe(&self) -> Result<Probe, ApiError> {
        self.client.probe().await
    }

    async fn create_sandbox(&self, id: &str, spec: &SandboxSpec) -> Result<SbxSandbox, ApiError> {
        self.client.create(id, spec).await.map(SbxSandbox)
    }

    async fn list(&self) -> Result<Vec<SandboxInfo>, ApiError> {
        self.client.list().await
    }

    async fn get(&self, id: &str) -> Result<SbxSandbox, ApiError> {
        self.client.get(id).await.map(SbxSandbox)
    }

    async fn destroy_all(&self) -> Result<usize, ApiError> {
        self.client.destroy_all().await
    }

    async fn health_check(&self) -> Result<(), ApiError> {
        self.client.health_check().await
    }
}

impl SandboxHandle for SbxSandbox {
    async fn exec(&self, argv: &[&str], ctx: &ExecContext) -> Result<CommandResult, ApiError> {
        let started = Instant::now();
        let out = self.0.exec(request(argv, ctx)).await?;
        Ok(CommandResult {
            exit_code: out.status.code,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            timed_out: out.status.timed_out,
            duration: started.elapsed(),
        })
    }

    async fn exec_streaming(
        &self,
        argv: &[&str],
        ctx: &ExecContext,
    ) -> Result<ExecStream, ApiError> {
        self.0.exec_streaming(request(argv, ctx)).await
    }

    async fn is_alive(&self) -> Result<bool, ApiError> {
        self.0.is_alive().await
    }

    async fn suspend(&self) -> Result<(), ApiError> {
        self.0.suspend().await
    }

    async fn resume(&self) -> Result<(), ApiError> {
        self.0.resume().await
    }

    async fn snapshot(&self, name: &str) -> Result<(), ApiError> {
        self.0.snapshot(name).await
    }

    async fn restore(&self, name: &str) -> Result<(), ApiError> {
        self.0.restore(name).await
    }

    async fn resource_usage(&self) -> Result<Stats, ApiError> {
        self.0.resource_usage().await
    }

    async fn time_remaining(&self) -> Result<Option<Duration>, ApiError> {
        self.0.time_remaining().await
    }

    async fn destroy(&self) -> Result<(), ApiError> {
        self.0.destroy().await
    }
}

/// What the scenario saw, step by step, for its caller to check.
#[derive(Debug, Default)]
pub struct Report {
    pub exec: Option<CommandResult>,
    /// Milliseconds from the streamed command's start to its first chunk,
    /// and to its end.
    pub first_chunk_ms: u64,
    pub stream_end_ms: u64,
    pub streamed: Vec<Chunk>,
    pub stream_status: Option<ExecStatus>,
    /// Lines a counter wrote before, during and after the suspension.
    pub counted_before_suspend: usize,
    pub counted_while_suspended: usize,
    pub counted_after_resume: usize,
    pub alive_while_suspended: bool,
    pub restored_file: String,
    pub usage: Option<Stats>,
    pub listed: Vec<SandboxInfo>,
    pub alive_after_destroy: bool,
}

fn line_count(r: &CommandResult) -> usize {
    r.stdout.trim().parse().unwrap_or(0)
}

/// The platform's script, on any backend.
pub async fn scenario<B: IsolationBackend>(
    backend: &B,
    id: &str,
    spec: &SandboxSpec,
) -> Result<Report, ApiError> {
    let mut report = Report::default();
    backend.health_check().await?;
    let sandbox = backend.create_sandbox(id, spec).await?;
    let quick = ExecContext {
        inherit_env: true,
        ..Default::default()
    };

    // env, cwd and stdin.
    let ctx = ExecContext {
        env: BTreeMap::from([("GREETING".into(), "hello".into())]),
        inherit_env: true,
        cwd: Some("/tmp".into()),
        stdin: b"from stdin".to_vec(),
        timeout: Some(Duration::from_secs(10)),
    };
    let script = "echo \"$GREETING from $(pwd)\"; cat; echo; echo oops >&2; exit 3";
    report.exec = Some(sandbox.exec(&["sh", "-c", script], &ctx).await?);

    // Streaming: the first chunk arrives while the command still runs.
    let started = Instant::now();
    let mut stream = sandbox
        .exec_streaming(
            &[
                "sh",
                "-c",
                "echo first; sleep 1; echo second >&2; sleep 0.2; echo third",
            ],
            &quick,
        )
        .await?;
    while let Some(chunk) = stream.next().await {
        if report.streamed.is_empty() {
            report.first_chunk_ms = started.elapsed().as_millis() as u64;
        }
        report.streamed.push(chunk);
    }
    report.stream_status = Some(stream.wait().await?);
    report.stream_end_ms = started.elapsed().as_millis() as u64;

    // Suspend: a counter in the background makes no progress.
    let workdir_file = "count";
    let counter =
        format!("i=0; while :; do i=$((i+1)); echo $i > {workdir_file}; sleep 0.02; done");
    let _bg = sandbox
        .exec_streaming(&["sh", "-c", &counter], &quick)
        .await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let cat = ["cat", workdir_file];
    let count = || sandbox.exec(&cat, &quick);
    report.counted_before_suspend = line_count(&count().await?);
    sandbox.suspend().await?;
    report.alive_while_suspended = sandbox.is_alive().await?;
    let frozen_at = std::fs::read_to_string(sandbox_file(id, workdir_file))
        .ok()
        .and_then(|t| t.trim().parse::<usize>().ok())
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let still = std::fs::read_to_string(sandbox_file(id, workdir_file))
        .ok()
        .and_then(|t| t.trim().parse::<usize>().ok())
        .unwrap_or(0);
    report.counted_while_suspended = still - frozen_at.min(still);
    sandbox.resume().await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    report.counted_after_resume = line_count(&count().await?);
    drop(_bg); // cancelling the stream kills the counter

    // Snapshot, change, restore.
    sandbox
        .exec(&["sh", "-c", "echo original > state.txt"], &quick)
        .await?;
    sandbox.snapshot("snap1").await?;
    sandbox
        .exec(
            &["sh", "-c", "echo changed > state.txt; rm -f count"],
            &quick,
        )
        .await?;
    sandbox.restore("snap1").await?;
    report.restored_file = sandbox.exec(&["cat", "state.txt"], &quick).await?.stdout;

    // Usage with real figures: some CPU and memory.
    sandbox
        .exec(
            &["sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; head -c 4000000 /dev/zero | tail -c 1 >/dev/null"],
            &quick,
        )
        .await?;
    report.usage = Some(sandbox.resource_usage().await?);
    report.listed = backend.list().await?;
    sandbox.destroy().await?;
    report.alive_after_destroy = sandbox.is_alive().await?;
    Ok(report)
}

/// A file of the sandbox's workdir, read from the host through its init's
/// root (the platform's own view; used to watch a frozen sandbox without
/// running anything in it).
fn sandbox_file(id: &str, name: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{}/root/workspace/{name}", init_pid(id)))
}

/// The init pid of sandbox `id` (from `ps` of the idle init's comm and argv).
fn init_pid(id: &str) -> i32 {
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        if comm.trim() == "sbx-oci-init" && argv.contains(&id.as_bytes()) {
            return pid;
        }
    }
    0
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let binary = args.next().unwrap_or_else(|| "sbx-oci".into());
    let root = args.next().unwrap_or_else(|| "/run/sbx-oci".into());
    let backend = SbxBackend {
        client: Client::with_binary(root, binary),
    };
    match backend.probe().await {
        Ok(p) => println!("probe: kernel {}, cgroup {}", p.kernel, p.cgroup.version),
        Err(e) => {
            eprintln!("probe: {e}");
            std::process::exit(1);
        }
    }
    let id = format!("backend-demo-{}", std::process::id());
    match scenario(&backend, &id, &SandboxSpec::default()).await {
        Ok(r) => {
            let exec = r.exec.as_ref().expect("exec ran");
            println!(
                "exec: status {}, stdout {:?}, stderr {:?}",
                exec.exit_code, exec.stdout, exec.stderr
            );
            println!(
                "stream: first chunk after {} ms, end after {} ms, {} chunks, {:?}",
                r.first_chunk_ms,
                r.stream_end_ms,
                r.streamed.len(),
                r.stream_status
            );
            for c in &r.streamed {
                let s = if c.stream == Stream::Stdout {
                    "out"
                } else {
                    "err"
                };
                println!("  {s}: {:?}", String::from_utf8_lossy(&c.data));
            }
            println!(
                "suspend: counter {} before, +{} while suspended (alive: {}), {} after resume",
                r.counted_before_suspend,
                r.counted_while_suspended,
                r.alive_while_suspended,
                r.counted_after_resume
            );
            println!("restore: state.txt is {:?}", r.restored_file.trim());
            println!("usage: {:?}", r.usage);
            println!("alive after destroy: {}", r.alive_after_destroy);
        }
        Err(e) => {
            eprintln!("scenario: {e}");
            let _ = backend.client.sandbox(&id).destroy().await;
            std::process::exit(1);
        }
    }
}
