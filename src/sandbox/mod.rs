//! Sandbox specs: what a platform running untrusted commands says ("run this,
//! let it read these paths and write that one, 512 MB, 30 s, no network"),
//! turned into an ordinary OCI bundle.
//!
//! Data flows one way, and everything here but [`host`] is pure:
//! `SandboxSpec` (file + flags) → [`resolve`](model::SandboxSpec::resolve)
//! with its profile's defaults → [`validate`] → [`translate`] into an OCI
//! `Spec` and a [`RootfsPlan`](translate::RootfsPlan). The effects — looking
//! at host paths, writing the bundle — are in [`host`] and `ops::sandbox`;
//! what a sandbox keeps beside its container, and what is read or removed
//! from it without forking (for the CLI and the API alike), in [`state`];
//! what the host supports, in [`probe`].

pub mod budget;
pub mod flags;
pub mod host;
pub mod info;
pub mod model;
pub mod probe;
pub mod seccomp;
pub mod state;
pub mod translate;
pub mod validate;

pub use model::{Resolved, SandboxSpec};
pub use translate::{RootfsPlan, translate};
