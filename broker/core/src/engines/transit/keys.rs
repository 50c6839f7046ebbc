//! Key lifecycle: create (or upsert), read, list, configure, rotate, delete.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{key_type::KeyType, validate_key_name, KeyState, Transit, AES256_GCM96};
use crate::{
    backend::{BackendDecrypt, BackendEncrypt, BackendInstance},
    crypto::{generate_dek, random_nonce, Binding, DataKey, PayloadFormat},
    dek_cache::{CacheKey, CachedKey},
    error::{Error, Result},
    store::{KeyMode, KeyRecord, KeyVersionRecord, StoreError},
    KeyId, MountId, Tenant,
};

/// Options of key creation (Vault transit API: create key, plus `backend` and `mode`).
#[derive(Clone, Debug, Default)]
pub struct CreateKeyOptions {
    /// Key type (`aes256-gcm96` by default, or an asymmetric type for signing).
    pub key_type: Option<String>,
    /// Backend instance name; default from settings.
    pub backend: Option<String>,
    /// Envelope (default) or direct.
    pub mode: Option<KeyMode>,
    /// Automatic rotation period in seconds.
    pub auto_rotate_period: Option<u64>,
    /// Bind this existing backend key (an HSM label or id, a KMS key) instead of creating one.
    pub backend_key: Option<String>,
    /// The caller has the operator's authority over the instance the key is made in (a
    /// root-namespace token with `sudo` on `sys/plugins/backends/<instance>`): it may bind
    /// any of the instance's keys; others only those its `bind` patterns grant the tenant.
    pub operator: bool,
}

/// Changes to a key's configuration (Vault transit API: key config).
#[derive(Clone, Debug, Default)]
pub struct KeyConfigUpdate {
    /// New minimum decryption version.
    pub min_decryption_version: Option<u32>,
    /// New minimum encryption version (0 = latest).
    pub min_encryption_version: Option<u32>,
    /// Whether the key may be deleted.
    pub deletion_allowed: Option<bool>,
    /// Automatic rotation period in seconds (0 = off).
    pub auto_rotate_period: Option<u64>,
}

/// One version as shown by key read.
#[derive(Clone, Debug)]
pub struct VersionInfo {
    /// Version number.
    pub version: u32,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Encryptions reserved (an upper bound of those performed).
    pub encryptions_reserved: u64,
    /// The PEM public key of an asymmetric key version.
    pub public_key: Option<String>,
}

/// A key as shown by key read.
#[derive(Clone, Debug)]
pub struct KeyInfo {
    /// The key's record.
    pub record: KeyRecord,
    /// Its versions, ascending.
    pub versions: Vec<VersionInfo>,
    /// Whether the key may encrypt/decrypt now (backend loaded and available).
    pub backend_available: bool,
}

impl KeyInfo {
    fn from_state(state: &KeyState, backend_available: bool) -> Self {
        Self {
            record: state.record.clone(),
            versions: state
                .versions
                .iter()
                .map(|v| VersionInfo {
                    version: v.record.version,
                    created_at: v.record.created_at,
                    encryptions_reserved: v.record.counter_reserved,
                    public_key: v.record.public_key.clone(),
                })
                .collect(),
            backend_available,
        }
    }
}

