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
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut thawed = false;
        loop {
            let pids = self.manager.get_all_pids().unwrap_or_default();
            if pids.is_empty() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::Cgroup {
                    id: self.id.clone(),
                    message: format!("processes {pids:?} did not die on SIGKILL within 5 s"),
                });
            }
            if !thawed {
                let _ = self.manager.freeze(FreezerState::Thawed);
                thawed = true;
            }
            for pid in pids {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
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

    pub fn stats(&self) -> Result<Stats> {
        self.manager
            .stats()
            .map_err(|e| self.err("cannot read statistics", e))
    }

    /// How many times the kernel's OOM killer killed a process of the
    /// cgroup (v2 memory.events, or v1 memory.oom_control); 0 if unknown.
    pub fn oom_kills(&self) -> u64 {
        oom_kills_at(&self.path)
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
    if container.systemd() || !path.is_absolute() {
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
