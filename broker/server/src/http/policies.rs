//! `sys/policies/acl` (Vault API: sys/policies/acl), the older `sys/policy` (Vault API:
//! sys/policy: `rules` beside `policy`, answers at the top level too), and
//! `sys/capabilities(-self|-accessor)`.

use axum::{http::StatusCode, response::Response};
use keybroker_core::{auth::token::Caller, policy, Error, Tenant, TenantId};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{body, error::ApiError, response, ApiRequest, Operation, Ready};

/// Vault API: sys/policies/acl/:name, write.
#[derive(Deserialize, Default)]
#[serde(default)]
struct PolicyBody {
    policy: Option<String>,
    /// The older name of `policy` (`sys/policy`), still sent by set-up scripts.
    rules: Option<String>,
}

/// Which of the two policy APIs a request came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Api {
    /// `sys/policies/acl`.
    Acl,
    /// `sys/policy`, the older shape.
    Legacy,
}

/// Vault API: sys/capabilities, sys/capabilities-self and sys/capabilities-accessor.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CapabilitiesBody {
    token: Option<String>,
    accessor: Option<String>,
    path: Option<String>,
    paths: Option<Value>,
}

/// Routes `sys/policies/acl[/name]` and `sys/policy[/name]`.
pub(super) async fn acl(
    ready: &Ready,
    tenant: &Tenant,
    name: &str,
    request: &ApiRequest,
    api: Api,
) -> Result<Response, ApiError> {
    let policies = &ready.broker.policies;
    match (name, request.operation) {
        ("", Operation::List | Operation::Read) => {
            let keys = policies.list(tenant.id).await?;
            let data = json!({ "keys": keys, "policies": keys });
            Ok(legacy_or_data(api, data))
        }
        ("", _) => Err(ApiError::UnsupportedOperation),
        (name, Operation::Read) => {
            let text = policies.read(tenant.id, name).await?;
            let name = name.to_ascii_lowercase();
            Ok(match api {
                Api::Acl => response::data(&json!({ "name": name, "policy": text, "rules": text })),
                Api::Legacy => legacy_or_data(api, json!({ "name": name, "rules": text })),
            })
        }
        (name, Operation::Write) => {
            let input: PolicyBody = body::parse(&request.body)?;
            // `policy` wins when both are given, as in Vault.
            let (text, from_rules) = match (input.policy, input.rules) {
                (Some(policy), _) => (policy, false),
                (None, Some(rules)) => (rules, true),
                (None, None) => return Err(ApiError::bad_request("missing policy")),
            };
            policies.write(tenant.id, name, &text).await?;
            if from_rules {
                let warning = "'rules' is deprecated, please use 'policy' instead".to_owned();
                return Ok(response::data_with(
                    StatusCode::OK,
                    &Value::Null,
                    &[warning],
                ));
            }
            Ok(response::no_content())
        }
        (name, Operation::Delete) => {
            policies.delete(tenant.id, name).await?;
            Ok(response::no_content())
        }
        (_, Operation::List | Operation::Patch) => Err(ApiError::UnsupportedOperation),
    }
}

/// `data`, and for the older API its members at the top level too.
fn legacy_or_data(api: Api, data: Value) -> Response {
    match (api, data) {
        (Api::Legacy, Value::Object(map)) => response::legacy(&map),
        (_, data) => response::data(&data),
    }
}

fn paths(input: &CapabilitiesBody) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    if let Some(path) = &input.path {
        out.push(path.clone());
    }
    match &input.paths {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => out.extend(text.split(',').map(|p| p.trim().to_owned())),
        Some(Value::Array(items)) => {
            for item in items {
                let text = item
                    .as_str()
                    .ok_or_else(|| ApiError::bad_request("paths must be strings"))?;
                out.push(text.to_owned());
            }
        }
        Some(_) => return Err(ApiError::bad_request("paths must be a list of strings")),
    }
    if out.is_empty() {
        return Err(ApiError::bad_request("missing paths"));
    }
    Ok(out)
}

