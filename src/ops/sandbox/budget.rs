//! A persistent sandbox's wall-time budget (`limits.budget`): its
//! `wall_time_ms` shared by all its execs, their wall times summed. What is
//! used is kept in `budget-used-ms` in its state directory, updated under a
//! lock on that directory (concurrent execs add up), written whole.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Error, Result};

const USED_FILE: &str = "budget-used-ms";

pub struct Budget {
    dir: PathBuf,
    pub total_ms: u64,
}

impl Budget {
    pub fn of(dir: &Path, total_ms: u64) -> Budget {
        Budget {
            dir: dir.to_owned(),
            total_ms,
        }
    }

    pub fn used_ms(&self) -> u64 {
        std::fs::read_to_string(self.dir.join(USED_FILE))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn remaining(&self) -> Duration {
        Duration::from_millis(self.total_ms.saturating_sub(self.used_ms()))
    }

    /// Adds `spent` to what is used.
    pub fn charge(&self, spent: Duration) -> Result<()> {
        let io = |e| {
            Error::io(
                format!("cannot update the budget in {}", self.dir.display()),
                e,
            )
        };
        let dir = std::fs::File::open(&self.dir).map_err(io)?;
        // SAFETY: flock on a descriptor we own; released when it closes.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io(std::io::Error::last_os_error()));
        }
        let used = self.used_ms().saturating_add(spent.as_millis() as u64);
        crate::store::write_atomic(&self.dir.join(USED_FILE), used.to_string().as_bytes())
            .map_err(io)
    }
}
