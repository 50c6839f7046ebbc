//! Azure Key Vault errors as broker errors (issue 7: access denied → 403 with the backend's
//! reason, disabled key → 400 naming the state, unreachable → 503).
//!
//! Messages carry the operation and Key Vault's error message (which names the key and the
//! caller's application id, never credentials) or Entra ID's error description (which never
//! repeats the secret); the SDK's `Debug` output is never used.

use azure_core::error::ErrorKind as AzureErrorKind;
use keybroker_plugin_abi::{ErrorKind, PluginError};
use serde::Deserialize;

pub(crate) use keybroker_plugin_sdk::reference::key_not_found;

/// Key Vault REST API: the error body, `{"error":{"code","message","innererror":{"code"}}}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Deserialize, Default)]
struct ErrorDetail {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "innererror")]
    inner_error: Option<Box<ErrorDetail>>,
}

/// What a Key Vault HTTP error said.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ServiceError {
    pub status: u16,
    /// The error `code` (`Forbidden`, `KeyNotFound`, `BadParameter`, …).
    pub code: String,
    /// The innermost `innererror.code` (`KeyDisabled`, `AccessDenied`, …), if any.
    pub inner_code: String,
    /// Key Vault's message, on one line.
    pub message: String,
}

/// One line, without the carriage returns Entra ID puts in its descriptions.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The HTTP error of a Key Vault answer, if `error` is one.
pub(crate) fn service_error(error: &azure_core::Error) -> Option<ServiceError> {
    let AzureErrorKind::HttpResponse {
        status,
        error_code,
        raw_response,
    } = error.kind()
    else {
        return None;
    };
    let body: ErrorBody = raw_response
        .as_ref()
        .and_then(|response| serde_json::from_slice(response.body()).ok())
        .unwrap_or_default();
    let mut inner_code = String::new();
    let mut inner = body.error.inner_error.as_deref();
    while let Some(detail) = inner {
        inner_code = detail.code.clone().unwrap_or_default();
        inner = detail.inner_error.as_deref();
    }
    Some(ServiceError {
        status: u16::from(*status),
        code: body
            .error
            .code
            .or_else(|| error_code.clone())
            .unwrap_or_default(),
        inner_code,
        message: one_line(&body.error.message.unwrap_or_else(|| error.to_string())),
    })
}

/// Maps an SDK error of `operation` (`wrapKey`, …).
pub(crate) fn from_azure(operation: &str, error: &azure_core::Error) -> PluginError {
    if let Some(service) = service_error(error) {
        return from_service(operation, &service);
    }
    match error.kind() {
        // Getting a token failed: Entra ID refused the credentials (its description says
        // why, e.g. AADSTS7000215 invalid client secret), or could not be reached. Nothing
        // works until that changes: the instance is unavailable, with the reason.
        AzureErrorKind::Credential => PluginError::unavailable(format!(
            "Azure Key Vault {operation}: no access token from Entra ID: {}",
            one_line(&chain(error))
        )),
        AzureErrorKind::Connection | AzureErrorKind::Io => PluginError::unavailable(format!(
            "Azure Key Vault {operation}: connection failed: {}",
            one_line(&chain(error))
        )),
        AzureErrorKind::DataConversion => PluginError::internal(format!(
            "Azure Key Vault {operation}: unreadable answer: {}",
            one_line(&chain(error))
        )),
        _ => PluginError::internal(format!(
            "Azure Key Vault {operation}: {}",
            one_line(&chain(error))
        )),
    }
}

/// The error and its causes, as `error: cause: cause` (without repeats).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let line = error.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        cause = error.source();
    }
    text
}

/// Maps a Key Vault HTTP error.
pub(crate) fn from_service(operation: &str, error: &ServiceError) -> PluginError {
    let message = error.message.as_str();
    let disabled =
        error.inner_code == "KeyDisabled" || message.to_ascii_lowercase().contains("disabled key");
    match error.status {
        400 | 403 if disabled => {
            PluginError::invalid_request(format!("key is disabled (Key Vault refused {operation})"))
        }
        403 if error.inner_code == "KeyOperationForbidden"
            || message.contains("not permitted on this key") =>
        {
            PluginError::invalid_request(format!(
                "Azure Key Vault refused {operation} for this key: {message}"
            ))
        }
        401 | 403 => PluginError::new(
            ErrorKind::ACCESS_DENIED,
            format!("Azure Key Vault denied {operation}: {message}"),
        ),
        404 => key_not_found(),
        400 | 409 => {
            PluginError::invalid_request(format!("Azure Key Vault refused {operation}: {message}"))
        }
        408 | 429 => PluginError::unavailable(format!(
            "Azure Key Vault {operation}: throttled or timed out (HTTP {}): {message}",
            error.status
        )),
        status if status >= 500 => PluginError::unavailable(format!(
            "Azure Key Vault {operation}: HTTP {status}: {message}"
        )),
        status => PluginError::internal(format!(
            "Azure Key Vault {operation}: HTTP {status} {}",
            error.code
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: u16, code: &str, inner: &str, message: &str) -> ServiceError {
        ServiceError {
            status,
            code: code.to_owned(),
            inner_code: inner.to_owned(),
            message: message.to_owned(),
        }
    }

    #[test]
    fn statuses_map_to_broker_errors() {
        let map = |status, code, inner, message| {
            from_service("unwrapKey", &service(status, code, inner, message))
        };
        let denied = map(
            403,
            "Forbidden",
            "AccessDenied",
            "does not have keys unwrapKey permission",
        );
        assert_eq!(denied.kind, ErrorKind::ACCESS_DENIED);
        assert!(denied
            .message
            .contains("does not have keys unwrapKey permission"));
        let disabled = map(
            403,
            "Forbidden",
            "KeyDisabled",
            "Operation unwrapKey is not allowed on a disabled key.",
        );
        assert_eq!(disabled.kind, ErrorKind::INVALID_REQUEST);
        assert!(disabled.message.contains("disabled"));
        assert_eq!(
            map(
                400,
                "BadParameter",
                "",
                "Operation get is not allowed on a disabled key."
            )
            .kind,
            ErrorKind::INVALID_REQUEST
        );
        assert_eq!(
            map(404, "KeyNotFound", "", "x").kind,
            ErrorKind::KEY_NOT_FOUND
        );
        assert_eq!(map(429, "Throttled", "", "x").kind, ErrorKind::UNAVAILABLE);
        assert_eq!(
            map(503, "ServiceUnavailable", "", "x").kind,
            ErrorKind::UNAVAILABLE
        );
        assert_eq!(
            map(401, "Unauthorized", "", "x").kind,
            ErrorKind::ACCESS_DENIED
        );
        let forbidden_op = map(
            403,
            "Forbidden",
            "KeyOperationForbidden",
            "Operation wrapKey is not permitted on this key.",
        );
        assert_eq!(forbidden_op.kind, ErrorKind::INVALID_REQUEST);
        assert_eq!(
            map(418, "Teapot", "", "secret-looking").kind,
            ErrorKind::INTERNAL
        );
        assert!(!map(418, "Teapot", "", "secret-looking")
            .message
            .contains("secret-looking"));
    }
}
