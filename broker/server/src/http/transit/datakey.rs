//! [Generate data key](https://developer.hashicorp.com/vault/api-docs/secret/transit#generate-data-key): `POST /transit/datakey/:type/:name`.
//!
//! The body is the data operations' (`associated_data`, `context`, `bits`).

use axum::response::Response;
use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_core::engines::transit::DataKeyRequest;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::{batch::DataBody, optional_base64, Context};
use crate::http::{body, error::ApiError, response};

impl Context<'_> {
    pub(super) async fn datakey(&self, kind: &str, name: &str) -> Result<Response, ApiError> {
        let with_plaintext = match kind {
            "plaintext" => true,
            "wrapped" => false,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid type {other:?}: use plaintext or wrapped"
                )))
            }
        };
        let input: DataBody = body::parse(&self.request.body)?;
        let request = DataKeyRequest {
            with_plaintext,
            bits: input.bits.unwrap_or(256),
            associated_data: optional_base64("associated_data", input.associated_data.as_deref())?,
            context: optional_base64("context", input.context.as_deref())?,
        };
        let output = self
            .transit()
            .datakey(self.tenant, self.mount.id, name, request)
            .await?;
        let mut data =
            json!({ "ciphertext": output.ciphertext, "key_version": output.key_version });
        if let (Some(plaintext), Some(map)) = (&output.plaintext, data.as_object_mut()) {
            let encoded = Zeroizing::new(STANDARD.encode(plaintext.as_slice()));
            map.insert(
                "plaintext".to_owned(),
                Value::String(encoded.as_str().to_owned()),
            );
        }
        Ok(response::data(&data))
    }
}