impl Transit {
    /// Creates a key, or returns the existing one unchanged (Vault's create is idempotent).
    pub async fn create_key(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        options: CreateKeyOptions,
    ) -> Result<KeyInfo> {
        validate_key_name(name)?;
        if let Some(state) = self.state(tenant.id, mount, name).await? {
            return Ok(self.info(tenant, &state));
        }
        let key_type_name = options.key_type.as_deref().unwrap_or(AES256_GCM96);
        let key_type = KeyType::parse(key_type_name)?;
        let backend = self.backend_for(options.backend.as_deref()).to_owned();
        let mode = match (options.mode, key_type.is_asymmetric()) {
            (None, false) => KeyMode::Envelope,
            (Some(mode), false) => mode,
            // A private key never leaves its backend: every signature is made there.
            (None | Some(KeyMode::Direct), true) => KeyMode::Direct,
            (Some(KeyMode::Envelope), true) => {
                return Err(Error::invalid(format!(
                    "key type {key_type_name} signs in its backend: mode=envelope does not apply"
                )))
            }
        };
        let auto_rotate_period = options.auto_rotate_period.unwrap_or(0);
        self.check_auto_rotate_period(auto_rotate_period)?;
        let instance = match self.backends.get(&backend) {
            Some(instance) if instance.allows_tenant(&tenant.name) => instance,
            // Unknown and not-allowed look the same: a tenant learns nothing of instances it
            // cannot use.
            _ => {
                return Err(Error::invalid(format!(
                    "backend instance \"{backend}\" is not available to this tenant"
                )))
            }
        };
        if key_type.is_asymmetric() && !instance.supports_sign() {
            return Err(Error::invalid(format!(
                "backend instance \"{backend}\" does not support key type {key_type_name}"
            )));
        }
        if mode == KeyMode::Direct && !instance.supports_direct() && !key_type.is_asymmetric() {
            return Err(Error::invalid(format!(
                "backend instance \"{backend}\" does not support mode=direct"
            )));
        }
        if let Some(backend_key) = &options.backend_key {
            if !instance.supports_bind() {
                return Err(Error::invalid(format!(
                    "backend instance \"{backend}\" cannot bind existing keys"
                )));
            }
            if !options.operator && !instance.may_bind(&tenant.name, backend_key) {
                return Err(Error::BackendDenied(format!(
                    "backend key {backend_key:?} is not granted to this tenant by backend \
                     instance \"{backend}\""
                )));
            }
        }
        instance.check_available("")?;

        let now = self.clock.now_unix();
        let id = KeyId::random();
        let key_reference = match &options.backend_key {
            Some(backend_key) => {
                instance
                    .bind_key(tenant, &id.to_string(), key_type_name, backend_key)
                    .await?
            }
            None => {
                instance
                    .create_key(tenant, &id.to_string(), key_type_name)
                    .await?
            }
        };
        let record = KeyRecord {
            id,
            tenant: tenant.id,
            mount,
            name: name.to_owned(),
            key_type: key_type_name.to_owned(),
            backend,
            mode,
            backend_reference: (mode == KeyMode::Envelope).then(|| key_reference.clone()),
            min_decryption_version: 1,
            min_encryption_version: 0,
            deletion_allowed: false,
            bound: options.backend_key.is_some(),
            auto_rotate_period,
            latest_version: 1,
            created_at: now,
            rotated_at: now,
        };
        let stored = match self
            .new_version(
                tenant,
                &record,
                1,
                instance.as_ref(),
                Some(key_reference.clone()),
            )
            .await
        {
            Ok((first, data_key)) => self
                .store
                .create_key(&record, &first)
                .await
                .map(|()| remember(instance.as_ref(), tenant, &record, 1, data_key)),
            Err(error) => {
                self.discard_backend_key(tenant, &record, instance.as_ref(), &key_reference)
                    .await;
                return Err(error);
            }
        };
        match stored {
            Ok(()) => {}
            // Lost a race with a concurrent create of the same name: theirs stands.
            Err(StoreError::Conflict) => {
                self.discard_backend_key(tenant, &record, instance.as_ref(), &key_reference)
                    .await;
            }
            Err(other) => {
                self.discard_backend_key(tenant, &record, instance.as_ref(), &key_reference)
                    .await;
                return Err(other.into());
            }
        }
        let state = self
            .reload(tenant.id, mount, name)
            .await?
            .ok_or_else(|| Error::internal("created key vanished"))?;
        Ok(self.info(tenant, &state))
    }

    /// Destroys a backend key made for a transit key that was never stored (a bound key is
    /// never destroyed).
    async fn discard_backend_key(
        &self,
        tenant: &Tenant,
        record: &KeyRecord,
        instance: &dyn BackendInstance,
        reference: &str,
    ) {
        if record.bound {
            return;
        }
        if let Err(error) = instance.delete_key(tenant, reference).await {
            tracing::warn!(key = %record.id, %error, "unused backend key not destroyed");
        }
    }

    fn info(&self, tenant: &Tenant, state: &KeyState) -> KeyInfo {
        let available = self
            .instance(tenant, &state.record.backend)
            .and_then(|i| i.check_available(""))
            .is_ok();
        KeyInfo::from_state(state, available)
    }

