//! The one place where errors become HTTP statuses and `{"errors":[…]}` bodies. Internal
//! details are logged here and never sent.

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use keybroker_core::Error;

/// Errors of the HTTP layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// From the core.
    #[error(transparent)]
    Core(#[from] Error),
    /// The body exceeds `max_request_size` (413).
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Malformed input caught at the edge (400).
    #[error("{0}")]
    BadRequest(String),
    /// No such route (404, Vault's "unsupported path").
    #[error("unsupported path")]
    UnsupportedPath,
    /// The route exists but not for this method (405).
    #[error("unsupported operation")]
    UnsupportedOperation,
    /// A path the caller's policies do not reach, said as Vault says it where it names the
    /// path (403): `sys/internal/ui/mounts/:path`.
    #[error("{0}")]
    Forbidden(String),
    /// A PATCH whose body is not a JSON merge patch (415), as Vault refuses it.
    #[error("PATCH requires Content-Type of application/merge-patch+json, provided {0}")]
    UnsupportedMediaType(String),
    /// The body did not arrive within `listener.http_read_timeout` (408).
    #[error("timed out reading the request body")]
    RequestTimeout,
}

impl ApiError {
    /// A 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }
}

/// Renders `{"errors": [...]}` with a status.
pub fn error_body(status: StatusCode, messages: &[&str]) -> Response {
    let body = serde_json::json!({ "errors": messages });
    super::response::json(status, &body)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match &self {
            ApiError::Core(error) => match error {
                Error::InvalidRequest(message) => (StatusCode::BAD_REQUEST, message.clone()),
                Error::NotFound(message) => (StatusCode::NOT_FOUND, message.clone()),
                Error::PermissionDenied => (StatusCode::FORBIDDEN, "permission denied".to_owned()),
                Error::BackendDenied(message) => (StatusCode::FORBIDDEN, message.clone()),
                Error::Conflict(message) => (StatusCode::CONFLICT, message.clone()),
                Error::Unavailable(message) => (StatusCode::SERVICE_UNAVAILABLE, message.clone()),
                Error::Sealed => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Vault is sealed".to_owned(),
                ),
                Error::Internal { .. } => {
                    tracing::error!(error = %error, cause = ?std::error::Error::source(error), "internal error");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal error".to_owned(),
                    )
                }
                // Future kinds default to an internal error until mapped here.
                #[allow(unreachable_patterns)]
                _ => {
                    tracing::error!(error = %error, "unmapped error kind");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal error".to_owned(),
                    )
                }
            },
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, self.to_string()),
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, message.clone()),
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, message.clone()),
            ApiError::UnsupportedPath => (StatusCode::NOT_FOUND, self.to_string()),
            ApiError::UnsupportedOperation => (StatusCode::METHOD_NOT_ALLOWED, self.to_string()),
            ApiError::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, self.to_string()),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, self.to_string())
            }
        };
        error_body(status, &[message.as_str()])
    }
}
