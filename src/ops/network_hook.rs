//! `sbx-oci hook network --policy FILE [--down]` (hidden): the prestart
//! (and poststop) hook that puts a container's egress policy in force. The
//! work is [`crate::network`]'s; this turns its error into the hook's
//! answer.

use crate::network::{self, error_file};
use crate::{Error, Result, cli};

/// Every error is one line on stderr, "sbx-oci: network hook: ...".
///
/// The message is also written beside the policy file ([`error_file`]).
/// Run by sbx-oci itself, the hook prints nothing: `create` reads the file
/// and makes it its own one-line error, instead of the hook's line plus a
/// generic "hook failed" one. Run by another runtime (runc), it prints.
pub fn hook(args: &cli::NetworkHook) -> Result<i32> {
    let Err(e) = network::run(args) else {
        return Ok(0);
    };
    let msg = format!("network hook: {e}");
    let _ = std::fs::write(error_file(&args.policy), &msg);
    if run_by_sbx_oci() {
        return Ok(1);
    }
    Err(Error::InvalidArgument(msg))
}

/// Whether the process that runs this hook is sbx-oci (its command name is
/// ours), not another runtime.
fn run_by_sbx_oci() -> bool {
    let comm = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok();
    let parent = nix::unistd::getppid().to_string();
    matches!((comm(&parent), comm("self")), (Some(p), Some(s)) if p == s)
}
