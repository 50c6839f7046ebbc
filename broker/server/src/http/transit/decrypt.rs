//! [Decrypt data](https://developer.hashicorp.com/vault/api-docs/secret/transit#decrypt-data): `POST /transit/decrypt/:name`.

use axum::response::Response;
use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_core::{engines::transit::DecryptItem, Error};
use serde::Serialize;
use zeroize::Zeroizing;

use super::{
    batch::{
        check_contexts, decode_context, merge, padding_scheme, references, respond, split,
        BatchItem, DataBody,
    },
    optional_base64, Context,
};
use crate::http::{body, error::ApiError};

/// Vault transit API: decrypt response data.
#[derive(Serialize)]
struct PlaintextData {
    plaintext: Zeroizing<String>,
}

/// One item to decrypt: its ciphertext, and `associated_data` and `context`
/// base64-decoded (rewrap's items too, which take no `padding_scheme`).
pub(super) fn decrypt_item(item: &BatchItem) -> Result<DecryptItem, Error> {
    let ciphertext = item
        .ciphertext
        .as_deref()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::invalid("missing ciphertext to decrypt"))?;
    let context = decode_context(item)?;
    Ok(DecryptItem {
        ciphertext: ciphertext.to_owned(),
        associated_data: optional_base64("associated_data", item.associated_data.as_deref())?,
        context,
        padding_scheme: None,
    })
}

/// One item to decrypt, with the `padding_scheme` an RSA key's ciphertext was made with.
pub(super) fn padded_decrypt_item(item: &BatchItem) -> Result<DecryptItem, Error> {
    Ok(DecryptItem {
        padding_scheme: padding_scheme(item)?,
        ..decrypt_item(item)?
    })
}

impl Context<'_> {
    pub(super) async fn decrypt(&self, name: &str) -> Result<Response, ApiError> {
        let input: DataBody = body::parse(&self.request.body)?;
        let partial_code = input.partial_failure_response_code;
        let (items, batch) = input.items();
        check_contexts(&items)?;
        let (slots, work) = split(&items, batch, padded_decrypt_item)?;
        let results = if work.is_empty() {
            Vec::new()
        } else {
            self.transit()
                .decrypt(self.tenant, self.mount.id, name, work)
                .await?
        };
        let results = merge(slots, results)?;
        respond(
            results,
            references(&items),
            batch,
            partial_code,
            |plaintext: Zeroizing<Vec<u8>>| PlaintextData {
                plaintext: Zeroizing::new(STANDARD.encode(plaintext.as_slice())),
            },
        )
    }
}
