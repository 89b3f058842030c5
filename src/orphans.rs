//! Forks of a runtime killed mid-operation.
//!
//! libcontainer forks an intermediate and an init process (comm
//! `youki:[1:INTER]`, `youki:[2:INIT]`) which go on without the process that
//! forked them: an init forked by a `create` killed before it saved the
//! init's pid waits for `start` forever, and an intermediate that has not yet
//! joined the container's cgroup joins it later, so killing the cgroup's
//! members is not enough. They are found by their command line, which is the
//! runtime's (`sbx-oci --root R create ... ID`).

use std::path::Path;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Whether `argv` (a fork's command line) is a runtime's working on
/// container `id` in state root `root` (absolute); `default_root` is the
/// root without `--root`.
pub fn names(argv: &[String], id: &str, root: &Path, default_root: &Path) -> bool {
    if !argv.iter().skip(1).any(|a| a == id) {
        return false;
    }
    let mut given = None;
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        if a == "--root" {
            given = args.next().map(String::as_str);
        } else if let Some(v) = a.strip_prefix("--root=") {
            given = Some(v);
        }
    }
    match given.map(Path::new) {
        None => root == default_root,
        Some(p) if p.is_absolute() => p == root,
        // Relative to a working directory we cannot know for certain.
        Some(p) => root.ends_with(p),
    }
}

/// SIGKILL to every libcontainer fork working on `id` in `root`, then waits
/// (up to 2 s) until they are gone or zombies. Returns how many there were.
pub fn kill_forks(id: &str, root: &Path, default_root: &Path) -> usize {
    let pids = forks(id, root, default_root);
    for pid in &pids {
        let _ = kill(*pid, Signal::SIGKILL);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while pids.iter().any(|p| alive(*p)) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    pids.len()
}

fn forks(id: &str, root: &Path, default_root: &Path) -> Vec<Pid> {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read(e.path().join("comm")).ok()?;
            if !comm.starts_with(b"youki:[") {
                return None;
            }
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let argv: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            names(&argv, id, root, default_root).then_some(Pid::from_raw(pid))
        })
        .collect()
}

fn alive(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, r)| !r.starts_with('Z')))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn a_fork_is_named_by_its_id_and_root() {
        let root = Path::new("/run/x");
        let def = Path::new("/run/sbx-oci");
        assert!(names(
            &argv("sbx-oci --root /run/x create -b /b c1"),
            "c1",
            root,
            def
        ));
        assert!(names(
            &argv("sbx-oci --root=/run/x run c1"),
            "c1",
            root,
            def
        ));
        assert!(names(&argv("sbx-oci --root x exec c1 sh"), "c1", root, def));
        assert!(!names(
            &argv("sbx-oci --root /run/y create c1"),
            "c1",
            root,
            def
        ));
        assert!(!names(
            &argv("sbx-oci --root /run/x create c10"),
            "c1",
            root,
            def
        ));
        assert!(!names(&argv("sbx-oci create -b /c1 c2"), "c1", def, def));
        assert!(names(&argv("sbx-oci create c1"), "c1", def, def));
        assert!(!names(&argv("sbx-oci create c1"), "c1", root, def));
        assert!(!names(&argv("c1"), "c1", def, def));
    }
}
