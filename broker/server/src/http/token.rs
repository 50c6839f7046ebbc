//! The token auth method, always mounted at `auth/token/` (Vault API: auth/token).

use std::collections::BTreeMap;

use axum::response::Response;
use keybroker_core::{
    auth::token::{Caller, TokenRequest, ROOT_POLICY},
    store::TokenRecord,
    Error, Tenant,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    body,
    error::ApiError,
    kind::{Call, Class, Handled, MountKind, Spec},
    response,
    routes::{route, Route},
    ApiRequest, Operation, Ready,
};

/// The token store's type name (`auth/token/`, built in).
pub(super) const KIND: &str = "token";

/// Every `auth/token/` route.
pub(super) const ROUTES: &[Route] = {
    use Operation::{Read as R, Write as W};
    &[
        route("auth/token/create", &[W]),
        route("auth/token/create-orphan", &[W]),
        route("auth/token/lookup-self", &[R, W]),
        route("auth/token/renew-self", &[W]),
        route("auth/token/revoke-self", &[W]),
        route("auth/token/lookup-accessor", &[W]),
        route("auth/token/revoke-accessor", &[W]),
        route("auth/token/tidy", &[W]),
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
            sudo_paths: &["auth/token/create-orphan", "auth/token/tidy"],
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
struct CreateBody {
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
    let result =
        match (rest.trim_end_matches('/'), request.operation) {
            ("create" | "create-orphan", Operation::Write) => {
                create(ready, caller, tenant, rest, request).await
            }
            ("lookup-self", Operation::Read | Operation::Write) => Ok(response::data(
                &lookup_json(&caller.token, Some(presented), now()),
            )),
            ("renew-self", Operation::Write) => match body::parse::<AccessorBody>(&request.body) {
                Ok(input) => tokens
                    .renew(&caller.token, input.increment)
                    .await
                    .map(|record| response::auth(&auth_json(None, &record, now())))
                    .map_err(ApiError::from),
                Err(error) => Err(error),
            },
            ("revoke-self", Operation::Write) => tokens
                .revoke_accessor(caller.tenant(), &caller.token.accessor)
                .await
                .map(|()| response::no_content())
                .map_err(ApiError::from),
            ("lookup-accessor", Operation::Write) => match accessor(request) {
                Ok(accessor) => tokens
                    .lookup_accessor(tenant.id, &accessor)
                    .await
                    .map(|record| response::data(&lookup_json(&record, None, now())))
                    .map_err(ApiError::from),
                Err(error) => Err(error),
            },
            ("revoke-accessor", Operation::Write) => match accessor(request) {
                Ok(accessor) => tokens
                    .revoke_accessor(tenant.id, &accessor)
                    .await
                    .map(|()| response::no_content())
                    .map_err(ApiError::from),
                Err(error) => Err(error),
            },
            ("tidy", Operation::Write) => tokens
                .tidy()
                .await
                .map(|count| response::data(&json!({ "tidied": count })))
                .map_err(ApiError::from),
            (
                "create" | "create-orphan" | "lookup-self" | "renew-self" | "revoke-self"
                | "lookup-accessor" | "revoke-accessor" | "tidy",
                _,
            ) => Err(ApiError::UnsupportedOperation),
            _ => Err(ApiError::UnsupportedPath),
        };
    ("auth/token", result)
}

fn accessor(request: &ApiRequest) -> Result<String, ApiError> {
    let input: AccessorBody = body::parse(&request.body)?;
    input
        .accessor
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing accessor"))
}

async fn create(
    ready: &Ready,
    caller: &Caller,
    tenant: &Tenant,
    rest: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    if caller.token.accessor.is_empty() {
        // A bearer JWT is no token: it cannot parent one.
        return Err(ApiError::bad_request(
            "a bearer JWT cannot create tokens; log in to get a broker token",
        ));
    }
    let input: CreateBody = body::parse(&request.body)?;
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
    let policies = policy_list(input.policies)?;
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
    let request = TokenRequest {
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
        period,
        auth_mount: None,
    };
    // A token is created in the request's tenant; its parent is the caller unless it is an
    // orphan, which only a root token may make.
    let parent = (!orphan).then_some(&*caller.token);
    let issued = ready
        .broker
        .tokens
        .create(tenant.id, parent, request)
        .await?;
    Ok(response::auth(&auth_json(
        Some(&issued.token),
        &issued.record,
        now(),
    )))
}

/// Every body of this module decoded as its handlers decode it, without a broker (see
/// [`super::fuzzing`]); how many of the wire structs accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let mut accepted = 0;
    if let Ok(input) = body::parse::<CreateBody>(body) {
        accepted += 1;
        let _ = policy_list(input.policies);
    }
    accepted + usize::from(body::parse::<AccessorBody>(body).is_ok())
}
