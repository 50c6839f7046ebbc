//! BYOK, Vault's way (`path_import.go`, `keysutil.Policy.ImportPublicOrPrivate`):
//! - [Import key](https://openbao.org/api-docs/secret/transit/#import-key): `POST /transit/keys/:name/import`;
//! - [Import key version](https://openbao.org/api-docs/secret/transit/#import-key-version): `POST /transit/keys/:name/import_version`.
//!
//! `ciphertext` is base64 of `RSA-OAEP(mount's wrapping key, ephemeral AES-256 key,
//! hash_function) ‖ AES-KWP(ephemeral key, target key)` (RFC 5649), 512 bytes of OAEP first.
//! Every way a ciphertext can fail to open gets one message, which names no key material
//! and tells no padding failure from a wrong key.
//!
//! An imported symmetric or `hmac` key becomes an envelope key in Vault's layout
//! (`PayloadFormat::Vault`): the version's material is the imported key ‖ a fresh random
//! 32-byte HMAC key (an `hmac` key: the imported key alone, `key_size` its length), wrapped
//! by the key's backend instance like any envelope version. Any instance that wraps may
//! hold it: the material came from the caller, who keeps a copy anyway, and a KMS, HSM or
//! agent key wrapping it still keeps it off the broker's disk in the clear and lets the
//! customer cut it off. `exportable` and `allow_plaintext_backup` need an instance that
//! holds its keys in the broker, as at creation.
//!
//! An imported asymmetric key's `ciphertext` wraps its private key as PKCS #8 DER (as in
//! Vault). It becomes a key held by a backend instance that takes private keys in
//! (`capability::PRIVATE_KEY_TRANSFER`, the local KEK), one backend key per version, as if
//! that instance had made it; instances whose keys live elsewhere (an HSM, a KMS, Key Vault,
//! a customer's agent) refuse it with the reason. A public key alone (`public_key`) is
//! refused: every keybroker version holds its private key.

use aes_gcm::aead::generic_array::GenericArray;
use base64::{engine::general_purpose::STANDARD, Engine as _};
use rsa::Oaep;
use zeroize::Zeroizing;

use super::{
    envelope::{remember, version_keys},
    key_type::{version_layout, KeyType, HMAC_KEY_SIZES},
    keys::{check_material_may_leave, key_options, version_format},
    validate_key_name, CreateKeyOptions, KeyState, Transit, AES256_GCM96,
};
use crate::{
    backend::{BackendDecrypt, BackendEncrypt, BackendInstance},
    crypto::{random_bytes, random_nonce, Binding, DataKey, PayloadFormat, HMAC_KEY_LEN},
    error::{Error, Result},
    store::{KeyMode, KeyOptions, KeyRecord, KeyVersionRecord},
    KeyId, MountId, Tenant,
};

/// Length of the RSA-OAEP block at the front of an import ciphertext (RSA-4096).
const ENCRYPTED_KEY_BYTES: usize = 512;

/// The one answer to a ciphertext that does not open under the mount's wrapping key.
const BAD_CIPHERTEXT: &str = "failed to decrypt the imported key: the ciphertext is not an \
     ephemeral AES-256 key wrapped by this mount's wrapping key (RSA-OAEP with hash_function) \
     followed by the key wrapped with AES-KWP under it";

/// Import key's fields (Vault transit API: import key, plus our `backend`).
#[derive(Clone, Default)]
pub struct ImportOptions {
    /// `type` (Vault's default `aes256-gcm96`).
    pub key_type: Option<String>,
    /// `hash_function` of the OAEP wrap (Vault's default `SHA256`).
    pub hash_function: Option<String>,
    /// `ciphertext`, base64.
    pub ciphertext: Option<String>,
    /// `public_key` (a public key alone: asymmetric types only, refused here).
    pub public_key: Option<String>,
    /// Our `backend`: the instance that wraps the key (the default one if absent).
    pub backend: Option<String>,
    /// `derived`.
    pub derived: bool,
    /// Whether `convergent_encryption` was sent at all (Vault refuses it on import).
    pub convergent_encryption_sent: bool,
    /// `exportable`.
    pub exportable: bool,
    /// `allow_plaintext_backup`.
    pub allow_plaintext_backup: bool,
    /// `allow_rotation`.
    pub allow_rotation: bool,
    /// `auto_rotate_period`, seconds.
    pub auto_rotate_period: Option<u64>,
}