    fn check_auto_rotate_period(&self, period: u64) -> Result<()> {
        if period != 0 && period < self.settings.min_auto_rotate_period {
            return Err(Error::invalid(format!(
                "auto rotate period must be 0 to disable or at least {} seconds",
                self.settings.min_auto_rotate_period
            )));
        }
        Ok(())
    }

    /// Builds version `version` of a key: envelope mode wraps a fresh DEK under the key's
    /// backend key (and returns its data key, to cache once the version is stored: its
    /// first use then needs no unwrap); direct mode uses a backend key of its own
    /// (`reference`, or a new one).
    async fn new_version(
        &self,
        tenant: &Tenant,
        record: &KeyRecord,
        version: u32,
        instance: &dyn BackendInstance,
        reference: Option<String>,
    ) -> Result<(KeyVersionRecord, Option<DataKey>)> {
        let now = self.clock.now_unix();
        match record.mode {
            KeyMode::Envelope => {
                let reference = record
                    .backend_reference
                    .clone()
                    .ok_or_else(|| Error::internal("envelope key without backend reference"))?;
                let binding = Binding {
                    tenant: tenant.id,
                    key: record.id,
                    version,
                };
                let aad = binding.encode();
                // A backend that makes data keys (KMS GenerateDataKey) makes this one;
                // otherwise the broker makes it and the backend wraps it.
                let (dek, wrapped): (Zeroizing<Vec<u8>>, Vec<u8>) =
                    if instance.supports_generate_data_key() {
                        instance.generate_data_key(tenant, &reference, &aad).await?
                    } else {
                        let dek = generate_dek();
                        let wrapped = instance
                            .encrypt(
                                tenant,
                                BackendEncrypt {
                                    reference: &reference,
                                    plaintext: dek.as_ref(),
                                    aad: &aad,
                                    iv: random_nonce(),
                                },
                            )
                            .await?;
                        (Zeroizing::new(dek.to_vec()), wrapped)
                    };
                // Prove the wrap round-trips before it is stored: a DEK that cannot be
                // unwrapped would make every ciphertext under it unrecoverable.
                let unwrapped: Zeroizing<Vec<u8>> = instance
                    .decrypt(
                        tenant,
                        BackendDecrypt {
                            reference: &reference,
                            ciphertext: &wrapped,
                            aad: &aad,
                        },
                    )
                    .await?;
                if unwrapped.as_slice() != dek.as_slice() {
                    return Err(Error::internal("backend did not round-trip the data key"));
                }
                let data_key = DataKey::derive(&dek, binding)?;
                Ok((
                    KeyVersionRecord {
                        key: record.id,
                        version,
                        backend_reference: reference,
                        wrapped_dek: Some(wrapped),
                        payload_format: PayloadFormat::Envelope.code(),
                        public_key: None,
                        created_at: now,
                        counter_reserved: 0,
                    },
                    Some(data_key),
                ))
            }
            KeyMode::Direct => {
                let reference = match reference {
                    Some(reference) => reference,
                    None if record.bound => {
                        return Err(Error::invalid(
                            "this key is bound to an existing backend key, which the broker \
                             does not replace: bind a new key under a new name instead",
                        ))
                    }
                    None => {
                        instance
                            .create_key(tenant, &record.id.to_string(), &record.key_type)
                            .await?
                    }
                };
                // Asymmetric versions keep their public key, so reads never call the backend.
                let public_key = if KeyType::parse(&record.key_type)?.is_asymmetric() {
                    Some(instance.public_key(tenant, &reference).await?)
                } else {
                    None
                };
                Ok((
                    KeyVersionRecord {
                        key: record.id,
                        version,
                        backend_reference: reference,
                        wrapped_dek: None,
                        payload_format: PayloadFormat::BackendBlob.code(),
                        public_key,
                        created_at: now,
                        counter_reserved: 0,
                    },
                    None,
                ))
            }
        }
    }

    /// Reads a key; `NotFound` if absent.
    pub async fn read_key(&self, tenant: &Tenant, mount: MountId, name: &str) -> Result<KeyInfo> {
        validate_key_name(name)?;
        let state = self.existing(tenant, mount, name).await?;
        Ok(self.info(tenant, &state))
    }

