//! [Trim key](https://openbao.org/api-docs/secret/transit/#trim-key) (Vault: [Trim key](https://developer.hashicorp.com/vault/api-docs/secret/transit#trim-key)):
//! `POST /transit/keys/:name/trim`. Answers the key as read key answers it.

use axum::response::Response;
use serde::Deserialize;

use super::{keys::key_json, Context};
use crate::http::{body, error::ApiError, response};

/// Vault transit API: trim key.
#[derive(Deserialize, Default)]
#[serde(default)]
struct TrimBody {
    /// Signed: Vault answers a negative value with a message of its own.
    #[serde(deserialize_with = "body::opt_i64")]
    min_available_version: Option<i64>,
}

impl Context<'_> {
    /// Deletes the key's versions below `min_available_version` for good.
    pub(super) async fn trim(&self, name: &str) -> Result<Response, ApiError> {
        let input: TrimBody = body::parse(&self.request.body)?;
        let info = self
            .transit()
            .trim_key(
                self.tenant,
                self.mount.id,
                name,
                input.min_available_version,
            )
            .await?;
        Ok(response::data(&key_json(&info)))
    }
}

/// [`TrimBody`] decoded without a broker; whether it was.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    usize::from(body::parse::<TrimBody>(body).is_ok())
}
