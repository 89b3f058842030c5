//! The container's cgroup, through libcgroups: the effects behind kill --all,
//! ps, update and events.

use libcgroups::common::{
    AnyCgroupManager, CgroupConfig, CgroupManager, ControllerOpt, FreezerState,
    create_cgroup_manager,
};
use libcgroups::stats::Stats;
use libcontainer::container::Container;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use crate::{Error, Result};

pub struct Cgroup {
    id: String,
    path: std::path::PathBuf,
    manager: AnyCgroupManager,
}

impl Cgroup {
    pub fn of(container: &Container) -> Result<Self> {
        let id = container.id();
        let config = container
            .spec()
            .map_err(|e| Error::container("read config of", id, e))?;
        Self::at(id, config.cgroup_path, container.systemd())
    }

    /// The cgroup at `path` (a cgroupsPath as libcontainer saved it) of
    /// container `id`.
    pub fn at(id: &str, path: std::path::PathBuf, systemd: bool) -> Result<Self> {
        let manager = create_cgroup_manager(CgroupConfig {
            cgroup_path: path.clone(),
            systemd_cgroup: systemd,
            container_name: id.to_owned(),
        })
        .map_err(|e| Error::Cgroup {
            id: id.to_owned(),
            message: crate::error::chain(&e),
        })?;
        Ok(Cgroup {
            id: id.to_owned(),
            path,
            manager,
        })
    }

    /// SIGKILL to every process in the cgroup, thawed first (a frozen v1
    /// task does not die), until it is empty: within 5 s or an error. A
    /// cgroup that does not exist (yet) is empty.
    pub fn kill_all(&self) -> Result<()> {
        let mut thawed = false;
        kill_until_empty(&self.id, || {
            if !thawed {
                let _ = self.manager.freeze(FreezerState::Thawed);
                thawed = true;
            }
            self.manager.get_all_pids().unwrap_or_default()
        })
    }

    pub fn remove(&self) -> Result<()> {
        self.manager
            .remove()
            .map_err(|e| self.err("cannot remove the cgroup", e))
    }

    fn err(&self, what: &str, e: impl std::error::Error + 'static) -> Error {
        Error::Cgroup {
            id: self.id.clone(),
            message: format!("{what}: {}", crate::error::chain(&e)),
        }
    }

    pub fn pids(&self) -> Result<Vec<Pid>> {
        self.manager
            .get_all_pids()
            .map_err(|e| self.err("cannot list processes", e))
    }

    /// The cgroup's figures, CPU times in nanoseconds on v1 and v2 alike:
    /// libcgroups passes v2's cpu.stat on in microseconds (`usage_usec`)
    /// where v1's cpuacct is in nanoseconds (runc reports nanoseconds on
    /// both, and `events --stats` readers expect it).
    ///
    /// On v2, libcgroups fails outright when one controller's files are
    /// missing, and a systemd scope has no hugetlb files (systemd does not
    /// enable that controller for it): the figures are then read from the
    /// files of the controllers that are there ([`v2_stats`]).
    pub fn stats(&self) -> Result<Stats> {
        let v1 = matches!(self.manager, AnyCgroupManager::V1(_));
        let mut stats = match self.manager.stats() {
            Ok(stats) => stats,
            Err(e) if !v1 => {
                let dir = self
                    .v2_dir()
                    .ok_or_else(|| self.err("cannot read statistics", e))?;
                return Ok(v2_stats(&dir));
            }
            Err(e) => return Err(self.err("cannot read statistics", e)),
        };
        if !v1 {
            let usage = &mut stats.cpu.usage;
            for ns in [
                &mut usage.usage_total,
                &mut usage.usage_user,
                &mut usage.usage_kernel,
            ] {
                *ns = ns.saturating_mul(1000);
            }
        }
        Ok(stats)
    }

    /// The cgroup's directory under a hierarchy's root (see [`relative_dir`]).
    fn v2_dir(&self) -> Option<std::path::PathBuf> {
        relative_dir(&self.path).map(|rel| std::path::Path::new("/sys/fs/cgroup").join(rel))
    }

    /// How many times the kernel's OOM killer killed a process of the
    /// cgroup (v2 memory.events, or v1 memory.oom_control); 0 if unknown.
    pub fn oom_kills(&self) -> u64 {
        relative_dir(&self.path).map_or(0, |rel| oom_kills_at(&rel))
    }

