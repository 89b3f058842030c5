//! A typed async API for platforms that run untrusted commands: create
//! sandboxes, run commands in them (collected or streamed), suspend, resume,
//! snapshot, restore, read usage and remove them, from a tokio runtime.
//!
//! ## Where the forking happens
//!
//! libcontainer forks (and the forked child allocates before it execs), which
//! is not safe from a multi-threaded process such as a tokio runtime: a lock
//! held by another thread at the fork stays held in the child forever. So
//! every call that makes or enters a container (create, run, exec, suspend,
//! resume, snapshot, restore) runs the `sbx-oci` binary as a child process
//! (`tokio::process`, fork+exec: safe from any thread), with the sandbox
//! commands of its command line; this module builds their arguments, feeds
//! and reads their pipes, and turns their JSON output and error log into
//! typed values. A spec is validated here first, so that a bad field is an
//! [`ApiError::Spec`] naming it before anything runs.
//!
//! The calls that only read or remove state (list, get, info, is_alive,
//! time_remaining, resource_usage, probe, destroy, destroy_all) fork nothing:
//! they run in this process, on tokio's blocking pool, through the same
//! library functions the CLI's `sandbox list/stats/probe/rm` call
//! ([`crate::sandbox::state`], [`crate::sandbox::probe`],
//! [`crate::teardown`]), without a process start (about 0.1 ms against 5).
//! They read the state root with this crate's code: use a binary of the
//! same version. Nothing they do changes the process (no signal handler,
//! working directory or namespace: network namespaces are entered on
//! threads of their own); a destroy runs the sandbox's poststop hooks as
//! child processes.
//!
//! Runtime errors come back through a pipe given as the runtime's `--log`
//! (JSON lines), never parsed out of stderr, which the sandboxed command
//! writes too and could forge.
//!
//! Nothing is global: a [`Client`] is a state root and a binary path, cheap
//! to clone and share across tasks.
//!
//! ```no_run
//! # async fn demo() -> Result<(), sbx_oci::api::ApiError> {
//! use sbx_oci::api::{Client, ExecRequest};
//! use sbx_oci::sandbox::SandboxSpec;
//!
//! let client = Client::new("/run/sbx-oci");
//! let sandbox = client.create("job-1", &SandboxSpec::default()).await?;
//! let out = sandbox
//!     .exec(ExecRequest::new("sh").arg("-c").arg("echo hi; cat").stdin(b"input".to_vec()))
//!     .await?;
//! assert_eq!(out.stdout, b"hi\ninput");
//! sandbox.destroy().await?;
//! # Ok(()) }
//! ```

mod binary;
mod error;
mod exec;
mod tty;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use tokio::process::Command;

pub use crate::sandbox::info::{
    Cgroups, Limits, Probe, ProfileSupport, SandboxInfo, Seccomp, Stats, Usage,
};
pub use error::ApiError;
pub use exec::{Chunk, ExecOutput, ExecRequest, ExecStatus, ExecStream, Stream};

use crate::sandbox::SandboxSpec;

pub type Result<T> = std::result::Result<T, ApiError>;

/// The runtime as a platform sees it: a state root and the binary that
/// works in it.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    binary: PathBuf,
    root: PathBuf,
    /// The protected view the binary is started from (see `binary`).
    view: binary::Binary,
}

impl Client {
    /// A client of the state root `root`, running the `sbx-oci` found on
    /// PATH.
    pub fn new(root: impl Into<PathBuf>) -> Client {
        Client::with_binary(root, "sbx-oci")
    }

    /// A client of `root` running the runtime binary at `binary`.
    pub fn with_binary(root: impl Into<PathBuf>, binary: impl Into<PathBuf>) -> Client {
        Client {
            inner: Arc::new(Inner {
                binary: binary.into(),
                root: root.into(),
                view: Default::default(),
            }),
        }
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// What this host supports, and what each profile gets here.
    pub async fn probe(&self) -> Result<Probe> {
        tokio::task::spawn_blocking(crate::sandbox::probe::probe)
            .await
            .map_err(|e| ApiError::Runtime {
                op: "probe",
                message: e.to_string(),
            })
    }

    /// Runs `f` with the state root on the blocking pool (see the module's
    /// documentation); its error typed, about sandbox `name`.
    async fn local<T: Send + 'static>(
        &self,
        op: &'static str,
        name: &str,
        f: impl FnOnce(&crate::context::Context) -> crate::Result<T> + Send + 'static,
    ) -> Result<T> {
        let root = self.inner.root.clone();
        let got = tokio::task::spawn_blocking(move || {
            let ctx = crate::context::Context::new(&root, false)?;
            f(&ctx)
        })
        .await
        .map_err(|e| ApiError::Runtime {
            op,
            message: e.to_string(),
        })?;
        got.map_err(|e| ApiError::from_error(op, name, e))
    }