impl std::fmt::Debug for ImportOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportOptions")
            .field("key_type", &self.key_type)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// The types import knows, as Vault names them (case-insensitive), or Vault's error.
fn import_type(name: &str) -> Result<KeyType> {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "aes128-gcm96" | "aes256-gcm96" | "chacha20-poly1305" | "xchacha20-poly1305" | "hmac"
        | "ecdsa-p256" | "ecdsa-p384" | "ecdsa-p521" | "ed25519" | "rsa-2048" | "rsa-3072"
        | "rsa-4096" => KeyType::parse(&lower),
        _ => Err(Error::invalid(format!("unknown key type: {name}"))),
    }
}

/// Refuses a lone public key for an asymmetric import, with the reason.
fn refuse_public_key_only(key_type: KeyType, has_public_key: bool) -> Result<()> {
    if key_type.is_asymmetric() && has_public_key {
        return Err(Error::invalid(
            "keybroker does not import a public key alone: every version of its asymmetric \
             keys holds its private key; import the private key (ciphertext) instead",
        ));
    }
    Ok(())
}

/// Refuses an asymmetric import into an instance that does not take private keys in.
fn check_takes_private_keys(instance: &dyn BackendInstance, key_type_name: &str) -> Result<()> {
    if !instance.supports_private_key_transfer() {
        return Err(Error::invalid(format!(
            "backend instance \"{}\" does not take in private keys: import {key_type_name} keys \
             into an instance that holds its keys in the broker (the local KEK)",
            instance.name()
        )));
    }
    Ok(())
}

/// Refuses `ciphertext` and `public_key` together, and a symmetric key without
/// `ciphertext` (Vault's messages).
fn check_key_fields(options_ciphertext: bool, options_public_key: bool) -> Result<()> {
    if options_ciphertext && options_public_key {
        return Err(Error::invalid(
            "only one of the following fields, ciphertext and public_key, can be set",
        ));
    }
    if !options_ciphertext {
        return Err(Error::invalid(
            "provided type does not support public_key import",
        ));
    }
    Ok(())
}

/// An imported key's options: checked as a new key's, marked imported, rotation as asked.
fn imported_key_options(
    key_type: KeyType,
    key_type_name: &str,
    mode: KeyMode,
    options: &ImportOptions,
) -> Result<KeyOptions> {
    let mut key_options = key_options(
        key_type,
        key_type_name,
        mode,
        &CreateKeyOptions {
            derived: options.derived,
            exportable: options.exportable,
            allow_plaintext_backup: options.allow_plaintext_backup,
            ..CreateKeyOptions::default()
        },
    )?;
    key_options.imported = true;
    key_options.imported_key_allow_rotation = options.allow_rotation;
    Ok(key_options)
}

/// Checks an imported key's length for its type (Vault's rule and message).
fn check_key_size(key_type: KeyType, name: &str, key: &[u8]) -> Result<()> {
    let fits = match key_type.aead() {
        Some(aead) => key.len() == aead.key_len(),
        None => u32::try_from(key.len()).is_ok_and(|n| HMAC_KEY_SIZES.contains(&n)),
    };
    if !fits {
        return Err(Error::invalid(format!(
            "invalid key size {} bytes for key type {name}",
            key.len()
        )));
    }
    Ok(())
}

/// The version material of an imported key in Vault's layout: the key ‖ a fresh HMAC key
/// (an `hmac` key: the key alone).
fn version_material(key_type: KeyType, key: &[u8]) -> Zeroizing<Vec<u8>> {
    let mut material = Zeroizing::new(Vec::with_capacity(key.len() + HMAC_KEY_LEN));
    material.extend_from_slice(key);
    if key_type != KeyType::Hmac {
        material.extend_from_slice(&random_bytes(HMAC_KEY_LEN));
    }
    material
}

