//! The JWT auth method, mounted at `auth/<path>/` (Vault API: auth/jwt): `config`, roles,
//! and the unauthenticated `login`. Bearer mode is in authentication
//! ([`super::access::authenticate`]).

use std::net::IpAddr;

use axum::{http::StatusCode, response::Response};
use keybroker_core::{
    auth::jwt::method::{CALLBACK_FAILED, LOGIN_FAILED},
    auth::jwt::{JwtConfig, JwtConfigInput, JwtRole, JwtRoleInput},
    changes::Change,
    store::MountRecord,
};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use zeroize::Zeroizing;

use super::{
    body,
    error::ApiError,
    kind::{unmounted, Call, Class, Handled, Login, LoginAudit, MountKind, Spec},
    response,
    routes::{anonymous, route, Route},
    token, ApiRequest, Operation, Ready,
};

/// Vault's type name `oidc` (`bao auth enable oidc`): the same method, enabled as `jwt`.
pub(super) const OIDC_ALIAS: &str = "oidc";

/// Every route below a jwt mount.
pub(super) const ROUTES: &[Route] = {
    use Operation::{Delete as D, List as L, Read as R, Write as W};
    &[
        anonymous(route("login", &[W])),
        anonymous(route("oidc/auth_url", &[W])),
        anonymous(route("oidc/callback", &[R])),
        route("config", &[R, W]),
        route("role", &[L]),
        route("role/:name", &[R, W, D]),
    ]
};

/// The JWT auth method.
pub(super) struct Jwt;

#[async_trait::async_trait]
impl MountKind for Jwt {
    fn spec(&self) -> &'static Spec {
        &Spec {
            name: keybroker_core::auth::jwt::method::AUTH_TYPE,
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
        let rest = call
            .request
            .path
            .get(call.mount.path.len()..)
            .unwrap_or_default()
            .trim_end_matches('/');
        match rest {
            "oidc/auth_url" => (
                (
                    "auth/jwt/oidc/auth_url",
                    auth_url(call.ready, call.mount, call.request).await,
                ),
                LoginAudit::default(),
            ),
            "oidc/callback" => {
                let (result, issued) =
                    callback(call.ready, call.mount, call.request, call.client).await;
                (
                    ("auth/jwt/oidc/callback", result),
                    LoginAudit::new(None, None, issued),
                )
            }
            _ => {
                let (result, issued) =
                    login(call.ready, call.mount, call.request, call.client).await;
                (
                    ("auth/jwt/login", result),
                    LoginAudit::new(None, None, issued),
                )
            }
        }
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
                        .is_none_or(|m| m.kind == keybroker_core::auth::jwt::method::AUTH_TYPE),
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

/// Vault API: auth/jwt/config, as sent (fields: [`JwtConfigInput`]). Lists are JSON lists or
/// comma-separated strings, durations seconds or `"30s"`. Unknown fields are ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct ConfigBody {
    oidc_discovery_url: Option<String>,
    oidc_discovery_ca_pem: Option<String>,
    jwks_url: Option<String>,
    jwks_ca_pem: Option<String>,
    #[serde(deserialize_with = "body::opt_string_list")]
    jwt_validation_pubkeys: Option<Vec<String>>,
    bound_issuer: Option<String>,
    #[serde(deserialize_with = "body::opt_string_list")]
    jwt_supported_algs: Option<Vec<String>>,
    default_role: Option<String>,
    bearer_role: Option<String>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    jwks_refetch_interval: Option<u64>,
    oidc_client_id: Option<String>,
    oidc_client_secret: Option<Zeroizing<String>>,
    oidc_client_secret_source: Option<String>,
    // A field the broker refuses: only whether it was given is kept.
    #[serde(deserialize_with = "body::present")]
    jwks_pairs: bool,
}

impl From<ConfigBody> for JwtConfigInput {
    fn from(body: ConfigBody) -> Self {
        Self {
            oidc_discovery_url: body.oidc_discovery_url,
            oidc_discovery_ca_pem: body.oidc_discovery_ca_pem,
            jwks_url: body.jwks_url,
            jwks_ca_pem: body.jwks_ca_pem,
            jwt_validation_pubkeys: body.jwt_validation_pubkeys,
            bound_issuer: body.bound_issuer,
            jwt_supported_algs: body.jwt_supported_algs,
            default_role: body.default_role,
            bearer_role: body.bearer_role,
            jwks_refetch_interval: body.jwks_refetch_interval,
            oidc_client_id: body.oidc_client_id,
            oidc_client_secret: body.oidc_client_secret,
            oidc_client_secret_source: body.oidc_client_secret_source,
            jwks_pairs: body.jwks_pairs,
        }
    }
}

/// Vault API: auth/jwt/role/:name, as sent (fields: [`JwtRoleInput`]). Lists are JSON lists
/// or comma-separated strings, durations seconds or `"1h"`, objects JSON objects or strings
/// holding one. `policies`, `ttl`, `max_ttl`, `period`, `num_uses` and `bound_cidrs` are
/// Vault's older names (the `token_` names win when both are given). Unknown fields are
/// ignored.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RoleBody {
    role_type: Option<String>,
    #[serde(deserialize_with = "body::opt_string_list")]
    allowed_redirect_uris: Option<Vec<String>>,
    #[serde(deserialize_with = "body::opt_string_list")]
    oidc_scopes: Option<Vec<String>>,
    #[serde(deserialize_with = "body::opt_string_list")]
    bound_audiences: Option<Vec<String>>,
    bound_subject: Option<String>,
    #[serde(deserialize_with = "body::opt_object")]
    bound_claims: Option<Map<String, Value>>,
    bound_claims_type: Option<String>,
    user_claim: Option<String>,
    groups_claim: Option<String>,
    #[serde(deserialize_with = "body::opt_object")]
    claim_mappings: Option<Map<String, Value>>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    clock_skew_leeway: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    expiration_leeway: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    not_before_leeway: Option<u64>,
    #[serde(deserialize_with = "body::opt_string_list")]
    token_policies: Option<Vec<String>>,
    #[serde(deserialize_with = "body::opt_string_list")]
    policies: Option<Vec<String>>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    token_ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    token_max_ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    max_ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    token_explicit_max_ttl: Option<u64>,
    #[serde(deserialize_with = "body::opt_u64")]
    token_num_uses: Option<u64>,
    #[serde(deserialize_with = "body::opt_u64")]
    num_uses: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    token_period: Option<u64>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    period: Option<u64>,
    #[serde(deserialize_with = "body::opt_bool")]
    token_no_default_policy: Option<bool>,
    #[serde(deserialize_with = "body::opt_string_list")]
    token_bound_cidrs: Option<Vec<String>>,
    #[serde(deserialize_with = "body::opt_string_list")]
    bound_cidrs: Option<Vec<String>>,
    token_type: Option<String>,
}

