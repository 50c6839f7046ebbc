//! A key's lifecycle, and how each of its versions is made (at creation and at every
//! rotation):
//! - [Create key](https://developer.hashicorp.com/vault/api-docs/secret/transit#create-key) (or upsert): `POST /transit/keys/:name`;
//! - [Read key](https://developer.hashicorp.com/vault/api-docs/secret/transit#read-key): `GET /transit/keys/:name`;
//! - [List keys](https://developer.hashicorp.com/vault/api-docs/secret/transit#list-keys): `LIST /transit/keys`;
//! - [Delete key](https://developer.hashicorp.com/vault/api-docs/secret/transit#delete-key): `DELETE /transit/keys/:name`.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::{
    envelope::remember,
    key_type::{version_layout, KeyType, HMAC_KEY_SIZES},
    validate_key_name, KeyState, Transit, AES256_GCM96,
};
use crate::{
    backend::{BackendDecrypt, BackendEncrypt, BackendInstance},
    crypto::{generate_dek, random_bytes, random_nonce, Binding, DataKey, PayloadFormat},
    error::{Error, Result},
    store::{KeyMode, KeyOptions, KeyRecord, KeyVersionRecord, StoreError},
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
    /// Vault's `derived`.
    pub derived: bool,
    /// Vault's `convergent_encryption` (needs `derived`).
    pub convergent_encryption: bool,
    /// Vault's `exportable`.
    pub exportable: bool,
    /// Vault's `allow_plaintext_backup`.
    pub allow_plaintext_backup: bool,
    /// Vault's `key_size` (bytes; `hmac` keys only, 32 to 512, 32 when 0).
    pub key_size: u32,
}