    /// The runtime binary runs (`--version`: the calls that fork need it)
    /// and the state root can be listed.
    pub async fn health_check(&self) -> Result<()> {
        self.call("health_check", &["--version"]).await?;
        self.list().await.map(|_| ())
    }

    /// Creates the persistent sandbox `name` from `spec`. The spec is
    /// checked here first: a bad field is [`ApiError::Spec`] naming it.
    pub async fn create(&self, name: &str, spec: &SandboxSpec) -> Result<Sandbox> {
        let pipe = self.checked_spec("create", Some(name), spec)?;
        let path = pipe.path();
        self.call_in("create", &["sandbox", "create", "--spec", &path, name])
            .await?;
        drop(pipe);
        Ok(self.sandbox(name))
    }

    /// Runs one command in a new sandbox made from `spec`, which is
    /// removed when the command ends (`sbx-oci sandbox run`: one process
    /// for the whole life). The request's env, workdir, user and timeout go
    /// into the spec; `name` defaults to a new unique one.
    pub async fn run(
        &self,
        name: Option<&str>,
        spec: &SandboxSpec,
        req: ExecRequest,
    ) -> Result<ExecStream> {
        let mut spec = spec.clone();
        req.check()?;
        if req.tty.is_some() {
            return Err(ApiError::Spec {
                field: "tty".into(),
                message: "a one-shot run has no terminal here: create a sandbox and exec \
                          with a tty in it"
                    .into(),
            });
        }
        spec.env.extend(req.env.iter().cloned());
        if let Some(w) = &req.workdir {
            spec.workdir = Some(w.clone());
        }
        if let Some((uid, gid)) = req.user {
            spec.user = Some(crate::sandbox::model::User { uid, gid });
        }
        if let Some(t) = req.timeout {
            spec.limits.wall_time_ms = Some(t.as_millis().max(1) as u64);
        }
        let mut command = vec![req.program.clone()];
        command.extend(req.args.iter().cloned());
        spec.command = Some(command);
        let pipe = self.checked_spec("run", name, &spec)?;
        let mut args: Vec<String> = ["sandbox", "run", "--spec"].map(str::to_owned).to_vec();
        args.push(pipe.path());
        if let Some(n) = name {
            args.extend(["--name".to_owned(), n.to_owned()]);
        }
        args.push("--".into());
        exec::spawn(self, args, req.stdin, Some(pipe), None).await
    }