impl From<RoleBody> for JwtRoleInput {
    fn from(body: RoleBody) -> Self {
        Self {
            role_type: body.role_type,
            allowed_redirect_uris: body.allowed_redirect_uris,
            oidc_scopes: body.oidc_scopes,
            bound_audiences: body.bound_audiences,
            bound_subject: body.bound_subject,
            bound_claims: body.bound_claims,
            bound_claims_type: body.bound_claims_type,
            user_claim: body.user_claim,
            groups_claim: body.groups_claim,
            claim_mappings: body.claim_mappings,
            clock_skew_leeway: body.clock_skew_leeway,
            expiration_leeway: body.expiration_leeway,
            not_before_leeway: body.not_before_leeway,
            token_policies: body.token_policies.or(body.policies),
            token_ttl: body.token_ttl.or(body.ttl),
            token_max_ttl: body.token_max_ttl.or(body.max_ttl),
            token_explicit_max_ttl: body.token_explicit_max_ttl,
            token_num_uses: body.token_num_uses.or(body.num_uses),
            token_period: body.token_period.or(body.period),
            token_no_default_policy: body.token_no_default_policy,
            token_bound_cidrs: body.token_bound_cidrs.or(body.bound_cidrs),
            token_type: body.token_type,
        }
    }
}

/// Vault API: auth/jwt/oidc/auth_url, as sent.
#[derive(Deserialize, Default)]
#[serde(default)]
struct AuthUrlBody {
    role: Option<String>,
    redirect_uri: Option<String>,
    client_nonce: Option<String>,
}

/// `POST auth/<mount>/oidc/auth_url` without a token: the provider's URL for a person to
/// log in (`""` when the role or redirect URI allows none, as in Vault).
async fn auth_url(
    ready: &Ready,
    mount: &MountRecord,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    if request.operation != Operation::Write {
        return Err(ApiError::UnsupportedOperation);
    }
    let input: AuthUrlBody = body::parse(&request.body)?;
    let url = ready
        .broker
        .jwt
        .oidc_auth_url(
            &ready.broker.mounts,
            mount,
            input.role.as_deref(),
            input.redirect_uri.as_deref().unwrap_or_default(),
            input.client_nonce.as_deref(),
        )
        .await?;
    Ok(response::data(&json!({ "auth_url": url.0 })))
}

