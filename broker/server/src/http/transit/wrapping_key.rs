//! [Get wrapping key](https://openbao.org/api-docs/secret/transit/#get-wrapping-key) (Vault: [Get wrapping key](https://developer.hashicorp.com/vault/api-docs/secret/transit#get-wrapping-key)):
//! `GET /transit/wrapping_key`: the mount's RSA-4096 public key, made on first read.

use axum::response::Response;
use serde_json::json;

use super::Context;
use crate::http::{error::ApiError, response};

impl Context<'_> {
    pub(super) async fn wrapping_key(&self) -> Result<Response, ApiError> {
        let public_key = self
            .transit()
            .wrapping_public_key(self.tenant, self.mount.id)
            .await?;
        Ok(response::data(&json!({ "public_key": public_key })))
    }
}
