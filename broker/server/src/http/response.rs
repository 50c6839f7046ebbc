//! Vault's response envelope (Vault HTTP API: response format).

use axum::{
    body::Body,
    http::{header, HeaderValue, StatusCode},
    response::Response,
};
use rand::Rng;
use serde::Serialize;

/// `{"request_id":…, "data": …}` as Vault answers.
#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    request_id: uuid::fmt::Hyphenated,
    lease_id: &'static str,
    renewable: bool,
    lease_duration: u64,
    data: &'a T,
    wrap_info: (),
    warnings: Option<&'a [String]>,
    auth: (),
}

impl<'a, T: Serialize> Envelope<'a, T> {
    /// A response's envelope around `data`, with a fresh request id.
    fn new(data: &'a T, warnings: Option<&'a [String]>) -> Self {
        Self {
            request_id: request_id(),
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data,
            wrap_info: (),
            warnings,
            auth: (),
        }
    }
}

tokio::task_local! {
    /// The id of the request being served: in its response envelope and its audit records.
    static REQUEST_ID: uuid::Uuid;
}

/// A fresh request id. Not a secret: a cheap thread-local RNG is enough.
pub(super) fn new_request_id() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::thread_rng().gen()).into_uuid()
}

/// Runs a request's handling with its id, which every response envelope built inside
/// carries ([`current_request_id`]).
pub(super) async fn with_request_id<F: std::future::Future>(
    id: uuid::Uuid,
    handling: F,
) -> F::Output {
    REQUEST_ID.scope(id, handling).await
}

/// The id of the request being served (a fresh one outside [`with_request_id`]).
pub(super) fn current_request_id() -> uuid::Uuid {
    REQUEST_ID
        .try_with(|id| *id)
        .unwrap_or_else(|_| new_request_id())
}

fn request_id() -> uuid::fmt::Hyphenated {
    current_request_id().hyphenated()
}

/// A JSON response with a status.
pub(super) fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = Response::new(Body::from(bytes));
            *response.status_mut() = status;
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(error) => {
            tracing::error!(%error, "response serialization failed");
            let mut response = Response::new(Body::from(r#"{"errors":["internal error"]}"#));
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
        }
    }
}

/// 200 with `data`.
pub(super) fn data<T: Serialize>(data: &T) -> Response {
    data_with(StatusCode::OK, data, &[])
}

/// A status with `data` and warnings.
pub(super) fn data_with<T: Serialize>(
    status: StatusCode,
    data: &T,
    warnings: &[String],
) -> Response {
    let envelope = Envelope::new(data, (!warnings.is_empty()).then_some(warnings));
    json(status, &envelope)
}

/// 200 with `data` and a lease of `lease_duration` seconds (a KV version 1 read, which
/// Vault answers with the mount's lease).
pub(super) fn data_leased<T: Serialize>(data: &T, lease_duration: u64) -> Response {
    let mut envelope = Envelope::new(data, None);
    envelope.lease_duration = lease_duration;
    json(StatusCode::OK, &envelope)
}

/// 200 with `data`, its members also at the top level: the shape Vault keeps for its older
/// `sys/` answers (`sys/mounts`, `sys/auth`, `sys/policy`, a mount's `tune`), which older
/// clients read there.
pub(super) fn legacy(data: &serde_json::Map<String, serde_json::Value>) -> Response {
    let envelope = Envelope::new(data, None);
    let mut body = serde_json::Map::new();
    for (name, value) in data {
        body.insert(name.clone(), value.clone());
    }
    match serde_json::to_value(&envelope) {
        Ok(serde_json::Value::Object(fields)) => body.extend(fields),
        _ => return json(StatusCode::OK, &envelope),
    }
    json(StatusCode::OK, &body)
}

/// 200 with an `auth` block (a token was issued or renewed) and no data.
pub(super) fn auth<T: Serialize>(auth: &T) -> Response {
    #[derive(Serialize)]
    struct AuthEnvelope<'a, T: Serialize> {
        request_id: uuid::fmt::Hyphenated,
        lease_id: &'static str,
        renewable: bool,
        lease_duration: u64,
        data: (),
        wrap_info: (),
        warnings: (),
        auth: &'a T,
    }
    json(
        StatusCode::OK,
        &AuthEnvelope {
            request_id: request_id(),
            lease_id: "",
            renewable: false,
            lease_duration: 0,
            data: (),
            wrap_info: (),
            warnings: (),
            auth,
        },
    )
}

/// 204.
pub(super) fn no_content() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_legacy_shape_copies_data_to_the_top_level_under_the_envelope() {
        let mut data = serde_json::Map::new();
        data.insert("transit/".into(), serde_json::json!({"type": "transit"}));
        // A member named as an envelope field does not replace it.
        data.insert("data".into(), serde_json::json!("a path called data"));
        let response = legacy(&data);
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["transit/"], body["data"]["transit/"]);
        assert_eq!(body["data"]["data"], "a path called data");
        assert_eq!(body["lease_id"], "");
    }
}
