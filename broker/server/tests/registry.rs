//! A kind of mount written here, in a test, with nothing but the registry and mount storage:
//! no edit to the dispatcher, the `Store` trait or a migration. It must mount, route (404
//! and 405 from its own route list), answer Vault's existence check (create versus update),
//! have its `sudo` path enforced, store its data scoped to its mount and tenant, and stay out
//! of `sys/auth`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use keybroker_core::{mount_storage::MountStorage, store::Expect};
use keybroker_server::http::{
    error::ApiError,
    kind::{Call, Class, Handled, MountKind, Registry, Spec},
    routes::{route, Route},
    Operation,
};
use serde_json::{json, Value};

mod support;

/// A notes engine: `notes/:name` holds one JSON document, `admin/purge` (sudo) deletes
/// them all.
struct Notes;

const ROUTES: &[Route] = {
    use Operation::{Delete as D, List as L, Read as R, Write as W};
    &[
        route("notes", &[L]),
        route("notes/:name", &[R, W, D]),
        route("admin/purge", &[W]),
    ]
};

fn storage(call: &Call<'_>) -> MountStorage {
    let mount = call.mount.expect("a mounted kind");
    MountStorage::new(call.ready.broker.store.clone(), mount.tenant, mount.id)
}

fn answer(result: Result<Response, keybroker_core::Error>) -> Handled {
    ("notes", result.map_err(ApiError::from))
}

#[async_trait::async_trait]
impl MountKind for Notes {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: "notes",
            class: Class::Engine,
            routes: ROUTES,
            sudo_paths: &["admin"],
        }
    }

    async fn creates(
        &self,
        ready: &keybroker_server::http::Ready,
        _tenant: &keybroker_core::Tenant,
        mount: &keybroker_core::store::MountRecord,
        rest: &str,
    ) -> bool {
        let Some(name) = rest.strip_prefix("notes/") else {
            return false;
        };
        let notes = MountStorage::new(ready.broker.store.clone(), mount.tenant, mount.id);
        matches!(notes.get::<Value>(name).await, Ok(None))
    }

    async fn handle(&self, call: Call<'_>) -> Handled {
        let notes = storage(&call);
        let segments: Vec<&str> = call.rest.trim_end_matches('/').split('/').collect();
        let result = match (segments.as_slice(), call.request.operation) {
            (["notes"], Operation::List) => notes
                .list("")
                .await
                .map(|keys| Json(json!({"data": {"keys": keys}})).into_response()),
            (["notes", name], Operation::Read) => match notes.get::<Value>(name).await {
                Ok(Some(entry)) => Ok(
                    Json(json!({"data": entry.value, "version": entry.version})).into_response()
                ),
                Ok(None) => Ok(StatusCode::NOT_FOUND.into_response()),
                Err(error) => Err(error),
            },
            (["notes", name], Operation::Write) => {
                let body: Value = serde_json::from_slice(&call.request.body).unwrap_or(Value::Null);
                notes
                    .put(name, &body, Expect::Any)
                    .await
                    .map(|version| Json(json!({"data": {"version": version}})).into_response())
            }
            (["notes", name], Operation::Delete) => notes
                .delete(name, Expect::Any)
                .await
                .map(|_| StatusCode::NO_CONTENT.into_response()),
            (["admin", "purge"], Operation::Write) => {
                let mut result = Ok(StatusCode::NO_CONTENT.into_response());
                match notes.list("").await {
                    Ok(keys) => {
                        for key in keys {
                            if let Err(error) = notes.delete(&key, Expect::Any).await {
                                result = Err(error);
                            }
                        }
                    }
                    Err(error) => result = Err(error),
                }
                result
            }
            _ => Ok(StatusCode::NOT_FOUND.into_response()),
        };
        answer(result)
    }
}

