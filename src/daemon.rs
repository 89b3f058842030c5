//! For processes that live on after the one that forked them (the DNS
//! gatekeeper, an exec's watchdog).

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};

/// Standard streams to /dev/null, every other descriptor but `keep` closed:
/// whoever started us may be reading our stdout and stderr until they close.
pub fn detach_fds(keep: &[RawFd]) {
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closes a descriptor this process owns and no longer uses.
            unsafe { libc::close(fd) };
        }
    }
}