/// `GET auth/<mount>/oidc/callback?state=…&code=…&client_nonce=…` without a token (what
/// the CLI sends after the provider sent the person back): a token. Every refusal is the
/// same 400. The form-post response mode (`POST`) is not offered: 405, as Vault answers
/// without it.
async fn callback(
    ready: &Ready,
    mount: &MountRecord,
    request: &ApiRequest,
    client: Option<IpAddr>,
) -> LoginAnswer {
    if request.operation != Operation::Read {
        return (Err(ApiError::UnsupportedOperation), None);
    }
    let parameter = |name: &str| request.query.get(name).map(String::as_str);
    let issued = ready
        .broker
        .jwt
        .oidc_callback(
            &ready.broker.mounts,
            &ready.broker.tokens,
            mount,
            parameter("state").unwrap_or_default(),
            parameter("code").unwrap_or_default(),
            parameter("client_nonce"),
            client,
        )
        .await;
    answered(issued, CALLBACK_FAILED)
}

/// What a login answers, and the token it issued (for the audit log).
type LoginAnswer = (
    Result<Response, ApiError>,
    Option<keybroker_core::auth::token::IssuedToken>,
);

/// A login's answer: the token, or `refusal` (400) whatever the core refused for, a missing
/// role aside (as in Vault).
fn answered(
    issued: keybroker_core::error::Result<keybroker_core::auth::token::IssuedToken>,
    refusal: &str,
) -> LoginAnswer {
    match issued {
        Ok(issued) => {
            let auth = token::auth_json(Some(&issued.token), &issued.record, token::now());
            (Ok(response::auth(&auth)), Some(issued))
        }
        Err(keybroker_core::Error::InvalidRequest(message)) if message == "missing role" => {
            (Err(ApiError::bad_request("missing role")), None)
        }
        Err(keybroker_core::Error::InvalidRequest(_)) => {
            (Err(ApiError::bad_request(refusal)), None)
        }
        Err(other) => (Err(other.into()), None),
    }
}

