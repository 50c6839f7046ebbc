//! [Restore key](https://openbao.org/api-docs/secret/transit/#restore-key) (Vault:
//! [Restore key](https://developer.hashicorp.com/vault/api-docs/secret/transit#restore-key)):
//! `POST /transit/restore` and `POST /transit/restore/:name`, with `force`.
//!
//! A backup (`backup.rs`) restores only into the tenant it came from, and keeps the key's
//! immutable id under any name, so the ciphertexts made under it decrypt there and nowhere
//! else; while another key holds that id (the original was not deleted), the restore is
//! refused. Each version's material is wrapped again under a fresh backend key of the
//! instance named in the backup, which must be loaded, allowed for the tenant and hold its
//! keys in the broker (an asymmetric key's versions: each private key taken in as a backend
//! key of its own, by an instance that takes private keys in); the key and all its versions
//! are stored in one transaction. Vault's
//! refusals keep Vault's messages (`key "x" already exists`); OpenBao answers them with a
//! 500, keybroker with a 400.

use super::{
    backup::KeyBackup, envelope::version_keys, key_type::KeyType, validate_key_name, Transit,
    AES256_GCM96,
};
use crate::{
    backend::{BackendDecrypt, BackendEncrypt, BackendInstance},
    crypto::{random_nonce, Binding, PayloadFormat},
    error::{Error, Result},
    store::{KeyRecord, KeyVersionRecord, StoreError},
    KeyId, MountId, Tenant,
};

impl Transit {
    /// Restores a key from `backup` under `name` (or the backup's own name); `force`
    /// replaces a key of that name.
    pub async fn restore_key(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: Option<&str>,
        backup: &str,
        force: bool,
    ) -> Result<()> {
        let backup = KeyBackup::parse(backup)?;
        // Which tenant it belongs to is not told.
        if backup.tenant()? != tenant.id {
            return Err(Error::invalid(
                "this backup belongs to another namespace: a key restores only into its own",
            ));
        }
        let name = name
            .filter(|n| !n.is_empty())
            .unwrap_or(backup.name.as_str())
            .to_owned();
        validate_key_name(&name)?;
        self.check_auto_rotate_period(backup.auto_rotate_period)?;
        let existing = self.store.get_key(tenant.id, mount, &name).await?;
        if existing.is_some() && !force {
            return Err(Error::invalid(format!("key {name:?} already exists")));
        }
        // The backend keys of the key a forced restore replaces, destroyed once it is gone.
        let replaced_versions = match &existing {
            Some(old) => self.store.get_key_versions(tenant.id, old.id).await?,
            None => Vec::new(),
        };
        let key_id = backup.key_id()?;
        let replacing_itself = existing.as_ref().is_some_and(|e| e.id == key_id);
        if !replacing_itself
            && !self
                .store
                .get_key_versions(tenant.id, key_id)
                .await?
                .is_empty()
        {
            return Err(Error::invalid(
                "the key this backup was taken from still exists under another name: a key's \
                 id is unique, so delete it (or restore over it, under its name, with force) \
                 first",
            ));
        }
        let instance = match self.backends.get(&backup.backend) {
            Some(instance) if instance.allows_tenant(&tenant.name) => instance,
            _ => {
                return Err(Error::invalid(format!(
                    "backend instance \"{}\" named in the backup is not available to this tenant",
                    backup.backend
                )))
            }
        };
        if !instance.holds_in_broker()
            || (backup.is_asymmetric() && !instance.supports_private_key_transfer())
        {
            return Err(Error::invalid(format!(
                "backend instance \"{}\" keeps its keys' material outside the broker: no \
                 plaintext backup is restored into it",
                backup.backend
            )));
        }
        instance.check_available("")?;
        // The backend keys made for the restore, destroyed again if it is not stored.
        let mut references = Vec::new();
        let versions = if backup.is_asymmetric() {
            let record = backup.record(mount, &name, None)?;
            let versions = self
                .import_versions(tenant, &record, &backup, instance.as_ref(), &mut references)
                .await;
            versions.map(|versions| (record, versions))
        } else {
            let reference = instance
                .create_key(tenant, &key_id.to_string(), AES256_GCM96)
                .await?;
            references.push(reference.clone());
            let record = backup.record(mount, &name, Some(reference.clone()))?;
            let versions = self
                .wrap_versions(tenant, &record, &backup, instance.as_ref(), &reference)
                .await;
            versions.map(|versions| (record, versions))
        };
        let (record, versions) = match versions {
            Ok(restored) => restored,
            Err(error) => {
                self.discard_restored_keys(tenant, key_id, instance.as_ref(), &references)
                    .await;
                return Err(error);
            }
        };
        let replaced = match self.store.restore_key(&record, &versions, force).await {
            Ok(replaced) => replaced,
            Err(error) => {
                self.discard_restored_keys(tenant, key_id, instance.as_ref(), &references)
                    .await;
                return Err(match error {
                    // A racing create or restore took the name or the id meanwhile.
                    StoreError::Conflict => Error::invalid(format!("key {name:?} already exists")),
                    other => other.into(),
                });
            }
        };
        self.forget(tenant.id, mount, &name);
        // Data keys cached under this id (a key restored over itself) were unwrapped through
        // the backend key now replaced; the replaced key's go with it.
        instance.cache().purge_key(tenant.id, record.id);
        if let Some(old) = existing.filter(|e| Some(e.id) == replaced) {
            self.destroy_replaced(tenant, &old, &replaced_versions)
                .await;
        }
        Ok(())
    }

