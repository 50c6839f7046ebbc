//! Response wrapping at the HTTP edge (Vault API: `X-Vault-Wrap-TTL`, `sys/wrapping/wrap`,
//! `unwrap`, `lookup`, `rewrap`; OpenBao docs "Response wrapping"). The core keeps the
//! wrapped responses (`keybroker_core::wrapping`); this module decides who may call what and
//! shapes the answers.
//!
//! Who may call each path:
//! - **`X-Vault-Wrap-TTL`** (seconds or a duration, 1s to 768h; anything else is a 400,
//!   never an unwrapped answer): on any authenticated request or login whose 2xx answer has
//!   `data` or `auth`, the caller gets `wrap_info` instead, the answer being stored sealed.
//!   An answer without either is given as it is (Vault wraps nothing there). A request
//!   carrying a wrapping token (`unwrap`, `lookup`, `rewrap` below) cannot be wrapped again:
//!   400.
//! - **The wrapping token itself** (`X-Vault-Token: kbw.…`) may call `sys/wrapping/unwrap`,
//!   `lookup` and `rewrap` on itself, and nothing else: on any other path it is no token
//!   (403, as an unknown token). These requests need no policy, as in Vault, whose wrapping
//!   tokens carry only the `response-wrapping` policy; their bodies are capped as a login's.
//! - **`sys/wrapping/lookup` without any token** (Vault lists it as unauthenticated): the
//!   `token` in the body, answered with its creation path, time and TTL only, never the
//!   response.
//! - **Another token** calls these paths under its ACL (`update` on the path; the `default`
//!   policy grants `wrap`, `lookup` and `unwrap`, as Vault's does) with the wrapping token in
//!   the body's `token`; `sys/wrapping/wrap` wraps its body.
//! - **Tenancy**: a response wrapped in a tenant answers only there. Every failure (unknown,
//!   expired, used, another tenant's) is the same 400, Vault's "wrapping token is not valid
//!   or does not exist".

use axum::{
    body::Body,
    http::{header, HeaderMap, HeaderValue, StatusCode},
    response::Response,
};
use bytes::Bytes;
use keybroker_core::{
    wrapping::{ToWrap, WrapInfo, Wrapping},
    Tenant,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{body, error::ApiError, kind::Handled, response, ApiRequest, Operation, Ready};

/// The header asking for a wrapped answer.
pub(super) const WRAP_TTL_HEADER: &str = "x-vault-wrap-ttl";

/// Largest answer that is wrapped (answers are built in memory; this bounds the copy).
const MAX_WRAPPED_RESPONSE: usize = 32 * 1024 * 1024;

/// The `sys/wrapping/*` operations a wrapping token may call on itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SelfOperation {
    /// `sys/wrapping/unwrap`.
    Unwrap,
    /// `sys/wrapping/lookup`.
    Lookup,
    /// `sys/wrapping/rewrap`.
    Rewrap,
}

impl SelfOperation {
    /// The operation a (tenant-relative) path names, if any.
    pub(super) fn of(path: &str, operation: Operation) -> Option<Self> {
        if operation != Operation::Write {
            return None;
        }
        match path.trim_end_matches('/') {
            "sys/wrapping/unwrap" => Some(Self::Unwrap),
            "sys/wrapping/lookup" => Some(Self::Lookup),
            "sys/wrapping/rewrap" => Some(Self::Rewrap),
            _ => None,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Unwrap => "sys/wrapping/unwrap",
            Self::Lookup => "sys/wrapping/lookup",
            Self::Rewrap => "sys/wrapping/rewrap",
        }
    }
}

/// The wrap TTL a request asks for, in seconds; `None` without the header.
pub(super) fn requested_ttl(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(WRAP_TTL_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::bad_request("invalid wrap ttl"))?
        .trim();
    let seconds = match text.parse::<u64>() {
        Ok(seconds) => seconds,
        Err(_) => humantime::parse_duration(text)
            .map_err(|_| ApiError::bad_request("invalid wrap ttl"))?
            .as_secs(),
    };
    Ok(Some(Wrapping::check_ttl(seconds)?))
}

