//! [Decrypt data](https://developer.hashicorp.com/vault/api-docs/secret/transit#decrypt-data): `POST /transit/decrypt/:name`.
//!
//! Envelope mode opens each item here with its version's data key; direct mode sends every
//! item to the backend, batched in one call.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{ciphertext, derive, rsa::PaddingScheme, ItemResults, KeyState, Transit, VersionState};
use crate::{
    backend::{BackendDecrypt, BackendInstance},
    crypto::PayloadFormat,
    error::{Error, Result},
    store::KeyMode,
    MountId, Tenant,
};

/// One ciphertext to decrypt.
#[derive(Debug)]
pub struct DecryptItem {
    /// `vault:v<N>:…` text.
    pub ciphertext: String,
    /// Caller AAD (`associated_data`).
    pub associated_data: Vec<u8>,
    /// Vault's `context` of a derived key (empty: none; ignored by a key that is not
    /// derived).
    pub context: Vec<u8>,
    /// RSA keys only: the padding (`padding_scheme`; `None` is OAEP).
    pub padding_scheme: Option<PaddingScheme>,
}

impl Transit {
    /// Decrypts each item. A missing key fails the whole request, as in Vault.
    pub async fn decrypt(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        items: Vec<DecryptItem>,
    ) -> Result<ItemResults<Zeroizing<Vec<u8>>>> {
        super::validate_key_name(name)?;
        self.check_batch_size(items.len())?;
        let state = self
            .state(tenant.id, mount, name)
            .await?
            .ok_or_else(|| Error::invalid("encryption key not found"))?;
        if super::rsa::dispatch(&state, items.iter().map(|i| &i.padding_scheme))? {
            return self.rsa_decrypt(tenant, &state, items).await;
        }
        super::key_type::require_encryption(&state.record.key_type)?;
        let instance = self.instance(tenant, &state.record.backend)?;
        let parsed: Vec<Result<(Arc<VersionState>, Vec<u8>)>> = items
            .iter()
            .map(|item| self.parse_for_decrypt(&state, &item.ciphertext))
            .collect();
        match state.record.mode {
            KeyMode::Envelope => {
                let mut results = Vec::with_capacity(items.len());
                for (item, parsed) in items.iter().zip(parsed) {
                    let result = match parsed {
                        Ok((version, payload)) => {
                            match self
                                .data_key(tenant, &state, &version, instance.as_ref())
                                .await
                            {
                                Ok(key) if state.record.options.derived => {
                                    derive::context_key(&key.data_key, &item.context, false)
                                        .and_then(|k| k.open(&payload, &item.associated_data))
                                }
                                Ok(key) => key.data_key.open(&payload, &item.associated_data),
                                // Backend trouble fails the request, not just the item.
                                Err(error @ (Error::Unavailable(_) | Error::Internal { .. })) => {
                                    return Err(error)
                                }
                                Err(error) => Err(error),
                            }
                        }
                        Err(error) => Err(error),
                    };
                    results.push(result);
                }
                Ok(results)
            }
            KeyMode::Direct => {
                self.decrypt_direct(tenant, &state, instance.as_ref(), &items, parsed)
                    .await
            }
        }
    }

    async fn decrypt_direct(
        &self,
        tenant: &Tenant,
        state: &KeyState,
        instance: &dyn BackendInstance,
        items: &[DecryptItem],
        parsed: Vec<Result<(Arc<VersionState>, Vec<u8>)>>,
    ) -> Result<ItemResults<Zeroizing<Vec<u8>>>> {
        let mut results: Vec<Option<Result<Zeroizing<Vec<u8>>>>> = Vec::with_capacity(items.len());
        let mut pending = Vec::new();
        for (index, (item, parsed)) in items.iter().zip(parsed).enumerate() {
            match parsed {
                Ok((version, payload)) => {
                    instance.check_available(&version.record.backend_reference)?;
                    let aad = state
                        .binding(version.record.version)
                        .aad(&item.associated_data);
                    pending.push((index, version, payload, aad));
                    results.push(None);
                }
                Err(error) => results.push(Some(Err(error))),
            }
        }
        let requests = pending
            .iter()
            .map(|(index, version, payload, aad)| {
                (
                    *index,
                    BackendDecrypt {
                        reference: &version.record.backend_reference,
                        ciphertext: payload,
                        aad,
                    },
                )
            })
            .collect();
        backend_batch_decrypt(tenant, instance, results, requests).await
    }

    fn parse_for_decrypt(
        &self,
        state: &KeyState,
        text: &str,
    ) -> Result<(Arc<VersionState>, Vec<u8>)> {
        let (number, payload) = ciphertext::parse(text)?;
        let version = state.readable_version("ciphertext", number)?;
        let record = &state.record;
        let format = PayloadFormat::from_code(version.record.payload_format);
        let expected = match record.mode {
            KeyMode::Envelope => {
                matches!(format, Some(PayloadFormat::Envelope | PayloadFormat::Vault))
            }
            KeyMode::Direct => format == Some(PayloadFormat::BackendBlob),
        };
        if !expected {
            return Err(Error::internal(
                "key version has an unexpected payload format",
            ));
        }
        Ok((version, payload))
    }
}

/// Sends `requests` (each with the index of its item) to the backend in one batch and puts
/// each answer in its item's slot of `results`, whose other slots already hold their
/// items' errors.
pub(super) async fn backend_batch_decrypt(
    tenant: &Tenant,
    instance: &dyn BackendInstance,
    mut results: Vec<Option<Result<Zeroizing<Vec<u8>>>>>,
    requests: Vec<(usize, BackendDecrypt<'_>)>,
) -> Result<ItemResults<Zeroizing<Vec<u8>>>> {
    if !requests.is_empty() {
        let (indices, requests): (Vec<usize>, Vec<_>) = requests.into_iter().unzip();
        let answers = instance.decrypt_batch(tenant, requests).await?;
        if answers.len() != indices.len() {
            return Err(Error::internal(
                "backend returned a batch of the wrong size",
            ));
        }
        for (index, answer) in indices.into_iter().zip(answers) {
            if let Some(slot) = results.get_mut(index) {
                *slot = Some(answer);
            }
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(Error::internal("batch item without result"))))
        .collect())
}