    pub fn thaw(&self) -> Result<()> {
        self.manager
            .freeze(FreezerState::Thawed)
            .map_err(|e| self.err("cannot thaw", e))
    }

    pub fn apply(&self, resources: &LinuxResources) -> Result<()> {
        self.manager
            .apply(&ControllerOpt {
                resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| self.err("cannot apply resources", e))
    }
}

/// Whether the cgroup of a stopped `container` may still hold processes,
/// from one cgroup.procs file read directly (no cgroup manager, which
/// parses the mount table for every v1 controller); true when it cannot
/// tell (a systemd path, no config).
pub fn may_have_processes(container: &Container) -> bool {
    let Ok(config) = container.spec() else {
        return true;
    };
    let path = config.cgroup_path;
    // Without systemd, libcgroups puts a relative path (":youki:<id>" when
    // the config names none) under each hierarchy's root, as an absolute one.
    if container.systemd() {
        return true;
    }
    let rel = path.strip_prefix("/").unwrap_or(&path);
    let base = std::path::Path::new("/sys/fs/cgroup");
    [
        base.join(rel),
        base.join("pids").join(rel),
        base.join("devices").join(rel),
    ]
    .iter()
    .find_map(|dir| std::fs::read_to_string(dir.join("cgroup.procs")).ok())
    .is_none_or(|procs| !procs.trim().is_empty())
}

/// Kills what `pids` (called again after each round, and first) lists
/// until it lists nothing: within 5 s or an error. Each round waits for the
/// exit of what it killed on pidfds rather than for a fixed time (a sandbox's
/// init takes ~1 ms to die here; a 5 ms sleep cost every `rm --force`).
fn kill_until_empty(id: &str, mut pids: impl FnMut() -> Vec<Pid>) -> Result<()> {
    use std::os::fd::AsFd;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = pids();
        if now.is_empty() {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            return Err(Error::Cgroup {
                id: id.to_owned(),
                message: format!("processes {now:?} did not die on SIGKILL within 5 s"),
            });
        }
        let mut fds = Vec::new();
        for pid in now {
            let fd = crate::signal::pidfd_open(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            fds.extend(fd);
        }
        if fds.is_empty() {
            // Gone already, or no pidfds (Linux < 5.3): look again shortly.
            std::thread::sleep(std::time::Duration::from_millis(1));
            continue;
        }
        // Readable once the process has exited (it has left its cgroup then).
        for fd in &fds {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            // A failed wait only means looking again sooner.
            let _ = crate::signal::pidfd_wait(fd.as_fd(), left);
        }
    }
}

/// A container's cgroup directories, one per hierarchy, for its `delete`
/// without a cgroup manager: found in one read of the mount table and of
/// libcontainer's saved config (libcgroups' v1 manager reads the mount
/// table again for each of its 12 controllers: ~0.9 ms of every `run` and
/// `delete` on this project's machine), and used for both the kill and the
/// removal.
pub struct Dirs {
    /// Each directory (present or not), with the file that thaws it and the
    /// value that does (see [`Hierarchy::thaw`]).
    dirs: Vec<(std::path::PathBuf, Option<(&'static str, &'static str)>)>,
}

impl Dirs {
    /// `None` when they cannot be found so (a systemd path, no saved
    /// config): the caller uses the manager.
    pub fn of(container: &Container) -> Option<Dirs> {
        if container.systemd() {
            return None;
        }
        let config = container.spec().ok()?;
        let path = config.cgroup_path;
        let rel = path.strip_prefix("/").unwrap_or(&path);
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let dirs = hierarchies(&mounts)
            .map(|h| (h.root.join(rel), h.thaw))
            .collect();
        Some(Dirs { dirs })
    }