impl Transit {
    /// Imports a key under a new name (Vault: import key).
    pub async fn import_key(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        options: ImportOptions,
    ) -> Result<()> {
        validate_key_name(name)?;
        if options.convergent_encryption_sent {
            return Err(Error::invalid(
                "import cannot be used on keys with convergent encryption enabled",
            ));
        }
        let auto_rotate_period = options.auto_rotate_period.unwrap_or(0);
        if auto_rotate_period > 0 && !options.allow_rotation {
            return Err(Error::invalid(
                "allow_rotation must be set to true if auto-rotation is enabled",
            ));
        }
        let has_ciphertext = options.ciphertext.is_some();
        let has_public_key = options.public_key.is_some();
        if has_ciphertext && has_public_key {
            check_key_fields(true, true)?;
        }
        let key_type_name = options
            .key_type
            .as_deref()
            .filter(|t| !t.is_empty())
            .unwrap_or(AES256_GCM96)
            .to_ascii_lowercase();
        let key_type = import_type(&key_type_name)?;
        if self.state(tenant.id, mount, name).await?.is_some() {
            return Err(Error::invalid(
                "the import path cannot be used with an existing key; use import-version to \
                 rotate an existing imported key",
            ));
        }
        refuse_public_key_only(key_type, has_public_key)?;
        check_key_fields(has_ciphertext, has_public_key)?;
        self.check_auto_rotate_period(auto_rotate_period)?;
        let key = self
            .unwrap_imported_key(
                tenant,
                mount,
                options.ciphertext.as_deref().unwrap_or_default(),
                options.hash_function.as_deref(),
            )
            .await?;
        if key_type.is_asymmetric() {
            return self
                .import_private_key(
                    tenant,
                    mount,
                    name,
                    key_type,
                    &key_type_name,
                    &options,
                    &key,
                )
                .await;
        }
        check_key_size(key_type, &key_type_name, &key)?;

        let mut key_options =
            imported_key_options(key_type, &key_type_name, KeyMode::Envelope, &options)?;
        if key_type == KeyType::Hmac {
            key_options.key_size =
                u32::try_from(key.len()).map_err(|_| Error::internal("hmac key length"))?;
        }
        let backend = self.backend_for(options.backend.as_deref()).to_owned();
        let instance = self.new_key_instance(tenant, &backend)?;
        check_material_may_leave(instance.as_ref(), key_type, &key_options)?;
        instance.check_available("")?;

        let now = self.clock.now_unix();
        let id = KeyId::random();
        let reference = instance
            .create_key(tenant, &id.to_string(), AES256_GCM96)
            .await?;
        let record = KeyRecord {
            key_type: key_type_name.clone(),
            backend,
            backend_reference: Some(reference.clone()),
            auto_rotate_period,
            options: key_options,
            ..KeyRecord::new_key(id, tenant.id, mount, name, now)
        };
        let material = version_material(key_type, &key);
        let first = self
            .imported_version(tenant, &record, 1, instance.as_ref(), &material)
            .await
            .map(|(first, data_key)| (first, Some(data_key)));
        self.store_imported_key(tenant, &record, instance.as_ref(), &reference, first)
            .await
    }

    /// Stores an imported key with its first version (see `store_new_key`); a key of that
    /// name made meanwhile gets Vault's answer.
    async fn store_imported_key(
        &self,
        tenant: &Tenant,
        record: &KeyRecord,
        instance: &dyn BackendInstance,
        reference: &str,
        first: Result<(KeyVersionRecord, Option<DataKey>)>,
    ) -> Result<()> {
        self.store_new_key(tenant, record, instance, reference, first, || {
            Err(Error::invalid(
                "the import path cannot be used with an existing key; use import-version to \
                 rotate an existing imported key",
            ))
        })
        .await?;
        self.reload(tenant.id, record.mount, &record.name).await?;
        Ok(())
    }

