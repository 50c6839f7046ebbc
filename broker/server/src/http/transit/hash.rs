//! [Hash data](https://openbao.org/api-docs/secret/transit/#hash-data) (Vault:
//! <https://developer.hashicorp.com/vault/api-docs/secret/transit#hash-data>):
//! `POST /transit/hash(/:algorithm)`.
//!
//! No key is involved: the digest is the core's (`keybroker_core::engines::transit::hash`),
//! with OpenBao's checks and messages; the algorithm in the path wins over the body's.

use axum::response::Response;
use keybroker_core::engines::transit::{hash_data, HashRequest};
use serde::Deserialize;
use serde_json::json;

use super::Context;
use crate::http::{body, error::ApiError, response};

/// Vault transit API: hash data.
#[derive(Deserialize, Default)]
#[serde(default)]
struct HashBody {
    input: Option<String>,
    algorithm: Option<String>,
    format: Option<String>,
}

impl HashBody {
    /// The sum, with `path_algorithm` (`hash/:algorithm`) winning over the body's.
    fn sum(&self, path_algorithm: Option<&str>) -> Result<String, ApiError> {
        Ok(hash_data(&HashRequest {
            input: self.input.as_deref(),
            path_algorithm,
            algorithm: self.algorithm.as_deref(),
            format: self.format.as_deref(),
        })?)
    }
}

impl Context<'_> {
    /// Hashes data (`hash[/:algorithm]`).
    pub(super) fn hash(&self, path_algorithm: Option<&str>) -> Result<Response, ApiError> {
        let input: HashBody = body::parse(&self.request.body)?;
        let sum = input.sum(path_algorithm)?;
        Ok(response::data(&json!({ "sum": sum })))
    }
}

/// [`HashBody`] decoded and hashed as [`Context::hash`] does, without a broker (see
/// [`crate::http::fuzzing`]); how many of the wire structs accepted `body`.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    let Ok(input) = body::parse::<HashBody>(body) else {
        return 0;
    };
    let _ = input.sum(None);
    let _ = input.sum(Some("sha3-256"));
    1
}
