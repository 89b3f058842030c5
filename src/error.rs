//! The library's one error type. Every variant reads as a sentence a user can
//! act on; the binary prints it (with its source chain) as a single line.

use std::path::PathBuf;

use libcontainer::error::LibcontainerError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The context of [`Error::output`].
pub const OUTPUT_LOST: &str = "cannot write output";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: String },

    #[error("container {0:?} does not exist")]
    NotFound(String),

    #[error("container {0:?} already exists")]
    AlreadyExists(String),

    /// An operation that the OCI state machine forbids in the current state.
    #[error("cannot {op} container {id:?}: it is {status}{hint}")]
    WrongState {
        op: &'static str,
        id: String,
        status: String,
        hint: &'static str,
    },

    #[error("bundle {}: {reason}", path.display())]
    Bundle { path: PathBuf, reason: String },

    #[error("{0}")]
    InvalidArgument(String),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{op} container {id:?}: {}", chain(source.as_ref()))]
    Container {
        op: &'static str,
        id: String,
        source: Box<LibcontainerError>,
    },

    #[error("cgroup of container {id:?}: {message}")]
    Cgroup { id: String, message: String },

    #[error("runtime binary protection: {0}")]
    SelfExe(String),

    /// A sandbox spec (file or flags) that cannot be run: names the field.
    #[error("sandbox spec: {field}: {message}")]
    SandboxSpec { field: String, message: String },

    /// A network allowlist entry that does not parse: quotes it.
    #[error("network.allow entry {entry:?}: {reason}")]
    NetworkEntry { entry: String, reason: String },

    /// A network policy that cannot be turned into rules (e.g. a name that
    /// resolved to nothing).
    #[error("network policy: {0}")]
    NetworkPolicy(String),

    /// The kernel refused or could not be asked (netlink); `op` says what
    /// was being done. A failed apply installed nothing.
    #[error("nftables: {op}: {source}")]
    Nftables {
        op: String,
        #[source]
        source: std::io::Error,
    },

    /// A sandbox's way out (veth pair, addresses, routes, NAT) could not be
    /// set up or taken down; `op` says which step.
    #[error("sandbox network: {op}: {source}")]
    Uplink {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// An error writing the command's output (stdout).
    pub fn output(source: std::io::Error) -> Self {
        Error::io(OUTPUT_LOST, source)
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn spec(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::SandboxSpec {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn container(op: &'static str, id: &str, source: LibcontainerError) -> Self {
        Error::Container {
            op,
            id: id.to_owned(),
            source: Box::new(source),
        }
    }
}

/// Renders an error and its sources as "a: b: c", dropping the generic
/// wrapper texts libcontainer puts around the real cause ("io error",
/// "oci spec error", ...) and segments repeated verbatim.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    const GENERIC: &[&str] = &[
        "io error",
        "syscall error",
        "oci spec error",
        "serialization error",
        "io operation failed",
    ];
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let text = e.to_string();
        let redundant =
            GENERIC.contains(&text.as_str()) || parts.last().is_some_and(|p| p.contains(&text));
        if !redundant && !text.is_empty() {
            parts.push(text);
        }
        cur = e.source();
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}
