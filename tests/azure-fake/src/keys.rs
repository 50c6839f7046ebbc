//! Key Vault keys REST API handlers (api-version 7.x / 2025-07-01, learn.microsoft.com
//! "Key Vault REST API reference: Keys"): Create Key, Get Key, Update Key, Wrap Key,
//! Unwrap Key, Encrypt, Decrypt, Sign, Verify.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    body::Bytes,
    extract::{Path, Query, State},
    http::HeaderMap,
    Json,
};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::{
    crypto::{b64url, from_b64url, KeySpec},
    error::KeyVaultError,
    state::{FakeState, KeyAttributesUpdate},
    Operation,
};

/// The query string: Key Vault requires `api-version` on every request.
#[derive(Deserialize)]
pub(crate) struct ApiVersion {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
}

/// Key Vault REST API: Create Key, request body (`KeyCreateParameters`).
#[derive(Deserialize)]
struct CreateKeyRequest {
    kty: String,
    key_size: Option<usize>,
    crv: Option<String>,
    key_ops: Option<Vec<String>>,
    attributes: Option<KeyAttributes>,
    tags: Option<BTreeMap<String, String>>,
}

/// Key Vault REST API: `KeyAttributes` as a request sets them.
#[derive(Deserialize, Default)]
struct KeyAttributes {
    enabled: Option<bool>,
    nbf: Option<i64>,
    exp: Option<i64>,
}

impl From<Option<KeyAttributes>> for KeyAttributesUpdate {
    fn from(attributes: Option<KeyAttributes>) -> Self {
        let a = attributes.unwrap_or_default();
        KeyAttributesUpdate {
            enabled: a.enabled,
            not_before: a.nbf,
            expires: a.exp,
        }
    }
}

/// Key Vault REST API: Update Key, request body (`KeyUpdateParameters`).
#[derive(Deserialize)]
struct UpdateKeyRequest {
    key_ops: Option<Vec<String>>,
    attributes: Option<KeyAttributes>,
    tags: Option<BTreeMap<String, String>>,
}

/// Key Vault REST API: Wrap/Unwrap Key, Encrypt/Decrypt, Sign request body
/// (`KeyOperationsParameters`, `KeySignParameters`): `alg` and base64url `value`.
#[derive(Deserialize)]
struct KeyOperationRequest {
    alg: String,
    value: String,
}

/// Key Vault REST API: Verify, request body (`KeyVerifyParameters`): base64url `digest`
/// and signature `value`.
#[derive(Deserialize)]
struct VerifyRequest {
    alg: String,
    digest: String,
    value: String,
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, KeyVaultError> {
    serde_json::from_slice(body)
        .map_err(|e| KeyVaultError::BadParameter(format!("The request body is invalid: {e}")))
}

fn decode(field: &str, text: &str) -> Result<Vec<u8>, KeyVaultError> {
    from_b64url(text).ok_or_else(|| {
        KeyVaultError::BadParameter(format!("Property '{field}' is not valid base64url."))
    })
}

fn valid_name(name: &str) -> Result<(), KeyVaultError> {
    if !name.is_empty()
        && name.len() <= 127
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        Ok(())
    } else {
        Err(KeyVaultError::BadParameter(format!(
            "The request URI contains an invalid name: {name}"
        )))
    }
}

