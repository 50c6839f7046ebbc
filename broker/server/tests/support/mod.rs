//! What the in-process API tests share: a dev broker behind `http::router`, no socket.

use axum::{body::Body, http::Request};
use http_body_util::BodyExt;
use keybroker_server::{
    app, config,
    http::{kind::Registry, router, Ready},
};
use serde_json::{json, Value};
use tower::ServiceExt;

/// A dev broker (SQLite and the local KEK in a temporary directory, root token `root`):
/// its router, its root token, and the directory (removed when dropped).
#[allow(dead_code)] // Not every test binary needs only the API.
pub(crate) async fn dev_broker() -> (axum::Router, String, tempfile::TempDir) {
    let (router, token, dir, _) = dev_broker_with_ready(Registry::standard()).await;
    (router, token, dir)
}

/// As [`dev_broker`], with the core behind the router (to reach its store directly).
#[allow(dead_code)] // Not every test binary reaches past the API.
pub(crate) async fn dev_broker_with_core() -> (
    axum::Router,
    String,
    tempfile::TempDir,
    std::sync::Arc<keybroker_core::Broker>,
) {
    let (router, token, dir, ready) = dev_broker_with_ready(Registry::standard()).await;
    (router, token, dir, ready.broker)
}

/// As [`dev_broker`], serving the kinds of mount in `kinds`, with the unsealed parts
/// behind the router (its core, and what a node applies a change with).
#[allow(dead_code)] // Not every test binary reaches past the API.
pub(crate) async fn dev_broker_with_ready(
    kinds: Registry,
) -> (axum::Router, String, tempfile::TempDir, Ready) {
    let dir = tempfile::tempdir().unwrap();
    let overrides = config::Overrides {
        dev: true,
        dev_root_token_id: Some("root".to_owned()),
        dev_state_dir: Some(dir.path().to_owned()),
        ..config::Overrides::default()
    };
    let config = config::Config::build(None, overrides).unwrap();
    let built = app::build_with_kinds(&config, std::sync::Arc::new(kinds))
        .await
        .unwrap();
    let token = built.root_token.unwrap().to_string();
    let ready = built.state.ready_parts().unwrap().clone();
    (router(built.state), token, dir, ready)
}

/// The API in-process, as JSON requests.
#[allow(dead_code)] // Not every test binary sends JSON.
pub(crate) struct Api {
    /// The router.
    pub app: axum::Router,
}

#[allow(dead_code)] // Not every test binary sends JSON.
impl Api {
    /// A request as `token` (none: anonymous) in namespace `namespace`.
    pub(crate) async fn call(
        &self,
        token: Option<&str>,
        namespace: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = Request::builder().method(method).uri(format!("/v1/{path}"));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if !namespace.is_empty() {
            request = request.header("X-Vault-Namespace", namespace);
        }
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A token of `namespace` made by root, carrying `policy` (written there as `name`).
    pub(crate) async fn token_with(
        &self,
        root: &str,
        namespace: &str,
        name: &str,
        policy: &str,
    ) -> String {
        let path = format!("sys/policies/acl/{name}");
        let (status, body) = self
            .call(
                Some(root),
                namespace,
                "PUT",
                &path,
                Some(json!({ "policy": policy })),
            )
            .await;
        assert_eq!(status, 204, "{body}");
        let create = json!({ "policies": [name], "no_parent": true });
        let (status, body) = self
            .call(
                Some(root),
                namespace,
                "POST",
                "auth/token/create",
                Some(create),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["auth"]["client_token"].as_str().unwrap().to_owned()
    }
}
