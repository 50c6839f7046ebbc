//! [Sign data](https://developer.hashicorp.com/vault/api-docs/secret/transit#sign-data): `POST /transit/sign/:name(/:hash_algorithm)`.
//!
//! Verify takes the same body.

use axum::response::Response;
use keybroker_core::{
    engines::transit::{HashAlgorithm, Marshaling, SignOptions, SignOutput},
    Error,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{
    batch::{merge, respond, split},
    decode_base64, Context,
};
use crate::http::{body, error::ApiError};

/// Vault transit API: one item of a sign or verify `batch_input`.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct SignItem {
    pub(super) input: Option<String>,
    pub(super) signature: Option<String>,
    /// Verify only: an HMAC to check instead of a signature.
    pub(super) hmac: Option<String>,
    context: Option<String>,
    reference: Option<String>,
}

/// Vault transit API: sign data and verify signed data share these fields.
#[derive(Deserialize, Default)]
#[serde(default)]
pub(super) struct SignBody {
    input: Option<String>,
    signature: Option<String>,
    hmac: Option<String>,
    context: Option<String>,
    hash_algorithm: Option<String>,
    /// Vault's older name of `hash_algorithm` (and the only one an HMAC verify reads).
    pub(super) algorithm: Option<String>,
    #[serde(deserialize_with = "body::opt_u32")]
    key_version: Option<u32>,
    #[serde(deserialize_with = "body::opt_bool")]
    prehashed: Option<bool>,
    signature_algorithm: Option<String>,
    marshaling_algorithm: Option<String>,
    salt_length: Option<Value>,
    #[serde(deserialize_with = "body::opt_list")]
    batch_input: Option<Vec<SignItem>>,
    #[serde(deserialize_with = "body::opt_u64")]
    pub(super) partial_failure_response_code: Option<u64>,
}

/// Vault transit API: sign response data.
#[derive(Serialize)]
struct SignatureData {
    signature: String,
    key_version: u32,
}

impl SignBody {
    /// The options, with the hash from the path (`sign/:name/:hash_algorithm`) winning over
    /// the body, as in Vault.
    pub(super) fn options(&self, path_hash: Option<&str>) -> Result<SignOptions, ApiError> {
        let hash = path_hash
            .or(self.hash_algorithm.as_deref())
            .or(self.algorithm.as_deref())
            .filter(|h| !h.is_empty());
        // Signatures are made with a salt as long as the digest; `auto` verifies those too.
        match &self.salt_length {
            None => {}
            Some(Value::String(text)) if matches!(text.as_str(), "" | "auto" | "hash") => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "unsupported salt_length: keybroker signs with a salt as long as the hash \
                     (use auto or hash)",
                ))
            }
        }
        Ok(SignOptions {
            key_version: self.key_version,
            hash_algorithm: hash
                .map(HashAlgorithm::parse)
                .transpose()?
                .unwrap_or_default(),
            signature_algorithm: self.signature_algorithm.clone().filter(|s| !s.is_empty()),
            marshaling: self
                .marshaling_algorithm
                .as_deref()
                .filter(|m| !m.is_empty())
                .map(Marshaling::parse)
                .transpose()?
                .unwrap_or_default(),
            prehashed: self.prehashed.unwrap_or(false),
        })
    }

    /// The request's items: `batch_input`, or the single top-level item.
    pub(super) fn items(&mut self) -> (Vec<SignItem>, bool) {
        match self.batch_input.take() {
            Some(items) => (items, true),
            None => (
                vec![SignItem {
                    input: self.input.take(),
                    signature: self.signature.take(),
                    hmac: self.hmac.take(),
                    context: self.context.take(),
                    reference: None,
                }],
                false,
            ),
        }
    }
}

/// An item's input, base64-decoded; `context` (derived keys) is refused.
pub(super) fn input_of(item: &SignItem) -> Result<Vec<u8>, Error> {
    if item.context.as_deref().is_some_and(|c| !c.is_empty()) {
        return Err(Error::invalid(
            "context is for derived keys, and keybroker derives no signing keys (they live in \
             their backend)",
        ));
    }
    decode_base64("input", item.input.as_deref().unwrap_or_default())
}

/// Each item's `reference`, echoed in its result.
pub(super) fn references(items: &[SignItem]) -> Vec<String> {
    items
        .iter()
        .map(|item| item.reference.clone().unwrap_or_default())
        .collect()
}

impl Context<'_> {
    /// Vault transit API: sign data.
    pub(super) async fn sign(
        &self,
        name: &str,
        path_hash: Option<&str>,
    ) -> Result<Response, ApiError> {
        let mut input: SignBody = body::parse(&self.request.body)?;
        let options = input.options(path_hash)?;
        let (items, batch) = input.items();
        let (slots, work) = split(&items, batch, input_of)?;
        let results = if work.is_empty() {
            Vec::new()
        } else {
            self.transit()
                .sign(self.tenant, self.mount.id, name, &options, work)
                .await?
        };
        respond(
            merge(slots, results)?,
            references(&items),
            batch,
            input.partial_failure_response_code,
            |out: SignOutput| SignatureData {
                signature: out.signature,
                key_version: out.key_version,
            },
        )
    }
}

/// [`SignBody`] decoded as its handlers decode it, without a broker (see
/// [`crate::http::fuzzing`]); how many of the wire structs accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let Ok(mut input) = body::parse::<SignBody>(body) else {
        return 0;
    };
    let _ = input.options(None);
    let (items, _) = input.items();
    for item in &items {
        let _ = input_of(item);
        if let Some(signature) = &item.signature {
            let _ = keybroker_core::engines::transit::ciphertext::split("signature", signature);
        }
    }
    let _ = references(&items);
    1
}