/// `POST /keys/{name}/create`.
pub(crate) async fn create(
    State(state): State<Arc<FakeState>>,
    Path(name): Path<String>,
    Query(query): Query<ApiVersion>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, KeyVaultError> {
    state
        .admit(
            Operation::Create,
            &name,
            &headers,
            query.api_version.as_deref(),
        )
        .await?;
    valid_name(&name)?;
    let request: CreateKeyRequest = parse(&body)?;
    let spec = match (request.kty.as_str(), request.crv.as_deref()) {
        ("RSA" | "RSA-HSM", _) => KeySpec::Rsa(request.key_size.unwrap_or(2048)),
        ("EC" | "EC-HSM", None | Some("P-256")) => KeySpec::P256,
        ("EC" | "EC-HSM", Some("P-384")) => KeySpec::P384,
        ("EC" | "EC-HSM", Some("P-521")) => KeySpec::P521,
        ("EC" | "EC-HSM", Some(crv)) => {
            return Err(KeyVaultError::BadParameter(format!(
                "The curve {crv} is not supported by this fake (P-256, P-384, P-521)."
            )))
        }
        (kty, _) => {
            return Err(KeyVaultError::BadParameter(format!(
                "The key type {kty} is not supported by this vault (RSA, RSA-HSM, EC, EC-HSM)."
            )))
        }
    };
    let bundle = state.create_key(
        &name,
        &request.kty,
        spec,
        request.key_ops,
        request.attributes.into(),
        request.tags.unwrap_or_default(),
    )?;
    Ok(Json(bundle))
}

/// The query string of Get Keys: `api-version`, `maxresults` (1 to 25) and the fake's
/// continuation token (Key Vault's is opaque; clients follow `nextLink` as given).
#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(rename = "api-version")]
    api_version: Option<String>,
    maxresults: Option<String>,
    #[serde(rename = "$skiptoken")]
    skip_token: Option<String>,
}