/// The path a root-namespace token's policies see for a request in a child tenant.
pub(super) fn policy_path(caller_tenant: TenantId, tenant: &Tenant, path: &str) -> String {
    if caller_tenant == TenantId::ROOT && tenant.id != TenantId::ROOT {
        format!("{}/{}", tenant.name, path)
    } else {
        path.to_owned()
    }
}

/// `sys/capabilities-self` or `sys/capabilities` (with `token`).
pub(super) async fn capabilities(
    ready: &Ready,
    caller: &Caller,
    tenant: &Tenant,
    self_only: bool,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let input: CapabilitiesBody = body::parse(&request.body)?;
    let subject = if self_only {
        caller.clone()
    } else {
        let token = input
            .token
            .as_deref()
            .ok_or_else(|| ApiError::bad_request("missing token"))?;
        let subject = ready
            .broker
            .tokens
            // The subject is not the one calling: asking costs it no use, and as its
            // address is unknown, a token bound to CIDR blocks is not answered for.
            .inspect(token)
            .await
            .map_err(|_| ApiError::bad_request("invalid token"))?;
        // Another tenant's token is as unknown as a forged one.
        if subject.tenant() != tenant.id && subject.tenant() != TenantId::ROOT {
            return Err(ApiError::bad_request("invalid token"));
        }
        subject
    };
    answer(
        ready,
        subject.tenant(),
        &subject.token.policies,
        tenant,
        &input,
    )
    .await
}

/// `sys/capabilities-accessor` (Vault API: sys/capabilities-accessor): what the token with
/// `accessor` may do on `paths`. Only a token of the request's namespace is answered for;
/// another tenant's accessor and an unknown one get the same 400.
pub(super) async fn capabilities_accessor(
    ready: &Ready,
    tenant: &Tenant,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let input: CapabilitiesBody = body::parse(&request.body)?;
    let accessor = input
        .accessor
        .as_deref()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiError::bad_request("missing accessor"))?;
    let subject = ready
        .broker
        .tokens
        .lookup_accessor(tenant.id, accessor)
        .await
        .map_err(|_| ApiError::bad_request("invalid accessor"))?;
    answer(ready, subject.tenant, &subject.policies, tenant, &input).await
}

/// The capabilities of a token of `subject_tenant` holding `policies` on the request's
/// paths, each under its path, and when there is one path, also as `capabilities` (Vault's
/// older shape); at the top level and under `data`, as Vault answers.
async fn answer(
    ready: &Ready,
    subject_tenant: TenantId,
    policies: &[String],
    tenant: &Tenant,
    input: &CapabilitiesBody,
) -> Result<Response, ApiError> {
    let acl = ready.broker.policies.acl(subject_tenant, policies).await?;
    let mut data = Map::new();
    let paths = paths(input)?;
    let only = paths.len() == 1;
    for path in paths {
        let canonical = policy::canonicalize_request_path(&path)
            .map_err(|e| ApiError::Core(Error::invalid(e.to_string())))?;
        let checked = policy_path(subject_tenant, tenant, &canonical);
        let capabilities = acl.capabilities(&checked).to_vault_strings();
        if only {
            data.insert("capabilities".to_owned(), json!(capabilities));
        }
        data.insert(path, json!(capabilities));
    }
    Ok(response::legacy(&data))
}

/// Every body of this module decoded as its handlers decode it, without a broker (see
/// [`super::fuzzing`]); how many of the wire structs accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let mut accepted = 0;
    if let Ok(input) = body::parse::<PolicyBody>(body) {
        accepted += 1;
        if let Some(text) = input.policy.or(input.rules) {
            let _ = policy::parse("fuzz", &text);
        }
    }
    if let Ok(input) = body::parse::<CapabilitiesBody>(body) {
        accepted += 1;
        for path in paths(&input).unwrap_or_default() {
            let _ = policy::canonicalize_request_path(&path);
        }
    }
    accepted
}
