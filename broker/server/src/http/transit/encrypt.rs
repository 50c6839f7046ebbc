//! [Encrypt data](https://developer.hashicorp.com/vault/api-docs/secret/transit#encrypt-data): `POST /transit/encrypt/:name`.

use axum::response::Response;
use keybroker_core::{
    engines::transit::{CreateKeyOptions, EncryptItem, EncryptOutput},
    Error,
};
use serde::Serialize;

use super::{
    batch::{common_key_version, merge, references, respond, split, BatchItem, DataBody},
    decode_secret, optional_base64, Context,
};
use crate::http::{body, error::ApiError};

/// Vault transit API: encrypt and rewrap response data.
#[derive(Serialize)]
pub(super) struct CiphertextData {
    ciphertext: String,
    key_version: u32,
}

/// One encryption as encrypt and rewrap answer it.
pub(super) fn ciphertext_data(output: EncryptOutput) -> CiphertextData {
    CiphertextData {
        ciphertext: output.ciphertext,
        key_version: output.key_version,
    }
}

/// One item to encrypt: its plaintext and `associated_data`, base64-decoded.
pub(super) fn encrypt_item(item: &BatchItem) -> Result<EncryptItem, Error> {
    let text = item
        .plaintext
        .as_deref()
        .ok_or_else(|| Error::invalid("missing plaintext to encrypt"))?;
    Ok(EncryptItem {
        plaintext: decode_secret("plaintext", text)?,
        associated_data: optional_base64("associated_data", item.associated_data.as_deref())?,
    })
}

impl Context<'_> {
    pub(super) async fn encrypt(&self, name: &str) -> Result<Response, ApiError> {
        let input: DataBody = body::parse(&self.request.body)?;
        let key_type = input.key_type.clone();
        let partial_code = input.partial_failure_response_code;
        let top_version = input.key_version;
        let (items, batch) = input.items();
        let key_version = common_key_version(top_version, &items)?;
        let (slots, work) = split(&items, batch, encrypt_item)?;
        let results = if work.is_empty() {
            Vec::new()
        } else {
            // Vault's upsert: a missing key is made, of the body's `type`.
            let upsert = self.upsert_allowed().then(|| CreateKeyOptions {
                key_type: key_type.clone(),
                ..CreateKeyOptions::default()
            });
            self.transit()
                .encrypt(self.tenant, self.mount.id, name, key_version, upsert, work)
                .await?
        };
        let results = merge(slots, results)?;
        respond(
            results,
            references(&items),
            batch,
            partial_code,
            ciphertext_data,
        )
    }
}
