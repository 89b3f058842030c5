//! A persistent sandbox's wall-time budget (`limits.budget`): its
//! `wall_time_ms` shared by all its execs. Time counts while at least one
//! exec runs (the union of their runs, not the sum), so execs that overlap
//! share one deadline: together they cannot overrun the budget, and each
//! is charged only once for the same moment.
//!
//! The ledger (`budget.json` in the sandbox's state directory, changed
//! under a lock on that directory and written whole) holds the time used by
//! past runs, when the current run of overlapping execs began, and which
//! execs are in it. An exec ends its lease itself; when its runtime is
//! killed, its watchdog does (see `watchdog.rs`); when both are gone
//! without a word, the exec counts until someone notices (fail closed).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

const LEDGER: &str = "budget.json";

pub struct Budget {
    dir: PathBuf,
    pub total_ms: u64,
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Ledger {
    /// Used by runs of execs that have ended.
    used_ms: u64,
    /// CLOCK_BOOTTIME (ms) at which the current run began, while one is on.
    since_ms: Option<u64>,
    /// The execs running now, each by its runtime process.
    running: Vec<Proc>,
}

/// A process, by pid and start time (a pid alone may be reused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    pub pid: i32,
    pub start: u64,
}

impl Proc {
    /// This process.
    pub fn me() -> Proc {
        let pid = std::process::id() as i32;
        Proc {
            pid,
            start: start_time(pid).unwrap_or(0),
        }
    }

    fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start)
    }
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks
/// since boot. `None` once it is gone (a zombie is gone too: it runs no
/// more).
fn start_time(pid: i32) -> Option<u64> {
    match crate::store::proc_stat(pid)? {
        (b'Z', _) => None,
        (_, start) => Some(start),
    }
}

/// Milliseconds on CLOCK_BOOTTIME: the same clock in every process, and it
/// runs on while the machine is suspended, as wall time does.
fn now_ms() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut t) };
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

/// An exec's place in the budget: when it must end, and who it is.
#[derive(Clone, Copy, Debug)]
pub struct Lease {
    pub holder: Proc,
    /// When the budget runs out if every exec of the current run goes on.
    pub deadline: Instant,
    /// What was left when it began.
    pub remaining: Duration,
}

impl Ledger {
    /// Ends the run when nothing runs any more, charging it up to `now`.
    fn close_run(&mut self, now: u64) {
        if self.running.is_empty()
            && let Some(since) = self.since_ms.take()
        {
            self.used_ms = self.used_ms.saturating_add(now.saturating_sub(since));
        }
    }

    /// Execs whose runtime is gone without ending its lease (killed, with
    /// its watchdog) are dropped, charged up to now: the command may have
    /// run on.
    fn prune(&mut self, now: u64) {
        self.running.retain(Proc::alive);
        self.close_run(now);
    }

    fn used_at(&self, now: u64) -> u64 {
        let current = self.since_ms.map_or(0, |s| now.saturating_sub(s));
        self.used_ms.saturating_add(current)
    }
}

impl Budget {
    pub fn of(dir: &Path, total_ms: u64) -> Budget {
        Budget {
            dir: dir.to_owned(),
            total_ms,
        }
    }

