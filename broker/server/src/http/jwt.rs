//! The JWT auth method, mounted at `auth/<path>/` (Vault API: auth/jwt): `config`, roles,
//! and the unauthenticated `login`. Bearer mode is at the edge ([`super::authenticate`]).

use std::net::IpAddr;

use axum::{http::StatusCode, response::Response};
use keybroker_core::{
    changes::Change,
    jwt::{JwtConfigInput, JwtRoleInput},
    jwt_auth::LOGIN_FAILED,
    store::MountRecord,
};
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use super::{
    body,
    error::ApiError,
    kind::{Call, Class, Handled, Login, LoginAudit, MountKind},
    response,
    routes::{anonymous, route, Route},
    token, ApiRequest, Operation, Ready,
};

/// Every route below a jwt mount.
pub(super) const ROUTES: &[Route] = {
    use Operation::{Delete as D, List as L, Read as R, Write as W};
    &[
        anonymous(route("login", &[W])),
        route("config", &[R, W]),
        route("role", &[L]),
        route("role/:name", &[R, W, D]),
    ]
};

/// The JWT auth method.
pub(super) struct Jwt;

#[async_trait::async_trait]
impl MountKind for Jwt {
    fn name(&self) -> &'static str {
        keybroker_core::jwt_auth::AUTH_TYPE
    }

    fn class(&self) -> Class {
        Class::Auth
    }

    fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    async fn handle(&self, call: Call<'_>) -> Handled {
        match call.mount {
            Some(mount) => handle(call.ready, mount, call.rest, call.request).await,
            None => ("unknown", Err(ApiError::UnsupportedPath)),
        }
    }

    async fn login(&self, call: Login<'_>) -> (Handled, LoginAudit) {
        let (result, issued) = login(call.ready, call.mount, call.request, call.client).await;
        let audit = LoginAudit::new(None, None, issued);
        (("auth/jwt/login", result), audit)
    }

    /// Verifiers, bearer identities, configurations and roles are cached: a change to a
    /// tenant's mounts or the tenant's deletion drops the tenant's, a changed entry of a
    /// mount's storage that entry.
    async fn invalidate(&self, ready: &Ready, change: &Change) {
        match change {
            Change::Mounts(tenant) | Change::TenantDeleted(tenant) => {
                ready.broker.jwt.forget_tenant(*tenant)
            }
            Change::Resync => ready.broker.jwt.forget_all(),
            Change::MountEntry(tenant, mount, key) => {
                // Only for a jwt mount, or one this node does not know yet.
                let ours = match ready.broker.mounts.table(*tenant).await {
                    Ok(table) => table
                        .iter()
                        .find(|m| m.id == *mount)
                        .is_none_or(|m| m.kind == keybroker_core::jwt_auth::AUTH_TYPE),
                    Err(_) => true,
                };
                if ours {
                    ready.broker.jwt.forget_entry(*tenant, *mount, key);
                }
            }
            _ => {}
        }
    }
}

/// Vault API: auth/jwt/login.
#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginBody {
    role: Option<String>,
    jwt: Option<Zeroizing<String>>,
}

/// `POST auth/<mount>/login` without a token: every failure, malformed input included, is
/// the same 400 (missing role aside, as in Vault).
async fn login(
    ready: &Ready,
    mount: &MountRecord,
    request: &ApiRequest,
    client: Option<IpAddr>,
) -> (
    Result<Response, ApiError>,
    Option<keybroker_core::tokens::IssuedToken>,
) {
    if request.operation != Operation::Write {
        return (Err(ApiError::UnsupportedOperation), None);
    }
    let input: LoginBody = body::parse(&request.body).unwrap_or_default();
    let jwt = input.jwt.unwrap_or_default();
    let issued = ready
        .broker
        .jwt
        .login(
            &ready.broker.mounts,
            &ready.broker.tokens,
            mount,
            input.role.as_deref(),
            jwt.as_str(),
            client,
        )
        .await;
    match issued {
        Ok(issued) => {
            let auth = token::auth_json(Some(&issued.token), &issued.record, token::now());
            (Ok(response::auth(&auth)), Some(issued))
        }
        Err(keybroker_core::Error::InvalidRequest(message)) if message == "missing role" => {
            (Err(ApiError::bad_request("missing role")), None)
        }
        Err(keybroker_core::Error::InvalidRequest(_)) => {
            (Err(ApiError::bad_request(LOGIN_FAILED)), None)
        }
        Err(other) => (Err(other.into()), None),
    }
}

