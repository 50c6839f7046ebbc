//! `sys/policies/acl` (Vault API: sys/policies/acl) and `sys/capabilities(-self)`.

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
}

/// Vault API: sys/capabilities and sys/capabilities-self.
#[derive(Deserialize, Default)]
#[serde(default)]
struct CapabilitiesBody {
    token: Option<String>,
    path: Option<String>,
    paths: Option<Value>,
}

/// Routes `sys/policies/acl[/name]`.
pub(super) async fn acl(
    ready: &Ready,
    tenant: &Tenant,
    name: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let policies = &ready.broker.policies;
    match (name, request.operation) {
        ("", Operation::List | Operation::Read) => {
            let keys = policies.list(tenant.id).await?;
            Ok(response::data(&json!({ "keys": keys, "policies": keys })))
        }
        ("", _) => Err(ApiError::UnsupportedOperation),
        (name, Operation::Read) => {
            let text = policies.read(tenant.id, name).await?;
            Ok(response::data(
                &json!({ "name": name.to_ascii_lowercase(), "policy": text, "rules": text }),
            ))
        }
        (name, Operation::Write) => {
            let input: PolicyBody = body::parse(&request.body)?;
            let text = input
                .policy
                .ok_or_else(|| ApiError::bad_request("missing policy"))?;
            policies.write(tenant.id, name, &text).await?;
            Ok(response::no_content())
        }
        (name, Operation::Delete) => {
            policies.delete(tenant.id, name).await?;
            Ok(response::no_content())
        }
        (_, Operation::List) => Err(ApiError::UnsupportedOperation),
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
    let acl = ready
        .broker
        .policies
        .acl(subject.tenant(), &subject.token.policies)
        .await?;
    let mut data = Map::new();
    let mut first = None;
    for path in paths(&input)? {
        let canonical = policy::canonicalize_request_path(&path)
            .map_err(|e| ApiError::Core(Error::invalid(e.to_string())))?;
        let checked = policy_path(subject.tenant(), tenant, &canonical);
        let capabilities = acl.capabilities(&checked).to_vault_strings();
        first.get_or_insert_with(|| capabilities.clone());
        data.insert(path, json!(capabilities));
    }
    if let Some(first) = first {
        data.insert("capabilities".to_owned(), json!(first));
    }
    Ok(response::data_with(StatusCode::OK, &data, &[]))
}

/// Every body of this module decoded as its handlers decode it, without a broker (see
/// [`super::fuzzing`]); how many of the wire structs accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let mut accepted = 0;
    if let Ok(input) = body::parse::<PolicyBody>(body) {
        accepted += 1;
        if let Some(text) = input.policy {
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
