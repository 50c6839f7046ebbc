//! Roles and their role_ids (Vault API: auth/approle/role, role/:role_name and
//! role/:role_name/role-id): list, read, write, delete.

use axum::response::Response;
use keybroker_core::{
    auth::approle::RoleUpdate,
    store::{AppRoleRecord, MountRecord},
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{fuzz_cidrs, not_found, string_list, IdentifierBody};
use crate::http::{body, error::ApiError, response, ApiRequest, Ready};

/// Vault API: auth/approle/role/:role_name, create/update. Lists are JSON lists or
/// comma-separated strings; `policies`, `bound_cidr_list` and `period` are Vault's older
/// names.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RoleBody {
    role_id: Option<String>,
    #[serde(deserialize_with = "body::opt_bool")]
    bind_secret_id: Option<bool>,
    #[serde(deserialize_with = "body::opt_u64")]
    secret_id_num_uses: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    secret_id_ttl: Option<u64>,
    secret_id_bound_cidrs: Option<Value>,
    bound_cidr_list: Option<Value>,
    token_bound_cidrs: Option<Value>,
    token_policies: Option<Value>,
    policies: Option<Value>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    token_ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    token_max_ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    token_explicit_max_ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_u64")]
    token_num_uses: Option<u64>,
    #[serde(deserialize_with = "body::opt_bool")]
    token_no_default_policy: Option<bool>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    token_period: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    period: Option<u64>,
    token_type: Option<String>,
}

/// Vault API: auth/approle/role, list; with OpenBao's `after` and `limit`.
pub(super) async fn list_roles(
    ready: &Ready,
    mount: &MountRecord,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let names = ready.broker.approle.list_roles(mount).await?;
    let names = crate::http::paging::page(names, &request.query)?;
    if names.is_empty() {
        return Ok(not_found());
    }
    Ok(response::data(&json!({ "keys": names })))
}

/// Vault API: auth/approle/role/:role_name, read.
fn role_json(role: &AppRoleRecord) -> Value {
    json!({
        "bind_secret_id": role.bind_secret_id,
        "local_secret_ids": false,
        "secret_id_bound_cidrs": role.secret_id_bound_cidrs,
        "secret_id_num_uses": role.secret_id_num_uses,
        "secret_id_ttl": role.secret_id_ttl,
        "token_bound_cidrs": role.token_bound_cidrs,
        "token_explicit_max_ttl": role.token_explicit_max_ttl,
        "token_max_ttl": role.token_max_ttl,
        "token_no_default_policy": role.token_no_default_policy,
        "token_num_uses": role.token_num_uses,
        "token_period": role.token_period,
        "period": role.token_period,
        "token_policies": role.token_policies,
        "policies": role.token_policies,
        "token_ttl": role.token_ttl,
        "token_type": "default",
    })
}

pub(super) async fn read_role(
    ready: &Ready,
    mount: &MountRecord,
    name: &str,
) -> Result<Response, ApiError> {
    match ready.broker.approle.read_role(mount, name).await? {
        Some(role) => Ok(response::data(&role_json(&role))),
        None => Ok(not_found()),
    }
}

pub(super) async fn write_role(
    ready: &Ready,
    mount: &MountRecord,
    name: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let input: RoleBody = body::parse(&request.body)?;
    if input
        .token_type
        .as_deref()
        .is_some_and(|t| !matches!(t, "" | "default" | "service" | "default-service"))
    {
        return Err(ApiError::bad_request(
            "token_type: only service tokens are supported",
        ));
    }
    let update = RoleUpdate {
        role_id: input.role_id,
        bind_secret_id: input.bind_secret_id,
        secret_id_num_uses: input.secret_id_num_uses,
        secret_id_ttl: input.secret_id_ttl,
        secret_id_bound_cidrs: string_list(
            "secret_id_bound_cidrs",
            input.secret_id_bound_cidrs.or(input.bound_cidr_list),
        )?,
        token_bound_cidrs: string_list("token_bound_cidrs", input.token_bound_cidrs)?,
        token_policies: string_list("token_policies", input.token_policies.or(input.policies))?,
        token_ttl: input.token_ttl,
        token_max_ttl: input.token_max_ttl,
        token_explicit_max_ttl: input.token_explicit_max_ttl,
        token_num_uses: input.token_num_uses,
        token_no_default_policy: input.token_no_default_policy,
        token_period: input.token_period.or(input.period),
    };
    ready.broker.approle.write_role(mount, name, update).await?;
    Ok(response::no_content())
}

pub(super) async fn delete_role(
    ready: &Ready,
    mount: &MountRecord,
    name: &str,
) -> Result<Response, ApiError> {
    ready.broker.approle.delete_role(mount, name).await?;
    Ok(response::no_content())
}

pub(super) async fn read_role_id(
    ready: &Ready,
    mount: &MountRecord,
    name: &str,
) -> Result<Response, ApiError> {
    match ready.broker.approle.read_role(mount, name).await? {
        Some(role) => Ok(response::data(&json!({ "role_id": role.role_id }))),
        None => Ok(not_found()),
    }
}

pub(super) async fn write_role_id(
    ready: &Ready,
    mount: &MountRecord,
    name: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let input: IdentifierBody = body::parse(&request.body)?;
    let role_id = input
        .role_id
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing role_id"))?;
    ready
        .broker
        .approle
        .set_role_id(mount, name, &role_id)
        .await?;
    Ok(response::no_content())
}

/// The role body decoded as [`write_role`] decodes it (see [`super::fuzz_request_bodies`]);
/// whether it was accepted.
pub(super) fn fuzz_body(body: &bytes::Bytes) -> usize {
    let Ok(input) = body::parse::<RoleBody>(body) else {
        return 0;
    };
    fuzz_cidrs(string_list(
        "secret_id_bound_cidrs",
        input.secret_id_bound_cidrs.or(input.bound_cidr_list),
    ));
    fuzz_cidrs(string_list("token_bound_cidrs", input.token_bound_cidrs));
    let _ = string_list("token_policies", input.token_policies.or(input.policies));
    1
}