/// Routes the authenticated paths of a jwt mount.
async fn handle(
    ready: &Ready,
    mount: &MountRecord,
    rest: &str,
    request: &ApiRequest,
) -> (&'static str, Result<Response, ApiError>) {
    let segments: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
    let jwt = &ready.broker.jwt;
    let mounts = &ready.broker.mounts;
    let result = match (segments.as_slice(), request.operation) {
        (["config"], Operation::Read) => read_config(ready, mount).await,
        (["config"], Operation::Write) => match body::parse::<JwtConfigInput>(&request.body) {
            Ok(input) => jwt
                .write_config(mounts, mount, input)
                .await
                .map(|()| response::no_content())
                .map_err(ApiError::from),
            Err(error) => Err(error),
        },
        (["role"], Operation::List) => list_roles(ready, mount).await,
        (["role", name], Operation::Read) => read_role(ready, mount, name).await,
        (["role", name], Operation::Write) => match body::parse::<JwtRoleInput>(&request.body) {
            Ok(input) => jwt
                .write_role(mounts, mount, name, input)
                .await
                .map(|()| response::no_content())
                .map_err(ApiError::from),
            Err(error) => Err(error),
        },
        (["role", name], Operation::Delete) => jwt
            .delete_role(mounts, mount, name)
            .await
            .map(|()| response::no_content())
            .map_err(ApiError::from),
        (["config"] | ["role"] | ["role", _] | ["login"], _) => Err(ApiError::UnsupportedOperation),
        _ => Err(ApiError::UnsupportedPath),
    };
    ("auth/jwt", result)
}

fn not_found() -> Response {
    super::error::error_body(StatusCode::NOT_FOUND, &[])
}

async fn read_config(ready: &Ready, mount: &MountRecord) -> Result<Response, ApiError> {
    let jwt = &ready.broker.jwt;
    match jwt.read_config(&ready.broker.mounts, mount).await? {
        Some(config) => Ok(response::data(&config)),
        None => Ok(not_found()),
    }
}

async fn list_roles(ready: &Ready, mount: &MountRecord) -> Result<Response, ApiError> {
    let names = ready
        .broker
        .jwt
        .list_roles(&ready.broker.mounts, mount)
        .await?;
    if names.is_empty() {
        return Ok(not_found());
    }
    Ok(response::data(&json!({ "keys": names })))
}

async fn read_role(ready: &Ready, mount: &MountRecord, name: &str) -> Result<Response, ApiError> {
    let jwt = &ready.broker.jwt;
    match jwt.read_role(&ready.broker.mounts, mount, name).await? {
        Some(role) => Ok(response::data(&role)),
        None => Ok(not_found()),
    }
}

/// Every body of this module decoded as its handlers decode it, without a broker (see
/// [`super::fuzzing`]); how many of the wire structs accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let mut accepted = usize::from(body::parse::<LoginBody>(body).is_ok());
    if let Ok(input) = body::parse::<JwtConfigInput>(body) {
        accepted += 1;
        let _ = keybroker_core::jwt::JwtConfig::from_input(input);
    }
    if let Ok(input) = body::parse::<JwtRoleInput>(body) {
        accepted += 1;
        let _ = keybroker_core::jwt::JwtRole::apply(None, input);
    }
    accepted
}
