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
use support::{dev_broker, dev_broker_with_core};
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

#[tokio::test]
async fn a_login_never_issues_root_even_from_a_role_stored_before_roles_refused_it() {
    let (app, token, _dir, core) = dev_broker_with_core().await;
    let (status, _) = send(
        &app,
        "POST",
        "/v1/sys/auth/approle",
        &token,
        r#"{"type":"approle"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = send(
        &app,
        "POST",
        "/v1/auth/approle/role/legacy",
        &token,
        r#"{"token_policies":["app"]}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let login = |app: axum::Router, token: String| async move {
        let (_, id) = send(
            &app,
            "GET",
            "/v1/auth/approle/role/legacy/role-id",
            &token,
            "",
        )
        .await;
        let (_, secret) = send(
            &app,
            "POST",
            "/v1/auth/approle/role/legacy/secret-id",
            &token,
            "{}",
        )
        .await;
        let body = serde_json::json!({
            "role_id": id["data"]["role_id"],
            "secret_id": secret["data"]["secret_id"],
        });
        send(
            &app,
            "POST",
            "/v1/auth/approle/login",
            "",
            &body.to_string(),
        )
        .await
    };
    let (status, answer) = login(app.clone(), token.clone()).await;
    assert_eq!(status, StatusCode::OK, "control: {answer}");
    // A role as an earlier version stored it: root among its policies, written straight
    // into the store (the API refuses to write it now).
    let tenant = keybroker_core::TenantId::ROOT;
    let mount = core
        .mounts
        .find_auth(tenant, "approle")
        .await
        .unwrap()
        .unwrap();
    let stored = core
        .store
        .get_approle_role(tenant, mount.id, "legacy")
        .await
        .unwrap()
        .unwrap();
    let legacy = keybroker_core::store::AppRoleRecord {
        token_policies: vec!["app".to_owned(), "root".to_owned()],
        ..stored.clone()
    };
    core.store.put_approle_role(&legacy).await.unwrap();
    let (_, role) = send(&app, "GET", "/v1/auth/approle/role/legacy", &token, "").await;
    assert_eq!(
        role["data"]["token_policies"],
        serde_json::json!(["app", "root"])
    );
    // Refused, and the refusal looks like every failed login.
    let (status, answer) = login(app.clone(), token.clone()).await;
    assert_eq!(
        (status, answer["errors"][0].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid role or secret ID")),
        "{answer}"
    );
    // The same role without root logs in again: root alone was the reason.
    core.store.put_approle_role(&stored).await.unwrap();
    let (status, answer) = login(app.clone(), token.clone()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}