    /// Writes the OCI bundle of `spec` (its `command` is the process) into
    /// `out` (absent or empty), for any OCI runtime: runc, crun, podman's
    /// `--runtime`. `name` is the sandbox id it is made for (it names the
    /// cgroup). Nothing is created in the state root.
    pub async fn bundle(&self, name: &str, spec: &SandboxSpec, out: &Path) -> Result<()> {
        if spec.command.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(ApiError::Spec {
                field: "command".into(),
                message: "a bundle needs the command its process runs".into(),
            });
        }
        let pipe = self.checked_spec("bundle", Some(name), spec)?;
        let (path, out) = (pipe.path(), out.to_string_lossy().into_owned());
        self.call(
            "bundle",
            &[
                "sandbox", "bundle", "--spec", &path, "--out", &out, "--name", name,
            ],
        )
        .await?;
        drop(pipe);
        Ok(())
    }

    /// `name` and `spec` checked here (a bad one is [`ApiError::Spec`]
    /// naming its field, before anything runs), then the spec in a pipe for
    /// the runtime's `--spec`.
    fn checked_spec(
        &self,
        op: &'static str,
        name: Option<&str>,
        spec: &SandboxSpec,
    ) -> Result<exec::SpecPipe> {
        if let Some(n) = name {
            crate::store::validate_id(n).map_err(|e| ApiError::from_library("name", e))?;
        }
        crate::sandbox::validate::validate(&spec.resolve())
            .map_err(|e| ApiError::from_library("spec", e))?;
        let json = serde_json::to_vec(spec).map_err(|e| ApiError::Protocol {
            op,
            message: e.to_string(),
        })?;
        exec::SpecPipe::new(&json).map_err(|e| self.spawn_error(e))
    }

    /// Every sandbox in the state root.
    pub async fn list(&self) -> Result<Vec<SandboxInfo>> {
        self.local("list", "", crate::sandbox::state::entries).await
    }

    /// The sandbox `name`, if it exists.
    pub async fn get(&self, name: &str) -> Result<Sandbox> {
        let sandbox = self.sandbox(name);
        sandbox.info().await?;
        Ok(sandbox)
    }

    /// A handle on sandbox `name` (nothing is checked).
    pub fn sandbox(&self, name: &str) -> Sandbox {
        Sandbox {
            client: self.clone(),
            name: name.to_owned(),
        }
    }

    /// Removes every sandbox, whatever runs in it. Returns how many.
    pub async fn destroy_all(&self) -> Result<usize> {
        let all = self.list().await?;
        if all.is_empty() {
            return Ok(0);
        }
        let names: Vec<String> = all.into_iter().map(|s| s.id).collect();
        let n = names.len();
        self.local("destroy_all", "", move |ctx| {
            // Each one tried; the first error after all were.
            let mut first = None;
            for name in &names {
                if let Err(e) = crate::sandbox::state::rm_one(ctx, name, true)
                    && first.is_none()
                {
                    first = Some(e);
                }
            }
            first.map_or(Ok(()), Err)
        })
        .await?;
        Ok(n)
    }

    /// The runtime binary with the state root and the error pipe set up;
    /// `args` follow. The runtime opens the pipe's write end by its /proc
    /// path as its `--log`: nothing is inherited (no fd of ours reaches any
    /// child, and the spawn needs no code between fork and exec, so it can
    /// be a posix_spawn). `enters`: the command puts a process into a
    /// container, and is started from the binary's protected view (see
    /// `binary`), which the caller holds until the child has started.
    fn command(&self, args: &[&str], enters: bool) -> Result<Started> {
        let log = exec::LogPipe::new().map_err(|e| self.spawn_error(e))?;
        let binary = &self.inner.binary;
        let view = enters.then(|| self.inner.view.view(binary)).flatten();
        let mut cmd = view
            .as_ref()
            .and_then(|v| v.command(binary))
            .unwrap_or_else(|| Command::new(binary));
        cmd.arg("--root")
            .arg(&self.inner.root)
            .arg("--log")
            .arg(log.path())
            .args(["--log-format", "json"])
            .args(args)
            .kill_on_drop(true);
        Ok(Started {
            cmd,
            log,
            _view: view,
        })
    }

    fn spawn_error(&self, source: std::io::Error) -> ApiError {
        ApiError::Spawn {
            binary: self.inner.binary.clone(),
            source,
        }
    }

    /// Runs `args` to the end; returns its stdout, or the runtime's error as
    /// a typed one.
    async fn call(&self, op: &'static str, args: &[&str]) -> Result<Vec<u8>> {
        self.run_to_end(op, args, false).await
    }

    /// [`Client::call`] for a command that puts a process into a container.
    async fn call_in(&self, op: &'static str, args: &[&str]) -> Result<Vec<u8>> {
        self.run_to_end(op, args, true).await
    }

    async fn run_to_end(&self, op: &'static str, args: &[&str], enters: bool) -> Result<Vec<u8>> {
        let Started {
            mut cmd,
            log,
            _view,
        } = self.command(args, enters)?;
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(e))?;
        // Read aside while the runtime runs (a long answer fills the pipe),
        // and not necessarily to its end: a sandbox's init may hold it.
        let out = Arc::new(std::sync::Mutex::new(Vec::new()));
        let reader = child.stdout.take().map(|mut pipe| {
            let out = out.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n @ 1..) = tokio::io::AsyncReadExt::read(&mut pipe, &mut buf).await {
                    out.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend_from_slice(&buf[..n]);
                }
            })
        });
        let status = child.wait().await.map_err(|e| self.spawn_error(e))?;
        if let Some(reader) = reader {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), reader).await;
        }
        let out = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
        let errors = exec::errors(&log.drain());
        if status.success() {
            return Ok(out);
        }
        Err(ApiError::from_runtime(op, args, &errors, status.code()))
    }
}

