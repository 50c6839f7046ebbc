//! What the data operations share: the body of encrypt, decrypt, rewrap and datakey (Vault
//! transit API), and how every batch operation (also sign and verify) answers
//! `batch_input`: its items decoded one by one (a bad item fails alone), sent to the core
//! together, merged back in order and answered as `batch_results` with Vault's status.

use axum::{http::StatusCode, response::Response};
use keybroker_core::{
    engines::transit::{EncryptOutput, PaddingScheme},
    Error,
};
use serde::{Deserialize, Serialize};

use super::{
    decrypt::padded_decrypt_item,
    encrypt::{ciphertext_data, encrypt_item},
    optional_base64,
    rewrap::rewrap_item,
};
use crate::http::{batch_status, body, error::ApiError, response};

/// One item of `batch_input` (Vault transit API: encrypt, decrypt, rewrap).
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct BatchItem {
    pub(super) plaintext: Option<String>,
    pub(super) ciphertext: Option<String>,
    pub(super) associated_data: Option<String>,
    /// Signed: Vault answers a negative version with a message of its own.
    #[serde(deserialize_with = "body::opt_i64")]
    pub(super) key_version: Option<i64>,
    pub(super) reference: Option<String>,
    /// RSA keys (encrypt and decrypt): `oaep` (the default) or `pkcs1v15`.
    pub(super) padding_scheme: Option<String>,
}

/// Vault transit API: encrypt, decrypt and rewrap share these fields.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct DataBody {
    pub(super) plaintext: Option<String>,
    pub(super) ciphertext: Option<String>,
    pub(super) associated_data: Option<String>,
    /// Signed, as in an item.
    #[serde(deserialize_with = "body::opt_i64")]
    pub(super) key_version: Option<i64>,
    #[serde(deserialize_with = "body::opt_list")]
    pub(super) batch_input: Option<Vec<BatchItem>>,
    #[serde(deserialize_with = "body::opt_u64")]
    pub(super) partial_failure_response_code: Option<u64>,
    #[serde(deserialize_with = "body::opt_u32")]
    pub(super) bits: Option<u32>,
    /// Encrypt's `type`: the type of a key the request makes (upsert).
    #[serde(rename = "type")]
    pub(super) key_type: Option<String>,
    /// As in an item; ignored in a batch, whose items name their own.
    pub(super) padding_scheme: Option<String>,
}

impl DataBody {
    /// The request's items: `batch_input`, or the single top-level item.
    pub(super) fn items(self) -> (Vec<BatchItem>, bool) {
        match self.batch_input {
            Some(items) => (items, true),
            None => (
                vec![BatchItem {
                    plaintext: self.plaintext,
                    ciphertext: self.ciphertext,
                    associated_data: self.associated_data,
                    key_version: self.key_version,
                    reference: None,
                    padding_scheme: self.padding_scheme,
                }],
                false,
            ),
        }
    }
}

/// An item's `padding_scheme`, parsed (Vault's message for an unknown one); whether the key
/// takes one is the core's to say.
pub(super) fn padding_scheme(item: &BatchItem) -> Result<Option<PaddingScheme>, Error> {
    item.padding_scheme
        .as_deref()
        .map(PaddingScheme::parse)
        .transpose()
}

/// Vault transit API: one item of `batch_results` — the fields a single item answers with,
/// or its error — and the caller's `reference`.
#[derive(Serialize)]
struct BatchResult<S> {
    #[serde(flatten)]
    data: Option<S>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    reference: String,
}

#[derive(Serialize)]
struct Batch<T> {
    batch_results: Vec<T>,
}

/// Whether a batch item's error fails the whole request instead of the item.
fn is_request_error(error: &Error) -> bool {
    matches!(
        error,
        Error::Unavailable(_) | Error::Internal { .. } | Error::Sealed | Error::BackendDenied(_)
    )
}

/// Decodes each item. Items that fail are answered in place (`Some(error)` in the slot);
/// the rest go to the core. Outside a batch the first failure fails the request.
pub(super) fn split<B, W>(
    items: &[B],
    batch: bool,
    decode: impl Fn(&B) -> Result<W, Error>,
) -> Result<(Vec<Option<Error>>, Vec<W>), ApiError> {
    let mut slots = Vec::with_capacity(items.len());
    let mut work = Vec::with_capacity(items.len());
    for item in items {
        match decode(item) {
            Ok(decoded) => {
                work.push(decoded);
                slots.push(None);
            }
            Err(error) if !batch => return Err(error.into()),
            Err(error) => slots.push(Some(error)),
        }
    }
    Ok((slots, work))
}