    async fn existing(&self, tenant: &Tenant, mount: MountId, name: &str) -> Result<Arc<KeyState>> {
        self.state(tenant.id, mount, name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("key \"{name}\" not found")))
    }

    /// Names of a mount's keys, sorted.
    pub async fn list_keys(&self, tenant: &Tenant, mount: MountId) -> Result<Vec<String>> {
        Ok(self.store.list_keys(tenant.id, mount).await?)
    }

    /// Changes a key's configuration.
    pub async fn configure_key(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        update: KeyConfigUpdate,
    ) -> Result<KeyInfo> {
        validate_key_name(name)?;
        let state = self.existing(tenant, mount, name).await?;
        let mut record = state.record.clone();
        if let Some(min) = update.min_decryption_version {
            if min > record.latest_version {
                return Err(Error::invalid(
                    "cannot set min decryption version greater than latest version",
                ));
            }
            record.min_decryption_version = min.max(1);
        }
        if let Some(min) = update.min_encryption_version {
            if min > record.latest_version {
                return Err(Error::invalid(
                    "cannot set min encryption version greater than latest version",
                ));
            }
            record.min_encryption_version = min;
        }
        if record.min_encryption_version != 0
            && record.min_encryption_version < record.min_decryption_version
        {
            return Err(Error::invalid(
                "min encryption version must be 0 or at least the min decryption version",
            ));
        }
        if let Some(allowed) = update.deletion_allowed {
            record.deletion_allowed = allowed;
        }
        if let Some(period) = update.auto_rotate_period {
            self.check_auto_rotate_period(period)?;
            record.auto_rotate_period = period;
        }
        if record != state.record {
            self.store.update_key_config(&record).await?;
        }
        let state = self.existing_reloaded(tenant, mount, name).await?;
        Ok(self.info(tenant, &state))
    }

    async fn existing_reloaded(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
    ) -> Result<Arc<KeyState>> {
        self.reload(tenant.id, mount, name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("key \"{name}\" not found")))
    }

    /// Adds a version to a key and makes it the latest.
    pub async fn rotate(&self, tenant: &Tenant, mount: MountId, name: &str) -> Result<KeyInfo> {
        validate_key_name(name)?;
        let state = self.existing_reloaded(tenant, mount, name).await?;
        let state = self
            .rotate_from(tenant, &state, state.record.latest_version)
            .await?;
        Ok(self.info(tenant, &state))
    }

    /// Rotates unless someone already moved past `from_version`; returns the fresh state.
    pub(super) async fn rotate_from(
        &self,
        tenant: &Tenant,
        state: &KeyState,
        from_version: u32,
    ) -> Result<Arc<KeyState>> {
        let record = &state.record;
        let instance = self.instance(tenant, &record.backend)?;
        instance.check_available("")?;
        let next = from_version
            .checked_add(1)
            .ok_or_else(|| Error::invalid("key has reached the maximum number of versions"))?;
        let (version, data_key) = self
            .new_version(tenant, record, next, instance.as_ref(), None)
            .await?;
        let added = self
            .store
            .add_key_version(tenant.id, from_version, &version)
            .await?;
        if added {
            instance.cache().purge_key(tenant.id, record.id);
            remember(instance.as_ref(), tenant, record, next, data_key);
        } else if record.mode == KeyMode::Direct {
            // Another rotation won; the backend key made for ours is unused.
            let _ = instance
                .delete_key(tenant, &version.backend_reference)
                .await;
        }
        self.existing_reloaded(tenant, record.mount, &record.name)
            .await
    }

    /// Rotates every key whose `auto_rotate_period` has elapsed; returns how many rotated.
    pub async fn rotate_due_keys(
        &self,
        tenant_of: impl Fn(crate::TenantId) -> Option<Tenant>,
    ) -> Result<usize> {
        let now = self.clock.now_unix();
        let mut rotated = 0;
        for record in self.store.list_auto_rotating_keys().await? {
            let period = i64::try_from(record.auto_rotate_period).unwrap_or(i64::MAX);
            if now.saturating_sub(record.rotated_at) < period {
                continue;
            }
            let Some(tenant) = tenant_of(record.tenant) else {
                continue;
            };
            let Some(state) = self.reload(tenant.id, record.mount, &record.name).await? else {
                continue;
            };
            match self
                .rotate_from(&tenant, &state, record.latest_version)
                .await
            {
                Ok(_) => rotated += 1,
                Err(error) => tracing::warn!(key = %record.id, %error, "automatic rotation failed"),
            }
        }
        Ok(rotated)
    }

    /// Deletes a key if its configuration allows it, destroying backend keys the broker made.
    pub async fn delete_key(&self, tenant: &Tenant, mount: MountId, name: &str) -> Result<()> {
        validate_key_name(name)?;
        let state = self.existing_reloaded(tenant, mount, name).await?;
        if !state.record.deletion_allowed {
            return Err(Error::invalid("deletion is not allowed for this key"));
        }
        self.store.delete_key(tenant.id, state.record.id).await?;
        self.forget(tenant.id, mount, name);
        if let Some(instance) = self.backends.get(&state.record.backend) {
            instance.cache().purge_key(tenant.id, state.record.id);
            if state.record.bound {
                // The backend key existed before the broker and outlives the transit key.
                return Ok(());
            }
            let mut references: Vec<&str> = state
                .versions
                .iter()
                .map(|v| v.record.backend_reference.as_str())
                .collect();
            references.dedup();
            for reference in references {
                if let Err(error) = instance.delete_key(tenant, reference).await {
                    tracing::warn!(key = %state.record.id, %error, "backend key not destroyed");
                }
            }
        }
        Ok(())
    }

    /// Forgets every key of a deleted tenant and drops their cached data keys.
    pub fn forget_tenant(&self, tenant: crate::TenantId) {
        let removed: Vec<_> = self
            .keys
            .write()
            .map(|mut keys| {
                self.generation
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mounts: Vec<_> = keys.keys().filter(|(t, _)| *t == tenant).copied().collect();
                mounts.into_iter().filter_map(|m| keys.remove(&m)).collect()
            })
            .unwrap_or_default();
        for state in removed.into_iter().flat_map(|keys| keys.into_values()) {
            if let Some(instance) = self.backends.get(&state.record.backend) {
                instance.cache().purge_key(tenant, state.record.id);
            }
        }
    }

    /// Re-reads a cached key that another node changed (configuration, a new version) or
    /// deleted, keeping the counters of its versions; a deleted key's data keys are dropped.
    pub async fn refresh_key(&self, tenant: crate::TenantId, key: crate::KeyId) -> Result<()> {
        let cached: Vec<Arc<KeyState>> = self
            .keys
            .read()
            .map(|keys| {
                keys.iter()
                    .filter(|((t, _), _)| *t == tenant)
                    .flat_map(|(_, names)| names.values())
                    .filter(|state| state.record.id == key)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for state in cached {
            let record = &state.record;
            if self
                .reload(tenant, record.mount, &record.name)
                .await?
                .is_none()
            {
                if let Some(instance) = self.backends.get(&record.backend) {
                    instance.cache().purge_key(tenant, record.id);
                }
            }
        }
        Ok(())
    }

    /// Forgets the cached keys of a tenant's mounts that are not in `mounts` (another node
    /// disabled them).
    pub fn forget_mounts_except(&self, tenant: crate::TenantId, mounts: &[MountId]) {
        let gone: Vec<MountId> = self
            .keys
            .read()
            .map(|keys| {
                keys.keys()
                    .filter(|(t, m)| *t == tenant && !mounts.contains(m))
                    .map(|(_, m)| *m)
                    .collect()
            })
            .unwrap_or_default();
        for mount in gone {
            self.forget_mount(tenant, mount);
        }
    }

    /// Forgets every cached key (changes may have been missed); keys are re-read on next
    /// use and their counters resume past the persisted reservations.
    pub fn forget_all(&self) {
        if let Ok(mut keys) = self.keys.write() {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            keys.clear();
        }
    }

    /// Forgets every cached key of a mount (after the mount was disabled).
    pub fn forget_mount(&self, tenant: crate::TenantId, mount: MountId) {
        let removed = self.keys.write().ok().and_then(|mut keys| {
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            keys.remove(&(tenant, mount))
        });
        for state in removed.into_iter().flat_map(|keys| keys.into_values()) {
            if let Some(instance) = self.backends.get(&state.record.backend) {
                instance.cache().purge_key(tenant, state.record.id);
            }
        }
    }
}

/// Caches the data key of a version just stored, so that its first use needs no unwrap by
/// the backend (one KMS `Decrypt` less per version). Only after the store accepted the
/// version: a version that lost a race must never be cached under its number.
fn remember(
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
