//! The core's error type. The HTTP layer maps each kind to one status code, in one place.

use std::fmt;

/// Errors from the domain. User errors and internal errors are distinct variants; the
/// message of a user error is shown to the caller, an internal error's only in the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request is malformed or not allowed by the object's configuration (HTTP 400).
    #[error("{0}")]
    InvalidRequest(String),
    /// The path or object does not exist (HTTP 404).
    #[error("{0}")]
    NotFound(String),
    /// The caller may not do this (HTTP 403, always the same body).
    #[error("permission denied")]
    PermissionDenied,
    /// A backend refused the operation, with its reason (HTTP 403).
    #[error("{0}")]
    BackendDenied(String),
    /// A write expected a state that changed meanwhile (a compare-and-set lost to another
    /// writer) and changed nothing; reading again and retrying may succeed (HTTP 409).
    #[error("{0}")]
    Conflict(String),
    /// A dependency (backend instance, store) cannot serve now (HTTP 503).
    #[error("{0}")]
    Unavailable(String),
    /// The broker is sealed (HTTP 503).
    #[error("broker is sealed")]
    Sealed,
    /// A bug or an unexpected failure (HTTP 500). Details are logged, never sent.
    #[error("internal error: {context}")]
    Internal {
        /// What the broker was doing.
        context: String,
        /// The underlying cause.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
}

impl Error {
    /// A 400 with a message.
    pub fn invalid(message: impl fmt::Display) -> Self {
        Self::InvalidRequest(message.to_string())
    }

    /// A 500 without a source.
    pub fn internal(context: impl fmt::Display) -> Self {
        Self::Internal {
            context: context.to_string(),
            source: None,
        }
    }

    /// A 500 keeping its cause.
    pub fn internal_from(
        context: impl fmt::Display,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Internal {
            context: context.to_string(),
            source: Some(Box::new(source)),
        }
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "store unavailable");
                Self::Unavailable("storage is unavailable".into())
            }
            crate::store::StoreError::Gone => {
                Self::InvalidRequest("it refers to something that no longer exists".into())
            }
            crate::store::StoreError::ExpectationFailed => {
                Self::Conflict("it was changed concurrently; try again".into())
            }
            other => Self::internal_from("storage", other),
        }
    }
}

/// Shorthand for results of the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;