/// A runtime command ready to start, with what it needs until it has.
struct Started {
    cmd: Command,
    log: exec::LogPipe,
    _view: Option<std::sync::Arc<binary::View>>,
}

/// A sandbox of a [`Client`].
#[derive(Clone, Debug)]
pub struct Sandbox {
    client: Client,
    name: String,
}

impl Sandbox {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs a command to its end and collects its output.
    pub async fn exec(&self, req: ExecRequest) -> Result<ExecOutput> {
        let mut stream = self.exec_streaming(req).await?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        while let Some(chunk) = stream.next().await {
            match chunk.stream {
                Stream::Stdout => stdout.extend_from_slice(&chunk.data),
                Stream::Stderr => stderr.extend_from_slice(&chunk.data),
            }
        }
        let status = stream.wait().await?;
        Ok(ExecOutput {
            status,
            stdout,
            stderr,
        })
    }

    /// Starts a command; its output comes as [`Chunk`]s in order, then
    /// [`ExecStream::wait`] gives its status. Reading slowly slows the
    /// command down (bounded buffers); dropping the stream kills it.
    pub async fn exec_streaming(&self, req: ExecRequest) -> Result<ExecStream> {
        exec::start(&self.client, &self.name, req).await
    }

    /// State, profile, limits and what is left of a budget.
    pub async fn info(&self) -> Result<SandboxInfo> {
        let name = self.name.clone();
        self.client
            .local("info", &self.name, move |ctx| {
                crate::store::validate_id(&name)?;
                crate::sandbox::state::entry(ctx, &name)
            })
            .await
    }

    /// Its init runs (a suspended sandbox is alive).
    pub async fn is_alive(&self) -> Result<bool> {
        match self.info().await {
            Ok(i) => Ok(i.state == "running" || i.state == "paused"),
            Err(ApiError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Freezes every process of the sandbox (cgroup freezer).
    pub async fn suspend(&self) -> Result<()> {
        self.client
            .call("suspend", &["pause", &self.name])
            .await
            .map(drop)
    }

    pub async fn resume(&self) -> Result<()> {
        self.client
            .call("resume", &["resume", &self.name])
            .await
            .map(drop)
    }

    /// Saves the workdir as `snapshot`.
    pub async fn snapshot(&self, snapshot: &str) -> Result<()> {
        self.client
            .call("snapshot", &["sandbox", "snapshot", &self.name, snapshot])
            .await
            .map(drop)
    }

    /// Puts the workdir saved as `snapshot` back.
    pub async fn restore(&self, snapshot: &str) -> Result<()> {
        self.client
            .call("restore", &["sandbox", "restore", &self.name, snapshot])
            .await
            .map(drop)
    }

    /// Live usage from the sandbox's cgroup (`Stats::usage`), its state, and
    /// its network's counters and DNS audit.
    pub async fn resource_usage(&self) -> Result<Stats> {
        let name = self.name.clone();
        self.client
            .local("resource_usage", &self.name, move |ctx| {
                crate::store::validate_id(&name)?;
                crate::sandbox::state::stats(ctx, &name)
            })
            .await
    }

    /// What is left of its wall-time budget; `None` without one.
    pub async fn time_remaining(&self) -> Result<Option<std::time::Duration>> {
        let info = self.info().await?;
        Ok(info.time_remaining_ms.map(std::time::Duration::from_millis))
    }

    /// Removes the sandbox, whatever runs in it.
    pub async fn destroy(&self) -> Result<()> {
        let name = self.name.clone();
        self.client
            .local("destroy", &self.name, move |ctx| {
                crate::sandbox::state::rm_one(ctx, &name, true)
            })
            .await
    }
}
