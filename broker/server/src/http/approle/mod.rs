//! The AppRole auth method, mounted at `auth/<path>/` (Vault API: auth/approle): roles,
//! role-ids, secret-ids, tidy, and the unauthenticated `login`.
//!
//! The edge sends `auth/<mount>/login` here without looking at any token ([`login()`]); everything else arrives authenticated and authorised ([`handle`]).
//!
//! This file holds the routes, the dispatch and what the handlers share; the handlers are
//! in `role.rs` (roles and role_ids), `secret_id.rs` (secret_ids and their tidy) and
//! `login.rs`.

mod login;
mod role;
mod secret_id;

use axum::{http::StatusCode, response::Response};
use keybroker_core::{auth::approle::AUTH_TYPE, store::MountRecord};
use serde::Deserialize;
use serde_json::Value;
use zeroize::Zeroizing;

use self::{
    login::login,
    role::{delete_role, list_roles, read_role, read_role_id, write_role, write_role_id},
    secret_id::{
        destroy_accessor, destroy_secret_id, issue_secret_id, list_secret_ids, lookup_accessor,
        lookup_secret_id, tidy,
    },
};
use super::{
    body,
    error::ApiError,
    kind::{unmounted, Call, Class, Handled, Login, LoginAudit, MountKind, Spec},
    routes::{anonymous, route, Route},
    ApiRequest, Operation, Ready,
};

/// Every route below an approle mount.
pub(super) const ROUTES: &[Route] = {
    use Operation::{Delete as D, List as L, Read as R, Write as W};
    &[
        anonymous(route("login", &[W])),
        route("role", &[L]),
        route("role/:name", &[R, W, D]),
        route("role/:name/role-id", &[R, W]),
        route("role/:name/secret-id", &[W, L]),
        route("role/:name/custom-secret-id", &[W]),
        route("role/:name/secret-id/lookup", &[W]),
        route("role/:name/secret-id/destroy", &[W, D]),
        route("role/:name/secret-id-accessor/lookup", &[W]),
        route("role/:name/secret-id-accessor/destroy", &[W, D]),
        route("tidy/secret-id", &[W]),
    ]
};

/// The AppRole auth method.
pub(super) struct AppRole;

#[async_trait::async_trait]
impl MountKind for AppRole {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: AUTH_TYPE,
            class: Class::Auth,
            routes: ROUTES,
            sudo_paths: &[],
        }
    }

    async fn handle(&self, call: Call<'_>) -> Handled {
        let Some(mount) = call.mount else {
            return unmounted();
        };
        handle(call.ready, mount, call.rest, call.request).await
    }

    async fn login(&self, call: Login<'_>) -> (Handled, LoginAudit) {
        let (result, audit) = login(call.ready, call.mount, call.request, call.client).await;
        (("auth/approle/login", result), audit)
    }
}

/// Vault API: auth/approle/role/:role_name/role-id, and the secret-id lookup and destroy
/// endpoints.
#[derive(Deserialize, Default)]
#[serde(default)]
struct IdentifierBody {
    role_id: Option<String>,
    secret_id: Option<Zeroizing<String>>,
    secret_id_accessor: Option<String>,
}

/// A list given as a JSON list of strings or a comma-separated string; `None` if absent.
fn string_list(field: &str, value: Option<Value>) -> Result<Option<Vec<String>>, ApiError> {
    let invalid = || ApiError::bad_request(format!("{field} must be a list of strings"));
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(
            text.split(',')
                .map(|item| item.trim().to_owned())
                .filter(|item| !item.is_empty())
                .collect(),
        )),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.trim().to_owned()),
                _ => Err(invalid()),
            })
            .filter(|item| item.as_ref().map_or(true, |text| !text.is_empty()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(invalid()),
    }
}

/// Routes the authenticated paths of an approle mount.
async fn handle(
    ready: &Ready,
    mount: &MountRecord,
    rest: &str,
    request: &ApiRequest,
) -> (&'static str, Result<Response, ApiError>) {
    if mount.kind != AUTH_TYPE {
        return ("unknown", Err(ApiError::UnsupportedPath));
    }
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let op = request.operation;
    let result = match (segments.as_slice(), op) {
        (["role"], Operation::List) => list_roles(ready, mount, request).await,
        (["role", name], Operation::Read) => read_role(ready, mount, name).await,
        (["role", name], Operation::Write) => write_role(ready, mount, name, request).await,
        (["role", name], Operation::Delete) => delete_role(ready, mount, name).await,
        (["role", name, "role-id"], Operation::Read) => read_role_id(ready, mount, name).await,
        (["role", name, "role-id"], Operation::Write) => {
            write_role_id(ready, mount, name, request).await
        }
        (["role", name, "secret-id"], Operation::Write) => {
            issue_secret_id(ready, mount, name, request, false).await
        }
        (["role", name, "custom-secret-id"], Operation::Write) => {
            issue_secret_id(ready, mount, name, request, true).await
        }
        (["role", name, "secret-id"], Operation::List) => list_secret_ids(ready, mount, name).await,
        (["role", name, "secret-id", "lookup"], Operation::Write) => {
            lookup_secret_id(ready, mount, name, request).await
        }
        (["role", name, "secret-id", "destroy"], Operation::Write | Operation::Delete) => {
            destroy_secret_id(ready, mount, name, request).await
        }
        (["role", name, "secret-id-accessor", "lookup"], Operation::Write) => {
            lookup_accessor(ready, mount, name, request).await
        }
        (["role", name, "secret-id-accessor", "destroy"], Operation::Write | Operation::Delete) => {
            destroy_accessor(ready, mount, name, request).await
        }
        (["tidy", "secret-id"], Operation::Write) => Ok(tidy(ready, mount)),
        (
            ["role"]
            | ["role", _]
            | ["role", _, "role-id" | "secret-id" | "custom-secret-id"]
            | ["role", _, "secret-id" | "secret-id-accessor", "lookup" | "destroy"]
            | ["tidy", "secret-id"]
            | ["login"],
            _,
        ) => Err(ApiError::UnsupportedOperation),
        _ => Err(ApiError::UnsupportedPath),
    };
    ("auth/approle", result)
}

fn not_found() -> Response {
    super::error::error_body(StatusCode::NOT_FOUND, &[])
}

/// Feeds a decoded list of CIDR blocks on to where a handler would (fuzzing only).
fn fuzz_cidrs(list: Result<Option<Vec<String>>, ApiError>) {
    if let Ok(Some(list)) = list {
        let _ = keybroker_core::cidr::canonical_list(&list);
    }
}

/// Every body of this module decoded as its handlers decode it, without a broker (see
/// [`super::fuzzing`]); how many of the wire structs accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    login::fuzz_body(body)
        + role::fuzz_body(body)
        + secret_id::fuzz_body(body)
        + usize::from(body::parse::<IdentifierBody>(body).is_ok())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn lists_take_vaults_forms() {
        assert_eq!(
            string_list("x", Some(json!("a, b,,c"))).unwrap(),
            Some(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()])
        );
        assert_eq!(
            string_list("x", Some(json!(["a", " "]))).unwrap(),
            Some(vec!["a".to_owned()])
        );
        assert_eq!(string_list("x", None).unwrap(), None);
        assert!(string_list("x", Some(json!([1]))).is_err());
    }
}
