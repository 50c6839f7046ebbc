//! The mount's keys configuration (`disable_upsert`), kept in the mount's config:
//! - [Read keys configuration](https://developer.hashicorp.com/vault/api-docs/secret/transit#read-keys-configuration): `GET /transit/config/keys`;
//! - [Write keys configuration](https://developer.hashicorp.com/vault/api-docs/secret/transit#write-keys-configuration): `POST /transit/config/keys`.

use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::Context;
use crate::http::{body, error::ApiError, response};

/// Vault transit API: write keys configuration.
#[derive(Deserialize, Default)]
#[serde(default)]
struct MountConfigBody {
    #[serde(deserialize_with = "body::opt_bool")]
    disable_upsert: Option<bool>,
}

impl Context<'_> {
    /// Whether encrypt may create a missing key (Vault's upsert; on unless `disable_upsert`).
    pub(super) fn upsert_allowed(&self) -> bool {
        !self
            .mount
            .config
            .get("disable_upsert")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    pub(super) fn read_mount_config(&self) -> Response {
        response::data(&json!({ "disable_upsert": !self.upsert_allowed() }))
    }

    pub(super) async fn write_mount_config(&self) -> Result<Response, ApiError> {
        let input: MountConfigBody = body::parse(&self.request.body)?;
        let mut config = self.mount.config.clone();
        if let (Some(disable), Some(map)) = (input.disable_upsert, config.as_object_mut()) {
            map.insert("disable_upsert".to_owned(), Value::Bool(disable));
        }
        self.ready
            .broker
            .mounts
            .set_config(self.mount, config.clone())
            .await?;
        Ok(response::data(&json!({
            "disable_upsert": config.get("disable_upsert").and_then(Value::as_bool).unwrap_or(false)
        })))
    }
}