/// `POST auth/<mount>/login` without a token: every failure, malformed input included, is
/// the same 400 (missing role aside, as in Vault).
async fn login(
    ready: &Ready,
    mount: &MountRecord,
    request: &ApiRequest,
    client: Option<IpAddr>,
) -> LoginAnswer {
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
    answered(issued, LOGIN_FAILED)
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
        (["config"], Operation::Write) => match body::parse::<ConfigBody>(&request.body) {
            Ok(input) => jwt
                .write_config(mounts, mount, input.into())
                .await
                .map(|()| response::no_content())
                .map_err(ApiError::from),
            Err(error) => Err(error),
        },
        (["role"], Operation::List) => list_roles(ready, mount, request).await,
        (["role", name], Operation::Read) => read_role(ready, mount, name).await,
        (["role", name], Operation::Write) => match body::parse::<RoleBody>(&request.body) {
            Ok(input) => jwt
                .write_role(mounts, mount, name, input.into())
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

/// Vault API: auth/jwt/role, list; with OpenBao's `after` and `limit`.
async fn list_roles(
    ready: &Ready,
    mount: &MountRecord,
    request: &ApiRequest,
) -> Result<Response, ApiError> {
    let names = ready
        .broker
        .jwt
        .list_roles(&ready.broker.mounts, mount)
        .await?;
    let names = super::paging::page(names, &request.query)?;
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
    accepted += usize::from(body::parse::<AuthUrlBody>(body).is_ok());
    if let Ok(input) = body::parse::<ConfigBody>(body) {
        accepted += 1;
        let _ = JwtConfig::from_input(input.into());
    }
    if let Ok(input) = body::parse::<RoleBody>(body) {
        accepted += 1;
        let _ = JwtRole::apply(None, input.into());
    }
    accepted
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use keybroker_core::Error;

    use super::*;

    fn decode<T: serde::de::DeserializeOwned>(fields: &Value) -> Result<T, ApiError> {
        body::parse(&Bytes::from(fields.to_string()))
    }

    fn config(fields: Value) -> Result<JwtConfig, Error> {
        JwtConfig::from_input(decode::<ConfigBody>(&fields).unwrap().into())
    }

    fn role(fields: Value) -> Result<JwtRole, Error> {
        JwtRole::apply(None, decode::<RoleBody>(&fields).unwrap().into())
    }

    fn refused<T: std::fmt::Debug>(result: Result<T, Error>, expected: &str) {
        match result {
            Err(Error::InvalidRequest(message)) => {
                assert!(message.contains(expected), "{message}")
            }
            other => panic!("expected a 400 containing {expected:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_config_write_takes_vault_forms() {
        let input: JwtConfigInput = decode::<ConfigBody>(&json!({
            "jwks_url": "https://idp.example/jwks",
            "jwt_validation_pubkeys": "a, b",
            "jwt_supported_algs": "RS256, EdDSA,RS256",
            "jwks_refetch_interval": "1m",
            "oidc_client_id": "web",
            "oidc_client_secret": "x",
            "jwks_pairs": [{"jwks_url": "https://b.example"}],
        }))
        .unwrap()
        .into();
        assert_eq!(input.jwks_url.as_deref(), Some("https://idp.example/jwks"));
        assert_eq!(input.jwt_validation_pubkeys.unwrap(), ["a", "b"]);
        assert_eq!(
            input.jwt_supported_algs.unwrap(),
            ["RS256", "EdDSA", "RS256"]
        );
        assert_eq!(input.jwks_refetch_interval, Some(60));
        assert_eq!(input.oidc_client_id.as_deref(), Some("web"));
        assert_eq!(
            input.oidc_client_secret.as_deref().map(String::as_str),
            Some("x")
        );
        // Of a field the broker refuses, only whether a value was given is kept.
        assert!(input.jwks_pairs);
    }

    #[test]
    fn unsupported_vault_fields_are_refused_unless_empty() {
        let base = || json!({"jwks_url": "https://a.example/k"});
        for (field, value, expected) in [
            (
                "oidc_client_id",
                json!("x"),
                "oidc_client_id needs oidc_discovery_url",
            ),
            (
                "jwks_pairs",
                json!([{"jwks_url": "https://b.example"}]),
                "jwks_pairs",
            ),
        ] {
            let mut fields = base();
            fields[field] = value;
            refused(config(fields), expected);
        }
        // Empty values are what a client that always sends every field sends.
        let mut fields = base();
        fields["oidc_client_id"] = "".into();
        fields["jwks_pairs"] = json!([]);
        config(fields).unwrap();
    }

    #[test]
    fn a_role_write_takes_vault_forms_and_older_names() {
        let written = role(json!({
            "bound_audiences": "a, b,a",
            "bound_claims": "{\"groups\": [\"ops\", 7, true]}",
            "claim_mappings": "{\"/org/name\": \"org\"}",
            "clock_skew_leeway": "30s",
            "expiration_leeway": "0",
            "not_before_leeway": "5m",
            "policies": "Read, write,read",
            "ttl": "1h",
            "max_ttl": "2h",
            "token_explicit_max_ttl": "24h",
            "num_uses": "3",
            "period": "0",
            "token_no_default_policy": "true",
            "bound_cidrs": "10.0.0.0/8, 192.0.2.7",
            "unknown_field": "ignored",
        }))
        .unwrap();
        assert_eq!(written.bound_audiences, ["a", "b"]);
        assert_eq!(written.bound_claims["groups"], json!(["ops", "7", "true"]));
        assert_eq!(written.claim_mappings["/org/name"], "org");
        assert_eq!(
            (
                written.clock_skew_leeway,
                written.expiration_leeway,
                written.not_before_leeway
            ),
            (30, 0, 300)
        );
        assert_eq!(written.token_policies, ["read", "write"]);
        assert_eq!(
            (
                written.token_ttl,
                written.token_max_ttl,
                written.token_explicit_max_ttl
            ),
            (3600, 7200, 86400)
        );
        assert_eq!((written.token_num_uses, written.token_period), (3, 0));
        assert!(written.token_no_default_policy);
        assert_eq!(written.token_bound_cidrs, ["10.0.0.0/8", "192.0.2.7/32"]);

        // The token_ names win over the older ones.
        let written = role(json!({
            "bound_subject": "s",
            "token_ttl": 60, "ttl": 120,
            "token_policies": ["p"], "policies": ["q"],
        }))
        .unwrap();
        assert_eq!(written.token_ttl, 60);
        assert_eq!(written.token_policies, ["p"]);
    }

    #[test]
    fn a_role_never_names_root_under_either_field_name() {
        for field in ["token_policies", "policies"] {
            for policies in [json!("root"), json!(["read", " Root "])] {
                refused(
                    role(json!({"bound_audiences": "api", field: policies})),
                    "cannot contain \"root\"",
                );
            }
        }
    }

    #[test]
    fn a_value_in_no_vault_form_is_refused_naming_its_field() {
        let Err(error) = decode::<ConfigBody>(&json!({"jwks_refetch_interval": "soon"})) else {
            panic!("accepted");
        };
        let message = error.to_string();
        assert!(
            message.starts_with("failed to parse JSON input: jwks_refetch_interval: "),
            "{message}"
        );
        let Err(error) = decode::<RoleBody>(&json!({"bound_cidrs": [1]})) else {
            panic!("accepted");
        };
        let message = error.to_string();
        assert!(
            message.starts_with("failed to parse JSON input: bound_cidrs: "),
            "{message}"
        );
    }
}
