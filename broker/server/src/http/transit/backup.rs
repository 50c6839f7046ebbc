//! [Backup key](https://openbao.org/api-docs/secret/transit/#backup-key) (Vault:
//! [Backup key](https://developer.hashicorp.com/vault/api-docs/secret/transit#backup-key)):
//! `GET /transit/backup/:name`, answering `{"backup": "<base64>"}`.
//!
//! The backup holds the key's material in plaintext (Vault's semantics): only a key that is
//! `exportable` and `allow_plaintext_backup` has one, and the path is an ordinary ACL path
//! (`read` on `transit/backup/<name>`). Its content is keybroker's own format, not Vault's
//! (`keybroker_core::engines::transit` `backup.rs`).

use axum::response::Response;
use serde_json::json;

use super::Context;
use crate::http::{error::ApiError, response};

impl Context<'_> {
    /// The key's backup.
    pub(super) async fn backup(&self, name: &str) -> Result<Response, ApiError> {
        let backup = self
            .transit()
            .backup_key(self.tenant, self.mount.id, name)
            .await?;
        Ok(response::data(&json!({ "backup": backup.as_str() })))
    }
}
