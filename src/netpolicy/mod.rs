//! Network egress policy: allowlist entries ([`entry`]), their compilation
//! into one nftables table ([`compile`]) and the policy file and OCI
//! annotations that carry them to the hook ([`file`]); and the host's table
//! for standalone sandboxes' veth links ([`host`]). Pure, except for
//! [`file`]'s readers: names are resolved by the caller, and [`crate::nft`]
//! installs the result.

pub mod compile;
pub mod dns;
pub mod entry;
pub mod file;
pub mod host;

pub use compile::{Allow, Policy, Ruleset, compile, resolve};
pub use entry::{Cidr, Dest, Entry, Ports, Proto};
pub use file::{Mode, PolicyFile};
pub use host::{HostElement, host_ruleset};
