//! What the data operations share: the body of encrypt, decrypt, rewrap and datakey (Vault
//! transit API), and how every batch operation (also sign and verify) answers
//! `batch_input`: its items decoded one by one (a bad item fails alone), sent to the core
//! together, merged back in order and answered as `batch_results` with Vault's status.

use axum::{http::StatusCode, response::Response};
use keybroker_core::{
    engines::transit::{decode_go_base64, EncryptOutput, PaddingScheme},
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
    /// Base64 `context` of a derived key, per item (a batch ignores the top-level one).
    pub(super) context: Option<String>,
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
    /// Base64 `context` of a derived key (outside a batch; datakey's).
    pub(super) context: Option<String>,
    /// Encrypt's `convergent_encryption`: whether a key the request makes (upsert) is
    /// convergent.
    #[serde(deserialize_with = "body::opt_bool")]
    pub(super) convergent_encryption: Option<bool>,
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
                    context: self.context,
                    key_version: self.key_version,
                    reference: None,
                    padding_scheme: self.padding_scheme,
                }],
                false,
            ),
        }
    }
}

/// Whether the items carry a `context` (the first one says, [`check_contexts`] that all
/// agree): an upsert then makes a derived key, as Vault's does.
pub(super) fn context_set(items: &[BatchItem]) -> bool {
    items.first().is_some_and(has_context)
}

fn has_context(item: &BatchItem) -> bool {
    item.context.as_deref().is_some_and(|c| !c.is_empty())
}

/// Vault's refusal of a batch where some items carry a `context` and others do not
/// (encrypt, decrypt, rewrap: `pathEncryptWrite`), whatever the key.
pub(super) fn check_contexts(items: &[BatchItem]) -> Result<(), ApiError> {
    let set = context_set(items);
    if items.iter().any(|item| has_context(item) != set) {
        return Err(ApiError::Core(Error::invalid(
            "context should be set either in all the request blocks or in none",
        )));
    }
    Ok(())
}

/// An item's `context`, base64-decoded (absent or empty: none), refused with the message
/// Vault's Go decoder gives.
pub(super) fn decode_context(item: &BatchItem) -> Result<Vec<u8>, Error> {
    match item.context.as_deref() {
        None | Some("") => Ok(Vec::new()),
        Some(text) => decode_go_base64(text)
            .map_err(|at| Error::invalid(format!("illegal base64 data at input byte {at}"))),
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
    let _ = optional_base64("context", input.context.as_deref());
    let _ = input.convergent_encryption;
    let (items, batch) = input.items();
    if check_contexts(&items).is_err() {
        return 1;
    }
    let _ = context_set(&items);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn item(context: Option<&str>) -> BatchItem {
        BatchItem {
            context: context.map(str::to_owned),
            ..BatchItem::default()
        }
    }

    #[test]
    fn a_batch_mixing_items_with_and_without_a_context_is_refused() {
        assert!(check_contexts(&[item(Some("YQ==")), item(Some("Yg=="))]).is_ok());
        assert!(check_contexts(&[item(None), item(Some(""))]).is_ok());
        assert!(check_contexts(&[]).is_ok());
        for mixed in [
            [item(Some("YQ==")), item(None)],
            [item(Some("")), item(Some("YQ=="))],
        ] {
            let Err(ApiError::Core(error)) = check_contexts(&mixed) else {
                panic!("a mixed batch was accepted");
            };
            assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
            assert_eq!(
                error.to_string(),
                "context should be set either in all the request blocks or in none"
            );
        }
        assert!(context_set(&[item(Some("YQ=="))]));
        assert!(!context_set(&[item(Some(""))]));
    }

    #[test]
    fn a_context_is_decoded_as_go_decodes_it_with_gos_message() {
        assert_eq!(decode_context(&item(None)).unwrap(), Vec::<u8>::new());
        assert_eq!(decode_context(&item(Some(""))).unwrap(), Vec::<u8>::new());
        assert_eq!(decode_context(&item(Some("Y3R4\nMQ=="))).unwrap(), b"ctx1");
        let error = decode_context(&item(Some("Y3R4!Q=="))).unwrap_err();
        assert!(matches!(error, Error::InvalidRequest(_)), "{error:?}");
        assert_eq!(error.to_string(), "illegal base64 data at input byte 4");
    }
}
