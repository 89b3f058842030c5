//! Commands in a sandbox: `sbx-oci sandbox exec` as a child, its stdout and
//! stderr read into a bounded channel of chunks.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::{ApiError, Client, Result};

/// Chunks buffered between the pipes and the caller: beyond this, the
/// readers stop reading and the command blocks on its writes.
const CHANNEL_CHUNKS: usize = 8;
pub(super) const CHUNK_BYTES: usize = 16 * 1024;

/// A command to run in a sandbox. Unset fields take the sandbox's values
/// (its user, workdir and environment).
#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    pub program: String,
    pub args: Vec<String>,
    /// Added to the sandbox's environment (or to PATH alone, see
    /// `inherit_env`).
    pub env: Vec<(String, String)>,
    /// false: start from PATH alone instead of the sandbox's environment.
    pub inherit_env: bool,
    pub workdir: Option<PathBuf>,
    /// (uid, gid)
    pub user: Option<(u32, u32)>,
    pub stdin: Option<Vec<u8>>,
    /// Killed after this long (status 124). A sandbox with a budget also
    /// stops it when the budget runs out.
    pub timeout: Option<Duration>,
    /// On a pseudo-terminal of (rows, columns): its output (stdout and
    /// stderr together, as a terminal shows them) comes as stdout chunks,
    /// stdin is typed into it (and echoed, as a terminal does), and
    /// [`ExecStream::resize`] changes its size.
    pub tty: Option<(u16, u16)>,
}

impl ExecRequest {
    pub fn new(program: impl Into<String>) -> ExecRequest {
        ExecRequest {
            program: program.into(),
            inherit_env: true,
            ..Default::default()
        }
    }

    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn inherit_env(mut self, inherit: bool) -> Self {
        self.inherit_env = inherit;
        self
    }

    pub fn workdir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.workdir = Some(dir.into());
        self
    }

    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    pub fn stdin(mut self, bytes: Vec<u8>) -> Self {
        self.stdin = Some(bytes);
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    pub fn tty(mut self, rows: u16, cols: u16) -> Self {
        self.tty = Some((rows, cols));
        self
    }

    pub(super) fn check(&self) -> Result<()> {
        let bad = |field: &str, message: String| ApiError::Spec {
            field: field.into(),
            message,
        };
        if self.program.is_empty() {
            return Err(bad("program", "empty: name the program to run".into()));
        }
        for (k, _) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return Err(bad("env", format!("{k:?} is not a variable name")));
            }
        }
        if let Some(w) = &self.workdir
            && !w.is_absolute()
        {
            return Err(bad("workdir", format!("{} is not absolute", w.display())));
        }
        if self.timeout.is_some_and(|t| t.is_zero()) {
            return Err(bad("timeout", "zero: give a positive duration".into()));
        }
        if self.tty.is_some_and(|(r, c)| r == 0 || c == 0) {
            return Err(bad(
                "tty",
                "zero rows or columns: give the terminal's size".into(),
            ));
        }
        Ok(())
    }

    fn cli_args(&self, name: &str, console: Option<&std::path::Path>) -> Vec<String> {
        let mut a = vec!["sandbox".to_owned(), "exec".to_owned()];
        if let Some(socket) = console {
            a.push("--tty".into());
            a.push(format!("--console-socket={}", socket.display()));
        }
        if let Some(t) = self.timeout {
            a.push(format!("--timeout={}ms", t.as_millis().max(1)));
        }
        for (k, v) in &self.env {
            a.push(format!("--env={k}={v}"));
        }
        if !self.inherit_env {
            a.push("--clear-env".into());
        }
        if let Some(w) = &self.workdir {
            a.push(format!("--workdir={}", w.display()));
        }
        if let Some((u, g)) = self.user {
            a.push(format!("--user={u}:{g}"));
        }
        a.push(name.to_owned());
        a.push("--".into());
        a.push(self.program.clone());
        a.extend(self.args.iter().cloned());
        a
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Output of a command, in the order it was read from each stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// How a command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecStatus {
    /// Its exit status; 128+N when killed by signal N; 124 when timed out.
    pub code: i32,
    /// Killed at its timeout or when the sandbox's budget ran out.
    pub timed_out: bool,
}

