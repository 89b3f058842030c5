//! `ps`: the processes in a container's cgroup, as a JSON array of pids or as
//! ps(1)'s table filtered to them.

use std::io::Write;
use std::process::Command;

use super::Context;
use crate::cgroup::Cgroup;
use crate::cli::{self, ListFormat};
use crate::{Error, Result};

pub fn ps(ctx: &Context, args: &cli::Ps, out: &mut dyn Write) -> Result<()> {
    let container = ctx.store.load(&args.container_id)?;
    let pids: Vec<i32> = Cgroup::of(&container)?
        .pids()?
        .into_iter()
        .map(|p| p.as_raw())
        .collect();
    let write_err = Error::output;
    if args.format == ListFormat::Json {
        let json = serde_json::to_string(&pids).unwrap_or_else(|_| "[]".into());
        return writeln!(out, "{json}").map_err(write_err);
    }
    let ps_args: Vec<String> = if args.ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.ps_args.clone()
    };
    let output = Command::new("ps")
        .args(&ps_args)
        .output()
        .map_err(|e| Error::io("cannot run ps(1) (install procps)", e))?;
    if !output.status.success() {
        return Err(Error::InvalidArgument(format!(
            "ps {}: {}",
            ps_args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_col = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| Error::InvalidArgument("ps output has no PID column".into()))?;
    writeln!(out, "{header}").map_err(write_err)?;
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_col)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            writeln!(out, "{line}").map_err(write_err)?;
        }
    }
    Ok(())
}
