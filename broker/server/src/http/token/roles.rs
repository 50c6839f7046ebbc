//! Token roles (Vault API: auth/token/roles/:role_name, auth/token/create/:role_name).
//!
//! The semantics are the core's (`keybroker_core::auth::token_role`, whose module doc
//! states the authority rule): here, the wire shapes, and the one check that needs the
//! ACL — a role granting more than its writer holds needs root or `sudo` on
//! `auth/token/roles/<name>`, otherwise 400.

use axum::{http::StatusCode, response::Response};
use keybroker_core::{
    auth::{
        token::{Caller, ROOT_POLICY},
        token_role::TokenRole,
    },
    Tenant,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    super::{body, error::error_body, error::ApiError, response, ApiRequest, Operation, Ready},
    issued_answer, policy_list, refuse_bearer_jwt, token_request, CreateBody,
};

/// Vault API: auth/token/roles/:role_name (write). Absent fields keep the stored value.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RoleBody {
    #[serde(deserialize_with = "body::opt_string_list")]
    allowed_policies: Option<Vec<String>>,
    #[serde(deserialize_with = "body::opt_string_list")]
    disallowed_policies: Option<Vec<String>>,
    #[serde(deserialize_with = "body::opt_string_list")]
    allowed_policies_glob: Option<Vec<String>>,
    #[serde(deserialize_with = "body::opt_string_list")]
    disallowed_policies_glob: Option<Vec<String>>,
    #[serde(deserialize_with = "body::opt_bool")]
    orphan: Option<bool>,
    #[serde(deserialize_with = "body::opt_bool")]
    renewable: Option<bool>,
    path_suffix: Option<String>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    period: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    token_period: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    explicit_max_ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    token_explicit_max_ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_bool")]
    token_no_default_policy: Option<bool>,
    #[serde(deserialize_with = "body::opt_u64")]
    token_num_uses: Option<u64>,
    token_type: Option<String>,
    #[serde(deserialize_with = "body::present")]
    allowed_entity_aliases: bool,
    #[serde(deserialize_with = "body::present")]
    token_bound_cidrs: bool,
    #[serde(deserialize_with = "body::present")]
    bound_cidrs: bool,
}

impl RoleBody {
    /// `role` with this body's fields applied, as Vault applies them (the `token_` forms
    /// win over the deprecated ones).
    fn apply(self, mut role: TokenRole) -> Result<TokenRole, ApiError> {
        if self.allowed_entity_aliases {
            return Err(ApiError::bad_request(
                "allowed_entity_aliases is not supported: keybroker has no identity entities",
            ));
        }
        if self.token_bound_cidrs || self.bound_cidrs {
            return Err(ApiError::bad_request(
                "token_bound_cidrs is not supported on token roles",
            ));
        }
        let lower = |list: Vec<String>| list.into_iter().map(|p| p.to_ascii_lowercase());
        if let Some(list) = self.allowed_policies {
            role.allowed_policies = keybroker_core::auth::token_role::sanitize(&list, false);
        }
        if let Some(list) = self.disallowed_policies {
            role.disallowed_policies = dedup(lower(list));
        }
        if let Some(list) = self.allowed_policies_glob {
            role.allowed_policies_glob = keybroker_core::auth::token_role::sanitize(&list, false);
        }
        if let Some(list) = self.disallowed_policies_glob {
            role.disallowed_policies_glob = dedup(lower(list));
        }
        if let Some(orphan) = self.orphan {
            role.orphan = orphan;
        }
        if let Some(renewable) = self.renewable {
            role.renewable = renewable;
        }
        if let Some(suffix) = self.path_suffix {
            role.path_suffix = suffix;
        }
        match (self.token_period, self.period) {
            (Some(period), _) => (role.token_period, role.period) = (period, 0),
            (None, Some(period)) => (role.token_period, role.period) = (period, period),
            (None, None) => {}
        }
        match (self.token_explicit_max_ttl, self.explicit_max_ttl) {
            (Some(max), _) => (role.token_explicit_max_ttl, role.explicit_max_ttl) = (max, 0),
            (None, Some(max)) => (role.token_explicit_max_ttl, role.explicit_max_ttl) = (max, max),
            (None, None) => {}
        }
        if let Some(no_default) = self.token_no_default_policy {
            role.token_no_default_policy = no_default;
        }
        if let Some(uses) = self.token_num_uses {
            role.token_num_uses = uses;
        }
        if let Some(kind) = self.token_type {
            match kind.as_str() {
                "service" | "default-service" => role.token_type = kind,
                "batch" | "default-batch" => {
                    return Err(ApiError::bad_request(
                        "batch tokens are not supported: keybroker issues service tokens",
                    ))
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "invalid 'token_type' value {other:?}"
                    )))
                }
            }
        }
        Ok(role)
    }
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = items.filter(|p| !p.is_empty()).collect();
    out.sort();
    out.dedup();
    out
}

