//! [Encrypt data](https://developer.hashicorp.com/vault/api-docs/secret/transit#encrypt-data): `POST /transit/encrypt/:name`.
//!
//! Envelope mode runs AES-256-GCM here with the version's data key from the instance's DEK
//! cache (the backend is called only on a miss, single-flight per version). Direct mode
//! sends every item to the backend, batched in one call per version. Each encryption takes
//! a count from its version's counter, and a version that reached the rotation threshold
//! rotates the key first.
//!
//! Each item names its own `key_version` (Vault's `BatchRequestItem`; 0 is the latest): the
//! items are grouped by it, and an item whose version may not encrypt fails alone, with
//! Vault's message.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{
    ciphertext, counter::Take, derive, key_type::KeyType, keys::CreateKeyOptions,
    rsa::PaddingScheme, ItemResults, KeyState, Transit, VersionState,
};
use crate::{
    backend::{BackendEncrypt, BackendInstance},
    crypto::random_nonce,
    error::{Error, Result},
    store::{KeyMode, KeyRecord},
    MountId, Tenant,
};

/// The items' indices grouped by the version they name, in order of first appearance.
fn version_groups(items: &[EncryptItem]) -> Vec<(u32, Vec<usize>)> {
    let mut groups: Vec<(u32, Vec<usize>)> = Vec::new();
    for (index, item) in items.iter().enumerate() {
        match groups.iter_mut().find(|(v, _)| *v == item.key_version) {
            Some((_, indices)) => indices.push(index),
            None => groups.push((item.key_version, vec![index])),
        }
    }
    groups
}

/// The version `requested` (0: the latest) names, if it may encrypt, checked in Vault's
/// order with Vault's messages (`keysutil.Policy.EncryptWithFactory`). Versions below
/// `min_decryption_version` are refused too, as below `min_encryption_version`: what they
/// encrypted could not be decrypted.
pub(super) fn encryption_version(record: &KeyRecord, requested: u32) -> Result<u32> {
    if requested == 0 {
        return Ok(record.latest_version);
    }
    if requested > record.latest_version {
        return Err(Error::invalid(
            "requested version for encryption is higher than the latest key version",
        ));
    }
    let min = record
        .min_encryption_version
        .max(record.min_decryption_version);
    if requested < min {
        return Err(Error::invalid(
            "requested version for encryption is less than the minimum encryption key version",
        ));
    }
    Ok(requested)
}

/// One plaintext to encrypt.
#[derive(Debug)]
pub struct EncryptItem {
    /// The data.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// Caller AAD (`associated_data`).
    pub associated_data: Vec<u8>,
    /// The version to encrypt with (`key_version`); 0 is the latest.
    pub key_version: u32,
    /// Vault's `context`, from which a derived key derives the item's key (empty: none;
    /// ignored by a key that is not derived, as Vault ignores it).
    pub context: Vec<u8>,
    /// RSA keys only: the padding (`padding_scheme`; `None` is OAEP).
    pub padding_scheme: Option<PaddingScheme>,
}

/// Result of one encryption.
#[derive(Debug, Clone)]
pub struct EncryptOutput {
    /// `vault:v<N>:…` text.
    pub ciphertext: String,
    /// Version used.
    pub key_version: u32,
}

