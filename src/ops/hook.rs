//! `run-hook` (hidden): what a prestart or createRuntime hook is run through.
//!
//! The runtime spec's lifecycle has the container `created` once its runtime
//! environment exists ("created: the runtime has finished the create
//! operation (after step 2 in the lifecycle)"), and runs the prestart and
//! createRuntime hooks after that (steps 3 and 4), with "the state of the
//! container" on their stdin. libcontainer 0.7 runs them with the status it
//! is still in, "creating". For a config with such hooks, `create` hands
//! libcontainer a rewritten config whose hooks are `/proc/self/exe run-hook
//! [--bundle DIR] PATH ARGS...` (see `copyup::prepare`): libcontainer still
//! runs them where and when it always does, and this reads the state,
//! changes "creating" to "created" (and the bundle to the real one), and runs
//! the original hook with it. The hook's environment, output and exit status
//! are its own; killed on timeout, this takes the hook with it.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::{Error, Result, cli};

pub fn hook(args: &cli::Hook) -> Result<i32> {
    let mut input = Vec::new();
    std::io::stdin()
        .read_to_end(&mut input)
        .map_err(|e| Error::io("hook: cannot read the container state", e))?;
    let state = match serde_json::from_slice::<Value>(&input) {
        Ok(mut state) => {
            if state["status"] == "creating" {
                state["status"] = Value::from("created");
            }
            if let Some(bundle) = &args.bundle {
                state["bundle"] = Value::from(bundle.to_string_lossy().into_owned());
            }
            serde_json::to_vec(&state).unwrap_or(input)
        }
        Err(_) => input,
    };
    let mut cmd = Command::new(&args.path);
    if let Some((arg0, rest)) = args.args.split_first() {
        cmd.arg0(arg0).args(rest);
    }
    cmd.stdin(Stdio::piped());
    // SAFETY: prctl is async-signal-safe; it only sets a flag of this process.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::io(format!("hook {}", args.path.display()), e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin closes the pipe: not an error.
        let _ = stdin.write_all(&state);
    }
    let status = child
        .wait()
        .map_err(|e| Error::io(format!("hook {}", args.path.display()), e))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
