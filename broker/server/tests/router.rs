//! The whole API driven in-process through `http::router`, with no socket: a dev broker
//! built from a validated config, requests sent with `oneshot`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::{
    body::Body,
    http::{Request, StatusCode},
};
use http_body_util::BodyExt;
mod support;

use serde_json::{json, Value};
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

/// JWT auth against a key made here: its public PEM, and signed tokens.
mod jwt {
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
    use ed25519_dalek::{
        pkcs8::{spki::der::pem::LineEnding, EncodePublicKey},
        Signer, SigningKey,
    };
    use serde_json::{json, Value};

    pub(crate) const ISSUER: &str = "https://idp.example";

    pub(crate) fn key() -> SigningKey {
        SigningKey::from_bytes(&[7; 32])
    }

    pub(crate) fn public_pem() -> String {
        key()
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap()
    }

    /// A JWT for `sub` with audience `api`, valid for an hour.
    pub(crate) fn token(issuer: &str, sub: &str) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims =
            json!({"iss": issuer, "sub": sub, "aud": "api", "iat": now, "exp": now + 3600});
        let encode = |value: &Value| URL_SAFE_NO_PAD.encode(value.to_string());
        let input = format!(
            "{}.{}",
            encode(&json!({"alg": "EdDSA", "typ": "JWT"})),
            encode(&claims)
        );
        let signature = key().sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }

    /// The mount configuration of these tests.
    pub(crate) fn config() -> Value {
        json!({"jwt_validation_pubkeys": [public_pem()], "bound_issuer": ISSUER})
    }
}

