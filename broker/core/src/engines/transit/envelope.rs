//! Envelope mode's data keys: each version's data key lives unwrapped in its backend
//! instance's DEK cache. It is fetched from there (the backend unwraps it only on a miss,
//! single-flight per version), and put there when a version is made.

use std::sync::Arc;

use super::{key_type::version_layout, KeyState, Transit, VersionState};
use crate::{
    backend::{BackendDecrypt, BackendInstance, OnUnavailable},
    crypto::{Binding, DataKey, PayloadFormat},
    dek_cache::{CacheKey, CachedKey},
    error::{Error, Result},
    store::KeyRecord,
    Tenant,
};

impl Transit {
    /// The version's data key, from the instance's cache or unwrapped by the backend.
    pub(super) async fn data_key(
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
        let format = PayloadFormat::from_code(version.record.payload_format)
            .ok_or_else(|| Error::internal("key version has an unknown payload format"))?;
        let key = Arc::new(CachedKey {
            data_key: version_keys(&state.record, binding, format, &dek)?,
            backend_reference: reference.clone(),
        });
        // An evicting instance may have gone away while we unwrapped: do not cache then.
        instance.check_available(reference)?;
        instance.cache().insert(cache_key, key.clone());
        Ok(key)
    }
}

/// A version's keys from what its backend unwrapped: a DEK to derive them from
/// (keybroker's envelope), or the keys themselves (Vault's layout).
pub(super) fn version_keys(
    record: &KeyRecord,
    binding: Binding,
    format: PayloadFormat,
    unwrapped: &[u8],
) -> Result<DataKey> {
    let (aead, hmac_len) = version_layout(record)?;
    match format {
        PayloadFormat::Envelope => DataKey::derive(unwrapped, binding, aead, hmac_len),
        PayloadFormat::Vault => DataKey::from_material(unwrapped, binding, aead, hmac_len),
        PayloadFormat::BackendBlob => Err(Error::internal("direct-mode version has no data key")),
    }
}

/// Caches the data key of a version just stored, so that its first use needs no unwrap by
/// the backend (one KMS `Decrypt` less per version). Only after the store accepted the
/// version: a version that lost a race must never be cached under its number.
pub(super) fn remember(
    instance: &dyn BackendInstance,
    tenant: &Tenant,
    record: &KeyRecord,
    version: u32,
    data_key: Option<DataKey>,
) {
    let Some(data_key) = data_key else {
        return;
    };
    let Some(reference) = record.backend_reference.clone() else {
        return;
    };
    // An evicting instance that went away meanwhile must not gain cached keys.
    if instance.check_available(&reference).is_err() {
        return;
    }
    instance.cache().insert(
        CacheKey {
            tenant: tenant.id,
            key: record.id,
            version,
        },
        Arc::new(CachedKey {
            data_key,
            backend_reference: reference,
        }),
    );
}
