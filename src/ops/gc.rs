//! `gc`: removes what runs that crashed (or were killed) left behind and
//! nothing else, then prints what it removed as JSON.
//!
//! - Host NAT entries of sandboxes whose link is gone: their network
//!   namespace died without a `delete` (see `uplink::gc`). Links, routes
//!   and addresses need no collecting: the kernel removes them with the
//!   namespace.
//! - Half-created containers in `--root`: an id directory without
//!   libcontainer state, older than [`GRACE`] so that a `create` in progress
//!   is never touched, with its network leftovers.
//! - Root skeletons of sandboxes that no sandbox names and nobody used for
//!   a while, such as those a change of the host's /etc left behind (see
//!   `sandbox::skeleton`).
//! - Files that interrupted compilations left in the seccomp cache.
//! - DNS gatekeepers whose container's state is gone (they exit with the
//!   container's init; this is for any that did not).

use std::io::Write;
use std::time::{Duration, SystemTime};

use serde_json::json;

use super::Context;
use crate::{Result, uplink};

/// A create takes milliseconds; a directory without state this old is a
/// crash's.
pub const GRACE: Duration = Duration::from_secs(60);

pub fn gc(ctx: &Context, stdout: &mut dyn Write) -> Result<()> {
    // First: a gatekeeper keeps its sandbox's namespace, and so its link,
    // alive, and NAT entries are collected when their link is gone.
    let gatekeepers = crate::network::gatekeeper::gc();
    let mut claims = Vec::new();
    for id in ctx.store.ids()? {
        let dir = ctx.store.dir(&id);
        if ctx.store.container_dir(&id).join("state.json").exists() {
            continue;
        }
        let old = std::fs::metadata(&dir)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age >= GRACE);
        if old {
            let _ = uplink::detach(&id);
            ctx.store.remove(&id)?;
            claims.push(id);
        }
    }
    let net = uplink::gc()?;
    let nat: Vec<_> = net
        .nat
        .iter()
        .map(|(link, addr, owner)| json!({ "link": link, "address": addr, "sandbox": owner }))
        .collect();
    let skeletons = super::sandbox::skeleton::prune(ctx);
    let seccomp = crate::seccomp::prune(ctx.store.root(), GRACE);
    let report = json!({ "half_created": claims, "nat_entries": nat, "skeletons": skeletons,
                         "seccomp_leftovers": seccomp, "dns_gatekeepers": gatekeepers });
    let _ = writeln!(
        stdout,
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    Ok(())
}