/// Vault API: the data of a role read.
fn role_json(role: &TokenRole) -> Value {
    let mut data = json!({
        "allowed_entity_aliases": Value::Null,
        "allowed_policies": role.allowed_policies,
        "allowed_policies_glob": role.allowed_policies_glob,
        "disallowed_policies": role.disallowed_policies,
        "disallowed_policies_glob": role.disallowed_policies_glob,
        "explicit_max_ttl": role.explicit_max_ttl,
        "name": role.name,
        "orphan": role.orphan,
        "path_suffix": role.path_suffix,
        "period": role.period,
        "renewable": role.renewable,
        "token_explicit_max_ttl": role.token_explicit_max_ttl,
        "token_no_default_policy": role.token_no_default_policy,
        "token_period": role.token_period,
        "token_type": if role.token_type.is_empty() { "default-service" } else { &role.token_type },
    });
    if role.token_num_uses > 0 {
        data["token_num_uses"] = json!(role.token_num_uses);
    }
    data
}

fn not_found() -> Response {
    error_body(StatusCode::NOT_FOUND, &[])
}

/// Routes `auth/token/roles…` and `auth/token/create/:role_name`; anything else is unknown.
pub(super) async fn handle(
    ready: &Ready,
    caller: &Caller,
    tenant: &Tenant,
    path: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let tokens = &ready.broker.tokens;
    match (path.split_once('/'), request.operation) {
        (None, Operation::List) if path == "roles" => {
            let names = tokens.roles(tenant.id).await?;
            if names.is_empty() {
                return Ok(not_found());
            }
            Ok(response::data(&json!({ "keys": names })))
        }
        (Some(("roles", name)), Operation::Read) => {
            match tokens.read_role(tenant.id, name).await? {
                Some(role) => Ok(response::data(&role_json(&role))),
                None => Ok(not_found()),
            }
        }
        (Some(("roles", name)), Operation::Write) => {
            write(ready, caller, tenant, name, request).await
        }
        (Some(("roles", name)), Operation::Delete) => {
            tokens.delete_role(tenant.id, name).await?;
            Ok(response::no_content())
        }
        (Some(("create", name)), Operation::Write) => {
            create(ready, caller, tenant, name, request).await
        }
        _ => Err(ApiError::UnsupportedPath),
    }
}

/// Vault API: write auth/token/roles/:role_name. 204, as Vault.
async fn write(
    ready: &Ready,
    caller: &Caller,
    tenant: &Tenant,
    name: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let tokens = &ready.broker.tokens;
    let input: RoleBody = body::parse(&request.body)?;
    let stored = tokens.read_role(tenant.id, name).await?;
    let role = input.apply(stored.unwrap_or_else(|| TokenRole::new(name)))?;
    role.validate()?;
    // A writer from another namespace holds none of this tenant's policies (names are per
    // tenant), unless it is root.
    let held: &[String] = if caller.tenant() == tenant.id || caller.is_root() {
        &caller.token.policies
    } else {
        &[]
    };
    if let Some(reason) = role.grants_beyond(held) {
        if !super::super::access::has_sudo(ready, caller, tenant, request).await? {
            return Err(ApiError::bad_request(format!(
                "this role would grant more than the writer holds ({reason}): writing it \
                 needs root or sudo on auth/token/roles/{name}"
            )));
        }
    }
    tokens.write_role(tenant.id, &role).await?;
    Ok(response::no_content())
}

