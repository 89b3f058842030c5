//! sbx-oci: a runc-compatible OCI runtime for running untrusted code, built on
//! youki's libcontainer.
//!
//! Layers (data flows down, effects happen only at the bottom):
//! - [`cli`]: clap definitions of runc's command line; parsing only.
//! - [`ops`]: one module per OCI operation (create, start, run, ...).
//! - effects at the edge: [`store`] (the state directory), [`selfexe`] (the
//!   runtime binary's protection), [`cgroup`], [`logging`], [`copyup`], [`nft`]
//!   (the network policy's nftables table), [`network`] (a container's
//!   egress: rules, way out, DNS gatekeeper), libcontainer itself.
//! - pure models: [`sandbox`] (SandboxSpec → OCI config), [`netpolicy`]
//!   (allowlist → nftables ruleset).

pub mod api;
pub mod caps;
pub mod cgroup;
pub mod cli;
pub mod confcheck;
pub mod console;
pub mod context;
pub mod copyup;
pub mod daemon;
pub mod error;
pub mod fnv;
pub mod hooks;
pub mod idle_init;
pub mod idmap;
pub mod logging;
pub mod netpolicy;
pub mod network;
pub mod nft;
pub mod ops;
pub mod orphans;
pub mod rtnl;
pub mod safecopy;
pub mod sandbox;
pub mod seccomp;
pub mod selfexe;
pub mod signal;
pub mod store;
pub mod teardown;
pub mod units;
pub mod uplink;

pub use error::{Error, Result};
