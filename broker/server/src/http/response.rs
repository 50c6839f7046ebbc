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

fn request_id() -> uuid::fmt::Hyphenated {
    // Not a secret: a cheap thread-local RNG is enough.
    uuid::Builder::from_random_bytes(rand::thread_rng().gen())
        .into_uuid()
        .hyphenated()
}

/// A JSON response with a status.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
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
pub fn data<T: Serialize>(data: &T) -> Response {
    data_with(StatusCode::OK, data, &[])
}

/// A status with `data` and warnings.
pub fn data_with<T: Serialize>(status: StatusCode, data: &T, warnings: &[String]) -> Response {
    let envelope = Envelope {
        request_id: request_id(),
        lease_id: "",
        renewable: false,
        lease_duration: 0,
        data,
        wrap_info: (),
        warnings: (!warnings.is_empty()).then_some(warnings),
        auth: (),
    };
    json(status, &envelope)
}

/// 200 with an `auth` block (a token was issued or renewed) and no data.
pub fn auth<T: Serialize>(auth: &T) -> Response {
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
pub fn no_content() -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}