impl Transit {
    /// Encrypts each item under the key (creating it first with `upsert`'s options if it is
    /// missing and `upsert` is given), each with the version it names.
    pub async fn encrypt(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        upsert: Option<CreateKeyOptions>,
        items: Vec<EncryptItem>,
    ) -> Result<ItemResults<EncryptOutput>> {
        super::validate_key_name(name)?;
        self.check_batch_size(items.len())?;
        let mut state = match self.state(tenant.id, mount, name).await? {
            Some(state) => state,
            None if upsert.is_some() => {
                let options = upsert.unwrap_or_default();
                // Vault's checks of an upsert's `type`, with its messages.
                if let Some(key_type) = &options.key_type {
                    match KeyType::parse(key_type).map(KeyType::aead) {
                        Ok(Some(_)) => {}
                        Ok(None) => {
                            return Err(Error::invalid(format!(
                                "key type {key_type} not supported for this operation"
                            )))
                        }
                        Err(_) => {
                            return Err(Error::invalid(format!("unknown key type {key_type}")))
                        }
                    }
                }
                if options.convergent_encryption && !options.derived {
                    return Err(Error::invalid(
                        "convergent encryption requires derivation to be enabled, so context is \
                         required",
                    ));
                }
                self.create_key(tenant, mount, name, options).await?;
                self.state(tenant.id, mount, name)
                    .await?
                    .ok_or_else(|| Error::internal("upserted key vanished"))?
            }
            None => return Err(Error::invalid("encryption key not found")),
        };
        if super::rsa::dispatch(&state, items.iter().map(|i| &i.padding_scheme))? {
            return self.rsa_encrypt(tenant, &state, items).await;
        }
        super::key_type::require_encryption(&state.record.key_type)?;
        let instance = self.instance(tenant, &state.record.backend)?;
        let mut results: Vec<Option<Result<EncryptOutput>>> = items.iter().map(|_| None).collect();
        for (requested, indices) in version_groups(&items) {
            let group: Vec<&EncryptItem> = indices.iter().filter_map(|&i| items.get(i)).collect();
            let outputs = match self
                .reserve_encryptions(tenant, state.clone(), requested, group.len() as u64)
                .await
            {
                Ok((reserved, version)) => {
                    state = reserved;
                    self.encrypt_with(tenant, &state, &version, instance.as_ref(), &group)
                        .await?
                }
                // The version may not encrypt: each of its items fails alone.
                Err(Error::InvalidRequest(message)) => group
                    .iter()
                    .map(|_| Err(Error::invalid(&message)))
                    .collect(),
                Err(error) => return Err(error),
            };
            for (index, output) in indices.into_iter().zip(outputs) {
                if let Some(slot) = results.get_mut(index) {
                    *slot = Some(output);
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("batch item without result"))))
            .collect())
    }

    /// Encrypts `items` with `version`, whose counts are already taken.
    async fn encrypt_with(
        &self,
        tenant: &Tenant,
        state: &KeyState,
        version: &Arc<VersionState>,
        instance: &dyn BackendInstance,
        items: &[&EncryptItem],
    ) -> Result<ItemResults<EncryptOutput>> {
        let binding = state.binding(version.record.version);
        let version_number = version.record.version;
        let output = |payload: Vec<u8>| EncryptOutput {
            ciphertext: ciphertext::format(version_number, &payload),
            key_version: version_number,
        };
        match state.record.mode {
            KeyMode::Envelope => {
                let key = self.data_key(tenant, state, version, instance).await?;
                let options = state.record.options;
                Ok(items
                    .iter()
                    .map(|item| {
                        if options.derived {
                            derive::context_key(
                                &key.data_key,
                                &item.context,
                                options.convergent_encryption,
                            )?
                            .seal(&item.plaintext, &item.associated_data)
                        } else {
                            key.data_key.seal(&item.plaintext, &item.associated_data)
                        }
                        .map(output)
                    })
                    .collect())
            }
            KeyMode::Direct => {
                instance.check_available(&version.record.backend_reference)?;
                let aads: Vec<Vec<u8>> = items
                    .iter()
                    .map(|i| binding.aad(&i.associated_data))
                    .collect();
                let requests = items
                    .iter()
                    .zip(&aads)
                    .map(|(item, aad)| BackendEncrypt {
                        reference: &version.record.backend_reference,
                        plaintext: &item.plaintext,
                        aad,
                        iv: random_nonce(),
                    })
                    .collect();
                let results = instance.encrypt_batch(tenant, requests).await?;
                if results.len() != items.len() {
                    return Err(Error::internal(
                        "backend returned a batch of the wrong size",
                    ));
                }
                Ok(results.into_iter().map(|r| r.map(output)).collect())
            }
        }
    }

    /// Picks the encryption version and takes `n` counts from it, rotating the key when the
    /// latest version is exhausted.
    async fn reserve_encryptions(
        &self,
        tenant: &Tenant,
        mut state: Arc<KeyState>,
        requested: u32,
        n: u64,
    ) -> Result<(Arc<KeyState>, Arc<VersionState>)> {
        if n > self.settings.rotation_threshold {
            return Err(Error::invalid(
                "batch is larger than the rotation threshold",
            ));
        }
        // A few rounds: each exhaustion rotates once; more means something is off.
        for _ in 0..4 {
            let record = &state.record;
            let number = encryption_version(record, requested)?;
            let version = state
                .version(number)
                .cloned()
                .ok_or_else(|| Error::internal("missing key version"))?;
            if self.take_counts(tenant, &state, &version, n).await? {
                return Ok((state, version));
            }
            if requested != 0 {
                return Err(Error::invalid(format!(
                    "key_version {number} has reached its encryption limit; use the latest version"
                )));
            }
            state = self.rotate_from(tenant, &state, number).await?;
        }
        Err(Error::internal(
            "key could not be rotated past its encryption limit",
        ))
    }

    /// Takes `n` counts, reserving a block in the store when the window is used up.
    /// Returns `false` when the version reached the rotation threshold.
    ///
    /// The next block is reserved in the background once half of the current one is used,
    /// so encryptions rarely wait for the store's durable write.
    async fn take_counts(
        &self,
        tenant: &Tenant,
        state: &KeyState,
        version: &Arc<VersionState>,
        n: u64,
    ) -> Result<bool> {
        let counter = &version.counter;
        if let Take::Taken = counter.try_take(n) {
            self.prefetch_counts(tenant, state, version);
            return Ok(true);
        }
        let _guard = counter.lock_refill().await;
        if let Take::Taken = counter.try_take(n) {
            return Ok(true);
        }
        if let Some((before, after)) = counter.take_prefetched() {
            counter.install(before, after);
            if let Take::Taken = counter.try_take(n) {
                self.prefetch_counts(tenant, state, version);
                return Ok(true);
            }
        }
        let block = self.settings.counter_block.max(n);
        let (before, after) = self
            .store
            .reserve_counter(
                tenant.id,
                state.record.id,
                version.record.version,
                block,
                self.settings.rotation_threshold,
            )
            .await?;
        counter.install(before, after);
        Ok(matches!(counter.try_take(n), Take::Taken))
    }

    /// Reserves the next block in the background when the current one runs low.
    fn prefetch_counts(&self, tenant: &Tenant, state: &KeyState, version: &Arc<VersionState>) {
        let block = self.settings.counter_block;
        if !version.counter.start_prefetch(block / 2) {
            return;
        }
        let store = self.store.clone();
        let version = version.clone();
        let (tenant, key, limit) = (tenant.id, state.record.id, self.settings.rotation_threshold);
        tokio::spawn(async move {
            let number = version.record.version;
            let window = store
                .reserve_counter(tenant, key, number, block, limit)
                .await;
            if let Err(error) = &window {
                tracing::warn!(%key, %error, "background counter reservation failed");
            }
            version.counter.finish_prefetch(window.ok());
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(latest: u32, min_decryption: u32, min_encryption: u32) -> KeyRecord {
        super::super::test_record(latest, 0, min_decryption, min_encryption)
    }

    fn item(key_version: u32) -> EncryptItem {
        EncryptItem {
            plaintext: Zeroizing::new(b"x".to_vec()),
            associated_data: Vec::new(),
            key_version,
            context: Vec::new(),
            padding_scheme: None,
        }
    }

    #[test]
    fn items_are_grouped_by_the_version_they_name_in_order_of_first_appearance() {
        let items = [item(0), item(2), item(0), item(1), item(2)];
        assert_eq!(
            version_groups(&items),
            vec![(0, vec![0, 2]), (2, vec![1, 4]), (1, vec![3])]
        );
    }

    #[test]
    fn a_batch_item_key_version_is_checked_with_vault_messages() {
        let key = record(3, 2, 2);
        assert_eq!(encryption_version(&key, 0).unwrap(), 3);
        assert_eq!(encryption_version(&key, 2).unwrap(), 2);
        assert_eq!(encryption_version(&key, 3).unwrap(), 3);
        assert_eq!(
            encryption_version(&key, 4).unwrap_err().to_string(),
            "requested version for encryption is higher than the latest key version"
        );
        assert_eq!(
            encryption_version(&key, 1).unwrap_err().to_string(),
            "requested version for encryption is less than the minimum encryption key version"
        );
        // A version that could not decrypt what it encrypted is refused too.
        assert!(encryption_version(&record(3, 2, 0), 1).is_err());
        assert_eq!(encryption_version(&record(3, 1, 0), 1).unwrap(), 1);
    }
}
