//! The AppRole auth method, mounted at `auth/<path>/` (Vault API: auth/approle): roles,
//! role-ids, secret-ids, tidy, and the unauthenticated `login`.
//!
//! The edge sends `auth/<mount>/login` here without looking at any token ([`login`]); everything else arrives authenticated and authorised ([`handle`]).

use std::{collections::BTreeMap, net::IpAddr};

use axum::{http::StatusCode, response::Response};
use keybroker_core::{
    auth::approle::{LoginIdentity, RoleUpdate, SecretIdRequest, AUTH_TYPE, LOGIN_FAILED},
    store::{AppRoleRecord, MountRecord, SecretIdRecord},
};
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{
    body,
    error::ApiError,
    kind::{unmounted, Call, Class, Handled, Login, LoginAudit, MountKind, Spec},
    response,
    routes::{anonymous, route, Route},
    token, ApiRequest, Operation, Ready,
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

/// Vault API: auth/approle/login.
#[derive(Deserialize, Default)]
#[serde(default)]
struct LoginBody {
    role_id: Option<String>,
    secret_id: Option<Zeroizing<String>>,
}

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

/// Vault API: auth/approle/role/:role_name/secret-id and custom-secret-id. `metadata` is a
/// JSON string of a string map, as Vault takes it (an object is accepted too).
#[derive(Deserialize, Default)]
#[serde(default)]
struct SecretIdBody {
    secret_id: Option<Zeroizing<String>>,
    metadata: Option<Value>,
    cidr_list: Option<Value>,
    token_bound_cidrs: Option<Value>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_u64")]
    num_uses: Option<u64>,
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

fn metadata(value: Option<Value>) -> Result<BTreeMap<String, String>, ApiError> {
    let invalid = || ApiError::bad_request("metadata must be a JSON object of strings");
    let value = match value {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::String(text)) if text.trim().is_empty() => return Ok(BTreeMap::new()),
        Some(Value::String(text)) => serde_json::from_str(&text).map_err(|_| invalid())?,
        Some(value) => value,
    };
    serde_json::from_value(value).map_err(|_| invalid())
}

/// `POST auth/<mount>/login` (Vault API: auth/approle/login), without a token. Every
/// failure, malformed input included, is the same 400 `invalid role or secret ID`.
async fn login(
    ready: &Ready,
    mount: &MountRecord,
    request: &ApiRequest,
    client: Option<IpAddr>,
) -> (Result<Response, ApiError>, LoginAudit) {
    if request.operation != Operation::Write {
        return (Err(ApiError::UnsupportedOperation), LoginAudit::default());
    }
    let input: LoginBody = body::parse(&request.body).unwrap_or_default();
    let role_id = input.role_id.unwrap_or_default();
    let secret_id = input.secret_id.unwrap_or_default();
    let (identity, issued) = ready
        .broker
        .approle_login(mount, &role_id, &secret_id, client)
        .await;
    let LoginIdentity {
        role_name,
        secret_id_accessor,
    } = identity;
    match issued {
        Ok(issued) => {
            let auth = token::auth_json(Some(&issued.token), &issued.record, token::now());
            let audit = LoginAudit::new(role_name, secret_id_accessor, Some(issued));
            (Ok(response::auth(&auth)), audit)
        }
        Err(error) => {
            let answer = match error {
                keybroker_core::Error::InvalidRequest(_) => ApiError::bad_request(LOGIN_FAILED),
                other => other.into(),
            };
            let audit = LoginAudit::new(role_name, secret_id_accessor, None);
            (Err(answer), audit)
        }
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
        (["role"], Operation::List) => list_roles(ready, mount).await,
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

async fn list_roles(ready: &Ready, mount: &MountRecord) -> Result<Response, ApiError> {
    let names = ready.broker.approle.list_roles(mount).await?;
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

async fn read_role(ready: &Ready, mount: &MountRecord, name: &str) -> Result<Response, ApiError> {
    match ready.broker.approle.read_role(mount, name).await? {
        Some(role) => Ok(response::data(&role_json(&role))),
        None => Ok(not_found()),
    }
}

async fn write_role(
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

async fn delete_role(ready: &Ready, mount: &MountRecord, name: &str) -> Result<Response, ApiError> {
    ready.broker.approle.delete_role(mount, name).await?;
    Ok(response::no_content())
}

async fn read_role_id(
    ready: &Ready,
    mount: &MountRecord,
    name: &str,
) -> Result<Response, ApiError> {
    match ready.broker.approle.read_role(mount, name).await? {
        Some(role) => Ok(response::data(&json!({ "role_id": role.role_id }))),
        None => Ok(not_found()),
    }
}

async fn write_role_id(
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

async fn issue_secret_id(
    ready: &Ready,
    mount: &MountRecord,
    name: &str,
    request: &ApiRequest,
    custom: bool,
) -> Result<Response, ApiError> {
    let input: SecretIdBody = body::parse(&request.body)?;
    let custom = if custom {
        Some(
            input
                .secret_id
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ApiError::bad_request("missing secret_id"))?,
        )
    } else {
        None
    };
    let secret_request = SecretIdRequest {
        custom,
        metadata: metadata(input.metadata)?,
        cidr_list: string_list("cidr_list", input.cidr_list)?.unwrap_or_default(),
        token_bound_cidrs: string_list("token_bound_cidrs", input.token_bound_cidrs)?
            .unwrap_or_default(),
        ttl: input.ttl,
        num_uses: input.num_uses,
    };
    let issued = ready
        .broker
        .approle
        .issue_secret_id(mount, name, secret_request)
        .await?;
    Ok(response::data(&json!({
        "secret_id": issued.secret_id.as_str(),
        "secret_id_accessor": issued.record.accessor,
        "secret_id_ttl": issued.record.ttl,
        "secret_id_num_uses": issued.record.num_uses,
    })))
}

async fn list_secret_ids(
    ready: &Ready,
    mount: &MountRecord,
    name: &str,
) -> Result<Response, ApiError> {
    let accessors = ready
        .broker
        .approle
        .list_secret_id_accessors(mount, name)
        .await?;
    if accessors.is_empty() {
        return Ok(not_found());
    }
    Ok(response::data(&json!({ "keys": accessors })))
}

/// Vault API: secret-id lookup data.
fn secret_id_json(record: &SecretIdRecord) -> Value {
    json!({
        "secret_id_accessor": record.accessor,
        "secret_id_num_uses": record.uses_remaining.unwrap_or(0),
        "secret_id_ttl": record.ttl,
        "creation_time": token::rfc3339(record.created_at),
        "expiration_time": record
            .expires_at
            .map_or_else(|| "0001-01-01T00:00:00Z".to_owned(), token::rfc3339),
        "last_updated_time": token::rfc3339(record.created_at),
        "metadata": record.metadata,
        "cidr_list": record.cidr_list,
        "token_bound_cidrs": record.token_bound_cidrs,
    })
}

fn secret_id_input(request: &ApiRequest) -> Result<Zeroizing<String>, ApiError> {
    let input: IdentifierBody = body::parse(&request.body)?;
    input
        .secret_id
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing secret_id"))
}

fn accessor_input(request: &ApiRequest) -> Result<String, ApiError> {
    let input: IdentifierBody = body::parse(&request.body)?;
    input
        .secret_id_accessor
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing secret_id_accessor"))
}

async fn lookup_secret_id(
    ready: &Ready,
    mount: &MountRecord,
    name: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let secret_id = secret_id_input(request)?;
    // Vault answers an unknown secret_id with 204 and no data.
    match ready
        .broker
        .approle
        .lookup_secret_id(mount, name, &secret_id)
        .await?
    {
        Some(record) => Ok(response::data(&secret_id_json(&record))),
        None => Ok(response::no_content()),
    }
}

async fn destroy_secret_id(
    ready: &Ready,
    mount: &MountRecord,
    name: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let secret_id = secret_id_input(request)?;
    ready
        .broker
        .approle
        .destroy_secret_id(mount, name, &secret_id)
        .await?;
    Ok(response::no_content())
}

fn unknown_accessor() -> ApiError {
    ApiError::Core(keybroker_core::Error::NotFound(
        "failed to find accessor entry for secret_id_accessor".to_owned(),
    ))
}

async fn lookup_accessor(
    ready: &Ready,
    mount: &MountRecord,
    name: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let accessor = accessor_input(request)?;
    ready
        .broker
        .approle
        .lookup_secret_id_accessor(mount, name, &accessor)
        .await?
        .map(|record| response::data(&secret_id_json(&record)))
        .ok_or_else(unknown_accessor)
}

async fn destroy_accessor(
    ready: &Ready,
    mount: &MountRecord,
    name: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let accessor = accessor_input(request)?;
    if ready
        .broker
        .approle
        .destroy_secret_id_accessor(mount, name, &accessor)
        .await?
    {
        Ok(response::no_content())
    } else {
        Err(unknown_accessor())
    }
}

/// `POST auth/<mount>/tidy/secret-id`: starts deleting expired secret_ids in the background
/// and answers 202 at once, as Vault does.
fn tidy(ready: &Ready, mount: &MountRecord) -> Response {
    let broker = ready.broker.clone();
    let mount = mount.clone();
    tokio::spawn(async move {
        match broker.approle.tidy(&mount).await {
            Ok(Some(deleted)) => {
                tracing::info!(mount = %mount.path, deleted, "approle secret_id tidy finished");
            }
            Ok(None) => {
                tracing::info!(mount = %mount.path, "approle secret_id tidy already running")
            }
            Err(error) => {
                tracing::warn!(mount = %mount.path, %error, "approle secret_id tidy failed")
            }
        }
    });
    response::data_with(
        StatusCode::ACCEPTED,
        &Value::Null,
        &["Tidy operation successfully started. Any information from the operation will be printed to the broker's server logs.".to_owned()],
    )
}

/// Every body of this module decoded as its handlers decode it, without a broker (see
/// [`super::fuzzing`]); how many of the wire structs accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let cidrs = |list: Result<Option<Vec<String>>, ApiError>| {
        if let Ok(Some(list)) = list {
            let _ = keybroker_core::cidr::canonical_list(&list);
        }
    };
    let mut accepted = usize::from(body::parse::<LoginBody>(body).is_ok());
    if let Ok(input) = body::parse::<RoleBody>(body) {
        accepted += 1;
        cidrs(string_list(
            "secret_id_bound_cidrs",
            input.secret_id_bound_cidrs.or(input.bound_cidr_list),
        ));
        cidrs(string_list("token_bound_cidrs", input.token_bound_cidrs));
        let _ = string_list("token_policies", input.token_policies.or(input.policies));
    }
    if let Ok(input) = body::parse::<SecretIdBody>(body) {
        accepted += 1;
        let _ = metadata(input.metadata);
        cidrs(string_list("cidr_list", input.cidr_list));
        cidrs(string_list("token_bound_cidrs", input.token_bound_cidrs));
    }
    accepted + usize::from(body::parse::<IdentifierBody>(body).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_metadata_take_vaults_forms() {
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
        assert_eq!(
            metadata(Some(json!("{\"env\":\"prod\"}"))).unwrap(),
            BTreeMap::from([("env".to_owned(), "prod".to_owned())])
        );
        assert_eq!(metadata(Some(json!({ "env": "prod" }))).unwrap().len(), 1);
        assert!(metadata(Some(json!("{\"n\":1}"))).is_err());
        assert!(metadata(Some(json!("not json"))).is_err());
    }
}
