//! `sandbox stats NAME`: live usage from the sandbox's cgroup, as JSON.

pub use crate::sandbox::state::stats;