    /// [`Cgroup::kill_all`]: the freezer thawed, the live init (`init`, a
    /// pidfd: see [`crate::store::init_pidfd`]) killed at once, so that it
    /// dies (its namespaces' teardown waits on the kernel) while the
    /// cgroup.procs files are read; then everything they list, until they
    /// list nothing.
    pub fn kill_all(&self, id: &str, init: Option<std::os::fd::OwnedFd>) -> Result<()> {
        // A frozen process takes its SIGKILL only once thawed.
        for (dir, thaw) in &self.dirs {
            if let Some((file, value)) = thaw {
                let _ = std::fs::write(dir.join(file), value);
            }
        }
        if let Some(fd) = &init {
            use std::os::fd::AsFd;
            let _ = crate::signal::pidfd_send(fd.as_fd(), Some(nix::sys::signal::Signal::SIGKILL));
        }
        kill_until_empty(id, || {
            // A directory that is not there (a hierarchy the container has
            // no cgroup in) has nothing to read.
            let mut all: Vec<Pid> = self
                .dirs
                .iter()
                .filter_map(|(d, _)| std::fs::read_to_string(d.join("cgroup.procs")).ok())
                .flat_map(|t| {
                    t.split_whitespace()
                        .filter_map(|p| p.parse().ok())
                        .map(Pid::from_raw)
                        .collect::<Vec<_>>()
                })
                .collect();
            all.sort();
            all.dedup();
            all
        })
    }

    /// Removes the directories of a cgroup whose processes are gone. False
    /// when it cannot be sure it removed everything (a directory that will
    /// not go): libcontainer's delete then does the rest.
    pub fn remove(&self) -> bool {
        self.dirs.iter().all(|(d, _)| match std::fs::remove_dir(d) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        })
    }
}

/// A cgroup hierarchy (v1 or v2) of a mount table.
#[derive(Debug, PartialEq)]
struct Hierarchy<'a> {
    root: &'a std::path::Path,
    /// The file of its cgroups that thaws one, and what thaws it: v1's
    /// freezer controller, v2's cgroup.freeze; None in other v1 hierarchies.
    thaw: Option<(&'static str, &'static str)>,
}

/// The cgroup hierarchies in a mountinfo text.
fn hierarchies(mountinfo: &str) -> impl Iterator<Item = Hierarchy<'_>> {
    mountinfo.lines().filter_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        // fstype, source, super options
        let mut fs = fs.split(' ');
        let fstype = fs.next()?;
        let options = fs.nth(1).unwrap_or_default();
        let thaw = match fstype {
            "cgroup2" => Some(("cgroup.freeze", "0")),
            "cgroup" if options.split(',').any(|o| o == "freezer") => {
                Some(("freezer.state", "THAWED"))
            }
            "cgroup" => None,
            _ => return None,
        };
        let root = std::path::Path::new(mount.split(' ').nth(4)?);
        Some(Hierarchy { root, thaw })
    })
}

/// The directory of a cgroupsPath under a hierarchy's root, without its
/// leading "/": an absolute path as it is; a systemd one
/// (`slice:prefix:name`) where systemd puts the unit, as libcgroups names
/// it (`a-b.slice` is `a.slice/a-b.slice`, no slice is system.slice, `-.slice`
/// the root; the unit is `prefix-name.scope`, or `name` if it is a slice).
pub fn relative_dir(path: &std::path::Path) -> Option<std::path::PathBuf> {
    if path.is_absolute() {
        return Some(path.strip_prefix("/").ok()?.to_path_buf());
    }
    let text = path.to_str()?;
    let (slice, prefix, name) = match text.split(':').collect::<Vec<_>>()[..] {
        [prefix, name] => ("system.slice", prefix, name),
        [slice, prefix, name] => (
            if slice.is_empty() {
                "system.slice"
            } else {
                slice
            },
            prefix,
            name,
        ),
        _ => return None,
    };
    let mut dir = std::path::PathBuf::new();
    let stem = slice.strip_suffix(".slice")?;
    if stem != "-" {
        let mut so_far = String::new();
        for part in stem.split('-') {
            if !so_far.is_empty() {
                so_far.push('-');
            }
            so_far.push_str(part);
            dir.push(format!("{so_far}.slice"));
        }
    }
    dir.push(match name.ends_with(".slice") {
        true => name.to_owned(),
        false if prefix.is_empty() => format!("{name}.scope"),
        false => format!("{prefix}-{name}.scope"),
    });
    Some(dir)
}

/// OOM kills in the cgroup at `path` (a cgroupsPath), read from one file
/// without building a cgroup manager: cheap enough for every sandbox run.
pub fn oom_kills_at(path: &std::path::Path) -> u64 {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let base = std::path::Path::new("/sys/fs/cgroup");
    [
        base.join("memory").join(rel).join("memory.oom_control"),
        base.join(rel).join("memory.events"),
    ]
    .iter()
    .filter_map(|f| std::fs::read_to_string(f).ok())
    .find_map(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
    })
    .unwrap_or(0)
}