    /// Imports a new latest version into an imported key (Vault: import key version).
    /// `version` (updating an existing version's missing private key, in Vault) does not
    /// apply to symmetric keys, as in Vault.
    pub async fn import_key_version(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        options: ImportOptions,
        version: Option<i64>,
    ) -> Result<()> {
        validate_key_name(name)?;
        let has_ciphertext = options.ciphertext.is_some();
        let has_public_key = options.public_key.is_some();
        if has_ciphertext && has_public_key {
            check_key_fields(true, true)?;
        }
        let Some(state) = self.reload(tenant.id, mount, name).await? else {
            return Err(Error::invalid(format!(
                "no key found with name {name}; to import a new key, use the import/ endpoint"
            )));
        };
        let record = &state.record;
        if !record.options.imported {
            return Err(Error::invalid(
                "the import_version endpoint can only be used with an imported key",
            ));
        }
        if record.options.convergent_encryption {
            return Err(Error::invalid(
                "import_version cannot be used on keys with convergent encryption enabled",
            ));
        }
        let key_type = KeyType::parse(&record.key_type)?;
        refuse_public_key_only(key_type, has_public_key)?;
        check_key_fields(has_ciphertext, has_public_key)?;
        let key = self
            .unwrap_imported_key(
                tenant,
                mount,
                options.ciphertext.as_deref().unwrap_or_default(),
                options.hash_function.as_deref(),
            )
            .await?;
        if let Some(version) = version {
            let kept = u32::try_from(version)
                .ok()
                .and_then(|v| state.version(v))
                .is_some();
            if !kept {
                return Err(Error::invalid(format!("invalid version {version}")));
            }
            // Vault fills in a version imported as a public key alone; keybroker has none.
            return Err(Error::invalid(if key_type.is_asymmetric() {
                "private key imported, key version cannot be updated"
            } else {
                "provided type does not support importing key versions"
            }));
        }
        if key_type.is_asymmetric() {
            return self
                .import_private_key_version(tenant, mount, &state, &key)
                .await;
        }
        check_key_size(key_type, &record.key_type, &key)?;
        if key_type == KeyType::Hmac && key.len() != record.options.key_size as usize {
            return Err(Error::invalid(format!(
                "invalid key size {} bytes for key type hmac: keybroker keeps one key_size \
                 per hmac key, {} bytes for this one",
                key.len(),
                record.options.key_size
            )));
        }
        let instance = self.instance(tenant, &record.backend)?;
        instance.check_available("")?;
        let latest = record.latest_version;
        let next = latest
            .checked_add(1)
            .ok_or_else(|| Error::invalid("key has reached the maximum number of versions"))?;
        let material = version_material(key_type, &key);
        let (version, data_key) = self
            .imported_version(tenant, record, next, instance.as_ref(), &material)
            .await?;
        if !self
            .store
            .add_key_version(tenant.id, latest, &version)
            .await?
        {
            return Err(Error::Conflict(
                "the key changed while this version was imported: import it again".to_owned(),
            ));
        }
        instance.cache().purge_key(tenant.id, record.id);
        remember(instance.as_ref(), tenant, record, next, Some(data_key));
        self.reload(tenant.id, mount, name).await?;
        Ok(())
    }

    /// Imports an asymmetric key (its private key, PKCS #8 DER) under a new name.
    #[allow(clippy::too_many_arguments)]
    async fn import_private_key(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        key_type: KeyType,
        key_type_name: &str,
        options: &ImportOptions,
        pkcs8: &[u8],
    ) -> Result<()> {
        let key_options = imported_key_options(key_type, key_type_name, KeyMode::Direct, options)?;
        let backend = self.backend_for(options.backend.as_deref()).to_owned();
        let instance = self.new_key_instance(tenant, &backend)?;
        check_takes_private_keys(instance.as_ref(), key_type_name)?;
        check_material_may_leave(instance.as_ref(), key_type, &key_options)?;
        instance.check_available("")?;

        let now = self.clock.now_unix();
        let id = KeyId::random();
        let reference = instance
            .import_private_key(tenant, &id.to_string(), key_type_name, pkcs8)
            .await?;
        let record = KeyRecord {
            key_type: key_type_name.to_owned(),
            backend,
            mode: KeyMode::Direct,
            auto_rotate_period: options.auto_rotate_period.unwrap_or(0),
            options: key_options,
            ..KeyRecord::new_key(id, tenant.id, mount, name, now)
        };
        let first = self
            .new_version(
                tenant,
                &record,
                1,
                instance.as_ref(),
                Some(reference.clone()),
            )
            .await;
        self.store_imported_key(tenant, &record, instance.as_ref(), &reference, first)
            .await
    }

