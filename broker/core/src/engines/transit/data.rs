//! Data operations: encrypt, decrypt, rewrap, datakey (Vault transit API semantics).
//!
//! Envelope mode runs AES-256-GCM here with the version's data key from the instance's DEK
//! cache (the backend is called only on a miss, single-flight per version). Direct mode
//! sends every item to the backend, batched in one call.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{ciphertext, counter::Take, keys::CreateKeyOptions, KeyState, Transit, VersionState};
use crate::{
    backend::{BackendDecrypt, BackendEncrypt, BackendInstance, OnUnavailable},
    crypto::{random_bytes, random_nonce, DataKey, PayloadFormat},
    dek_cache::{CacheKey, CachedKey},
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

/// One ciphertext to decrypt.
#[derive(Debug)]
pub struct DecryptItem {
    /// `vault:v<N>:…` text.
    pub ciphertext: String,
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

/// Result of `datakey`.
#[derive(Debug)]
pub struct DataKeyOutput {
    /// The new key's plaintext (only for the `plaintext` type).
    pub plaintext: Option<Zeroizing<Vec<u8>>>,
    /// The new key encrypted under the transit key.
    pub ciphertext: String,
    /// Version used.
    pub key_version: u32,
}

/// Per-item results of a batch; the outer error fails the whole request.
pub type ItemResults<T> = Vec<Result<T>>;

impl Transit {
    /// Encrypts each item under the key (creating it first if missing and `upsert`).
    pub async fn encrypt(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        key_version: Option<u32>,
        upsert: bool,
        items: Vec<EncryptItem>,
    ) -> Result<ItemResults<EncryptOutput>> {
        super::validate_key_name(name)?;
        self.check_batch_size(items.len())?;
        let state = match self.state(tenant.id, mount, name).await? {
            Some(state) => state,
            None if upsert => {
                self.create_key(tenant, mount, name, CreateKeyOptions::default())
                    .await?;
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

    pub(super) fn check_batch_size(&self, items: usize) -> Result<()> {
        if items == 0 {
            return Err(Error::invalid("missing plaintext or batch_input"));
        }
        if items > self.settings.max_batch_items {
            return Err(Error::invalid(format!(
                "batch_input has more than {} items",
                self.settings.max_batch_items
            )));
        }
        Ok(())
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

    /// The version's data key, from the instance's cache or unwrapped by the backend.
    async fn data_key(
        &self,
        tenant: &Tenant,
        state: &KeyState,
        version: &VersionState,
        instance: &dyn BackendInstance,
    ) -> Result<Arc<CachedKey>> {
        let reference = &version.record.backend_reference;
        let cache_key = CacheKey {
            tenant: tenant.id,
            key: state.record.id,
            version: version.record.version,
        };
        if let Some(key) = instance.cache().get(&cache_key) {
            if instance.on_unavailable() == OnUnavailable::Evict {
                instance.check_available(reference)?;
            }
            return Ok(key);
        }
        let _fill = version.fill.lock().await;
        if let Some(key) = instance.cache().peek(&cache_key) {
            return Ok(key);
        }
        instance.check_available(reference)?;
        let wrapped = version
            .record
            .wrapped_dek
            .as_deref()
            .ok_or_else(|| Error::internal("envelope version without wrapped DEK"))?;
        let binding = state.binding(version.record.version);
        let dek = instance
            .decrypt(
                tenant,
                BackendDecrypt {
                    reference,
                    ciphertext: wrapped,
                    aad: &binding.encode(),
                },
            )
            .await?;
        let key = Arc::new(CachedKey {
            data_key: DataKey::derive(&dek, binding)?,
            backend_reference: reference.clone(),
        });
        // An evicting instance may have gone away while we unwrapped: do not cache then.
        instance.check_available(reference)?;
        instance.cache().insert(cache_key, key.clone());
        Ok(key)
    }

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
            .map(|(_, version, payload, aad)| BackendDecrypt {
                reference: &version.record.backend_reference,
                ciphertext: payload,
                aad,
            })
            .collect::<Vec<_>>();
        if !requests.is_empty() {
            let answers = instance.decrypt_batch(tenant, requests).await?;
            if answers.len() != pending.len() {
                return Err(Error::internal(
                    "backend returned a batch of the wrong size",
                ));
            }
            for ((index, ..), answer) in pending.iter().zip(answers) {
                if let Some(slot) = results.get_mut(*index) {
                    *slot = Some(answer);
                }
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(Error::internal("batch item without result"))))
            .collect())
    }

    fn parse_for_decrypt(
        &self,
        state: &KeyState,
        text: &str,
    ) -> Result<(Arc<VersionState>, Vec<u8>)> {
        let (number, payload) = ciphertext::parse(text)?;
        let version = state.readable_version("ciphertext", number)?;
        let record = &state.record;
        let expected = match record.mode {
            KeyMode::Envelope => PayloadFormat::Envelope,
            KeyMode::Direct => PayloadFormat::BackendBlob,
        };
        if PayloadFormat::from_code(version.record.payload_format) != Some(expected) {
            return Err(Error::internal(
                "key version has an unexpected payload format",
            ));
        }
        Ok((version, payload))
    }

    /// Decrypts with any allowed version, then encrypts with the latest (or `key_version`).
    pub async fn rewrap(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        key_version: Option<u32>,
        items: Vec<DecryptItem>,
    ) -> Result<ItemResults<EncryptOutput>> {
        let associated: Vec<Vec<u8>> = items.iter().map(|i| i.associated_data.clone()).collect();
        let decrypted = self.decrypt(tenant, mount, name, items).await?;
        let mut to_encrypt = Vec::new();
        let mut slots = Vec::with_capacity(decrypted.len());
        for (plaintext, associated_data) in decrypted.into_iter().zip(associated) {
            match plaintext {
                Ok(plaintext) => {
                    slots.push(None);
                    to_encrypt.push(EncryptItem {
                        plaintext,
                        associated_data,
                    });
                }
                Err(error) => slots.push(Some(error)),
            }
        }
        let mut encrypted = if to_encrypt.is_empty() {
            Vec::new()
        } else {
            self.encrypt(tenant, mount, name, key_version, false, to_encrypt)
                .await?
        }
        .into_iter();
        Ok(slots
            .into_iter()
            .map(|slot| match slot {
                Some(error) => Err(error),
                None => encrypted
                    .next()
                    .unwrap_or_else(|| Err(Error::internal("rewrap result missing"))),
            })
            .collect())
    }

    /// Generates a fresh key of `bits` and returns it encrypted under the transit key (and
    /// in plaintext if asked).
    pub async fn datakey(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        with_plaintext: bool,
        bits: u32,
        associated_data: Vec<u8>,
    ) -> Result<DataKeyOutput> {
        if !matches!(bits, 128 | 256 | 512) {
            return Err(Error::invalid("invalid bits; must be 128, 256 or 512"));
        }
        let plaintext = random_bytes(bits as usize / 8);
        let item = EncryptItem {
            plaintext: plaintext.clone(),
            associated_data,
        };
        let output = self
            .encrypt(tenant, mount, name, None, false, vec![item])
            .await?
            .pop()
            .ok_or_else(|| Error::internal("datakey result missing"))??;
        Ok(DataKeyOutput {
            plaintext: with_plaintext.then_some(plaintext),
            ciphertext: output.ciphertext,
            key_version: output.key_version,
        })
    }
}