/// The body of the wrapping paths.
#[derive(Deserialize, Default)]
struct TokenBody {
    token: Option<String>,
}

fn body_token(request: &ApiRequest) -> Result<Option<Zeroizing<String>>, ApiError> {
    let parsed: TokenBody = body::parse(&request.body)?;
    Ok(parsed
        .token
        .map(Zeroizing::new)
        .filter(|token| !token.trim().is_empty()))
}

/// A request authenticated by a wrapping token (`presented`), or by nobody on
/// `sys/wrapping/lookup`: the operation on that token (or on the body's, for an anonymous
/// lookup).
pub(super) async fn by_wrapping_token(
    ready: &Ready,
    tenant: &Tenant,
    operation: SelfOperation,
    presented: Option<&str>,
    request: &ApiRequest,
) -> Handled {
    let token = match presented {
        Some(token) => Zeroizing::new(token.to_owned()),
        None => match body_token(request) {
            Ok(Some(token)) => token,
            Ok(None) => {
                return (
                    operation.label(),
                    Err(ApiError::bad_request("missing token")),
                )
            }
            Err(error) => return (operation.label(), Err(error)),
        },
    };
    (
        operation.label(),
        on_token(ready, tenant, operation, &token).await,
    )
}

async fn on_token(
    ready: &Ready,
    tenant: &Tenant,
    operation: SelfOperation,
    token: &str,
) -> Result<Response, ApiError> {
    let wrapping = &ready.broker.wrapping;
    match operation {
        SelfOperation::Unwrap => {
            let unwrapped = wrapping.unwrap(tenant.id, token).await?;
            Ok(unwrapped_response(&unwrapped))
        }
        SelfOperation::Lookup => {
            let found = wrapping.lookup(tenant.id, token).await?;
            Ok(response::data(&json!({
                "creation_path": found.creation_path,
                "creation_time": super::token::rfc3339(found.creation_time),
                "creation_ttl": found.creation_ttl,
            })))
        }
        SelfOperation::Rewrap => {
            let mut info = wrapping.rewrap(tenant.id, token).await?;
            // OpenBao's rewrap answers no `wrapped_accessor` (the unwrapped answer still
            // carries the accessor itself).
            info.wrapped_accessor.clear();
            Ok(wrap_info_response(&info))
        }
    }
}

/// `sys/wrapping/*` called by an ordinary token (its ACL already checked): the wrapping
/// token is in the body; `wrap` wraps the body (the edge does the wrapping, so the request
/// must ask for it).
pub(super) async fn by_caller(
    ready: &Ready,
    tenant: &Tenant,
    rest: &str,
    headers: &HeaderMap,
    request: &ApiRequest,
) -> Handled {
    let rest = rest.trim_end_matches('/');
    if rest == "sys/wrapping/wrap" {
        return ("sys/wrapping/wrap", wrap_body(headers, request));
    }
    let Some(operation) = SelfOperation::of(rest, request.operation) else {
        return ("sys/wrapping", Err(ApiError::UnsupportedPath));
    };
    let token = match body_token(request) {
        Ok(Some(token)) => token,
        // Vault then takes the caller's own token, which is no wrapping token: the same
        // answer as any token that is not one.
        Ok(None) => {
            return (
                operation.label(),
                Err(keybroker_core::Error::invalid(
                    "wrapping token is not valid or does not exist",
                )
                .into()),
            )
        }
        Err(error) => return (operation.label(), Err(error)),
    };
    (
        operation.label(),
        on_token(ready, tenant, operation, &token).await,
    )
}

fn wrap_body(headers: &HeaderMap, request: &ApiRequest) -> Result<Response, ApiError> {
    if requested_ttl(headers)?.is_none() {
        return Err(ApiError::bad_request(
            "endpoint requires response wrapping to be used",
        ));
    }
    let data: serde_json::Map<String, Value> = body::parse(&request.body)?;
    Ok(response::data(&data))
}

