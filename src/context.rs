//! What every operation on a state root needs: the root and how cgroups
//! are managed (the CLI's global flags, or an API client's settings).

use std::path::Path;

use libcontainer::container::{Container, ContainerStatus};

use crate::store::Store;
use crate::{Error, Result};

/// What every operation needs from the global flags.
#[derive(Clone, Debug)]
pub struct Context {
    pub store: Store,
    pub systemd_cgroup: bool,
}

impl Context {
    pub fn new(root: &Path, systemd_cgroup: bool) -> Result<Self> {
        if systemd_cgroup && !Path::new("/run/systemd/system").exists() {
            return Err(Error::InvalidArgument(
                "--systemd-cgroup needs systemd running as init (no /run/systemd/system here); \
                 drop the flag to manage cgroups through cgroupfs"
                    .into(),
            ));
        }
        // Absolute: hooks and bundles name paths under it.
        let root = std::path::absolute(root)
            .map_err(|e| Error::io(format!("--root {}", root.display()), e))?;
        Ok(Context {
            store: Store::new(root),
            systemd_cgroup,
        })
    }
}

/// The lower-case status word the OCI state uses.
pub fn status_word(status: ContainerStatus) -> &'static str {
    match status {
        ContainerStatus::Creating => "creating",
        ContainerStatus::Created => "created",
        ContainerStatus::Running => "running",
        ContainerStatus::Stopped => "stopped",
        ContainerStatus::Paused => "paused",
    }
}

pub fn wrong_state(op: &'static str, c: &Container, hint: &'static str) -> Error {
    Error::WrongState {
        op,
        id: c.id().to_owned(),
        status: status_word(c.status()).to_owned(),
        hint,
    }
}