#[derive(Clone, Debug)]
pub struct ExecOutput {
    pub status: ExecStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A running command: [`next`](Self::next) until `None`, then
/// [`wait`](Self::wait). Dropped before its end, it kills the command and
/// everything it started.
pub struct ExecStream {
    child: tokio::process::Child,
    chunks: mpsc::Receiver<Chunk>,
    log: LogPipe,
    _spec: Option<SpecPipe>,
    args: Vec<String>,
    done: bool,
    /// `sandbox exec` (its watchdog ends the command when the runtime is
    /// killed) rather than `sandbox run`.
    exec: bool,
    /// The terminal's size, with a pseudo-terminal.
    size: Option<watch::Sender<(u16, u16)>>,
    _console: Option<super::tty::ConsoleDir>,
}

/// With a pseudo-terminal: where the master end comes, and its size.
pub(super) struct Tty {
    listener: tokio::net::UnixListener,
    dir: super::tty::ConsoleDir,
    size: (u16, u16),
}

pub(super) async fn start(client: &Client, name: &str, req: ExecRequest) -> Result<ExecStream> {
    req.check()?;
    let tty = match req.tty {
        Some(size) => {
            let (dir, listener) = super::tty::ConsoleDir::new().map_err(|e| ApiError::Runtime {
                op: "exec",
                message: format!("cannot listen for the terminal: {e}"),
            })?;
            Some(Tty {
                listener,
                dir,
                size,
            })
        }
        None => None,
    };
    let socket = tty.as_ref().map(|t| t.dir.socket());
    let args = req.cli_args(name, socket.as_deref());
    spawn(client, args, req.stdin, None, tty).await
}

/// Runs the runtime with `args` (a command after "--", the sandbox's name
/// just before it) as a stream; `spec`, when given, is kept open for the
/// runtime to read as its `--spec` (already in `args`).
pub(super) async fn spawn(
    client: &Client,
    args: Vec<String>,
    mut stdin: Option<Vec<u8>>,
    spec: Option<SpecPipe>,
    tty: Option<Tty>,
) -> Result<ExecStream> {
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let super::Started {
        mut cmd,
        log,
        _view,
    } = client.command(&argv, true)?;
    // With a terminal, stdin is typed into it, not given to the runtime.
    let typed = if tty.is_some() { stdin.take() } else { None };
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| client.spawn_error(e))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Fed aside, so that a command that writes before it reads cannot
        // deadlock against us; EPIPE (it never read) is no error.
        tokio::spawn(async move {
            let _ = pipe.write_all(&bytes).await;
        });
    }
    let (tx, chunks) = mpsc::channel(CHANNEL_CHUNKS);
    // The runtime's stdout ends when it does (nothing else holds it with a
    // terminal): then the terminal is read out and closed.
    let (gone_tx, gone) = watch::channel(false);
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        tokio::spawn(async move {
            pump(out, Stream::Stdout, tx).await;
            let _ = gone_tx.send(true);
        });
    }
    let (size, console) = match tty {
        Some(t) => {
            let (size_tx, size_rx) = watch::channel(t.size);
            tokio::spawn(super::tty::serve(
                t.listener,
                size_rx,
                typed,
                tx.clone(),
                gone,
            ));
            (Some(size_tx), Some(t.dir))
        }
        None => (None, None),
    };
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, Stream::Stderr, tx));
    }
    let exec = args.get(1).is_some_and(|a| a == "exec");
    Ok(ExecStream {
        child,
        chunks,
        log,
        _spec: spec,
        args,
        done: false,
        exec,
        size,
        _console: console,
    })
}