#[tokio::test]
async fn a_kind_written_in_a_test_mounts_routes_checks_sudo_and_stores() {
    let (app, root, _dir, ready) =
        support::dev_broker_with_ready(Registry::standard().with(Notes)).await;
    let core = ready.broker;
    let client = support::Api { app };
    let root = root.as_str();

    // It mounts as an engine, not as an auth method.
    let (status, body) = client
        .call(
            Some(root),
            "",
            "POST",
            "sys/mounts/memo",
            Some(json!({"type": "notes"})),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = client
        .call(
            Some(root),
            "",
            "POST",
            "sys/auth/memo",
            Some(json!({"type": "notes"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (_, mounts) = client.call(Some(root), "", "GET", "sys/mounts", None).await;
    assert_eq!(mounts["data"]["memo/"]["type"], "notes", "{mounts}");

    // It routes, with its own 404 and 405.
    let (status, body) = client
        .call(
            Some(root),
            "",
            "PUT",
            "memo/notes/first",
            Some(json!({"text": "hello"})),
        )
        .await;
    assert_eq!(
        (status, body["data"]["version"].as_u64()),
        (200, Some(1)),
        "{body}"
    );
    let (status, body) = client
        .call(Some(root), "", "GET", "memo/notes/first", None)
        .await;
    assert_eq!(
        (status, &body["data"]["text"]),
        (200, &json!("hello")),
        "{body}"
    );
    let (status, body) = client
        .call(Some(root), "", "LIST", "memo/notes", None)
        .await;
    assert_eq!(
        (status, &body["data"]["keys"]),
        (200, &json!(["first"])),
        "{body}"
    );
    let (status, _) = client
        .call(Some(root), "", "GET", "memo/nowhere", None)
        .await;
    assert_eq!(status, 404, "a path the kind does not list");
    let (status, _) = client
        .call(Some(root), "", "LIST", "memo/notes/first", None)
        .await;
    assert_eq!(status, 405, "a verb the route does not list");

    // The existence check: `create` writes new notes only, `update` changes existing ones.
    let creator = client
        .token_with(
            root,
            "",
            "memo-create",
            r#"path "memo/notes/*" { capabilities = ["create", "read"] }"#,
        )
        .await;
    let updater = client
        .token_with(
            root,
            "",
            "memo-update",
            r#"path "memo/notes/*" { capabilities = ["update"] }"#,
        )
        .await;
    let writes = [
        (&creator, "second", 200, "create may write a new note"),
        (
            &creator,
            "second",
            403,
            "create may not change an existing note",
        ),
        (&updater, "third", 403, "update may not create a note"),
        (
            &updater,
            "second",
            200,
            "update may change an existing note",
        ),
    ];
    for (token, name, expected, why) in writes {
        let path = format!("memo/notes/{name}");
        let (status, _) = client
            .call(Some(token), "", "PUT", &path, Some(json!({"text": why})))
            .await;
        assert_eq!(status, expected, "{why}");
    }

    // Its sudo path needs sudo.
    let no_sudo = client
        .token_with(
            root,
            "",
            "memo-admin",
            r#"path "memo/admin/*" { capabilities = ["update"] }"#,
        )
        .await;
    let (status, _) = client
        .call(Some(&no_sudo), "", "POST", "memo/admin/purge", None)
        .await;
    assert_eq!(status, 403, "a sudo path without sudo");
    let sudo = client
        .token_with(
            root,
            "",
            "memo-sudo",
            r#"path "memo/admin/*" { capabilities = ["update", "sudo"] }"#,
        )
        .await;
    let (status, _) = client
        .call(Some(&sudo), "", "POST", "memo/admin/purge", None)
        .await;
    assert_eq!(status, 204, "a sudo path with sudo");
    let (_, body) = client
        .call(Some(root), "", "LIST", "memo/notes", None)
        .await;
    assert!(
        body["data"]["keys"].as_array().unwrap().is_empty(),
        "{body}"
    );

    // Its data is scoped to its mount and tenant: a tenant's mount of the same path sees
    // nothing of the root namespace's, and the store holds each under its own mount.
    let (status, _) = client
        .call(
            Some(root),
            "",
            "PUT",
            "memo/notes/root-only",
            Some(json!({"text": "r"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = client
        .call(Some(root), "", "POST", "sys/namespaces/acme", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = client
        .call(
            Some(root),
            "acme",
            "POST",
            "sys/mounts/memo",
            Some(json!({"type": "notes"})),
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = client
        .call(Some(root), "acme", "GET", "memo/notes/root-only", None)
        .await;
    assert_eq!(status, 404, "another tenant's mount of the same path");
    let root_mount = core
        .mounts
        .resolve(keybroker_core::TenantId::ROOT, "memo/")
        .await
        .unwrap()
        .unwrap()
        .0;
    let stored = MountStorage::new(core.store.clone(), root_mount.tenant, root_mount.id)
        .get::<Value>("root-only")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.value, json!({"text": "r"}));

    // Unmounting deletes its data with the mount.
    let (status, _) = client
        .call(Some(root), "", "DELETE", "sys/mounts/memo", None)
        .await;
    assert_eq!(status, 204);
    let gone = MountStorage::new(core.store.clone(), root_mount.tenant, root_mount.id)
        .list("")
        .await
        .unwrap();
    assert!(gone.is_empty(), "{gone:?}");
}