/// Enables `auth/jwt/`; returns its record.
async fn enable_jwt(
    app: &axum::Router,
    token: &str,
    core: &keybroker_core::Broker,
) -> std::sync::Arc<keybroker_core::store::MountRecord> {
    let (status, body) = send(app, "POST", "/v1/sys/auth/jwt", token, r#"{"type":"jwt"}"#).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let tenant = keybroker_core::TenantId::ROOT;
    core.mounts.find_auth(tenant, "jwt").await.unwrap().unwrap()
}

/// A JWT login with `role`: the status, and the token's policies when it succeeded.
async fn jwt_login(app: &axum::Router, role: &str, jwt: &str) -> (StatusCode, Value) {
    let body = serde_json::json!({ "role": role, "jwt": jwt }).to_string();
    let (status, answer) = send(app, "POST", "/v1/auth/jwt/login", "", &body).await;
    if status == StatusCode::OK {
        return (status, answer["auth"]["policies"].clone());
    }
    (status, answer)
}

/// A login with role `web` and a JWT from `issuer`.
async fn login_web(app: &axum::Router, issuer: &str) -> (StatusCode, Value) {
    jwt_login(app, "web", &jwt::token(issuer, "svc")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jwt_roles_are_entries_of_their_own_and_concurrent_writes_all_land() {
    use keybroker_core::store::{Expect, MountEntry};
    let (app, token, _dir, core) = dev_broker_with_core().await;
    let mount = enable_jwt(&app, &token, &core).await;
    let root = keybroker_core::TenantId::ROOT;
    let config = jwt::config().to_string();
    let (status, _) = send(&app, "POST", "/v1/auth/jwt/config", &token, &config).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let role = r#"{"bound_audiences":"api","token_policies":["app"]}"#;
    let (status, _) = send(&app, "POST", "/v1/auth/jwt/role/web", &token, role).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Sixteen new roles written at once: every one is kept (one document holding them all
    // kept only the last writer's view).
    let writes = (0..16).map(|i| {
        let (app, token) = (app.clone(), token.clone());
        async move {
            let path = format!("/v1/auth/jwt/role/team-{i:02}");
            send(&app, "POST", &path, &token, role).await.0
        }
    });
    for status in futures_util::future::join_all(writes).await {
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    // Six updates of one role at once, each of another field: every field is set, as if
    // they had come one after the other.
    let updates = [
        r#"{"bound_subject":"svc"}"#,
        r#"{"token_num_uses":7}"#,
        r#"{"token_period":600}"#,
        r#"{"token_no_default_policy":true}"#,
        r#"{"groups_claim":"groups"}"#,
        r#"{"clock_skew_leeway":5}"#,
    ]
    .map(|update| {
        let (app, token) = (app.clone(), token.clone());
        async move {
            send(&app, "POST", "/v1/auth/jwt/role/web", &token, update)
                .await
                .0
        }
    });
    for status in futures_util::future::join_all(updates).await {
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    let (_, read) = send(&app, "GET", "/v1/auth/jwt/role/web", &token, "").await;
    let data = &read["data"];
    assert_eq!(
        (
            &data["bound_subject"],
            &data["token_num_uses"],
            &data["token_period"],
            &data["token_no_default_policy"],
            &data["groups_claim"],
            &data["clock_skew_leeway"],
            &data["token_policies"],
        ),
        (
            &json!("svc"),
            &json!(7),
            &json!(600),
            &json!(true),
            &json!("groups"),
            &json!(5),
            &json!(["app"]),
        ),
        "{read}"
    );
    let (_, listed) = send(&app, "LIST", "/v1/auth/jwt/role", &token, "").await;
    let mut expected: Vec<String> = (0..16).map(|i| format!("team-{i:02}")).collect();
    expected.push("web".to_owned());
    assert_eq!(listed["data"]["keys"], json!(expected));

    // Each write touched its own entry: the role written seven times is at version 7, the
    // others and the configuration at 1; nothing is left in the mount's config.
    let (store, mount_id) = (&core.store, mount.id);
    let version = |key: &'static str| async move {
        store
            .get_entry(root, mount_id, key)
            .await
            .unwrap()
            .map(|entry| entry.version)
    };
    assert_eq!(version("role/web").await, Some(7));
    assert_eq!(version("role/team-03").await, Some(1));
    assert_eq!(version("config").await, Some(1));
    let stored = store.list_mounts(root).await.unwrap();
    let stored = stored.iter().find(|m| m.id == mount.id).unwrap();
    assert_eq!(stored.config, json!({}));

    // A login uses them; a deleted role is gone for logins, reads and lists.
    let (status, policies) = jwt_login(&app, "team-03", &jwt::token(jwt::ISSUER, "svc")).await;
    assert_eq!(
        (status, policies),
        (StatusCode::OK, json!(["app", "default"]))
    );
    let (status, _) = send(&app, "DELETE", "/v1/auth/jwt/role/team-03", &token, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(version("role/team-03").await, None);
    let (status, answer) = jwt_login(&app, "team-03", &jwt::token(jwt::ISSUER, "svc")).await;
    assert_eq!(
        (status, answer["errors"][0].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid role or JWT"))
    );
    let (status, _) = send(&app, "GET", "/v1/auth/jwt/role/team-03", &token, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Unknown, and impossible, names are answered as before: not found, deleted.
    let long = format!("/v1/auth/jwt/role/{}", "x".repeat(600));
    let (status, _) = send(&app, "GET", &long, &token, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = send(&app, "DELETE", &long, &token, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // A lost compare-and-set is told apart from every other failure.
    let web = store.get_entry(root, mount.id, "role/web").await.unwrap();
    let Some(MountEntry { value, version: 7 }) = web else {
        panic!("{web:?}")
    };
    let storage = core.mounts.storage(&mount);
    assert!(matches!(
        storage.put("role/web", &value, Expect::Version(6)).await,
        Err(keybroker_core::Error::Conflict(_))
    ));
    assert!(matches!(
        storage.put("", &value, Expect::Any).await,
        Err(keybroker_core::Error::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn jwt_state_an_earlier_version_kept_in_the_mount_config_moves_into_mount_storage() {
    use keybroker_core::{
        auth::jwt::{JwtConfig, JwtRole},
        store::Expect,
    };
    let (app, token, _dir, core) = dev_broker_with_core().await;
    let stale = enable_jwt(&app, &token, &core).await;
    let root = keybroker_core::TenantId::ROOT;
    let (status, _) = send(
        &app,
        "POST",
        "/v1/sys/policy/app",
        &token,
        r#"{"policy":"path \"transit/encrypt/*\" { capabilities = [\"create\", \"update\"] }"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // The mount as an earlier version left it: configuration and roles in its config.
    let config: JwtConfig = serde_json::from_value(jwt::config()).unwrap();
    let config = JwtConfig {
        bearer_role: Some("web".to_owned()),
        ..config
    };
    let role = |policy: &str| JwtRole {
        bound_audiences: vec!["api".to_owned()],
        token_policies: vec![policy.to_owned()],
        ..JwtRole::default()
    };
    let legacy = json!({
        "config": config,
        "roles": {"web": role("app"), "old": role("app"), "moved": role("legacy")},
    });
    core.store
        .update_mount_config(root, stale.id, &legacy)
        .await
        .unwrap();
    let mount = core.mounts.reload(root).await.unwrap();
    let mount = mount.iter().find(|m| m.id == stale.id).unwrap().clone();
    // One role already in mount storage, as written since by an upgraded node: it wins
    // over the old document.
    core.mounts
        .storage(&mount)
        .put("role/moved", &role("current"), Expect::Absent)
        .await
        .unwrap();

    // A bearer request is the first use: it finds the mount for the issuer, and works.
    let bearer = Request::builder()
        .method("POST")
        .uri("/v1/transit/encrypt/bearer")
        .header(
            "Authorization",
            format!("Bearer {}", jwt::token(jwt::ISSUER, "svc")),
        )
        .body(Body::from(r#"{"plaintext":"aGk="}"#))
        .unwrap();
    let answer = app.clone().oneshot(bearer).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    // Moved: every entry in storage, the mount's config emptied.
    let store = &core.store;
    assert_eq!(
        store.list_entries(root, mount.id, "").await.unwrap(),
        vec!["config", "role/moved", "role/old", "role/web"]
    );
    let stored = store.list_mounts(root).await.unwrap();
    let stored = stored.iter().find(|m| m.id == mount.id).unwrap();
    assert_eq!(stored.config, json!({}));
    let (_, read) = send(&app, "GET", "/v1/auth/jwt/config", &token, "").await;
    assert_eq!(read["data"]["bearer_role"], "web");
    let (_, read) = send(&app, "GET", "/v1/auth/jwt/role/moved", &token, "").await;
    assert_eq!(read["data"]["token_policies"], json!(["current"]));
    let (status, policies) = jwt_login(&app, "web", &jwt::token(jwt::ISSUER, "svc")).await;
    assert_eq!(
        (status, policies),
        (StatusCode::OK, json!(["app", "default"]))
    );

    // A role deleted after the move stays deleted, even for a caller holding the mount as
    // it was before the move (another node whose mount table is not yet reloaded).
    let (status, _) = send(&app, "DELETE", "/v1/auth/jwt/role/old", &token, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(core
        .jwt
        .read_role(&core.mounts, &stale_with(&stale, &legacy), "old")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        core.jwt
            .list_roles(&core.mounts, &stale_with(&stale, &legacy))
            .await
            .unwrap(),
        vec!["moved", "web"]
    );
    let (_, listed) = send(&app, "LIST", "/v1/auth/jwt/role", &token, "").await;
    assert_eq!(listed["data"]["keys"], json!(["moved", "web"]));
}

/// `mount` as a node that has not seen a change yet holds it, with `config`.
fn stale_with(
    mount: &keybroker_core::store::MountRecord,
    config: &Value,
) -> keybroker_core::store::MountRecord {
    keybroker_core::store::MountRecord {
        config: config.clone(),
        ..mount.clone()
    }
}

#[tokio::test]
async fn a_jwt_role_or_config_changed_on_another_node_is_used_once_its_change_arrives() {
    use keybroker_core::{changes::Change, store::Expect};
    let (app, token, _dir, ready) =
        support::dev_broker_with_ready(keybroker_server::http::kind::Registry::standard()).await;
    let core = ready.broker.clone();
    let mount = enable_jwt(&app, &token, &core).await;
    let root = keybroker_core::TenantId::ROOT;
    let config = jwt::config().to_string();
    send(&app, "POST", "/v1/auth/jwt/config", &token, &config).await;
    let role = r#"{"bound_audiences":"api","token_policies":["app"]}"#;
    send(&app, "POST", "/v1/auth/jwt/role/web", &token, role).await;
    let login = || login_web(&app, jwt::ISSUER);
    assert_eq!(login().await, (StatusCode::OK, json!(["app", "default"])));

    // Another node rewrites the role (straight into the shared store): this node answers
    // from what it read until the change reaches it, then from the new role.
    let mut changed: Value = core
        .store
        .get_entry(root, mount.id, "role/web")
        .await
        .unwrap()
        .unwrap()
        .value;
    changed["token_policies"] = json!(["other"]);
    core.store
        .put_entry(root, mount.id, "role/web", &changed, Expect::Any)
        .await
        .unwrap();
    assert_eq!(login().await, (StatusCode::OK, json!(["app", "default"])));
    let change = Change::MountEntry(root, mount.id, "role/web".to_owned());
    keybroker_server::app::apply_change(&ready, &change).await;
    assert_eq!(login().await, (StatusCode::OK, json!(["default", "other"])));

    // The same for the configuration: another issuer, and the old one's tokens fail.
    let mut config = core
        .store
        .get_entry(root, mount.id, "config")
        .await
        .unwrap()
        .unwrap()
        .value;
    config["bound_issuer"] = json!("https://other.example");
    core.store
        .put_entry(root, mount.id, "config", &config, Expect::Any)
        .await
        .unwrap();
    let change = Change::MountEntry(root, mount.id, "config".to_owned());
    keybroker_server::app::apply_change(&ready, &change).await;
    assert_eq!(login().await.0, StatusCode::BAD_REQUEST);
    let other = login_web(&app, "https://other.example").await;
    assert_eq!(other, (StatusCode::OK, json!(["default", "other"])));
}

/// The mount's wrapping key (BYOK): two first reads at once make one key, every read
/// answers it, and storage keeps its private key only sealed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrapping_key_is_made_once_and_kept_sealed() {
    use base64::{engine::general_purpose::STANDARD, Engine as _};
    let (app, token, _dir, broker) = dev_broker_with_core().await;
    let uri = "/v1/transit/wrapping_key";
    let (first, second) = tokio::join!(
        send(&app, "GET", uri, &token, ""),
        send(&app, "GET", uri, &token, "")
    );
    assert_eq!(first.0, StatusCode::OK, "{}", first.1);
    assert_eq!(second.0, StatusCode::OK, "{}", second.1);
    let pem = first.1["data"]["public_key"].as_str().unwrap().to_owned();
    assert_eq!(second.1["data"]["public_key"], pem.as_str());
    assert_eq!(
        send(&app, "GET", uri, &token, "").await.1["data"]["public_key"],
        pem.as_str()
    );

    let table = broker
        .mounts
        .table(keybroker_core::TenantId::ROOT)
        .await
        .unwrap();
    let mount = table.iter().find(|m| m.path == "transit/").unwrap();
    let stored = broker
        .mounts
        .storage(mount)
        .get::<Value>("policy/import/wrapping-key")
        .await
        .unwrap()
        .unwrap();
    // Written once: a second key would have been a second version.
    assert_eq!(stored.version, 1);
    assert_eq!(stored.value["public_key"], pem.as_str());
    let sealed = STANDARD
        .decode(stored.value["sealed_private_key"].as_str().unwrap())
        .unwrap();
    // The private key's DER holds the modulus; the sealed form must not.
    let public_der = STANDARD
        .decode(
            pem.lines()
                .filter(|l| !l.starts_with("-----"))
                .collect::<String>(),
        )
        .unwrap();
    let modulus_tail = &public_der[public_der.len() - 64..public_der.len() - 5];
    assert!(sealed.len() > 2000, "{}", sealed.len());
    assert!(!sealed
        .windows(modulus_tail.len())
        .any(|w| w == modulus_tail));
    assert!(!stored.value.to_string().contains("PRIVATE"));
}

/// Every byte of every file under `dir`.
fn files_under(dir: &std::path::Path) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            all.push(bytes);
        }
    }
    all
}

async fn send_with(
    app: &axum::Router,
    uri: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method("POST").uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_wrapped_answer_is_stored_sealed_and_unwraps_once_by_its_token_alone() {
    let (app, token, dir, _broker) = dev_broker_with_core().await;
    let marker = "wrapped-marker-7f3a91";
    let body = format!(r#"{{"secret":"{marker}"}}"#);
    let wrap = [
        ("X-Vault-Token", token.as_str()),
        ("X-Vault-Wrap-TTL", "2m"),
    ];
    let (status, wrapped) = send_with(&app, "/v1/sys/wrapping/wrap", &wrap, &body).await;
    assert_eq!(status, StatusCode::OK, "{wrapped}");
    assert!(wrapped["data"].is_null() && wrapped["auth"].is_null());
    assert_eq!(wrapped["wrap_info"]["ttl"], 120);
    let wrapping = wrapped["wrap_info"]["token"].as_str().unwrap().to_owned();
    // Neither the answer nor the token is anywhere at rest in clear.
    for bytes in files_under(dir.path()) {
        for needle in [marker.as_bytes(), wrapping.as_bytes()] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle));
        }
    }
    // The wrapping token is no token elsewhere.
    let as_wrapping = [("X-Vault-Token", wrapping.as_str())];
    let (status, _) = send_with(&app, "/v1/auth/token/lookup-self", &as_wrapping, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = send_with(&app, "/v1/sys/wrapping/wrap", &as_wrapping, "{}").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // It cannot ask for its own answer wrapped again.
    let rewrapping = [
        ("X-Vault-Token", wrapping.as_str()),
        ("X-Vault-Wrap-TTL", "60"),
    ];
    let (status, _) = send_with(&app, "/v1/sys/wrapping/unwrap", &rewrapping, "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Anonymous lookup: the metadata, never the answer.
    let lookup = format!(r#"{{"token":"{wrapping}"}}"#);
    let (status, found) = send_with(&app, "/v1/sys/wrapping/lookup", &[], &lookup).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["data"]["creation_path"], "sys/wrapping/wrap");
    assert!(!found.to_string().contains(marker));
    // Unwrapped once, by the token alone.
    let (status, unwrapped) = send_with(&app, "/v1/sys/wrapping/unwrap", &as_wrapping, "").await;
    assert_eq!(status, StatusCode::OK, "{unwrapped}");
    assert_eq!(unwrapped["data"]["secret"], marker);
    let (again, refused) = send_with(&app, "/v1/sys/wrapping/unwrap", &as_wrapping, "").await;
    let unknown = [("X-Vault-Token", "kbw.unknown")];
    let (never, unknown_refused) = send_with(&app, "/v1/sys/wrapping/unwrap", &unknown, "").await;
    assert_eq!((again, &refused), (never, &unknown_refused));
    assert_eq!(again, StatusCode::BAD_REQUEST);
    assert_eq!(
        refused["errors"][0],
        "wrapping token is not valid or does not exist"
    );
}