    /// Imports a private key (PKCS #8 DER) as the new latest version of an imported
    /// asymmetric key.
    async fn import_private_key_version(
        &self,
        tenant: &Tenant,
        mount: MountId,
        state: &KeyState,
        pkcs8: &[u8],
    ) -> Result<()> {
        let record = &state.record;
        let instance = self.instance(tenant, &record.backend)?;
        check_takes_private_keys(instance.as_ref(), &record.key_type)?;
        instance.check_available("")?;
        let latest = record.latest_version;
        let next = latest
            .checked_add(1)
            .ok_or_else(|| Error::invalid("key has reached the maximum number of versions"))?;
        let reference = instance
            .import_private_key(tenant, &record.id.to_string(), &record.key_type, pkcs8)
            .await?;
        let stored = match self
            .new_version(
                tenant,
                record,
                next,
                instance.as_ref(),
                Some(reference.clone()),
            )
            .await
        {
            Ok((version, _)) => self
                .store
                .add_key_version(tenant.id, latest, &version)
                .await
                .map_err(Error::from),
            Err(error) => Err(error),
        };
        match stored {
            Ok(true) => {}
            other => {
                self.discard_backend_key(tenant, record, instance.as_ref(), &reference)
                    .await;
                other?;
                return Err(Error::Conflict(
                    "the key changed while this version was imported: import it again".to_owned(),
                ));
            }
        }
        self.reload(tenant.id, mount, &record.name).await?;
        Ok(())
    }

    /// The key a BYOK `ciphertext` carries, unwrapped with the mount's wrapping key.
    async fn unwrap_imported_key(
        &self,
        tenant: &Tenant,
        mount: MountId,
        ciphertext: &str,
        hash_function: Option<&str>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let hash_function = hash_function.filter(|h| !h.is_empty()).unwrap_or("SHA256");
        let padding = oaep(hash_function)?;
        let ciphertext = STANDARD
            .decode(ciphertext.trim())
            .map_err(|_| Error::invalid(BAD_CIPHERTEXT))?;
        if ciphertext.len() <= ENCRYPTED_KEY_BYTES {
            return Err(Error::invalid("provided ciphertext is too short"));
        }
        let wrapping_key = self.wrapping_key(tenant, mount).await?;
        let (wrapped_ephemeral, wrapped_key) = ciphertext.split_at(ENCRYPTED_KEY_BYTES);
        let ephemeral = Zeroizing::new(
            wrapping_key
                .private_key
                .decrypt(padding, wrapped_ephemeral)
                .map_err(|_| Error::invalid(BAD_CIPHERTEXT))?,
        );
        kwp_unwrap(&ephemeral, wrapped_key).ok_or_else(|| Error::invalid(BAD_CIPHERTEXT))
    }

    /// Version `version` of an imported key: `material` (Vault's layout) wrapped by the
    /// key's backend key, checked to round-trip, and its keys.
    async fn imported_version(
        &self,
        tenant: &Tenant,
        record: &KeyRecord,
        version: u32,
        instance: &dyn BackendInstance,
        material: &[u8],
    ) -> Result<(KeyVersionRecord, DataKey)> {
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
        if material.len() != aead.map_or(0, crate::crypto::Aead::key_len) + hmac_len
            || version_format(record) != PayloadFormat::Vault
        {
            return Err(Error::internal(
                "imported key material has the wrong layout",
            ));
        }
        let wrapped = instance
            .encrypt(
                tenant,
                BackendEncrypt {
                    reference: &reference,
                    plaintext: material,
                    aad: &aad,
                    iv: random_nonce(),
                },
            )
            .await?;
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
        if unwrapped.as_slice() != material {
            return Err(Error::internal(
                "backend did not round-trip the imported key",
            ));
        }
        let data_key = version_keys(record, binding, PayloadFormat::Vault, material)?;
        Ok((
            KeyVersionRecord {
                key: record.id,
                version,
                backend_reference: reference,
                wrapped_dek: Some(wrapped),
                payload_format: PayloadFormat::Vault.code(),
                public_key: None,
                created_at: self.clock.now_unix(),
                counter_reserved: 0,
            },
            data_key,
        ))
    }
}