/// `GET /keys`: one page of the key list, `{"value": [KeyItem…], "nextLink": …}`.
pub(crate) async fn list(
    State(state): State<Arc<FakeState>>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, KeyVaultError> {
    state
        .admit(Operation::List, "", &headers, query.api_version.as_deref())
        .await?;
    let max = match query.maxresults.as_deref() {
        None => 25,
        Some(text) => match text.parse::<usize>() {
            Ok(max @ 1..=25) => max,
            _ => {
                return Err(KeyVaultError::BadParameter(format!(
                    "Invalid maxresults value {text}: it must be between 1 and 25."
                )))
            }
        },
    };
    let skip = query
        .skip_token
        .as_deref()
        .map_or(Ok(0), str::parse::<usize>)
        .map_err(|_| {
            KeyVaultError::BadParameter("The continuation token is invalid.".to_owned())
        })?;
    let (items, more) = state.list_keys(skip, max);
    let next_link = more.then(|| {
        format!(
            "{}/keys?api-version={}&maxresults={max}&$skiptoken={}",
            state.config().base_url,
            query.api_version.as_deref().unwrap_or_default(),
            skip + max
        )
    });
    Ok(Json(json!({ "value": items, "nextLink": next_link })))
}

/// `DELETE /keys/{name}`: soft delete; answers the `DeletedKeyBundle`.
pub(crate) async fn delete(
    State(state): State<Arc<FakeState>>,
    Path(name): Path<String>,
    Query(query): Query<ApiVersion>,
    headers: HeaderMap,
) -> Result<Json<Value>, KeyVaultError> {
    state
        .admit(
            Operation::Delete,
            &name,
            &headers,
            query.api_version.as_deref(),
        )
        .await?;
    Ok(Json(state.delete_key(&name)?))
}

/// `GET /deletedkeys/{name}`.
pub(crate) async fn get_deleted(
    State(state): State<Arc<FakeState>>,
    Path(name): Path<String>,
    Query(query): Query<ApiVersion>,
    headers: HeaderMap,
) -> Result<Json<Value>, KeyVaultError> {
    state
        .admit(
            Operation::GetDeleted,
            &name,
            &headers,
            query.api_version.as_deref(),
        )
        .await?;
    Ok(Json(state.get_deleted_key(&name)?))
}

/// `GET /keys/{name}` (the current version).
pub(crate) async fn get_current(
    State(state): State<Arc<FakeState>>,
    Path(name): Path<String>,
    Query(query): Query<ApiVersion>,
    headers: HeaderMap,
) -> Result<Json<Value>, KeyVaultError> {
    state
        .admit(
            Operation::Get,
            &name,
            &headers,
            query.api_version.as_deref(),
        )
        .await?;
    Ok(Json(state.get_key(&name, None)?))
}

/// `GET /keys/{name}/{version}`.
pub(crate) async fn get_version(
    State(state): State<Arc<FakeState>>,
    Path((name, version)): Path<(String, String)>,
    Query(query): Query<ApiVersion>,
    headers: HeaderMap,
) -> Result<Json<Value>, KeyVaultError> {
    state
        .admit(
            Operation::Get,
            &name,
            &headers,
            query.api_version.as_deref(),
        )
        .await?;
    Ok(Json(state.get_key(&name, Some(&version))?))
}

/// `PATCH /keys/{name}/{version}` (and `/keys/{name}` for the current version).
pub(crate) async fn update(
    state: Arc<FakeState>,
    name: String,
    version: Option<String>,
    query: ApiVersion,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, KeyVaultError> {
    state
        .admit(
            Operation::Update,
            &name,
            &headers,
            query.api_version.as_deref(),
        )
        .await?;
    let request: UpdateKeyRequest = parse(&body)?;
    Ok(Json(state.update_key(
        &name,
        version.as_deref(),
        request.key_ops,
        request.attributes.into(),
        request.tags,
    )?))
}

/// `PATCH /keys/{name}/{version}`.
pub(crate) async fn update_version(
    State(state): State<Arc<FakeState>>,
    Path((name, version)): Path<(String, String)>,
    Query(query): Query<ApiVersion>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, KeyVaultError> {
    update(state, name, Some(version), query, headers, body).await
}

/// `PATCH /keys/{name}`.
pub(crate) async fn update_current(
    State(state): State<Arc<FakeState>>,
    Path(name): Path<String>,
    Query(query): Query<ApiVersion>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, KeyVaultError> {
    update(state, name, None, query, headers, body).await
}

/// `POST /keys/{name}/{version}/{operation}`.
pub(crate) async fn operate_version(
    State(state): State<Arc<FakeState>>,
    Path((name, version, operation)): Path<(String, String, String)>,
    Query(query): Query<ApiVersion>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, KeyVaultError> {
    operate(state, name, Some(version), &operation, query, headers, body).await
}

/// `POST /keys/{name}/{operation}`: an SDK given no version sends `/keys/{name}//wrapkey`,
/// which the fake reads (after collapsing `//`) as the current version.
pub(crate) async fn operate_current(
    State(state): State<Arc<FakeState>>,
    Path((name, operation)): Path<(String, String)>,
    Query(query): Query<ApiVersion>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, KeyVaultError> {
    operate(state, name, None, &operation, query, headers, body).await
}

async fn operate(
    state: Arc<FakeState>,
    name: String,
    version: Option<String>,
    operation: &str,
    query: ApiVersion,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, KeyVaultError> {
    let Some(op) = Operation::from_path(operation) else {
        return Err(KeyVaultError::BadParameter(format!(
            "Unknown key operation '{operation}'."
        )));
    };
    state
        .admit(op, &name, &headers, query.api_version.as_deref())
        .await?;
    let key_op = op.key_op();
    let (material, kid) = state.usable_key(&name, version.as_deref(), key_op)?;
    let bad = |e: crate::crypto::CryptoError| KeyVaultError::BadParameter(e.to_string());
    if op == Operation::Verify {
        let request: VerifyRequest = parse(&body)?;
        let digest = decode("digest", &request.digest)?;
        let signature = decode("value", &request.value)?;
        let valid = material
            .verify(&request.alg, &digest, &signature)
            .map_err(bad)?;
        return Ok(Json(json!({ "value": valid })));
    }
    let request: KeyOperationRequest = parse(&body)?;
    let input = decode("value", &request.value)?;
    let output = match op {
        Operation::WrapKey | Operation::Encrypt => material.wrap(&request.alg, &input),
        Operation::UnwrapKey | Operation::Decrypt => material.unwrap(&request.alg, &input),
        _ => material.sign(&request.alg, &input),
    }
    .map_err(bad)?;
    Ok(Json(json!({ "kid": kid, "value": b64url(&output) })))
}
