//! Network egress policy: allowlist entries ([`entry`]) and their
//! compilation into one nftables table ([`compile`]). Pure: names are
//! resolved by the caller, and [`crate::nft`] installs the result.

pub mod compile;
pub mod entry;

pub use compile::{Allow, Policy, Ruleset, compile, resolve};
pub use entry::{Cidr, Dest, Entry, Ports, Proto};
