//! [Update key configuration](https://developer.hashicorp.com/vault/api-docs/secret/transit#update-key-configuration):
//! `POST /transit/keys/:name/config`.

use axum::response::Response;
use keybroker_core::engines::transit::KeyConfigUpdate;
use serde::Deserialize;

use super::{keys::key_json, Context};
use crate::http::{body, error::ApiError, response};

/// Vault transit API: update key configuration.
#[derive(Deserialize, Default)]
#[serde(default)]
struct KeyConfigBody {
    #[serde(deserialize_with = "body::opt_u32")]
    min_decryption_version: Option<u32>,
    #[serde(deserialize_with = "body::opt_u32")]
    min_encryption_version: Option<u32>,
    #[serde(deserialize_with = "body::opt_bool")]
    deletion_allowed: Option<bool>,
    #[serde(deserialize_with = "body::opt_duration_secs")]
    auto_rotate_period: Option<u64>,
    #[serde(deserialize_with = "body::opt_bool")]
    exportable: Option<bool>,
    #[serde(deserialize_with = "body::opt_bool")]
    allow_plaintext_backup: Option<bool>,
}

impl Context<'_> {
    pub(super) async fn configure_key(&self, name: &str) -> Result<Response, ApiError> {
        let input: KeyConfigBody = body::parse(&self.request.body)?;
        let update = KeyConfigUpdate {
            min_decryption_version: input.min_decryption_version,
            min_encryption_version: input.min_encryption_version,
            deletion_allowed: input.deletion_allowed,
            auto_rotate_period: input.auto_rotate_period,
            exportable: input.exportable,
            allow_plaintext_backup: input.allow_plaintext_backup,
        };
        let info = self
            .transit()
            .configure_key(self.tenant, self.mount.id, name, update)
            .await?;
        Ok(response::data(&key_json(&info)))
    }
}

/// [`KeyConfigBody`] decoded without a broker; whether it was.
pub(super) fn fuzz_request_bodies(body: &bytes::Bytes) -> usize {
    usize::from(body::parse::<KeyConfigBody>(body).is_ok())
}
