//! Signal names and numbers as runc accepts them: "9", "KILL", "SIGKILL", "kill".

use nix::sys::signal::Signal;

use crate::{Error, Result};

pub fn parse(input: &str) -> Result<Signal> {
    let bad = || {
        Error::InvalidArgument(format!(
            "invalid signal {input:?}: give a number (e.g. 15) or a name (e.g. TERM or SIGTERM)"
        ))
    };
    if let Ok(n) = input.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| bad());
    }
    let upper = input.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse::<Signal>().map_err(|_| bad())
}

/// SIGKILL to `pid` and all its descendants (children first found, then
/// killed parents first so nothing can fork away).
pub fn kill_tree(pid: nix::unistd::Pid) {
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        all.extend(children(all[i]));
        i += 1;
    }
    for p in all {
        let _ = nix::sys::signal::kill(p, Signal::SIGKILL);
    }
}

fn children(pid: nix::unistd::Pid) -> Vec<nix::unistd::Pid> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .map(nix::unistd::Pid::from_raw)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names() {
        assert_eq!(parse("9").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("15").unwrap(), Signal::SIGTERM);
        assert_eq!(parse("KILL").unwrap(), Signal::SIGKILL);
        assert_eq!(parse("sigusr1").unwrap(), Signal::SIGUSR1);
        assert_eq!(parse("SIGHUP").unwrap(), Signal::SIGHUP);
    }

    #[test]
    fn rejects_unknown() {
        for bad in ["0", "99", "-1", "FOO", ""] {
            let msg = parse(bad).unwrap_err().to_string();
            assert!(msg.contains("invalid signal"), "{msg}");
        }
    }
}