async fn pump(mut pipe: impl AsyncRead + Unpin, stream: Stream, tx: mpsc::Sender<Chunk>) {
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let chunk = Chunk {
                    stream,
                    data: buf[..n].to_vec(),
                };
                // The receiver is gone: the stream was dropped.
                if tx.send(chunk).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl ExecStream {
    /// The next chunk of output; `None` once both streams have ended.
    pub async fn next(&mut self) -> Option<Chunk> {
        self.chunks.recv().await
    }

    /// Waits for the command's end (reading any output left unread away).
    pub async fn wait(mut self) -> Result<ExecStatus> {
        while self.chunks.recv().await.is_some() {}
        let status = self.child.wait().await.map_err(|e| ApiError::Runtime {
            op: "exec",
            message: format!("cannot wait for the runtime: {e}"),
        })?;
        self.done = true;
        let log = self.log.drain();
        let code = status.code().unwrap_or(128 + 9);
        let timed_out = code == 124
            && log.iter().any(|l| {
                l.level == "warning"
                    && (l.msg.ends_with("killed at its time limit")
                        || l.msg.ends_with("budget ran out"))
            });
        // An error of the runtime itself (the command never ran) is in its
        // log; the command's own exit status is not.
        let errors = errors(&log);
        if !errors.is_empty() {
            // The sandbox's name sits just before "--".
            let end = self.args.iter().position(|a| a == "--").unwrap_or(0);
            let argv: Vec<&str> = self.args[..end].iter().map(String::as_str).collect();
            return Err(ApiError::from_runtime(
                "exec",
                &argv,
                &errors,
                status.code(),
            ));
        }
        Ok(ExecStatus { code, timed_out })
    }

    /// The runtime process's pid (the command is its child).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Gives the command's terminal a new size (the command gets SIGWINCH).
    pub fn resize(&self, rows: u16, cols: u16) -> Result<()> {
        let bad = |message: &str| ApiError::Spec {
            field: "tty".into(),
            message: message.into(),
        };
        if rows == 0 || cols == 0 {
            return Err(bad("zero rows or columns: give the terminal's size"));
        }
        let size = self
            .size
            .as_ref()
            .ok_or_else(|| bad("the command has no terminal (ExecRequest::tty)"))?;
        let _ = size.send((rows, cols));
        Ok(())
    }
}

impl Drop for ExecStream {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(pid) = self.child.id() else { return };
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        if self.exec {
            // The runtime alone: its watchdog then kills the command and
            // what it started, and charges the sandbox's budget for it.
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        } else {
            // The runtime and its descendants: the sandbox's init and what
            // it started.
            crate::signal::kill_tree(pid);
        }
    }
}

/// One line of the runtime's JSON log.
pub(super) struct LogLine {
    pub level: String,
    pub msg: String,
}

/// A pipe for the runtime's JSON log: we keep both ends (close-on-exec),
/// the runtime opens the write end as `/proc/<our pid>/fd/<n>`.
pub(super) struct LogPipe {
    rx: tokio::net::unix::pipe::Receiver,
    write: std::os::fd::OwnedFd,
}

impl LogPipe {
    pub fn new() -> std::io::Result<LogPipe> {
        let (read, write) = std::io::pipe()?;
        Ok(LogPipe {
            rx: tokio::net::unix::pipe::Receiver::from_owned_fd(read.into())?,
            write: write.into(),
        })
    }

    pub fn path(&self) -> String {
        use std::os::fd::AsRawFd;
        format!("/proc/{}/fd/{}", std::process::id(), self.write.as_raw_fd())
    }

    /// The lines that arrived (the runtime has exited: nothing more will),
    /// without waiting for the pipe's end, which we hold ourselves.
    pub fn drain(&self) -> Vec<LogLine> {
        let mut bytes = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = self.rx.try_read(&mut buf) {
            bytes.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter_map(|v| {
                Some(LogLine {
                    level: v["level"].as_str()?.to_owned(),
                    msg: v["msg"].as_str()?.to_owned(),
                })
            })
            .collect()
    }
}

/// A spec handed to the runtime through a pipe: written whole and its
/// write end closed, so the runtime reads it to its end at
/// `/proc/<our pid>/fd/<read end>`, which we keep open until it is done.
pub(super) struct SpecPipe {
    read: std::os::fd::OwnedFd,
}

impl SpecPipe {
    pub fn new(json: &[u8]) -> std::io::Result<SpecPipe> {
        use std::io::Write;
        use std::os::fd::AsRawFd;
        let (read, mut write) = std::io::pipe()?;
        if json.len() > 60 * 1024 {
            // SAFETY: fcntl on a pipe we own; the size is a plain int.
            unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, json.len() + 4096) };
        }
        write.write_all(json)?;
        Ok(SpecPipe { read: read.into() })
    }

    pub fn path(&self) -> String {
        use std::os::fd::AsRawFd;
        format!("/proc/{}/fd/{}", std::process::id(), self.read.as_raw_fd())
    }
}

/// The messages of the log's errors.
pub(super) fn errors(lines: &[LogLine]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l.level == "error")
        .map(|l| l.msg.clone())
        .collect()
}
