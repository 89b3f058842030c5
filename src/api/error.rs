//! The API's errors: what went wrong, typed, with the field or sandbox it
//! is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A field of the spec (or the name) that cannot be used, named as in
    /// the SandboxSpec JSON (e.g. `limits.memory_bytes`, `network.allow`).
    #[error("{field}: {message}")]
    Spec { field: String, message: String },

    #[error("sandbox {0:?} does not exist")]
    NotFound(String),

    #[error("sandbox {0:?} already exists")]
    AlreadyExists(String),

    /// Its wall-time budget (limits.budget) is used up: it runs no more
    /// commands.
    #[error("sandbox {0:?} has used all of its wall-time budget")]
    BudgetExhausted(String),

    /// The operation is not possible in the sandbox's state (e.g. exec in a
    /// suspended one).
    #[error("{0}")]
    WrongState(String),

    /// Anything else the runtime refused, with its message.
    #[error("{op}: {message}")]
    Runtime { op: &'static str, message: String },

    #[error("cannot run {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },

    /// The runtime's output was not what this API expects (a binary of
    /// another version?).
    #[error("{op}: unexpected answer from the runtime: {message}")]
    Protocol { op: &'static str, message: String },
}

impl ApiError {
    /// A library error met before anything ran (`what` names the input
    /// when the error does not name a field).
    pub(crate) fn from_library(what: &str, e: crate::Error) -> ApiError {
        match e {
            crate::Error::SandboxSpec { field, message } => ApiError::Spec { field, message },
            crate::Error::NetworkEntry { entry, reason } => ApiError::Spec {
                field: "network.allow".into(),
                message: format!("{entry:?}: {reason}"),
            },
            other => ApiError::Spec {
                field: what.into(),
                message: other.to_string(),
            },
        }
    }

    /// An error of an in-process call about sandbox `name`.
    pub(crate) fn from_error(op: &'static str, name: &str, e: crate::Error) -> ApiError {
        match e {
            crate::Error::NotFound(_) => ApiError::NotFound(name.to_owned()),
            crate::Error::InvalidId { .. } => ApiError::Spec {
                field: "name".into(),
                message: e.to_string(),
            },
            crate::Error::WrongState { .. } => ApiError::WrongState(e.to_string()),
            other => ApiError::Runtime {
                op,
                message: crate::error::chain(&other),
            },
        }
    }

    /// The runtime failed: `errors` are the messages of its error log.
    pub(crate) fn from_runtime(
        op: &'static str,
        args: &[&str],
        errors: &[String],
        code: Option<i32>,
    ) -> ApiError {
        let Some(msg) = errors.last() else {
            return ApiError::Runtime {
                op,
                message: format!("the runtime exited with {code:?} and no error"),
            };
        };
        // The sandbox's name is the operation's last argument.
        let name = args.last().copied().unwrap_or_default().to_owned();
        if let Some(rest) = msg.strip_prefix("sandbox spec: ")
            && let Some((field, message)) = rest.split_once(": ")
        {
            return ApiError::Spec {
                field: field.into(),
                message: message.into(),
            };
        }
        if msg.starts_with("network.allow entry ") {
            return ApiError::Spec {
                field: "network.allow".into(),
                message: msg.trim_start_matches("network.allow entry ").into(),
            };
        }
        if msg.contains("has used all of its wall-time budget") {
            return ApiError::BudgetExhausted(name);
        }
        if msg.ends_with("does not exist") && msg.starts_with("container ") {
            return ApiError::NotFound(name);
        }
        if msg.ends_with("already exists") && msg.starts_with("container ") {
            return ApiError::AlreadyExists(name);
        }
        // The runtime's WrongState: "cannot OP container ID: it is STATUS".
        let wrong_state = msg.starts_with("cannot ") && msg.contains(": it is ");
        if wrong_state || msg.contains("is paused") {
            return ApiError::WrongState(msg.clone());
        }
        ApiError::Runtime {
            op,
            message: msg.clone(),
        }
    }
}