/// Puts the core's results back in item order. An error that is not about the item (a
/// backend unavailable) fails the whole request.
pub(super) fn merge<T>(
    slots: Vec<Option<Error>>,
    results: Vec<Result<T, Error>>,
) -> Result<Vec<Result<T, Error>>, ApiError> {
    let mut results = results.into_iter();
    let mut merged = Vec::with_capacity(slots.len());
    for slot in slots {
        let result = match slot {
            None => results
                .next()
                .unwrap_or_else(|| Err(Error::internal("missing result"))),
            Some(error) => Err(error),
        };
        if let Err(error) = &result {
            if is_request_error(error) {
                return Err(ApiError::Core(clone_error(error)));
            }
        }
        merged.push(result);
    }
    Ok(merged)
}

/// Each item's `reference`, echoed in its result.
pub(super) fn references(items: &[BatchItem]) -> Vec<String> {
    items
        .iter()
        .map(|item| item.reference.clone().unwrap_or_default())
        .collect()
}

/// A single item answers with its data; a batch with `batch_results` and Vault's status.
pub(super) fn respond<T, S: Serialize>(
    results: Vec<Result<T, Error>>,
    references: Vec<String>,
    batch: bool,
    partial_code: Option<u64>,
    single: impl Fn(T) -> S,
) -> Result<Response, ApiError> {
    let partial_code = partial_code.and_then(|c| u16::try_from(c).ok());
    respond_with(results, references, batch, single, |any_ok, any_failed| {
        batch_status(any_ok, any_failed, partial_code)
    })
}

/// As [`respond`], with a batch always answered 200 whatever its items' errors, as
/// Vault's rewrap answers (it has no `partial_failure_response_code`).
pub(super) fn respond_ok<T, S: Serialize>(
    results: Vec<Result<T, Error>>,
    references: Vec<String>,
    batch: bool,
    single: impl Fn(T) -> S,
) -> Result<Response, ApiError> {
    respond_with(results, references, batch, single, |_, _| StatusCode::OK)
}

/// A single item answers with its data (its error fails the request); a batch with
/// `batch_results` and the status `status` gives (whether any item succeeded, failed).
fn respond_with<T, S: Serialize>(
    mut results: Vec<Result<T, Error>>,
    references: Vec<String>,
    batch: bool,
    single: impl Fn(T) -> S,
    status: impl Fn(bool, bool) -> StatusCode,
) -> Result<Response, ApiError> {
    if !batch {
        let result = results
            .pop()
            .ok_or_else(|| ApiError::Core(Error::internal("missing result")))?;
        return Ok(response::data(&single(result?)));
    }
    let any_ok = results.iter().any(Result::is_ok);
    let any_failed = results.iter().any(Result::is_err);
    let batch_results: Vec<BatchResult<S>> = results
        .into_iter()
        .zip(references)
        .map(|(result, reference)| match result {
            Ok(value) => BatchResult {
                data: Some(single(value)),
                error: None,
                reference,
            },
            Err(error) => BatchResult {
                data: None,
                error: Some(error.to_string()),
                reference,
            },
        })
        .collect();
    let status = status(any_ok, any_failed);
    Ok(response::data_with(status, &Batch { batch_results }, &[]))
}

/// Request-level errors found on an item are re-raised for the whole request.
fn clone_error(error: &Error) -> Error {
    match error {
        Error::Unavailable(message) => Error::Unavailable(message.clone()),
        Error::BackendDenied(message) => Error::BackendDenied(message.clone()),
        Error::Sealed => Error::Sealed,
        other => Error::internal(other.to_string()),
    }
}

/// The data operations' body decoded as their handlers decode it, without a broker: the
/// items split as encrypt and decrypt split them, every item the core would get answered,
/// and the response built; whether the body was accepted.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let Ok(input) = body::parse::<DataBody>(body) else {
        return 0;
    };
    let partial_code = input.partial_failure_response_code;
    let _ = optional_base64("associated_data", input.associated_data.as_deref());
    let (items, batch) = input.items();
    let encrypt = split(&items, batch, encrypt_item);
    if let Ok((slots, work)) = encrypt {
        let answered = work
            .iter()
            .map(|_| {
                Ok(EncryptOutput {
                    ciphertext: "vault:v1:AAAA".to_owned(),
                    key_version: 1,
                })
            })
            .collect();
        if let Ok(results) = merge(slots, answered) {
            let _ = respond(
                results,
                references(&items),
                batch,
                partial_code,
                ciphertext_data,
            );
        }
    }
    if let Ok((_, work)) = split(&items, batch, padded_decrypt_item) {
        for item in work {
            let _ = keybroker_core::engines::transit::ciphertext::parse(&item.ciphertext);
        }
    }
    if let Ok((_, work)) = split(&items, batch, rewrap_item) {
        for item in work {
            let _ = keybroker_core::engines::transit::ciphertext::parse(&item.decrypt.ciphertext);
        }
    }
    1
}
