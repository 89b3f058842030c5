//! `sandbox probe [--json]`: what this host gives sandboxes (see
//! `sandbox::probe`), as a table or JSON.

use std::io::Write;

pub use crate::sandbox::info::Probe;
pub use crate::sandbox::probe::probe;
use crate::{Error, Result};

pub fn print(p: &Probe, json: bool, out: &mut dyn Write) -> Result<()> {
    let write_err = Error::output;
    if json {
        let text = serde_json::to_string_pretty(p).unwrap_or_default();
        return writeln!(out, "{text}").map_err(write_err);
    }
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut text = format!(
        "kernel: {}\ncgroup: {} ({})\nseccomp: {} (libseccomp {})\noverlayfs: {}\n\
         idmapped mounts: {}\nnftables: {}\nuser namespaces: {}\npidfd: {}\n",
        p.kernel,
        p.cgroup.version,
        p.cgroup.controllers.join(" "),
        yes(p.seccomp.available),
        p.seccomp.libseccomp.as_deref().unwrap_or("missing"),
        yes(p.overlayfs),
        yes(p.idmapped_mounts),
        yes(p.nftables),
        yes(p.user_namespaces),
        yes(p.pidfd),
    );
    for s in &p.profiles {
        let name = serde_json::to_value(s.profile).unwrap_or_default();
        let mut missing = Vec::new();
        for (ok, what) in [
            (s.memory_limit, "memory limit"),
            (s.cpu_limit, "cpu limit"),
            (s.pids_limit, "pids limit"),
            (s.io_accounting, "I/O accounting"),
            (s.seccomp, "seccomp"),
            (s.network_allowlist, "network allowlist"),
        ] {
            if !ok {
                missing.push(what);
            }
        }
        text.push_str(&match missing.is_empty() {
            true => format!("profile {}: everything\n", name.as_str().unwrap_or("?")),
            false => format!(
                "profile {}: without {}\n",
                name.as_str().unwrap_or("?"),
                missing.join(", ")
            ),
        });
    }
    write!(out, "{text}").map_err(write_err)
}
