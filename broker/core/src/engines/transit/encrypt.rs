//! [Encrypt data](https://developer.hashicorp.com/vault/api-docs/secret/transit#encrypt-data): `POST /transit/encrypt/:name`.
//!
//! Envelope mode runs AES-256-GCM here with the version's data key from the instance's DEK
//! cache (the backend is called only on a miss, single-flight per version). Direct mode
//! sends every item to the backend, batched in one call. Each encryption takes a count
//! from its version's counter, and a version that reached the rotation threshold rotates
//! the key first.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{
    ciphertext, counter::Take, key_type::KeyType, keys::CreateKeyOptions, ItemResults, KeyState,
    Transit, VersionState,
};
use crate::{
    backend::BackendEncrypt,
    crypto::random_nonce,
    error::{Error, Result},
    store::KeyMode,
    MountId, Tenant,
};

/// One plaintext to encrypt.
#[derive(Debug)]
pub struct EncryptItem {
    /// The data.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// Caller AAD (`associated_data`).
    pub associated_data: Vec<u8>,
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
    /// missing and `upsert` is given).
    pub async fn encrypt(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        key_version: Option<u32>,
        upsert: Option<CreateKeyOptions>,
        items: Vec<EncryptItem>,
    ) -> Result<ItemResults<EncryptOutput>> {
        super::validate_key_name(name)?;
        self.check_batch_size(items.len())?;
        let state = match self.state(tenant.id, mount, name).await? {
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
                self.create_key(tenant, mount, name, options).await?;
                self.state(tenant.id, mount, name)
                    .await?
                    .ok_or_else(|| Error::internal("upserted key vanished"))?
            }
            None => return Err(Error::invalid("encryption key not found")),
        };
        super::key_type::require_encryption(&state.record.key_type)?;
        let instance = self.instance(tenant, &state.record.backend)?;
        let (state, version) = self
            .reserve_encryptions(tenant, state, key_version, items.len() as u64)
            .await?;
        let binding = state.binding(version.record.version);
        let version_number = version.record.version;
        let output = |payload: Vec<u8>| EncryptOutput {
            ciphertext: ciphertext::format(version_number, &payload),
            key_version: version_number,
        };
        match state.record.mode {
            KeyMode::Envelope => {
                let key = self
                    .data_key(tenant, &state, &version, instance.as_ref())
                    .await?;
                Ok(items
                    .iter()
                    .map(|item| {
                        key.data_key
                            .seal(&item.plaintext, &item.associated_data)
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
        requested: Option<u32>,
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
            let number = match requested {
                None | Some(0) => record.latest_version,
                Some(v) if v > record.latest_version => {
                    return Err(Error::invalid(format!(
                        "requested key_version {v} is higher than the latest version {}",
                        record.latest_version
                    )))
                }
                Some(v) => v,
            };
            let min = record
                .min_encryption_version
                .max(record.min_decryption_version);
            if number < min {
                return Err(Error::invalid(format!(
                    "requested key_version {number} is below the minimum allowed for encryption ({min})"
                )));
            }
            let version = state
                .version(number)
                .cloned()
                .ok_or_else(|| Error::internal("missing key version"))?;
            if self.take_counts(tenant, &state, &version, n).await? {
                return Ok((state, version));
            }
            if requested.is_some_and(|v| v != 0) {
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
