//! [Generate random bytes](https://developer.hashicorp.com/vault/api-docs/secret/transit#generate-random-bytes):
//! `POST /transit/random(/:source)(/:bytes)`.

use axum::response::Response;
use base64::{engine::general_purpose::STANDARD, Engine as _};
use serde::Deserialize;
use serde_json::json;

use super::Context;
use crate::http::{body, error::ApiError, response};

/// Vault transit API: generate random bytes.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RandomBody {
    #[serde(deserialize_with = "body::opt_u64")]
    bytes: Option<u64>,
    format: Option<String>,
    source: Option<String>,
}

impl Context<'_> {
    /// Generates random bytes (`random[/source][/bytes]`).
    pub(super) fn random(
        &self,
        first: Option<&str>,
        second: Option<&str>,
    ) -> Result<Response, ApiError> {
        let input: RandomBody = body::parse(&self.request.body)?;
        let mut bytes = input.bytes;
        let mut source = input.source;
        for segment in [first, second].into_iter().flatten() {
            match segment.parse::<u64>() {
                Ok(n) => bytes = Some(n),
                Err(_) => source = Some(segment.to_owned()),
            }
        }
        match source.as_deref() {
            None | Some("" | "platform" | "all" | "seal") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported entropy source {other:?}"
                )))
            }
        }
        let count = bytes.unwrap_or(32);
        if count == 0 || count > 128 * 1024 {
            return Err(ApiError::bad_request("bytes must be between 1 and 131072"));
        }
        let random = keybroker_core::crypto::random_bytes(count as usize);
        let encoded = match input.format.as_deref() {
            None | Some("" | "base64") => STANDARD.encode(random.as_slice()),
            Some("hex") => hex::encode(random.as_slice()),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unsupported encoding format {other:?}"
                )))
            }
        };
        Ok(response::data(&json!({ "random_bytes": encoded })))
    }
}
