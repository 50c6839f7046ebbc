//! What the in-process API tests share: a dev broker behind `http::router`, no socket.

use keybroker_server::{
    app, config,
    http::{kind::Registry, router, Ready},
};

/// A dev broker (SQLite and the local KEK in a temporary directory, root token `root`):
/// its router, its root token, and the directory (removed when dropped).
#[allow(dead_code)] // Not every test binary needs only the API.
pub async fn dev_broker() -> (axum::Router, String, tempfile::TempDir) {
    let (router, token, dir, _) = dev_broker_with_ready(Registry::standard()).await;
    (router, token, dir)
}

/// As [`dev_broker`], with the core behind the router (to reach its store directly).
#[allow(dead_code)] // Not every test binary reaches past the API.
pub async fn dev_broker_with_core() -> (
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
pub async fn dev_broker_with_ready(
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
