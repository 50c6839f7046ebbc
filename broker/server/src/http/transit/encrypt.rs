//! [Encrypt data](https://developer.hashicorp.com/vault/api-docs/secret/transit#encrypt-data): `POST /transit/encrypt/:name`.

use axum::response::Response;
use keybroker_core::{
    engines::transit::{CreateKeyOptions, EncryptItem, EncryptOutput},
    Error,
};
use serde::Serialize;

use super::{
    batch::{
        check_contexts, context_set, decode_context, merge, padding_scheme, references, respond,
        split, BatchItem, DataBody,
    },
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

/// One item to encrypt: its plaintext, `associated_data` and `context`, base64-decoded,
/// the `key_version` it names (absent: 0, the latest) and, for an RSA key, its
/// `padding_scheme`.
pub(super) fn encrypt_item(item: &BatchItem) -> Result<EncryptItem, Error> {
    let text = item
        .plaintext
        .as_deref()
        .ok_or_else(|| Error::invalid("missing plaintext to encrypt"))?;
    let plaintext = decode_secret("plaintext", text)?;
    // Vault decodes the context after the plaintext.
    let context = decode_context(item)?;
    Ok(EncryptItem {
        plaintext,
        associated_data: optional_base64("associated_data", item.associated_data.as_deref())?,
        key_version: encryption_version(item.key_version)?,
        context,
        padding_scheme: padding_scheme(item)?,
    })
}

/// The version an item names for encryption (absent: 0, the latest); a negative one is
/// refused with Vault's message, and one past any `u32` is past the latest version.
pub(super) fn encryption_version(requested: Option<i64>) -> Result<u32, Error> {
    match requested {
        None => Ok(0),
        Some(v) if v < 0 => Err(Error::invalid(
            "requested version for encryption is negative",
        )),
        Some(v) => u32::try_from(v).map_err(|_| {
            Error::invalid("requested version for encryption is higher than the latest key version")
        }),
    }
}

impl Context<'_> {
    /// Encrypts the plaintext, or each item of `batch_input` with the `key_version` the
    /// item names (Vault ignores the top-level one in a batch).
    pub(super) async fn encrypt(&self, name: &str) -> Result<Response, ApiError> {
        let input: DataBody = body::parse(&self.request.body)?;
        let key_type = input.key_type.clone();
        let convergent = input.convergent_encryption.unwrap_or(false);
        let partial_code = input.partial_failure_response_code;
        let (items, batch) = input.items();
        check_contexts(&items)?;
        let (slots, work) = split(&items, batch, encrypt_item)?;
        let results = if work.is_empty() {
            Vec::new()
        } else {
            // Vault's upsert: a missing key is made, of the body's `type`, derived if the
            // items carry a context, and convergent if the body says so (which needs a
            // context: refused with Vault's message when the key is made).
            let upsert = self.upsert_allowed().then(|| CreateKeyOptions {
                key_type: key_type.clone(),
                derived: context_set(&items),
                convergent_encryption: convergent,
                ..CreateKeyOptions::default()
            });
            self.transit()
                .encrypt(self.tenant, self.mount.id, name, upsert, work)
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