/// AES-KWP (RFC 5649) unwrap of `wrapped` under the 32-byte `ephemeral` key, into memory
/// zeroed on drop; `None` whatever went wrong.
fn kwp_unwrap(ephemeral: &[u8], wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if ephemeral.len() != 32 {
        return None;
    }
    let kek = aes_kw::KekAes256::new(GenericArray::from_slice(ephemeral));
    // The output is exactly one semiblock (8 bytes) shorter than the input.
    let mut key = Zeroizing::new(vec![0u8; wrapped.len().checked_sub(8)?]);
    let length = kek.unwrap_with_padding(wrapped, &mut key).ok()?.len();
    key.truncate(length);
    Some(key)
}

/// RSA-OAEP with `hash_function` as its hash and MGF1's (as Go's `rsa.DecryptOAEP`), or
/// Vault's error.
fn oaep(hash_function: &str) -> Result<Oaep> {
    Ok(match hash_function.to_ascii_uppercase().as_str() {
        "SHA1" => Oaep::new::<sha1::Sha1>(),
        "SHA224" => Oaep::new::<sha2::Sha224>(),
        "SHA256" => Oaep::new::<sha2::Sha256>(),
        "SHA384" => Oaep::new::<sha2::Sha384>(),
        "SHA512" => Oaep::new::<sha2::Sha512>(),
        _ => {
            return Err(Error::invalid(format!(
                "unknown hash function: {hash_function}"
            )))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_types_and_sizes_follow_vault() {
        assert_eq!(import_type("AES256-GCM96").unwrap(), KeyType::Aes256Gcm96);
        assert_eq!(
            import_type("des").unwrap_err().to_string(),
            "unknown key type: des"
        );
        assert!(refuse_public_key_only(KeyType::Ed25519, true).is_err());
        assert!(refuse_public_key_only(KeyType::Ed25519, false).is_ok());
        assert!(check_key_size(KeyType::Aes256Gcm96, "aes256-gcm96", &[0; 32]).is_ok());
        assert_eq!(
            check_key_size(KeyType::Aes128Gcm96, "aes128-gcm96", &[0; 32])
                .unwrap_err()
                .to_string(),
            "invalid key size 32 bytes for key type aes128-gcm96"
        );
        assert!(check_key_size(KeyType::Hmac, "hmac", &[0; 31]).is_err());
        assert!(check_key_size(KeyType::Hmac, "hmac", &[0; 64]).is_ok());
        assert_eq!(version_material(KeyType::Hmac, &[1; 40]).len(), 40);
        let material = version_material(KeyType::Aes128Gcm96, &[1; 16]);
        assert_eq!(material.len(), 16 + HMAC_KEY_LEN);
        assert_eq!(&material[..16], &[1; 16]);
        assert!(oaep("sha1").is_ok());
        // KWP round trip (the padded form Tink and the bao CLI make), and any change fails.
        let ephemeral = [7u8; 32];
        let kek = aes_kw::KekAes256::new(GenericArray::from_slice(&ephemeral));
        for len in [16, 32, 40] {
            let target: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut wrapped = kek.wrap_with_padding_vec(&target).unwrap();
            assert_eq!(
                kwp_unwrap(&ephemeral, &wrapped).unwrap().as_slice(),
                &target[..]
            );
            assert!(kwp_unwrap(&[8u8; 32], &wrapped).is_none());
            assert!(kwp_unwrap(&ephemeral[..16], &wrapped).is_none());
            wrapped[3] ^= 1;
            assert!(kwp_unwrap(&ephemeral, &wrapped).is_none());
        }
        assert!(kwp_unwrap(&ephemeral, &[0u8; 4]).is_none());
        assert_eq!(
            oaep("MD5").unwrap_err().to_string(),
            "unknown hash function: MD5"
        );
    }
}
