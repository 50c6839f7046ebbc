//! The Microsoft identity platform endpoints a client-secret credential calls: OpenID
//! discovery (MSAL reads it before its first token request) and the v2.0 token endpoint
//! with the client credentials grant (learn.microsoft.com "Microsoft identity platform and
//! the OAuth 2.0 client credentials flow").

use std::sync::Arc;

use axum::{
    extract::{Path, State},
    http::{header, HeaderMap},
    Form, Json,
};
use serde::Deserialize;
use serde_json::{json, Value};
use subtle::ConstantTimeEq as _;

use crate::{error::IdentityError, state::FakeState, state::KEY_VAULT_RESOURCE, Operation};

/// Token request form (client credentials grant with a shared secret).
#[derive(Deserialize)]
pub(crate) struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

/// `POST /{tenant}/oauth2/v2.0/token`.
pub(crate) async fn token(
    State(state): State<Arc<FakeState>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Form(mut request): Form<TokenRequest>,
) -> Result<Json<Value>, IdentityError> {
    state.arrive(Operation::Token).await;
    if state.in_outage() {
        return Err(IdentityError::Unavailable);
    }
    // client_secret_basic: the credentials in an `Authorization: Basic` header instead.
    if let Some((id, secret)) = basic_credentials(&headers) {
        request.client_id.get_or_insert(id);
        request.client_secret.get_or_insert(secret);
    }
    let config = state.config();
    if tenant != config.tenant {
        return Err(IdentityError::UnknownTenant { tenant });
    }
    if request.grant_type.as_deref() != Some("client_credentials") {
        return Err(IdentityError::UnsupportedGrantType);
    }
    let client_id = request
        .client_id
        .ok_or(IdentityError::MissingParameter { name: "client_id" })?;
    if client_id != config.client_id {
        return Err(IdentityError::UnknownClient { client_id });
    }
    let secret = request
        .client_secret
        .ok_or(IdentityError::MissingParameter {
            name: "client_secret",
        })?;
    if !bool::from(secret.as_bytes().ct_eq(config.client_secret.as_bytes())) {
        return Err(IdentityError::InvalidClientSecret { client_id });
    }
    let scope = request
        .scope
        .ok_or(IdentityError::MissingParameter { name: "scope" })?;
    let wanted = format!("{KEY_VAULT_RESOURCE}/.default");
    if !scope.split_whitespace().any(|s| s == wanted) {
        return Err(IdentityError::InvalidScope { scope });
    }
    Ok(Json(json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": state.issue_token(),
    })))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

/// `GET /{tenant}/v2.0/.well-known/openid-configuration`: the endpoints of this tenant, all
/// on the fake.
pub(crate) async fn openid_configuration(
    State(state): State<Arc<FakeState>>,
    Path(tenant): Path<String>,
) -> Result<Json<Value>, IdentityError> {
    state.arrive(Operation::Discovery).await;
    if state.in_outage() {
        return Err(IdentityError::Unavailable);
    }
    if tenant != state.config().tenant {
        return Err(IdentityError::UnknownTenant { tenant });
    }
    let base = format!("{}/{tenant}", state.config().base_url);
    Ok(Json(json!({
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": format!("{base}/v2.0"),
        "request_uri_parameter_supported": false,
        "userinfo_endpoint": format!("{base}/oidc/userinfo"),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "http_logout_supported": true,
        "frontchannel_logout_supported": true,
        "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid"],
        "tenant_region_scope": null,
        "cloud_instance_name": "microsoftonline.com",
    })))
}
