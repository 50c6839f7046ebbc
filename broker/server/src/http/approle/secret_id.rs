//! Secret_ids (Vault API: auth/approle/role/:role_name/secret-id, custom-secret-id,
//! secret-id/lookup, secret-id/destroy, secret-id-accessor/lookup and /destroy) and their
//! tidy (tidy/secret-id).

use std::collections::BTreeMap;

use axum::{http::StatusCode, response::Response};
use keybroker_core::{
    auth::approle::SecretIdRequest,
    store::{MountRecord, SecretIdRecord},
};
use serde::Deserialize;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{fuzz_cidrs, not_found, string_list, IdentifierBody};
use crate::http::{body, error::ApiError, response, token, ApiRequest, Ready};

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

pub(super) async fn issue_secret_id(
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

pub(super) async fn list_secret_ids(
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

pub(super) async fn lookup_secret_id(
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

pub(super) async fn destroy_secret_id(
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

pub(super) async fn lookup_accessor(
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

pub(super) async fn destroy_accessor(
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
pub(super) fn tidy(ready: &Ready, mount: &MountRecord) -> Response {
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

/// The secret_id body decoded as [`issue_secret_id`] decodes it (see
/// [`super::fuzz_request_bodies`]); whether it was accepted.
pub(super) fn fuzz_body(body: &bytes::Bytes) -> usize {
    let Ok(input) = body::parse::<SecretIdBody>(body) else {
        return 0;
    };
    let _ = metadata(input.metadata);
    fuzz_cidrs(string_list("cidr_list", input.cidr_list));
    fuzz_cidrs(string_list("token_bound_cidrs", input.token_bound_cidrs));
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_takes_vaults_forms() {
        assert_eq!(
            metadata(Some(json!("{\"env\":\"prod\"}"))).unwrap(),
            BTreeMap::from([("env".to_owned(), "prod".to_owned())])
        );
        assert_eq!(metadata(Some(json!({ "env": "prod" }))).unwrap().len(), 1);
        assert!(metadata(Some(json!("{\"n\":1}"))).is_err());
        assert!(metadata(Some(json!("not json"))).is_err());
    }
}
