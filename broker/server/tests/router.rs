//! The whole API driven in-process through `http::router`, with no socket: a dev broker
//! built from a validated config, requests sent with `oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
mod support;

use serde_json::Value;
use support::dev_broker;
use tower::ServiceExt;

async fn send(
    app: &axum::Router,
    method: &str,
    uri: &str,
    token: &str,
    body: &str,
) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("X-Vault-Token", token)
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_api_runs_without_a_socket() {
    let (app, token, _dir) = dev_broker().await;
    let (status, value) = send(
        &app,
        "POST",
        "/v1/transit/encrypt/k",
        &token,
        r#"{"plaintext":"aGk="}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let ciphertext = value["data"]["ciphertext"].as_str().unwrap().to_owned();
    let body = format!(r#"{{"ciphertext":"{ciphertext}"}}"#);
    let (status, value) = send(&app, "PUT", "/v1/transit/decrypt/k", &token, &body).await;
    assert_eq!(
        (status, value["data"]["plaintext"].as_str()),
        (StatusCode::OK, Some("aGk="))
    );
    // The LIST verb is rewritten at the edge, as hvac and node-vault send it.
    let (status, value) = send(&app, "LIST", "/v1/transit/keys", &token, "").await;
    assert_eq!(
        (status, value["data"]["keys"][0].as_str()),
        (StatusCode::OK, Some("k"))
    );
    let (status, value) = send(&app, "POST", "/v1/transit/encrypt/k", "wrong", "{}").await;
    assert_eq!(
        (status, value["errors"][0].as_str()),
        (StatusCode::FORBIDDEN, Some("permission denied"))
    );
    let (status, _) = send(&app, "GET", "/v2/anything", &token, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// A body that records whether anything polled it, and never ends if polled.
fn watched_body(polled: std::sync::Arc<std::sync::atomic::AtomicBool>) -> Body {
    let stream = futures_util::stream::poll_fn(move |_| {
        polled.store(true, std::sync::atomic::Ordering::SeqCst);
        std::task::Poll::<Option<Result<bytes::Bytes, std::io::Error>>>::Pending
    });
    Body::from_stream(stream)
}

#[tokio::test]
async fn a_caller_is_known_and_authorised_before_its_body_is_read() {
    let (app, token, _dir) = dev_broker().await;
    let (status, _) = send(
        &app,
        "PUT",
        "/v1/sys/policies/acl/nothing",
        &token,
        r#"{"policy":"path \"x\" { capabilities = [\"read\"] }"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, created) = send(
        &app,
        "POST",
        "/v1/auth/token/create",
        &token,
        r#"{"policies":["nothing"]}"#,
    )
    .await;
    let narrow = created["auth"]["client_token"].as_str().unwrap().to_owned();
    for presented in [None, Some("kbs.wrong"), Some(narrow.as_str())] {
        let polled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut request = Request::builder()
            .method("POST")
            .uri("/v1/transit/encrypt/k");
        if let Some(presented) = presented {
            request = request.header("X-Vault-Token", presented);
        }
        let request = request.body(watched_body(polled.clone())).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{presented:?}");
        assert!(
            !polled.load(std::sync::atomic::Ordering::SeqCst),
            "the body of a refused caller ({presented:?}) was read"
        );
    }
}

#[tokio::test]
async fn an_anonymous_login_body_is_capped_at_64_kib_even_without_a_length() {
    let (app, token, _dir) = dev_broker().await;
    let (status, _) = send(
        &app,
        "POST",
        "/v1/sys/auth/approle",
        &token,
        r#"{"type":"approle"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // 80 chunks of 1 KiB with no Content-Length: refused once past 64 KiB.
    let chunks = (0..80).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024])));
    let request = Request::builder()
        .method("POST")
        .uri("/v1/auth/approle/login")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&bytes).contains("larger than 65536 bytes"),
        "{bytes:?}"
    );
    // A login within the cap is answered as any failed login.
    let request = Request::builder()
        .method("POST")
        .uri("/v1/auth/approle/login")
        .body(Body::from(r#"{"role_id":"r","secret_id":"s"}"#))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
