//! [Rotate key](https://developer.hashicorp.com/vault/api-docs/secret/transit#rotate-key): `POST /transit/keys/:name/rotate`.

use axum::response::Response;

use super::{keys::key_json, Context};
use crate::http::{error::ApiError, response};

impl Context<'_> {
    pub(super) async fn rotate(&self, name: &str) -> Result<Response, ApiError> {
        let info = self
            .transit()
            .rotate(self.tenant, self.mount.id, name)
            .await?;
        Ok(response::data(&key_json(&info)))
    }
}
