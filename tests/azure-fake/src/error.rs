//! The one place Key Vault and token-endpoint errors become HTTP responses.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    Json,
};
use serde_json::json;

use crate::Operation;

/// A Key Vault request refused; the response follows Key Vault's error shape
/// `{"error":{"code","message"[,"innererror":{"code"}]}}` ("Azure Key Vault REST API Error
/// Codes", learn.microsoft.com/azure/key-vault/general/rest-error-codes).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyVaultError {
    /// No bearer token: 401 with the `WWW-Authenticate` challenge the SDKs read.
    MissingToken {
        /// The `WWW-Authenticate` header value.
        challenge: String,
    },
    /// A bearer token this fake did not issue (or revoked): 401 with the challenge.
    InvalidToken {
        /// The `WWW-Authenticate` header value.
        challenge: String,
    },
    /// Throttled by a fault control: 429 with `Retry-After`.
    Throttled {
        /// Whole seconds for the `Retry-After` header.
        retry_after_seconds: u64,
    },
    /// The registered client lacks this permission (a fault control): 403 `Forbidden`,
    /// inner `AccessDenied`, worded like Key Vault's access-policy refusal.
    AccessDenied {
        /// The refused operation.
        operation: Operation,
        /// The client id named in the message.
        client_id: String,
    },
    /// No such key or key version: 404 `KeyNotFound`.
    KeyNotFound {
        /// `name` or `name/version`.
        id: String,
    },
    /// The key version is disabled: 403 `Forbidden`, inner `KeyDisabled`.
    KeyDisabled {
        /// The refused operation's name in Key Vault's words (`unwrapKey`, `sign`, …).
        operation: &'static str,
    },
    /// The key's `key_ops` do not include the operation: 403 `Forbidden`.
    OperationNotPermitted {
        /// The refused operation's name in Key Vault's words.
        operation: &'static str,
    },
    /// A malformed request, unknown algorithm or bad input: 400 `BadParameter`.
    BadParameter(String),
    /// An outage (a fault control): 503 `ServiceUnavailable`.
    ServiceUnavailable,
    /// Creating a key whose name belongs to a deleted (recoverable) key: 409 `Conflict`.
    DeletedKeyConflict {
        /// The key name.
        name: String,
    },
}

impl IntoResponse for KeyVaultError {
    fn into_response(self) -> Response {
        let (status, code, message, inner, challenge, retry_after) = match self {
            KeyVaultError::MissingToken { challenge } => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.".to_owned(),
                None,
                Some(challenge),
                None,
            ),
            KeyVaultError::InvalidToken { challenge } => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "AKV10022: Invalid token: it was not issued by this vault's token endpoint or was revoked.".to_owned(),
                None,
                Some(challenge),
                None,
            ),
            KeyVaultError::Throttled { retry_after_seconds } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Throttled",
                "Request was not processed because too many requests were received. Reason: A throttling fault is set on the keybroker Azure fake.".to_owned(),
                None,
                None,
                Some(retry_after_seconds),
            ),
            KeyVaultError::AccessDenied { operation, client_id } => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "The user, group or application 'appid={client_id};iss=https://sts.windows.net/' does not have keys {} permission on key vault 'keybroker-azure-fake;location=local'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287",
                    operation.permission()
                ),
                Some("AccessDenied"),
                None,
                None,
            ),
            KeyVaultError::KeyNotFound { id } => (
                StatusCode::NOT_FOUND,
                "KeyNotFound",
                format!("A key with (name/id) {id} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"),
                None,
                None,
                None,
            ),
            KeyVaultError::KeyDisabled { operation } => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("Operation {operation} is not allowed on a disabled key."),
                Some("KeyDisabled"),
                None,
                None,
            ),
            KeyVaultError::OperationNotPermitted { operation } => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!("Operation {operation} is not permitted on this key."),
                Some("KeyOperationForbidden"),
                None,
                None,
            ),
            KeyVaultError::ServiceUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The service is unavailable (an outage fault is set on the keybroker Azure fake).".to_owned(),
                None,
                None,
                None,
            ),
            KeyVaultError::DeletedKeyConflict { name } => (
                StatusCode::CONFLICT,
                "Conflict",
                format!("Key {name} is currently in a deleted but recoverable state, and its name cannot be reused; in this state, the key can only be recovered or purged."),
                Some("ObjectIsDeletedButRecoverable"),
                None,
                None,
            ),
            KeyVaultError::BadParameter(message) => (
                StatusCode::BAD_REQUEST,
                "BadParameter",
                message,
                None,
                None,
                None,
            ),
        };
        let mut error = json!({ "code": code, "message": message });
        if let Some(inner) = inner {
            error["innererror"] = json!({ "code": inner });
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        let headers = response.headers_mut();
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// A token request refused, in the Microsoft identity platform's error shape
/// (`{"error","error_description","error_codes",…}`, "Microsoft identity platform and the
/// OAuth 2.0 client credentials flow", learn.microsoft.com).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// Wrong client secret: 401 `invalid_client`, AADSTS7000215.
    InvalidClientSecret {
        /// The application (client) id.
        client_id: String,
    },
    /// Unknown client id: 400 `unauthorized_client`, AADSTS700016.
    UnknownClient {
        /// The application id asked for.
        client_id: String,
    },
    /// Unknown tenant: 400 `invalid_request`, AADSTS90002.
    UnknownTenant {
        /// The tenant in the path.
        tenant: String,
    },
    /// A grant type other than `client_credentials`: 400 `unsupported_grant_type`.
    UnsupportedGrantType,
    /// A scope other than Key Vault's `https://vault.azure.net/.default`: 400 `invalid_scope`.
    InvalidScope {
        /// The scope asked for.
        scope: String,
    },
    /// A missing form field: 400 `invalid_request`, AADSTS900144.
    MissingParameter {
        /// The field.
        name: &'static str,
    },
    /// An outage (a fault control): 503 `temporarily_unavailable`.
    Unavailable,
}

impl IntoResponse for IdentityError {
    fn into_response(self) -> Response {
        let (status, error, code, description) = match self {
            IdentityError::InvalidClientSecret { client_id } => (
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                format!("AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."),
            ),
            IdentityError::UnknownClient { client_id } => (
                StatusCode::BAD_REQUEST,
                "unauthorized_client",
                700016,
                format!("AADSTS700016: Application with identifier '{client_id}' was not found in the directory. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant."),
            ),
            IdentityError::UnknownTenant { tenant } => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                90002,
                format!("AADSTS90002: Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."),
            ),
            IdentityError::UnsupportedGrantType => (
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                70003,
                "AADSTS70003: The app requested an unsupported grant type; this fake supports client_credentials only.".to_owned(),
            ),
            IdentityError::InvalidScope { scope } => (
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                1002012,
                format!("AADSTS1002012: The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI); this fake serves https://vault.azure.net/.default."),
            ),
            IdentityError::MissingParameter { name } => (
                StatusCode::BAD_REQUEST,
                "invalid_request",
                900144,
                format!("AADSTS900144: The request body must contain the following parameter: '{name}'."),
            ),
            IdentityError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                90033,
                "AADSTS90033: A transient error has occurred. Please try again.".to_owned(),
            ),
        };
        let trace_id = uuid::Uuid::new_v4().to_string();
        let description = format!("{description}\r\nTrace ID: {trace_id}");
        let body = json!({
            "error": error,
            "error_description": description,
            "error_codes": [code],
            "trace_id": trace_id,
            "correlation_id": uuid::Uuid::new_v4().to_string(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        });
        (status, Json(body)).into_response()
    }
}