    fn load(&self) -> Ledger {
        match std::fs::read(self.dir.join(LEDGER)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|_| Ledger {
                // Unreadable (it is written by rename, so not cut short):
                // nothing is left rather than everything.
                used_ms: self.total_ms,
                ..Default::default()
            }),
            Err(_) => Ledger::default(),
        }
    }

    /// What is left now, counting the execs running now (read without the
    /// lock: a look, not a change).
    pub fn remaining(&self) -> Duration {
        let used = self.load().used_at(now_ms());
        Duration::from_millis(self.total_ms.saturating_sub(used))
    }

    /// Runs `change` on the ledger under the directory's lock, and saves it.
    fn update<T>(&self, change: impl FnOnce(&mut Ledger, u64) -> T) -> Result<T> {
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
        let mut ledger = self.load();
        let before = serde_json::to_vec(&ledger).unwrap_or_default();
        let out = change(&mut ledger, now_ms());
        let after = serde_json::to_vec(&ledger).unwrap_or_default();
        if after != before {
            crate::store::write_atomic(&self.dir.join(LEDGER), &after).map_err(io)?;
        }
        Ok(out)
    }

    /// Enters `holder` (the exec's runtime) in the current run; `None` when
    /// nothing is left.
    pub fn begin(&self, holder: Proc) -> Result<Option<Lease>> {
        let total = self.total_ms;
        self.update(|l, now| {
            l.prune(now);
            let left = total.saturating_sub(l.used_at(now));
            if left == 0 {
                return None;
            }
            l.since_ms.get_or_insert(now);
            l.running.push(holder);
            let left = Duration::from_millis(left);
            Some(Lease {
                holder,
                deadline: Instant::now() + left,
                remaining: left,
            })
        })
    }

    /// Ends `holder`'s lease (again is nothing); the run is charged when it
    /// was the last one in it.
    pub fn end(&self, holder: Proc) -> Result<()> {
        self.update(|l, now| {
            l.running.retain(|p| *p != holder);
            l.close_run(now);
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sbx-budget-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn overlapping_execs_share_one_deadline_and_are_charged_once() {
        let d = dir("overlap");
        let b = Budget::of(&d, 10_000);
        let me = Proc::me();
        // Another live process of ours: a child that waits.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let other = Proc {
            pid: child.id() as i32,
            start: start_time(child.id() as i32).unwrap(),
        };
        let t0 = Instant::now();
        let a = b.begin(me).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let c = b.begin(other).unwrap().unwrap();
        // The second starts later with less left, and ends at the same time.
        assert!(c.remaining < a.remaining, "{c:?} {a:?}");
        let skew = c.deadline.max(a.deadline) - c.deadline.min(a.deadline);
        assert!(skew < Duration::from_millis(50), "{skew:?}");
        std::thread::sleep(Duration::from_millis(300));
        b.end(me).unwrap();
        b.end(me).unwrap(); // twice is once
        b.end(other).unwrap();
        let window = t0.elapsed().as_millis() as u64;
        let used = b.load().used_ms;
        // The time anything ran, once (600 ms, more on a loaded machine,
        // where a ledger's write can take long): not the two execs' times
        // summed, which is at least the window and 300 ms more.
        assert!(used >= 600 && used <= window + 2, "{used} ms in {window}");
        assert_eq!(b.load().running, vec![]);
        let _ = child.kill();
        let _ = child.wait();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_exec_whose_runtime_vanished_is_charged_until_noticed() {
        let d = dir("vanished");
        let b = Budget::of(&d, 60_000);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = Proc {
            pid: child.id() as i32,
            start: 1,
        };
        child.wait().unwrap();
        b.begin(gone).unwrap().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        // A look counts it as running; the next exec settles it.
        assert!(b.remaining() <= Duration::from_millis(59_800));
        let me = Proc::me();
        b.begin(me).unwrap().unwrap();
        let l = b.load();
        assert_eq!(l.running, vec![me]);
        assert!(l.used_ms >= 200, "{l:?}");
        b.end(me).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn nothing_left_refuses_and_an_unreadable_ledger_is_spent() {
        let d = dir("spent");
        let b = Budget::of(&d, 100);
        std::fs::write(
            d.join(LEDGER),
            r#"{"used_ms":100,"since_ms":null,"running":[]}"#,
        )
        .unwrap();
        assert!(b.begin(Proc::me()).unwrap().is_none());
        assert_eq!(b.remaining(), Duration::ZERO);
        std::fs::write(d.join(LEDGER), "{").unwrap();
        assert_eq!(b.remaining(), Duration::ZERO);
        assert!(b.begin(Proc::me()).unwrap().is_none());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
