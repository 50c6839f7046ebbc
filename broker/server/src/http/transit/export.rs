//! [Export key](https://openbao.org/api-docs/secret/transit/#export-key) (Vault: [Export key](https://developer.hashicorp.com/vault/api-docs/secret/transit#export-key)):
//! `GET /transit/export/:type/:name(/:version)`. What keybroker exports and refuses is in
//! the core's `engines::transit::export`.

use axum::{http::StatusCode, response::Response};
use keybroker_core::{
    engines::transit::{ExportFormat, ExportType},
    Error,
};
use serde_json::{Map, Value};

use super::Context;
use crate::http::{error::ApiError, response};

impl Context<'_> {
    pub(super) async fn export_key(
        &self,
        export_type: &str,
        name: &str,
        version: Option<&str>,
    ) -> Result<Response, ApiError> {
        let export_type = ExportType::parse(export_type)?;
        let format = self.request.query.get("format").map_or("", String::as_str);
        let format = ExportFormat::parse(format)?;
        let exported = match self
            .transit()
            .export_key(
                self.tenant,
                self.mount.id,
                name,
                export_type,
                version,
                format,
            )
            .await
        {
            // Vault answers a missing key with 404 and no message.
            Err(Error::NotFound(_)) => {
                return Ok(crate::http::error::error_body(StatusCode::NOT_FOUND, &[]))
            }
            other => other?,
        };
        let keys: Map<String, Value> = exported
            .keys
            .iter()
            .map(|(version, key)| (version.to_string(), Value::String(key.to_string())))
            .collect();
        let mut data = Map::new();
        data.insert("name".to_owned(), Value::String(exported.name.clone()));
        data.insert("type".to_owned(), Value::String(exported.key_type.clone()));
        data.insert("keys".to_owned(), Value::Object(keys));
        Ok(response::data(&data))
    }
}
