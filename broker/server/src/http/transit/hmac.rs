//! [Generate HMAC](https://developer.hashicorp.com/vault/api-docs/secret/transit#generate-hmac):
//! `POST /transit/hmac/:name(/:algorithm)`, and `verify/:name(/:algorithm)` with `hmac=`
//! (which [`super::verify`] hands here).
//!
//! Vault's fields, defaults and messages (`builtin/logical/transit/path_hmac.go`): the
//! algorithm in the path wins over the body's `algorithm` (default `sha2-256`); `input` is
//! decoded as Go decodes base64; batches answer 200 with each item's error in its result.

use axum::response::Response;
use keybroker_core::{
    engines::transit::{decode_go_base64, HashFunction, HmacVerifyItem},
    Error,
};
use serde::{Deserialize, Serialize};

use super::{
    batch::{merge, respond_ok, split},
    sign::{SignBody, SignItem},
    Context,
};
use crate::http::{body, error::ApiError};

/// Vault transit API: one item of an hmac `batch_input`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct HmacItem {
    input: Option<String>,
    reference: Option<String>,
}

/// Vault transit API: generate HMAC.
#[derive(Deserialize, Default)]
#[serde(default)]
struct HmacBody {
    input: Option<String>,
    algorithm: Option<String>,
    #[serde(deserialize_with = "body::opt_u32")]
    key_version: Option<u32>,
    #[serde(deserialize_with = "body::opt_list")]
    batch_input: Option<Vec<HmacItem>>,
}

/// Vault transit API: generate HMAC response data.
#[derive(Serialize)]
struct HmacData {
    hmac: String,
}

/// Vault's verify result for an HMAC: a batch item omits `valid` when it is false, as
/// Vault's `omitempty` does.
#[derive(Serialize)]
struct ValidData {
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    valid: bool,
}

/// The hash function: the path's, else the body's `algorithm`, else sha2-256 (Vault's).
fn function(path: Option<&str>, body: Option<&str>) -> Result<HashFunction, ApiError> {
    let name = path
        .or(body)
        .filter(|a| !a.is_empty())
        .unwrap_or("sha2-256");
    HashFunction::parse(name)
        .map_err(|_| ApiError::bad_request(format!("unsupported algorithm {name:?}")))
}

/// An input, decoded as Vault decodes it, with its message.
fn input(text: &str) -> Result<Vec<u8>, Error> {
    decode_go_base64(text).map_err(|at| {
        Error::invalid(format!(
            "unable to decode input as base64: illegal base64 data at input byte {at}"
        ))
    })
}

impl HmacBody {
    /// The items: `batch_input`, or the top-level `input` (missing: Vault's message).
    fn items(self) -> Result<(Vec<HmacItem>, bool), ApiError> {
        match self.batch_input {
            Some(items) if items.is_empty() => {
                Err(ApiError::bad_request("missing batch input to process"))
            }
            Some(items) => Ok((items, true)),
            None if self.input.is_none() => Err(ApiError::bad_request("missing input for HMAC")),
            None => Ok((
                vec![HmacItem {
                    input: self.input,
                    reference: None,
                }],
                false,
            )),
        }
    }
}

impl Context<'_> {
    /// Vault transit API: generate HMAC.
    pub(super) async fn hmac(
        &self,
        name: &str,
        path_algorithm: Option<&str>,
    ) -> Result<Response, ApiError> {
        let mut parsed: HmacBody = body::parse(&self.request.body)?;
        let function = function(path_algorithm, parsed.algorithm.take().as_deref())?;
        let key_version = parsed.key_version.unwrap_or(0);
        let (items, batch) = parsed.items()?;
        let (slots, work) = split(&items, batch, |item| match &item.input {
            Some(text) => input(text),
            None => Err(Error::invalid("missing input for HMAC")),
        })?;
        let results = if work.is_empty() {
            Vec::new()
        } else {
            self.transit()
                .hmac(
                    self.tenant,
                    self.mount.id,
                    name,
                    function,
                    key_version,
                    work,
                )
                .await?
        };
        let references = items
            .iter()
            .map(|item| item.reference.clone().unwrap_or_default())
            .collect();
        respond_ok(merge(slots, results)?, references, batch, |hmac| HmacData {
            hmac,
        })
    }

    /// Vault transit API: verify with `hmac=` (sign's body; the algorithm is the path's or
    /// `algorithm`, as in Vault, not `hash_algorithm`).
    pub(super) async fn verify_hmac(
        &self,
        name: &str,
        path_algorithm: Option<&str>,
        input_body: &SignBody,
        items: Vec<SignItem>,
        batch: bool,
    ) -> Result<Response, ApiError> {
        let function = function(path_algorithm, input_body.algorithm.as_deref())?;
        let (slots, work) = split(&items, batch, |item| verify_item(item, batch))?;
        let results = if work.is_empty() {
            Vec::new()
        } else {
            self.transit()
                .verify_hmac(self.tenant, self.mount.id, name, function, work)
                .await?
        };
        let references = super::sign::references(&items);
        let results = merge(slots, results)?;
        if batch {
            respond_ok(results, references, batch, |valid| ValidData { valid })
        } else {
            // A single answer always says `valid`.
            respond_ok(
                results,
                references,
                batch,
                |valid| serde_json::json!({ "valid": valid }),
            )
        }
    }
}

/// A verify item as Vault's HMAC verification reads it: a missing `input` is empty at the
/// top level and an error in a batch item.
fn verify_item(item: &SignItem, batch: bool) -> Result<HmacVerifyItem, Error> {
    let text = match item.input.as_deref() {
        Some(text) => text,
        None if batch => return Err(Error::invalid("missing input")),
        None => "",
    };
    let input = input(text)?;
    let hmac = item
        .hmac
        .clone()
        .ok_or_else(|| Error::invalid("missing hmac"))?;
    Ok(HmacVerifyItem { input, hmac })
}

/// [`HmacBody`] decoded as [`Context::hmac`] does, without a broker (see
/// [`crate::http::fuzzing`]); how many of the wire structs accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let Ok(mut parsed) = body::parse::<HmacBody>(body) else {
        return 0;
    };
    let _ = function(None, parsed.algorithm.take().as_deref());
    if let Ok((items, _)) = parsed.items() {
        for item in &items {
            if let Some(text) = &item.input {
                let _ = input(text);
            }
        }
    }
    1
}
