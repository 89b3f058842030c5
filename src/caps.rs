//! This process's capabilities, as /proc/self/status reports them.

pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_RESOURCE: u32 = 24;

/// Whether `cap` is in this process's effective set.
pub fn has_effective(cap: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let hex = s.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
            u64::from_str_radix(hex, 16).ok()
        })
        .is_some_and(|caps| caps & (1 << cap) != 0)
}
