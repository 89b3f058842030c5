//! Network egress policy: allowlist entries ([`entry`]) and name patterns
//! ([`names`]), their compilation into one nftables table ([`compile`]),
//! the DNS gatekeeper's decisions ([`gate`]), the policy file and OCI
//! annotations that carry them to the hook ([`file`]); and the host's table
//! for standalone sandboxes' veth links ([`host`]). Pure, except for
//! [`file`]'s readers: [`crate::nft`] installs the result and
//! [`crate::network`] runs the gatekeeper.

pub mod compile;
pub mod entry;
pub mod file;
pub mod gate;
pub mod host;
pub mod names;

pub use compile::{Allow, Policy, Ruleset, addresses, compile, is_blocked, name_classes};
pub use entry::{Cidr, Dest, Entry, Ports, Proto};
pub use file::{Mode, PolicyFile};
pub use host::{HostElement, host_ruleset};