/// One version as shown by key read.
#[derive(Clone, Debug)]
pub struct VersionInfo {
    /// Version number.
    pub version: u32,
    /// Creation time, Unix seconds.
    pub created_at: i64,
    /// Encryptions reserved in the store when the key was read: never below the
    /// encryptions performed, and above them by at most what the nodes hold reserved but
    /// unused (see [`Transit::read_key`]).
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
    /// The key as `state` holds it, each version's count taken from `reserved` (the store's
    /// rows, read now) where it has one, else from `state` (the count as loaded).
    fn from_state(
        state: &KeyState,
        reserved: &[KeyVersionRecord],
        backend_available: bool,
    ) -> Self {
        Self {
            record: state.record.clone(),
            versions: state
                .versions
                .iter()
                .map(|v| VersionInfo {
                    version: v.record.version,
                    created_at: v.record.created_at,
                    encryptions_reserved: reserved
                        .iter()
                        .find(|r| r.version == v.record.version)
                        .map_or(v.record.counter_reserved, |r| r.counter_reserved),
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
            return self.info(tenant, &state).await;
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
        let instance = self.new_key_instance(tenant, &backend)?;
        if key_type.is_asymmetric() && !instance.supports_sign() {
            return Err(Error::invalid(format!(
                "backend instance \"{backend}\" does not support key type {key_type_name}"
            )));
        }
        let key_options = key_options(key_type, key_type_name, mode, &options)?;
        check_material_may_leave(instance.as_ref(), key_type, &key_options)?;
        if mode == KeyMode::Direct && !instance.supports_direct() && !key_type.is_asymmetric() {
            return Err(Error::invalid(format!(
                "backend instance \"{backend}\" does not support mode=direct"
            )));
        }
        // Direct mode asks the backend for AES-256-GCM; the other symmetric types seal in
        // the broker, under a data key the backend wraps.
        if mode == KeyMode::Direct && !key_type.is_asymmetric() && key_type != KeyType::Aes256Gcm96
        {
            return Err(Error::invalid(format!(
                "backend instance \"{backend}\" cannot hold key type {key_type_name} in \
                 mode=direct (direct mode is aes256-gcm96 only): use mode=envelope"
            )));
        }
        // In envelope mode the backend key is the AES-256 key that wraps each version's data
        // key, whatever the transit key's AEAD.
        let backend_key_type = match mode {
            KeyMode::Envelope => AES256_GCM96,
            KeyMode::Direct => key_type_name,
        };
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
                    .bind_key(tenant, &id.to_string(), backend_key_type, backend_key)
                    .await?
            }
            None => {
                instance
                    .create_key(tenant, &id.to_string(), backend_key_type)
                    .await?
            }
        };
        let record = KeyRecord {
            key_type: key_type_name.to_owned(),
            backend,
            mode,
            backend_reference: (mode == KeyMode::Envelope).then(|| key_reference.clone()),
            bound: options.backend_key.is_some(),
            auto_rotate_period,
            options: key_options,
            ..KeyRecord::new_key(id, tenant.id, mount, name, now)
        };
        let first = self
            .new_version(
                tenant,
                &record,
                1,
                instance.as_ref(),
                Some(key_reference.clone()),
            )
            .await;
        // Lost a race with a concurrent create of the same name: theirs stands.
        self.store_new_key(
            tenant,
            &record,
            instance.as_ref(),
            &key_reference,
            first,
            || Ok(()),
        )
        .await?;
        let state = self
            .reload(tenant.id, mount, name)
            .await?
            .ok_or_else(|| Error::internal("created key vanished"))?;
        self.info(tenant, &state).await
    }

    /// The instance a new key of the tenant is made in. Unknown and not-allowed look the
    /// same: a tenant learns nothing of instances it cannot use.
    pub(super) fn new_key_instance(
        &self,
        tenant: &Tenant,
        backend: &str,
    ) -> Result<Arc<dyn BackendInstance>> {
        match self.backends.get(backend) {
            Some(instance) if instance.allows_tenant(&tenant.name) => Ok(instance),
            _ => Err(Error::invalid(format!(
                "backend instance \"{backend}\" is not available to this tenant"
            ))),
        }
    }

    /// Stores a new key with its first version (`first`, as `new_version` made it) and
    /// caches that version's data key. If `first` failed or the store refused the key, the
    /// backend key made for it (`reference`) is destroyed first; a key of that name made
    /// meanwhile (a conflict) is answered by `on_conflict`.
    pub(super) async fn store_new_key(
        &self,
        tenant: &Tenant,
        record: &KeyRecord,
        instance: &dyn BackendInstance,
        reference: &str,
        first: Result<(KeyVersionRecord, Option<DataKey>)>,
        on_conflict: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let stored = match first {
            Ok((first, data_key)) => self
                .store
                .create_key(record, &first)
                .await
                .map(|()| remember(instance, tenant, record, 1, data_key)),
            Err(error) => {
                self.discard_backend_key(tenant, record, instance, reference)
                    .await;
                return Err(error);
            }
        };
        match stored {
            Ok(()) => Ok(()),
            Err(error) => {
                self.discard_backend_key(tenant, record, instance, reference)
                    .await;
                match error {
                    StoreError::Conflict => on_conflict(),
                    other => Err(other.into()),
                }
            }
        }
    }

    /// Destroys a backend key made for a transit key that was never stored (a bound key is
    /// never destroyed).
    pub(super) async fn discard_backend_key(
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

    /// A key as read key shows it, with whether its backend is available now and each
    /// version's encryption count as the store holds it now.
    ///
    /// The count in memory is the one loaded with the key, which the counter never updates
    /// (it takes its blocks from the store, ARCHITECTURE.md §3): the store's row is the one
    /// that moves, so it is read at every answer, never cached.
    pub(super) async fn info(&self, tenant: &Tenant, state: &KeyState) -> Result<KeyInfo> {
        let available = self
            .instance(tenant, &state.record.backend)
            .and_then(|i| i.check_available(""))
            .is_ok();
        let reserved = self
            .store
            .get_key_versions(tenant.id, state.record.id)
            .await?;
        Ok(KeyInfo::from_state(state, &reserved, available))
    }

    /// Refuses a non-zero `auto_rotate_period` below the minimum.
    pub(super) fn check_auto_rotate_period(&self, period: u64) -> Result<()> {
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
    pub(super) async fn new_version(
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
                let (aead, hmac_len) = version_layout(record)?;
                let format = version_format(record);
                // A backend that makes data keys (KMS GenerateDataKey) makes this one;
                // otherwise the broker makes it and the backend wraps it. Vault's layout
                // wraps the version's keys themselves.
                let (dek, wrapped): (Zeroizing<Vec<u8>>, Vec<u8>) =
                    if format == PayloadFormat::Vault {
                        let material =
                            random_bytes(aead.map_or(0, crate::crypto::Aead::key_len) + hmac_len);
                        let wrapped = instance
                            .encrypt(
                                tenant,
                                BackendEncrypt {
                                    reference: &reference,
                                    plaintext: &material,
                                    aad: &aad,
                                    iv: random_nonce(),
                                },
                            )
                            .await?;
                        (material, wrapped)
                    } else if instance.supports_generate_data_key() {
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
                let data_key = super::envelope::version_keys(record, binding, format, &dek)?;
                Ok((
                    KeyVersionRecord {
                        key: record.id,
                        version,
                        backend_reference: reference,
                        wrapped_dek: Some(wrapped),
                        payload_format: format.code(),
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
                // Asymmetric versions keep their public key (as Vault shows it), so reads
                // never call the backend.
                let key_type = KeyType::parse(&record.key_type)?;
                let public_key = if key_type.is_asymmetric() {
                    let pem = instance.public_key(tenant, &reference).await?;
                    Some(key_type.vault_public_key(&pem)?)
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
    ///
    /// Each version's `encryptions_reserved` is the count the store has reserved for it
    /// when read: an upper bound of the encryptions it performed, ahead of them by what
    /// the nodes reserved and have not used (ARCHITECTURE.md §3).
    pub async fn read_key(&self, tenant: &Tenant, mount: MountId, name: &str) -> Result<KeyInfo> {
        validate_key_name(name)?;
        let state = self.existing(tenant, mount, name).await?;
        self.info(tenant, &state).await
    }

    /// A key's state (cached, or loaded); `NotFound` if absent.
    pub(super) async fn existing(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
    ) -> Result<Arc<KeyState>> {
        self.state(tenant.id, mount, name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("key \"{name}\" not found")))
    }

    /// Names of a mount's keys, sorted.
    pub async fn list_keys(&self, tenant: &Tenant, mount: MountId) -> Result<Vec<String>> {
        Ok(self.store.list_keys(tenant.id, mount).await?)
    }

    /// A key's state re-read from the store; `NotFound` if absent.
    pub(super) async fn existing_reloaded(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
    ) -> Result<Arc<KeyState>> {
        self.reload(tenant.id, mount, name)
            .await?
            .ok_or_else(|| Error::NotFound(format!("key \"{name}\" not found")))
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
}

/// The layout of `record`'s new envelope versions: Vault's for keys whose material may leave
/// the broker or came from outside (so that it means there what it means in Vault),
/// keybroker's envelope otherwise.
pub(super) fn version_format(record: &KeyRecord) -> PayloadFormat {
    let options = &record.options;
    if options.exportable || options.allow_plaintext_backup || options.imported {
        PayloadFormat::Vault
    } else {
        PayloadFormat::Envelope
    }
}

/// Refuses options that would let a key's material leave the broker (`exportable`,
/// `allow_plaintext_backup`) on an instance that keeps it elsewhere.
pub(super) fn check_material_may_leave(
    instance: &dyn BackendInstance,
    key_type: KeyType,
    options: &KeyOptions,
) -> Result<()> {
    if options.exportable || options.allow_plaintext_backup {
        check_instance_releases(instance, key_type)?;
    }
    Ok(())
}

/// Refuses where `instance` keeps the material of its keys of `key_type` where the broker
/// never takes it from: an instance whose keys live outside the broker, and for asymmetric
/// keys one that does not hand out private keys.
pub(super) fn check_instance_releases(
    instance: &dyn BackendInstance,
    key_type: KeyType,
) -> Result<()> {
    if !instance.holds_in_broker() {
        return Err(Error::invalid(format!(
            "backend instance \"{}\" keeps its keys' material outside the broker: its keys \
             are never exportable and never backed up in plaintext",
            instance.name()
        )));
    }
    if key_type.is_asymmetric() && !instance.supports_private_key_transfer() {
        return Err(Error::invalid(format!(
            "backend instance \"{}\" never hands out the private keys of its asymmetric keys: \
             they are never exportable and never backed up in plaintext",
            instance.name()
        )));
    }
    Ok(())
}

/// A new key's Vault options, checked as Vault checks them, with its messages where it has
/// them; and what keybroker cannot do, refused with the reason.
pub(super) fn key_options(
    key_type: KeyType,
    key_type_name: &str,
    mode: KeyMode,
    options: &CreateKeyOptions,
) -> Result<KeyOptions> {
    let key_size = match (key_type, options.key_size) {
        (KeyType::Hmac, 0) => *HMAC_KEY_SIZES.start(),
        (KeyType::Hmac, size) if HMAC_KEY_SIZES.contains(&size) => size,
        (KeyType::Hmac, size) => {
            return Err(Error::invalid(format!(
                "invalid key_size {size}: must be between {} and {} bytes",
                HMAC_KEY_SIZES.start(),
                HMAC_KEY_SIZES.end()
            )))
        }
        (_, 0) => 0,
        (_, _) => {
            return Err(Error::invalid(format!(
                "key_size is not valid for algorithm {key_type_name}"
            )))
        }
    };
    if key_type == KeyType::Hmac && mode == KeyMode::Direct {
        return Err(Error::invalid(
            "key type hmac cannot be held in mode=direct: its HMAC keys live in the broker's \
             envelope; use mode=envelope",
        ));
    }
    if options.convergent_encryption && !options.derived {
        return Err(Error::invalid(
            "convergent encryption requires derivation to be enabled",
        ));
    }
    if options.convergent_encryption && key_type.aead().is_none() {
        return Err(Error::invalid(format!(
            "convergent encryption not supported for keys of type {key_type_name}"
        )));
    }
    if options.derived && (mode == KeyMode::Direct || key_type.aead().is_none()) {
        return Err(Error::invalid(format!(
            "key derivation is not supported for key type {key_type_name} in mode={}: keybroker \
             derives keys in the broker's envelope, and a backend that holds the key itself \
             cannot derive per-context keys",
            mode.as_str()
        )));
    }
    if (options.exportable || options.allow_plaintext_backup)
        && mode == KeyMode::Direct
        && !key_type.is_asymmetric()
    {
        return Err(Error::invalid(format!(
            "key type {key_type_name} in mode={} is held by its backend and never leaves it: it \
             cannot be exportable or backed up in plaintext",
            mode.as_str()
        )));
    }
    Ok(KeyOptions {
        derived: options.derived,
        convergent_encryption: options.convergent_encryption,
        exportable: options.exportable,
        allow_plaintext_backup: options.allow_plaintext_backup,
        imported: false,
        imported_key_allow_rotation: false,
        key_size,
    })
}