    /// Each version of `backup` wrapped under the backend key `reference`, the wrap proved to
    /// round-trip, as the store keeps it.
    async fn wrap_versions(
        &self,
        tenant: &Tenant,
        record: &KeyRecord,
        backup: &KeyBackup,
        instance: &dyn BackendInstance,
        reference: &str,
    ) -> Result<Vec<KeyVersionRecord>> {
        let mut versions = Vec::with_capacity(backup.versions.len());
        for version in &backup.versions {
            let binding = Binding {
                tenant: tenant.id,
                key: record.id,
                version: version.version,
            };
            let aad = binding.encode();
            let material = version.material.0.as_slice();
            let format = PayloadFormat::from_code(version.payload_format)
                .ok_or_else(|| Error::invalid("invalid backup: unknown payload format"))?;
            // Checked when parsed; again against the record as stored.
            version_keys(record, binding, format, material)?;
            let wrapped = instance
                .encrypt(
                    tenant,
                    BackendEncrypt {
                        reference,
                        plaintext: material,
                        aad: &aad,
                        iv: random_nonce(),
                    },
                )
                .await?;
            let unwrapped = instance
                .decrypt(
                    tenant,
                    BackendDecrypt {
                        reference,
                        ciphertext: &wrapped,
                        aad: &aad,
                    },
                )
                .await?;
            if unwrapped.as_slice() != material {
                return Err(Error::internal(
                    "backend did not round-trip the key material",
                ));
            }
            versions.push(KeyVersionRecord {
                key: record.id,
                version: version.version,
                backend_reference: reference.to_owned(),
                wrapped_dek: Some(wrapped),
                payload_format: version.payload_format,
                public_key: None,
                created_at: version.created_at,
                counter_reserved: version.counter_reserved,
            });
        }
        Ok(versions)
    }

    /// Each version of an asymmetric key's `backup`: its private key taken in by the
    /// backend as a key of its own (each reference pushed to `references` as it is made),
    /// with its public key, as the store keeps it.
    async fn import_versions(
        &self,
        tenant: &Tenant,
        record: &KeyRecord,
        backup: &KeyBackup,
        instance: &dyn BackendInstance,
        references: &mut Vec<String>,
    ) -> Result<Vec<KeyVersionRecord>> {
        let key_type = KeyType::parse(&record.key_type)?;
        let mut versions = Vec::with_capacity(backup.versions.len());
        for version in &backup.versions {
            let reference = instance
                .import_private_key(
                    tenant,
                    &record.id.to_string(),
                    &record.key_type,
                    &version.material.0,
                )
                .await?;
            references.push(reference.clone());
            let pem = instance.public_key(tenant, &reference).await?;
            versions.push(KeyVersionRecord {
                key: record.id,
                version: version.version,
                backend_reference: reference,
                wrapped_dek: None,
                payload_format: PayloadFormat::BackendBlob.code(),
                public_key: Some(key_type.vault_public_key(&pem)?),
                created_at: version.created_at,
                counter_reserved: version.counter_reserved,
            });
        }
        Ok(versions)
    }

    /// Destroys the backend keys made for a restore that was not stored.
    async fn discard_restored_keys(
        &self,
        tenant: &Tenant,
        key: KeyId,
        instance: &dyn BackendInstance,
        references: &[String],
    ) {
        for reference in references {
            if let Err(error) = instance.delete_key(tenant, reference).await {
                tracing::warn!(%key, %error, "unused backend key not destroyed");
            }
        }
    }

    /// After a forced restore replaced `old` (whose versions were `versions`): its cached
    /// data keys go, and the backend keys the broker made for it are destroyed, as a delete
    /// destroys them (a bound key's backend key outlives it).
    async fn destroy_replaced(
        &self,
        tenant: &Tenant,
        old: &KeyRecord,
        versions: &[KeyVersionRecord],
    ) {
        let Some(instance) = self.backends.get(&old.backend) else {
            return;
        };
        instance.cache().purge_key(tenant.id, old.id);
        if old.bound {
            return;
        }
        let mut references: Vec<&str> = versions
            .iter()
            .map(|v| v.backend_reference.as_str())
            .chain(old.backend_reference.as_deref())
            .collect();
        references.sort_unstable();
        references.dedup();
        for reference in references {
            if let Err(error) = instance.delete_key(tenant, reference).await {
                tracing::warn!(key = %old.id, %error, "replaced key's backend key not destroyed");
            }
        }
    }
}