/// Vault API: auth/token/create/:role_name.
async fn create(
    ready: &Ready,
    caller: &Caller,
    tenant: &Tenant,
    name: &str,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    refuse_bearer_jwt(caller)?;
    let mut input: CreateBody = body::parse(&request.body)?;
    // As in Vault: a period asked for in the request (not the role's) needs root or sudo.
    if input.period.is_some_and(|p| p > 0)
        && !super::super::access::has_sudo(ready, caller, tenant, request).await?
    {
        return Err(ApiError::bad_request(
            "root or sudo privileges required to create periodic token",
        ));
    }
    let tokens = &ready.broker.tokens;
    let role = tokens
        .read_role(tenant.id, name)
        .await?
        .ok_or_else(|| ApiError::bad_request(format!("unknown role {name}")))?;
    let policies = policy_list(input.policies.take())?;
    if policies
        .iter()
        .any(|p| p.trim().eq_ignore_ascii_case(ROOT_POLICY))
    {
        return Err(ApiError::bad_request(
            "token roles never create root tokens: \"root\" is not allowed",
        ));
    }
    let issued = tokens
        .create_with_role(
            tenant.id,
            &caller.token,
            &role,
            token_request(input, policies),
        )
        .await?;
    Ok(issued_answer(&issued))
}

/// Decodes `body` as the role writes do, without a broker (fuzzing).
pub(super) fn fuzz_role_body(body: &bytes::Bytes) -> usize {
    match body::parse::<RoleBody>(body) {
        Ok(input) => {
            let _ = input.apply(TokenRole::new("fuzz"));
            1
        }
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(body: Value, role: TokenRole) -> Result<TokenRole, ApiError> {
        let bytes = bytes::Bytes::from(body.to_string());
        body::parse::<RoleBody>(&bytes)?.apply(role)
    }

    #[test]
    fn token_fields_win_over_the_deprecated_ones_as_in_vault() {
        let role = applied(
            json!({ "period": "1h", "explicit_max_ttl": 60 }),
            TokenRole::new("r"),
        )
        .unwrap();
        assert_eq!((role.token_period, role.period), (3600, 3600));
        assert_eq!(
            (role.token_explicit_max_ttl, role.explicit_max_ttl),
            (60, 60)
        );
        let role = applied(json!({ "period": "1h", "token_period": "2h" }), role).unwrap();
        assert_eq!((role.token_period, role.period), (7200, 0));
    }

    #[test]
    fn absent_fields_keep_the_stored_values() {
        let stored = TokenRole {
            allowed_policies: vec!["a".into()],
            orphan: true,
            ..TokenRole::new("r")
        };
        let role = applied(json!({ "renewable": false }), stored).unwrap();
        assert_eq!(role.allowed_policies, ["a"]);
        assert!(role.orphan && !role.renewable);
        let role = applied(json!({ "allowed_policies": "B, a,b" }), role).unwrap();
        assert_eq!(role.allowed_policies, ["a", "b"]);
    }

    #[test]
    fn unsupported_fields_are_refused_not_ignored() {
        for body in [
            json!({ "allowed_entity_aliases": ["x"] }),
            json!({ "token_bound_cidrs": "10.0.0.0/8" }),
            json!({ "token_type": "batch" }),
            json!({ "token_type": "nonsense" }),
        ] {
            assert!(
                matches!(
                    applied(body.clone(), TokenRole::new("r")),
                    Err(ApiError::BadRequest(_))
                ),
                "{body}"
            );
        }
    }
}