/// A v2 cgroup's figures from the files of the controllers it has (cpu,
/// memory, pids, io; each one absent is left at zero), CPU times in
/// nanoseconds.
pub fn v2_stats(dir: &std::path::Path) -> Stats {
    use libcgroups::stats::BlkioDeviceStat;
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).unwrap_or_default();
    let keyed = |file: &str, key: &str| -> u64 {
        read(file)
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    // "max" is no limit: u64::MAX, as libcgroups reports it.
    let single = |file: &str| -> u64 {
        match read(file).trim() {
            "max" => u64::MAX,
            v => v.parse().unwrap_or(0),
        }
    };
    let mut stats = Stats::default();
    let cpu = &mut stats.cpu.usage;
    cpu.usage_total = keyed("cpu.stat", "usage_usec").saturating_mul(1000);
    cpu.usage_user = keyed("cpu.stat", "user_usec").saturating_mul(1000);
    cpu.usage_kernel = keyed("cpu.stat", "system_usec").saturating_mul(1000);
    let memory = &mut stats.memory.memory;
    memory.usage = single("memory.current");
    memory.max_usage = single("memory.peak");
    memory.limit = single("memory.max");
    memory.fail_count = keyed("memory.events", "max");
    stats.pids.current = single("pids.current");
    stats.pids.limit = single("pids.max");
    for line in read("io.stat").lines() {
        let mut fields = line.split_whitespace();
        let Some((major, minor)) = fields.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (major.parse(), minor.parse()) else {
            continue;
        };
        for field in fields {
            let op = match field.split_once('=') {
                Some(("rbytes", v)) => ("read", v),
                Some(("wbytes", v)) => ("write", v),
                _ => continue,
            };
            stats.blkio.service_bytes.push(BlkioDeviceStat {
                major,
                minor,
                op_type: Some(op.0.to_owned()),
                value: op.1.parse().unwrap_or(0),
            });
        }
    }
    stats
}

#[cfg(test)]
mod tests {
    use super::{Hierarchy, hierarchies, relative_dir};
    use std::path::Path;

    #[test]
    fn hierarchies_are_the_cgroup_mounts_of_a_mount_table() {
        let table = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
24 22 0:21 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
25 24 0:22 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
26 24 0:23 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
27 24 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
28 22 0:25 / /mnt/a\\040b rw shared:13 - cgroupfs x rw
29 24 0:26 / /sys/fs/cgroup/freezer rw,nosuid shared:14 - cgroup cgroup rw,freezer
";
        let found: Vec<_> = hierarchies(table).collect();
        let h = |root, thaw| Hierarchy {
            root: Path::new(root),
            thaw,
        };
        assert_eq!(
            found,
            [
                h("/sys/fs/cgroup/unified", Some(("cgroup.freeze", "0"))),
                h("/sys/fs/cgroup/systemd", None),
                h("/sys/fs/cgroup/cpu,cpuacct", None),
                h("/sys/fs/cgroup/freezer", Some(("freezer.state", "THAWED"))),
            ]
        );
    }

    #[test]
    fn cgroups_paths_name_their_directories() {
        for (path, dir) in [
            ("/sbx-oci-a", "sbx-oci-a"),
            ("/a/b", "a/b"),
            ("system.slice:sbx-oci:a", "system.slice/sbx-oci-a.scope"),
            ("machine.slice:libpod:x", "machine.slice/libpod-x.scope"),
            (
                "test-a-b.slice:docker:foo",
                "test.slice/test-a.slice/test-a-b.slice/docker-foo.scope",
            ),
            (":docker:foo", "system.slice/docker-foo.scope"),
            ("-.slice:p:n", "p-n.scope"),
            ("system.slice:p:kube.slice", "system.slice/kube.slice"),
        ] {
            assert_eq!(
                relative_dir(Path::new(path)).unwrap(),
                Path::new(dir),
                "{path}"
            );
        }
        assert_eq!(relative_dir(Path::new("a:b:c:d")), None);
        assert_eq!(relative_dir(Path::new("nodot:p:n")), None);
    }
}
