//! The token auth method, always mounted at `auth/token/` (Vault API: auth/token).
//!
//! The paths that name another token take it in the body (`lookup`, `renew`, `revoke`,
//! `revoke-orphan`) or by accessor (`lookup-accessor`, `renew-accessor`,
//! `revoke-accessor`), always within the request's tenant: an unknown token and another
//! tenant's get the same answer. Token roles and `create/:role` are in [`roles`].

use std::collections::BTreeMap;

use axum::{http::StatusCode, response::Response};
use keybroker_core::{
    auth::token::{Caller, TokenRequest, ROOT_POLICY},
    store::TokenRecord,
    Error, Tenant,
};
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

mod roles;

use super::{
    body,
    error::{error_body, ApiError},
    kind::{Call, Class, Handled, MountKind, Spec},
    response,
    routes::{route, Route},
    ApiRequest, Operation, Ready,
};

/// The token store's type name (`auth/token/`, built in).
pub(super) const KIND: &str = "token";

/// Every `auth/token/` route.
pub(super) const ROUTES: &[Route] = {
    use Operation::{Delete as D, List as L, Read as R, Write as W};
    &[
        route("auth/token/create", &[W]),
        route("auth/token/create-orphan", &[W]),
        route("auth/token/lookup-self", &[R, W]),
        route("auth/token/renew-self", &[W]),
        route("auth/token/revoke-self", &[W]),
        route("auth/token/lookup-accessor", &[W]),
        route("auth/token/revoke-accessor", &[W]),
        route("auth/token/tidy", &[W]),
        route("auth/token/lookup", &[R, W]),
        route("auth/token/renew", &[W]),
        route("auth/token/renew-accessor", &[W]),
        route("auth/token/revoke", &[W]),
        route("auth/token/revoke-orphan", &[W]),
        route("auth/token/accessors", &[L]),
        route("auth/token/roles", &[L]),
        route("auth/token/roles/:role_name", &[R, W, D]),
        route("auth/token/create/:role_name", &[W]),
    ]
};

/// `auth/token/`, built in.
pub(super) struct TokenStore;

#[async_trait::async_trait]
impl MountKind for TokenStore {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: KIND,
            class: Class::Builtin,
            routes: ROUTES,
            // As in Vault (`accessors*` is a root path); `revoke-orphan` asks for sudo in its
            // handler, with Vault's 400.
            sudo_paths: &[
                "auth/token/create-orphan",
                "auth/token/tidy",
                "auth/token/accessors",
            ],
        }
    }

    async fn handle(&self, call: Call<'_>) -> Handled {
        let rest = call.rest.strip_prefix("auth/token/").unwrap_or(call.rest);
        let presented = super::edge::presented_token(call.headers).unwrap_or_default();
        handle(
            call.ready,
            call.caller,
            presented,
            call.tenant,
            rest,
            call.request,
        )
        .await
    }
}

/// Vault API: auth/token/create.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct CreateBody {
    policies: Option<Value>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    explicit_max_ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_u64")]
    num_uses: Option<u64>,
    meta: Option<BTreeMap<String, String>>,
    display_name: Option<String>,
    #[serde(deserialize_with = "body::opt_bool")]
    renewable: Option<bool>,
    #[serde(deserialize_with = "body::opt_bool")]
    no_default_policy: Option<bool>,
    #[serde(deserialize_with = "body::opt_bool")]
    no_parent: Option<bool>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    period: Option<u64>,
}

/// Vault API: auth/token/renew-self and the accessor endpoints.
#[derive(Deserialize, Default)]
#[serde(default)]
struct AccessorBody {
    accessor: Option<String>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    increment: Option<u64>,
}

/// Vault API: auth/token/lookup, renew, revoke and revoke-orphan: the token in the body.
#[derive(Deserialize, Default)]
#[serde(default)]
struct TokenBody {
    token: Option<Zeroizing<String>>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    increment: Option<u64>,
}

impl TokenBody {
    /// The body's token, or Vault's 400.
    fn token(&self) -> Result<&str, ApiError> {
        self.token
            .as_deref()
            .map(String::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ApiError::bad_request("missing token ID"))
    }
}

