//! AWS KMS errors as broker errors (issue 7: access denied → 403 with the backend's
//! reason, disabled or pending-deletion key → 400 naming the state, unreachable → 503).
//!
//! Messages carry the operation, KMS's error code and message (which name the key ARN and
//! the caller's principal, never credentials); the SDK's `Debug` output is never used.

use aws_sdk_kms::{
    config::http::HttpResponse,
    error::{ProvideErrorMetadata, SdkError},
};
use keybroker_plugin_abi::{ErrorKind, PluginError};

pub(crate) use keybroker_plugin_sdk::reference::key_not_found;

/// Maps an SDK error of `operation` (`Encrypt`, …).
pub(crate) fn from_sdk<E>(operation: &str, error: &SdkError<E, HttpResponse>) -> PluginError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error {
        SdkError::TimeoutError(_) => PluginError::unavailable(format!(
            "AWS KMS {operation}: no answer within the operation timeout"
        )),
        SdkError::DispatchFailure(failure) => {
            let why = if failure.is_timeout() {
                "timed out"
            } else if failure.is_io() {
                "connection failed"
            } else {
                "could not send the request"
            };
            PluginError::unavailable(format!("AWS KMS {operation}: {why}{}", causes(error)))
        }
        SdkError::ResponseError(_) => PluginError::unavailable(format!(
            "AWS KMS {operation}: unreadable answer from the endpoint"
        )),
        SdkError::ConstructionFailure(_) => PluginError::internal(format!(
            "AWS KMS {operation}: the request could not be built{}",
            causes(error)
        )),
        SdkError::ServiceError(context) => {
            let status = context.raw().status().as_u16();
            from_code(operation, error.code(), error.message(), status)
        }
        _ => PluginError::internal(format!("AWS KMS {operation}: unexpected SDK error")),
    }
}

/// The causes of an SDK error (e.g. "the profile `x` was not defined" when credentials
/// cannot be loaded), as `: cause: cause`. The SDK's credential types never print secrets.
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = String::new();
    let mut cause = error.source();
    while let Some(error) = cause {
        text.push_str(": ");
        text.push_str(&error.to_string());
        cause = error.source();
    }
    text
}

/// Maps a KMS error code (and its message and HTTP status).
pub(crate) fn from_code(
    operation: &str,
    code: Option<&str>,
    message: Option<&str>,
    status: u16,
) -> PluginError {
    let message = message.unwrap_or("").trim();
    match code {
        Some("AccessDeniedException") if message.is_empty() => PluginError::new(
            ErrorKind::ACCESS_DENIED,
            format!("AWS KMS denied {operation}"),
        ),
        Some("AccessDeniedException") => PluginError::new(
            ErrorKind::ACCESS_DENIED,
            format!("AWS KMS denied {operation}: {message}"),
        ),
        // AWS did not accept the instance's credentials: nothing works until an operator
        // fixes them, so the instance is unavailable, with the reason.
        Some(
            code @ ("UnrecognizedClientException"
            | "InvalidClientTokenId"
            | "InvalidSignatureException"
            | "IncompleteSignature"
            | "ExpiredTokenException"
            | "MissingAuthenticationToken"),
        ) => PluginError::unavailable(format!(
            "AWS KMS {operation}: AWS rejected this instance's credentials ({code})"
        )),
        Some("DisabledException") => PluginError::invalid_request("key is disabled"),
        Some("KMSInvalidStateException") => {
            PluginError::invalid_request(invalid_state_reason(message))
        }
        Some("NotFoundException") => key_not_found(),
        Some("InvalidCiphertextException" | "IncorrectKeyException") => {
            PluginError::invalid_ciphertext("the ciphertext is not valid for this key and AAD")
        }
        Some("InvalidKeyUsageException" | "UnsupportedOperationException") => {
            PluginError::invalid_request(format!(
                "AWS KMS refused {operation} for this key: {message}"
            ))
        }
        Some(
            "ThrottlingException"
            | "LimitExceededException"
            | "KMSInternalException"
            | "DependencyTimeoutException"
            | "KeyUnavailableException"
            | "ServiceUnavailableException",
        ) => PluginError::unavailable(format!(
            "AWS KMS {operation}: {} ({message})",
            code.unwrap_or_default()
        )),
        _ if status >= 500 => PluginError::unavailable(format!(
            "AWS KMS {operation}: HTTP {status} from the endpoint"
        )),
        Some(code) => PluginError::internal(format!("AWS KMS {operation}: error {code}")),
        None => PluginError::internal(format!(
            "AWS KMS {operation}: HTTP {status} without an error code"
        )),
    }
}

/// `KMSInvalidStateException` says which state in its message ("<arn> is pending
/// deletion."); name it plainly.
fn invalid_state_reason(message: &str) -> String {
    let lower = message.to_ascii_lowercase();
    for state in [
        "pending deletion",
        "pending replica deletion",
        "pending import",
        "disabled",
        "unavailable",
        "creating",
        "updating",
    ] {
        if lower.contains(state) {
            return format!("key is {state}");
        }
    }
    format!("key is in a state that does not allow this operation: {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_broker_errors() {
        let map = |code: &str, message: &str| from_code("Encrypt", Some(code), Some(message), 400);
        let denied = map("AccessDeniedException", "User x is not authorized");
        assert_eq!(denied.kind, ErrorKind::ACCESS_DENIED);
        assert!(denied.message.contains("not authorized"));
        assert_eq!(
            map("DisabledException", "arn is disabled.")
                .message
                .as_str(),
            "key is disabled"
        );
        let pending = map("KMSInvalidStateException", "arn:x is pending deletion.");
        assert_eq!(pending.kind, ErrorKind::INVALID_REQUEST);
        assert_eq!(pending.message.as_str(), "key is pending deletion");
        assert_eq!(map("NotFoundException", "").kind, ErrorKind::KEY_NOT_FOUND);
        assert_eq!(
            map("InvalidCiphertextException", "").kind,
            ErrorKind::INVALID_CIPHERTEXT
        );
        assert_eq!(map("ThrottlingException", "").kind, ErrorKind::UNAVAILABLE);
        let rejected = map(
            "UnrecognizedClientException",
            "The security token is invalid",
        );
        assert_eq!(rejected.kind, ErrorKind::UNAVAILABLE);
        assert!(rejected.message.contains("credentials"), "{rejected}");
        let other = map("CustomKeyStoreNotFoundException", "secret-looking message");
        assert_eq!(other.kind, ErrorKind::INTERNAL);
        assert!(other.message.contains("CustomKeyStoreNotFoundException"));
        assert!(!other.message.contains("secret-looking"));
        assert_eq!(
            from_code("Encrypt", None, None, 502).kind,
            ErrorKind::UNAVAILABLE
        );
    }
}