/// Vault API: the answer with `wrap_info` and no `data` or `auth`.
#[derive(Serialize)]
struct WrappedEnvelope<'a> {
    request_id: String,
    lease_id: &'static str,
    renewable: bool,
    lease_duration: u64,
    data: (),
    wrap_info: WrapInfoJson<'a>,
    warnings: (),
    auth: (),
}

/// Vault API: `wrap_info`.
#[derive(Serialize)]
struct WrapInfoJson<'a> {
    token: &'a str,
    accessor: &'a str,
    ttl: u64,
    creation_time: String,
    creation_path: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    wrapped_accessor: &'a str,
}

fn wrap_info_response(info: &WrapInfo) -> Response {
    let envelope = WrappedEnvelope {
        request_id: response::current_request_id().hyphenated().to_string(),
        lease_id: "",
        renewable: false,
        lease_duration: 0,
        data: (),
        wrap_info: WrapInfoJson {
            token: &info.token,
            accessor: &info.accessor,
            ttl: info.ttl,
            creation_time: super::token::rfc3339(info.creation_time),
            creation_path: &info.creation_path,
            wrapped_accessor: &info.wrapped_accessor,
        },
        warnings: (),
        auth: (),
    };
    response::json(StatusCode::OK, &envelope)
}

/// The original answer, as it was wrapped.
fn unwrapped_response(unwrapped: &[u8]) -> Response {
    let mut response = Response::new(Body::from(Bytes::copy_from_slice(unwrapped)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Wraps an answer if it carries `data` or `auth` (a 2xx JSON object); any other answer is
/// given as it is.
pub(super) async fn wrap_response(
    ready: &Ready,
    tenant: &Tenant,
    creation_path: &str,
    ttl: u64,
    answer: Response,
) -> Result<Response, ApiError> {
    if !answer.status().is_success() {
        return Ok(answer);
    }
    let (parts, body) = answer.into_parts();
    let bytes = Zeroizing::new(
        axum::body::to_bytes(body, MAX_WRAPPED_RESPONSE)
            .await
            .map_err(|_| {
                ApiError::Core(keybroker_core::Error::internal("answer too large to wrap"))
            })?
            .to_vec(),
    );
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let wrappable = parsed.as_ref().is_some_and(|value| {
        !value.get("data").is_none_or(Value::is_null)
            || !value.get("auth").is_none_or(Value::is_null)
    });
    let Some(value) = parsed.filter(|_| wrappable) else {
        return Ok(Response::from_parts(parts, Body::from(bytes.to_vec())));
    };
    // Vault's wrapped_accessor: the accessor of an issued token or an AppRole secret_id.
    let wrapped_accessor = value
        .pointer("/auth/accessor")
        .or_else(|| value.pointer("/data/secret_id_accessor"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let info = ready
        .broker
        .wrapping
        .wrap(ToWrap {
            tenant: tenant.id,
            creation_path,
            ttl,
            response: &bytes,
            wrapped_accessor,
        })
        .await?;
    Ok(wrap_info_response(&info))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(WRAP_TTL_HEADER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn wrap_ttls_are_seconds_or_durations_within_bounds() {
        assert_eq!(requested_ttl(&HeaderMap::new()).unwrap(), None);
        assert_eq!(requested_ttl(&with("60")).unwrap(), Some(60));
        assert_eq!(requested_ttl(&with("5m")).unwrap(), Some(300));
        assert_eq!(requested_ttl(&with("768h")).unwrap(), Some(768 * 3600));
        for refused in ["0", "0s", "-1", "soon", "769h"] {
            assert!(requested_ttl(&with(refused)).is_err(), "{refused}");
        }
    }

    #[test]
    fn only_the_three_paths_take_a_wrapping_token() {
        assert_eq!(
            SelfOperation::of("sys/wrapping/unwrap", Operation::Write),
            Some(SelfOperation::Unwrap)
        );
        assert_eq!(
            SelfOperation::of("sys/wrapping/unwrap", Operation::Read),
            None
        );
        assert_eq!(
            SelfOperation::of("sys/wrapping/wrap", Operation::Write),
            None
        );
        assert_eq!(SelfOperation::of("transit/keys/k", Operation::Write), None);
    }
}