/// Policies as Vault takes them: a list, or a comma-separated string.
fn policy_list(value: Option<Value>) -> Result<Vec<String>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(text
            .split(',')
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect()),
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(ApiError::bad_request("policies must be a list of strings")),
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request("policies must be a list of strings")),
    }
}

pub(super) fn rfc3339(unix: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0)),
    )
    .to_string()
}

/// Vault API: token lookup data. `id` only when the caller presented that token.
fn lookup_json(record: &TokenRecord, id: Option<&str>, now: i64) -> Value {
    let ttl = record.expires_at.map_or(0, |at| (at - now).max(0));
    json!({
        "accessor": record.accessor,
        "creation_time": record.created_at,
        "creation_ttl": record.ttl,
        "display_name": record.display_name,
        "entity_id": "",
        "expire_time": record.expires_at.map(rfc3339),
        "explicit_max_ttl": record.max_expires_at.map_or(0, |m| (m - record.created_at).max(0)),
        "id": id.unwrap_or_default(),
        "issue_time": rfc3339(record.created_at),
        "meta": record.meta,
        "num_uses": record.uses_remaining.unwrap_or(0),
        "orphan": record.parent_accessor.is_none(),
        "path": "auth/token/create",
        "period": record.period,
        "policies": record.policies,
        "renewable": record.renewable,
        "ttl": ttl,
        "type": "service",
    })
}

/// Vault API: the `auth` block of a login or token creation.
pub(super) fn auth_json(token: Option<&str>, record: &TokenRecord, now: i64) -> Value {
    json!({
        "client_token": token.unwrap_or_default(),
        "accessor": record.accessor,
        "policies": record.policies,
        "token_policies": record.policies,
        "metadata": record.meta,
        "lease_duration": record.expires_at.map_or(0, |at| (at - now).max(0)),
        "renewable": record.renewable,
        "entity_id": "",
        "token_type": "service",
        "orphan": record.parent_accessor.is_none(),
        "num_uses": record.uses_remaining.unwrap_or(0),
    })
}

/// The wall clock, for the TTLs shown in answers.
pub(super) fn now() -> i64 {
    use keybroker_core::clock::Clock as _;
    keybroker_core::clock::SystemClock.now_unix()
}

