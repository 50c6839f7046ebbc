//! The whole API driven in-process through `http::router`, with no socket: a dev broker
//! built from a validated config, requests sent with `oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
use keybroker_server::{app, config, http::router};
use serde_json::Value;
use tower::ServiceExt;

async fn dev_broker() -> (axum::Router, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let overrides = config::Overrides {
        dev: true,
        dev_root_token_id: Some("root".to_owned()),
        dev_state_dir: Some(dir.path().to_owned()),
        ..config::Overrides::default()
    };
    let config = config::Config::build(None, overrides).unwrap();
    let built = app::build(&config).await.unwrap();
    let token = built.root_token.unwrap().to_string();
    (router(built.state), token, dir)
}

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