/// Routes `auth/token/<rest>`.
async fn handle(
    ready: &Ready,
    caller: &Caller,
    presented: &str,
    tenant: &Tenant,
    rest: &str,
    request: &ApiRequest,
) -> (&'static str, Result<Response, ApiError>) {
    let tokens = &ready.broker.tokens;
    let path = rest.trim_end_matches('/');
    let result = match (path, request.operation) {
        ("create" | "create-orphan", Operation::Write) => {
            create(ready, caller, tenant, rest, request).await
        }
        // A GET names no token: Vault looks up the caller's own.
        ("lookup-self", Operation::Read | Operation::Write) | ("lookup", Operation::Read) => {
            Ok(lookup(&caller.token, Some(presented)))
        }
        ("lookup", Operation::Write) => match body::parse::<TokenBody>(&request.body) {
            // As in Vault, a body naming no token looks up the caller's own.
            Ok(input) if input.token.as_ref().is_none_or(|t| t.is_empty()) => {
                Ok(lookup(&caller.token, Some(presented)))
            }
            Ok(input) => match input.token() {
                Ok(token) => match tokens.find(tenant.id, token).await {
                    Ok(record) => Ok(lookup(&record, Some(token))),
                    Err(Error::PermissionDenied) => {
                        Ok(error_body(StatusCode::FORBIDDEN, &["bad token"]))
                    }
                    Err(error) => Err(error.into()),
                },
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        },
        ("renew-self", Operation::Write) => match body::parse::<AccessorBody>(&request.body) {
            Ok(input) => renew(ready, &caller.token, input.increment, Some(presented)).await,
            Err(error) => Err(error),
        },
        ("renew", Operation::Write) => match named_token(ready, tenant, request).await {
            Ok((Some(record), input)) => {
                let token = input.token.as_deref().map(String::as_str);
                renew(ready, &record, input.increment, token).await
            }
            Ok((None, _)) => Err(ApiError::bad_request("token not found")),
            Err(error) => Err(error),
        },
        ("renew-accessor", Operation::Write) => match body::parse::<AccessorBody>(&request.body) {
            Ok(input) => match required_accessor(input.accessor.as_deref()) {
                Ok(accessor) => match tokens.lookup_accessor(tenant.id, accessor).await {
                    Ok(record) => renew(ready, &record, input.increment, None).await,
                    Err(error) => Err(error.into()),
                },
                Err(error) => Err(error),
            },
            Err(error) => Err(error),
        },
        ("revoke-self", Operation::Write) => {
            revoke(ready, caller.tenant(), &caller.token.accessor).await
        }
        // As in Vault, revoking a token that does not exist (here) succeeds.
        ("revoke", Operation::Write) => match named_token(ready, tenant, request).await {
            Ok((Some(record), _)) => revoke(ready, record.tenant, &record.accessor).await,
            Ok((None, _)) => Ok(response::no_content()),
            Err(error) => Err(error),
        },
        ("revoke-orphan", Operation::Write) => revoke_orphan(ready, caller, tenant, request).await,
        ("lookup-accessor", Operation::Write) => match accessor(request) {
            Ok(accessor) => tokens
                .lookup_accessor(tenant.id, &accessor)
                .await
                .map(|record| lookup(&record, None))
                .map_err(ApiError::from),
            Err(error) => Err(error),
        },
        ("revoke-accessor", Operation::Write) => match accessor(request) {
            Ok(accessor) => revoke(ready, tenant.id, &accessor).await,
            Err(error) => Err(error),
        },
        ("accessors", Operation::List) => tokens
            .accessors(tenant.id)
            .await
            .map(|keys| response::data(&json!({ "keys": keys })))
            .map_err(ApiError::from),
        ("tidy", Operation::Write) => tokens
            .tidy()
            .await
            .map(|count| response::data(&json!({ "tidied": count })))
            .map_err(ApiError::from),
        _ => roles::handle(ready, caller, tenant, path, request).await,
    };
    ("auth/token", result)
}

/// Vault API: token lookup data. `id` only when the caller named that token.
fn lookup(record: &TokenRecord, id: Option<&str>) -> Response {
    response::data(&lookup_json(record, id, now()))
}

/// Renews `record` (renew-self, renew, renew-accessor); the `auth` block has no token.
async fn renew(
    ready: &Ready,
    record: &TokenRecord,
    increment: Option<u64>,
    token: Option<&str>,
) -> Result<Response, ApiError> {
    let renewed = ready.broker.tokens.renew(record, increment).await?;
    Ok(response::auth(&auth_json(token, &renewed, now())))
}

/// Revokes a token and its children (revoke-self, revoke, revoke-accessor).
async fn revoke(
    ready: &Ready,
    tenant: keybroker_core::TenantId,
    accessor: &str,
) -> Result<Response, ApiError> {
    ready
        .broker
        .tokens
        .revoke_accessor(tenant, accessor)
        .await?;
    Ok(response::no_content())
}

/// Vault API: auth/token/revoke-orphan. Root or sudo on the path, as in Vault.
async fn revoke_orphan(
    ready: &Ready,
    caller: &Caller,
    tenant: &Tenant,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let input: TokenBody = body::parse(&request.body)?;
    input.token()?;
    if !super::access::has_sudo(ready, caller, tenant, request).await? {
        return Err(ApiError::bad_request(
            "root or sudo privileges required to revoke and orphan",
        ));
    }
    let (record, _) = named_token(ready, tenant, request).await?;
    let record = record.ok_or_else(|| ApiError::bad_request("token to revoke not found"))?;
    ready
        .broker
        .tokens
        .revoke_orphan(record.tenant, &record.accessor)
        .await?;
    Ok(response::no_content())
}

/// The token a body names, if it is a live token of the request's tenant (`None` for an
/// unknown token and another tenant's alike), with the body.
async fn named_token(
    ready: &Ready,
    tenant: &Tenant,
    request: &ApiRequest,
) -> Result<(Option<std::sync::Arc<TokenRecord>>, TokenBody), ApiError> {
    let input: TokenBody = body::parse(&request.body)?;
    let found = ready.broker.tokens.find(tenant.id, input.token()?).await;
    match found {
        Ok(record) => Ok((Some(record), input)),
        Err(Error::PermissionDenied) => Ok((None, input)),
        Err(error) => Err(error.into()),
    }
}

fn required_accessor(accessor: Option<&str>) -> Result<&str, ApiError> {
    accessor
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing accessor"))
}

fn accessor(request: &ApiRequest) -> Result<String, ApiError> {
    let input: AccessorBody = body::parse(&request.body)?;
    required_accessor(input.accessor.as_deref()).map(str::to_owned)
}

async fn create(
    ready: &Ready,
    caller: &Caller,
    tenant: &Tenant,
    rest: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    refuse_bearer_jwt(caller)?;
    let mut input: CreateBody = body::parse(&request.body)?;
    let period = input.period.filter(|p| *p > 0);
    let orphan = rest.starts_with("create-orphan") || input.no_parent == Some(true);
    // As in Vault: only root or sudo tokens make orphans or periodic tokens.
    if (orphan || period.is_some())
        && !super::access::has_sudo(ready, caller, tenant, request).await?
    {
        return Err(if period.is_some() {
            ApiError::bad_request("root or sudo privileges required to create periodic token")
        } else {
            ApiError::Core(Error::PermissionDenied)
        });
    }
    let policies = policy_list(input.policies.take())?;
    // As in Vault: only a root token creates a token carrying `root`. A child's policies are
    // checked against its parent's below; an orphan has no parent, so sudo alone must not
    // let it name root.
    let caller_is_root = caller.token.policies.iter().any(|p| p == ROOT_POLICY);
    if !caller_is_root
        && policies
            .iter()
            .any(|p| p.trim().eq_ignore_ascii_case(ROOT_POLICY))
    {
        return Err(ApiError::bad_request(
            "root tokens may not be created without parent token being root",
        ));
    }
    let request = token_request(input, policies);
    // A token is created in the request's tenant; its parent is the caller unless it is an
    // orphan, which only a root token may make.
    let parent = (!orphan).then_some(&*caller.token);
    let issued = ready
        .broker
        .tokens
        .create(tenant.id, parent, request)
        .await?;
    Ok(issued_answer(&issued))
}

/// Refuses a bearer JWT as a token's parent: it is no token.
fn refuse_bearer_jwt(caller: &Caller) -> Result<(), ApiError> {
    if caller.token.accessor.is_empty() {
        return Err(ApiError::bad_request(
            "a bearer JWT cannot create tokens; log in to get a broker token",
        ));
    }
    Ok(())
}

/// What a create body asks for, with `policies` decoded.
fn token_request(input: CreateBody, policies: Vec<String>) -> TokenRequest {
    TokenRequest {
        policies,
        ttl: input.ttl,
        explicit_max_ttl: input.explicit_max_ttl,
        num_uses: input.num_uses.unwrap_or(0),
        meta: input.meta.unwrap_or_default(),
        display_name: input
            .display_name
            .filter(|d| !d.is_empty())
            .map(|d| format!("token-{d}")),
        renewable: input.renewable,
        no_default_policy: input.no_default_policy.unwrap_or(false),
        bound_cidrs: Vec::new(),
        period: input.period.filter(|p| *p > 0),
        auth_mount: None,
    }
}

/// Vault API: the answer to a token creation.
fn issued_answer(issued: &keybroker_core::auth::token::IssuedToken) -> Response {
    response::auth(&auth_json(Some(&issued.token), &issued.record, now()))
}

/// Every body of this module decoded as its handlers decode it, without a broker (see
/// [`super::fuzzing`]); how many of the wire structs accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let mut accepted = 0;
    if let Ok(input) = body::parse::<CreateBody>(body) {
        accepted += 1;
        let _ = policy_list(input.policies);
    }
    accepted += usize::from(body::parse::<TokenBody>(body).is_ok());
    accepted += roles::fuzz_role_body(body);
    accepted + usize::from(body::parse::<AccessorBody>(body).is_ok())
}
