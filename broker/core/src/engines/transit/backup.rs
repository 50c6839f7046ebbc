//! [Backup key](https://openbao.org/api-docs/secret/transit/#backup-key) (Vault:
//! [Backup key](https://developer.hashicorp.com/vault/api-docs/secret/transit#backup-key)):
//! `GET /transit/backup/:name`, and the backup's format, which restore (`restore.rs`) reads.
//!
//! A backup is the key's material in plaintext, as in Vault, so only a key that is both
//! `exportable` and `allow_plaintext_backup` has one (Vault's checks, in Vault's order, with
//! its messages); only keys whose material the broker holds (the local KEK's) can be either.
//! The format is keybroker's own, versioned (`format`, `format_version`): the key's tenant
//! and immutable id (so a restore lands only in its tenant, and its ciphertexts keep their
//! binding), its configuration, its backend instance, and each version it keeps with what
//! the backend unwrapped (a DEK in keybroker's envelope layout, the keys themselves in
//! Vault's; an asymmetric version's private key, PKCS #8 DER, as the backend hands it out)
//! and its reserved encryption count (so a restored key never counts from less).
//! Vault's backups are not accepted, and ours mean nothing to Vault.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use base64::{engine::general_purpose::STANDARD, Engine as _};

use super::{envelope::version_keys, key_format, key_type::KeyType, validate_key_name, Transit};
use crate::{
    backend::BackendDecrypt,
    crypto::{Binding, PayloadFormat},
    error::{Error, Result},
    store::{KeyMode, KeyOptions, KeyRecord, KeyVersionRecord},
    KeyId, MountId, Tenant, TenantId,
};

/// The `format` of every keybroker key backup.
const FORMAT: &str = "keybroker-transit-key-backup";
/// The only `format_version` so far.
const FORMAT_VERSION: u32 = 1;

/// A key's backup (keybroker's format, version 1). Unknown fields are refused: a backup
/// is read strictly, since whoever restores it chooses every byte of it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KeyBackup {
    format: String,
    format_version: u32,
    /// The tenant the key belongs to: a backup restores only there.
    pub(super) tenant: String,
    /// The key's immutable id, part of every version's binding.
    pub(super) key_id: String,
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) key_type: String,
    /// The backend instance that held the key (the local KEK).
    pub(super) backend: String,
    pub(super) options: BackupOptions,
    pub(super) min_available_version: u32,
    pub(super) min_decryption_version: u32,
    pub(super) min_encryption_version: u32,
    pub(super) deletion_allowed: bool,
    pub(super) auto_rotate_period: u64,
    pub(super) latest_version: u32,
    pub(super) created_at: i64,
    pub(super) rotated_at: i64,
    /// When the backup was taken, Unix seconds.
    pub(super) backup_time: i64,
    /// Every version the key keeps, ascending.
    pub(super) versions: Vec<BackupVersion>,
}

/// A key's Vault options, as [`KeyOptions`].
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupOptions {
    derived: bool,
    convergent_encryption: bool,
    exportable: bool,
    allow_plaintext_backup: bool,
    imported: bool,
    imported_key_allow_rotation: bool,
    key_size: u32,
}

impl From<KeyOptions> for BackupOptions {
    fn from(options: KeyOptions) -> Self {
        Self {
            derived: options.derived,
            convergent_encryption: options.convergent_encryption,
            exportable: options.exportable,
            allow_plaintext_backup: options.allow_plaintext_backup,
            imported: options.imported,
            imported_key_allow_rotation: options.imported_key_allow_rotation,
            key_size: options.key_size,
        }
    }
}

impl From<&BackupOptions> for KeyOptions {
    fn from(options: &BackupOptions) -> Self {
        Self {
            derived: options.derived,
            convergent_encryption: options.convergent_encryption,
            exportable: options.exportable,
            allow_plaintext_backup: options.allow_plaintext_backup,
            imported: options.imported,
            imported_key_allow_rotation: options.imported_key_allow_rotation,
            key_size: options.key_size,
        }
    }
}

/// One version of a backup.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupVersion {
    pub(super) version: u32,
    /// The layout of `material` ([`PayloadFormat`]'s code: envelope or Vault).
    pub(super) payload_format: u8,
    /// What the backend unwrapped: the DEK (envelope) or `key ‖ hmac key` (Vault); an
    /// asymmetric version's private key, PKCS #8 DER (`payload_format` 2, held by the
    /// backend).
    pub(super) material: Material,
    pub(super) created_at: i64,
    /// Encryptions the store had reserved for the version when the backup was taken.
    pub(super) counter_reserved: u64,
}

/// Plaintext key material: base64 on the wire, zeroized in memory, never `Debug`.
pub(super) struct Material(pub(super) Zeroizing<Vec<u8>>);

impl Serialize for Material {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        let encoded = Zeroizing::new(STANDARD.encode(self.0.as_slice()));
        serializer.serialize_str(&encoded)
    }
}

impl<'de> Deserialize<'de> for Material {
    /// Borrowed from the (zeroized) backup text, so no stray copy of it is made; the
    /// message never repeats the value.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = <&'de str>::deserialize(deserializer)?;
        STANDARD
            .decode(text)
            .map(|bytes| Material(Zeroizing::new(bytes)))
            .map_err(|_| serde::de::Error::custom("key material is not base64"))
    }
}

impl KeyBackup {
    /// The backup `text` (the `backup` field: base64 of the JSON), decoded and checked
    /// without a broker: every field consistent, every version's material usable by its key
    /// type. Any fault is an invalid request naming what is wrong, never the material.
    pub(super) fn parse(text: &str) -> Result<Self> {
        let json = Zeroizing::new(
            STANDARD
                .decode(text.trim())
                .map_err(|_| Error::invalid("invalid backup: it is not base64"))?,
        );
        let backup: KeyBackup = serde_json::from_slice(&json).map_err(|e| {
            // serde's message may quote a value: only its place and category are given.
            Error::invalid(format!(
                "invalid backup: not a keybroker key backup ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if backup.format != FORMAT || backup.format_version != FORMAT_VERSION {
            return Err(Error::invalid(format!(
                "invalid backup: not a keybroker key backup (expected format {FORMAT:?} \
                 version {FORMAT_VERSION})"
            )));
        }
        backup.check()?;
        Ok(backup)
    }

    /// The tenant it belongs to.
    pub(super) fn tenant(&self) -> Result<TenantId> {
        TenantId::parse(&self.tenant).ok_or_else(|| Error::invalid("invalid backup: bad tenant id"))
    }

    /// The key's immutable id.
    pub(super) fn key_id(&self) -> Result<KeyId> {
        KeyId::parse(&self.key_id).ok_or_else(|| Error::invalid("invalid backup: bad key id"))
    }

    /// Whether the backup is of an asymmetric key (whose versions are private keys, each a
    /// backend key of its own).
    pub(super) fn is_asymmetric(&self) -> bool {
        KeyType::parse(&self.key_type).is_ok_and(KeyType::is_asymmetric)
    }

    /// The key record the backup describes, in `mount` under `name`: an envelope key with
    /// the backend key `reference` (the caller makes it), or an asymmetric key (`None`),
    /// held by its backend.
    pub(super) fn record(
        &self,
        mount: MountId,
        name: &str,
        reference: Option<String>,
    ) -> Result<KeyRecord> {
        let mode = if reference.is_some() {
            KeyMode::Envelope
        } else {
            KeyMode::Direct
        };
        Ok(KeyRecord {
            id: self.key_id()?,
            tenant: self.tenant()?,
            mount,
            name: name.to_owned(),
            key_type: self.key_type.clone(),
            backend: self.backend.clone(),
            mode,
            backend_reference: reference,
            min_available_version: self.min_available_version,
            min_decryption_version: self.min_decryption_version,
            min_encryption_version: self.min_encryption_version,
            deletion_allowed: self.deletion_allowed,
            bound: false,
            auto_rotate_period: self.auto_rotate_period,
            latest_version: self.latest_version,
            created_at: self.created_at,
            rotated_at: self.rotated_at,
            options: KeyOptions::from(&self.options),
        })
    }

    /// Everything a restore relies on, checked (see [`KeyBackup::parse`]).
    fn check(&self) -> Result<()> {
        let refuse = |reason: &str| Err(Error::invalid(format!("invalid backup: {reason}")));
        self.tenant()?;
        self.key_id()?;
        validate_key_name(&self.name)
            .map_err(|e| Error::invalid(format!("invalid backup: {e}")))?;
        let key_type = KeyType::parse(&self.key_type)
            .map_err(|_| Error::invalid("invalid backup: unknown key type"))?;
        let options = &self.options;
        if !options.exportable || !options.allow_plaintext_backup {
            return refuse("only a key that is exportable and allows plaintext backup has one");
        }
        if options.convergent_encryption && !options.derived {
            return refuse("convergent encryption without derivation");
        }
        if key_type.is_asymmetric() && options.derived {
            return refuse("a derived asymmetric key");
        }
        let key_size_ok = match key_type {
            KeyType::Hmac => super::key_type::HMAC_KEY_SIZES.contains(&options.key_size),
            _ => options.key_size == 0,
        };
        if !key_size_ok {
            return refuse("key_size does not fit the key type");
        }
        let first = self.min_available_version.max(1);
        let latest = self.latest_version;
        if latest == 0
            || first > latest
            || self.min_decryption_version == 0
            || self.min_decryption_version > latest
            || self.min_decryption_version < first
            || self.min_encryption_version > latest
            || (self.min_available_version > 0
                && self.min_encryption_version < self.min_available_version)
        {
            return refuse("inconsistent versions");
        }
        let expected = u64::from(latest) - u64::from(first) + 1;
        if self.versions.len() as u64 != expected
            || self
                .versions
                .iter()
                .zip(first..=latest)
                .any(|(version, number)| version.version != number)
        {
            return refuse("the versions are not every kept version, in order");
        }
        if key_type.is_asymmetric() {
            return self.check_private_keys(key_type);
        }
        // Each version's material must make its keys (its length fits the type and layout).
        let probe = self.record(MountId::random(), &self.name, Some(String::new()))?;
        for version in &self.versions {
            let format = match PayloadFormat::from_code(version.payload_format) {
                Some(format @ (PayloadFormat::Envelope | PayloadFormat::Vault)) => format,
                _ => return refuse("unknown payload format"),
            };
            let binding = Binding {
                tenant: probe.tenant,
                key: probe.id,
                version: version.version,
            };
            if version_keys(&probe, binding, format, &version.material.0).is_err() {
                return Err(Error::invalid(format!(
                    "invalid backup: the key material of version {} does not fit key type {}",
                    version.version, self.key_type
                )));
            }
        }
        Ok(())
    }
}

impl KeyBackup {
    /// Every version of an asymmetric key's backup is a private key of its type.
    fn check_private_keys(&self, key_type: KeyType) -> Result<()> {
        for version in &self.versions {
            if version.payload_format != PayloadFormat::BackendBlob.code() {
                return Err(Error::invalid(
                    "invalid backup: an asymmetric key's versions are private keys \
                     (payload format 2)",
                ));
            }
            if !key_format::is_private_key_of(key_type, &version.material.0) {
                return Err(Error::invalid(format!(
                    "invalid backup: the key material of version {} is not a PKCS #8 {} \
                     private key",
                    version.version, self.key_type
                )));
            }
        }
        Ok(())
    }
}

/// Whether `backup` (a restore's `backup` field) decodes and checks as a key backup, without
/// a broker: for the fuzz targets, since it is attacker-controlled input.
pub fn backup_is_well_formed(backup: &str) -> bool {
    KeyBackup::parse(backup).is_ok()
}

impl Transit {
    /// Backs up a key (Vault's backup key): the base64 of its backup, holding its material
    /// in plaintext; refused, with Vault's messages, unless it is exportable and allows
    /// plaintext backup.
    pub async fn backup_key(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
    ) -> Result<Zeroizing<String>> {
        validate_key_name(name)?;
        let state = match self.existing_reloaded(tenant, mount, name).await {
            Err(Error::NotFound(_)) => {
                return Err(Error::invalid(format!("key {name:?} not found")));
            }
            other => other?,
        };
        let record = &state.record;
        if !record.options.exportable {
            return Err(Error::invalid("exporting is disallowed on the policy"));
        }
        if !record.options.allow_plaintext_backup {
            return Err(Error::invalid(
                "plaintext backup is disallowed on the policy",
            ));
        }
        let instance = self.instance(tenant, &record.backend)?;
        // Creation refuses both options elsewhere; checked again, since what follows
        // unwraps the material.
        let key_type = KeyType::parse(&record.key_type)?;
        self.check_material_may_leave(tenant, record)?;
        if record.mode != KeyMode::Envelope && !key_type.is_asymmetric() {
            return Err(Error::internal(
                "a direct-mode symmetric key marked for backup",
            ));
        }
        instance.check_available("")?;
        // The counts as the store holds them now (the ones in memory are as loaded).
        let rows: Vec<KeyVersionRecord> = self.store.get_key_versions(tenant.id, record.id).await?;
        let first = state.first_version();
        let mut versions = Vec::with_capacity(rows.len());
        for row in rows.iter().filter(|row| row.version >= first) {
            let material = match row.wrapped_dek.as_deref() {
                _ if key_type.is_asymmetric() => {
                    instance
                        .export_private_key(tenant, &row.backend_reference)
                        .await?
                }
                Some(wrapped) => {
                    instance
                        .decrypt(
                            tenant,
                            BackendDecrypt {
                                reference: &row.backend_reference,
                                ciphertext: wrapped,
                                aad: &state.binding(row.version).encode(),
                            },
                        )
                        .await?
                }
                None => return Err(Error::internal("envelope version without wrapped DEK")),
            };
            versions.push(BackupVersion {
                version: row.version,
                payload_format: row.payload_format,
                material: Material(material),
                created_at: row.created_at,
                counter_reserved: row.counter_reserved,
            });
        }
        let backup = KeyBackup {
            format: FORMAT.to_owned(),
            format_version: FORMAT_VERSION,
            tenant: tenant.id.to_string(),
            key_id: record.id.to_string(),
            name: record.name.clone(),
            key_type: record.key_type.clone(),
            backend: record.backend.clone(),
            options: record.options.into(),
            min_available_version: record.min_available_version,
            min_decryption_version: record.min_decryption_version,
            min_encryption_version: record.min_encryption_version,
            deletion_allowed: record.deletion_allowed,
            auto_rotate_period: record.auto_rotate_period,
            latest_version: record.latest_version,
            created_at: record.created_at,
            rotated_at: record.rotated_at,
            backup_time: self.clock.now_unix(),
            versions,
        };
        // Sized ahead, so the buffer holding the material is not reallocated (and its old
        // copies left behind) while it is written.
        let mut json = Zeroizing::new(Vec::with_capacity(1024 + 256 * backup.versions.len()));
        serde_json::to_writer(&mut *json, &backup)
            .map_err(|e| Error::internal(format!("backup encoding: {e}")))?;
        Ok(Zeroizing::new(STANDARD.encode(json.as_slice())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backup of an `aes256-gcm96` key trimmed to versions 2 and 3, version 2 in keybroker's
    /// envelope layout (a DEK) and version 3 in Vault's (`key ‖ hmac key`).
    fn sample() -> serde_json::Value {
        let material = |len: usize| STANDARD.encode(vec![7u8; len]);
        serde_json::json!({
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "tenant": TenantId::random().to_string(),
            "key_id": KeyId::random().to_string(),
            "name": "k",
            "type": "aes256-gcm96",
            "backend": "local",
            "options": {
                "derived": false, "convergent_encryption": false, "exportable": true,
                "allow_plaintext_backup": true, "imported": false,
                "imported_key_allow_rotation": false, "key_size": 0
            },
            "min_available_version": 2,
            "min_decryption_version": 2,
            "min_encryption_version": 3,
            "deletion_allowed": false,
            "auto_rotate_period": 0,
            "latest_version": 3,
            "created_at": 1,
            "rotated_at": 2,
            "backup_time": 3,
            "versions": [
                { "version": 2, "payload_format": 1, "material": material(32),
                  "created_at": 1, "counter_reserved": 10 },
                { "version": 3, "payload_format": 3, "material": material(64),
                  "created_at": 2, "counter_reserved": 20 }
            ]
        })
    }

    fn parse(value: &serde_json::Value) -> Result<KeyBackup> {
        KeyBackup::parse(&STANDARD.encode(value.to_string()))
    }

    fn refused(edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut value = sample();
        edit(&mut value);
        match parse(&value) {
            Err(Error::InvalidRequest(message)) => message,
            Err(other) => panic!("not a 400: {other}"),
            Ok(_) => panic!("accepted: {value}"),
        }
    }

    #[test]
    fn a_backup_round_trips_into_the_record_it_describes() {
        let value = sample();
        let backup = parse(&value).unwrap();
        let mount = MountId::random();
        let record = backup
            .record(mount, "renamed", Some("ref".to_owned()))
            .unwrap();
        assert_eq!(record.id.to_string(), value["key_id"].as_str().unwrap());
        assert_eq!(record.tenant.to_string(), value["tenant"].as_str().unwrap());
        assert_eq!((record.mount, record.name.as_str()), (mount, "renamed"));
        assert_eq!(
            (
                record.min_available_version,
                record.min_decryption_version,
                record.min_encryption_version,
                record.latest_version
            ),
            (2, 2, 3, 3)
        );
        assert!(record.options.exportable && record.options.allow_plaintext_backup);
        assert_eq!(record.mode, KeyMode::Envelope);
        assert!(!record.bound);
        assert_eq!(backup.versions[1].counter_reserved, 20);
        assert_eq!(backup.versions[1].material.0.as_slice(), &[7u8; 64][..]);
        // What backup writes, parse reads.
        let json = serde_json::to_vec(&backup).unwrap();
        let again = KeyBackup::parse(&STANDARD.encode(json)).unwrap();
        assert_eq!(again.versions[0].material.0.as_slice(), &[7u8; 32][..]);
    }

    #[test]
    fn every_inconsistency_is_a_400_that_never_repeats_the_material() {
        let not_base64 = KeyBackup::parse("!!!").err().unwrap();
        assert!(matches!(not_base64, Error::InvalidRequest(_)));
        for message in [
            refused(|v| v["format"] = "vault".into()),
            refused(|v| v["format_version"] = 2.into()),
            refused(|v| v["tenant"] = "acme".into()),
            refused(|v| v["key_id"] = "".into()),
            refused(|v| v["name"] = "a/b".into()),
            refused(|v| v["type"] = "rsa-2048".into()),
            refused(|v| v["type"] = "aes192-gcm96".into()),
            refused(|v| v["options"]["exportable"] = false.into()),
            refused(|v| v["options"]["allow_plaintext_backup"] = false.into()),
            refused(|v| v["options"]["convergent_encryption"] = true.into()),
            refused(|v| v["options"]["key_size"] = 32.into()),
            refused(|v| v["latest_version"] = 4.into()),
            refused(|v| v["latest_version"] = 0.into()),
            refused(|v| v["min_decryption_version"] = 1.into()),
            refused(|v| v["min_decryption_version"] = 0.into()),
            refused(|v| v["min_encryption_version"] = 1.into()),
            refused(|v| v["min_available_version"] = 0.into()),
            refused(|v| v["versions"].as_array_mut().unwrap().reverse()),
            refused(|v| v["versions"].as_array_mut().unwrap().truncate(1)),
            refused(|v| v["versions"][0]["payload_format"] = 2.into()),
            refused(|v| v["versions"][0]["material"] = STANDARD.encode([7u8; 31]).into()),
            refused(|v| v["versions"][1]["material"] = STANDARD.encode([7u8; 32]).into()),
            refused(|v| v["versions"][1]["material"] = "!!secret!!".into()),
            refused(|v| v["versions"][1]["counter_reserved"] = (-1).into()),
            refused(|v| v["versions"][1]["extra"] = 1.into()),
            refused(|v| v["extra"] = 1.into()),
            refused(|v| *v = serde_json::Value::Null),
        ] {
            assert!(message.starts_with("invalid backup"), "{message}");
            assert!(
                !message.contains("secret") && !message.contains("Bwc"),
                "{message}"
            );
        }
    }

    #[test]
    fn an_asymmetric_backup_holds_private_keys_of_its_type() {
        use p256::pkcs8::EncodePrivateKey as _;
        let pkcs8 = |_| {
            let key = p256::SecretKey::random(&mut rand::rngs::OsRng);
            STANDARD.encode(key.to_pkcs8_der().unwrap().as_bytes())
        };
        let mut value = sample();
        value["type"] = "ecdsa-p256".into();
        for (index, version) in [0, 1].map(|i| (i, pkcs8(i))) {
            value["versions"][index]["payload_format"] = 2.into();
            value["versions"][index]["material"] = version.into();
        }
        let backup = parse(&value).unwrap();
        assert!(backup.is_asymmetric());
        let record = backup.record(MountId::random(), "k", None).unwrap();
        assert_eq!(record.mode, KeyMode::Direct);
        assert_eq!(record.backend_reference, None);
        let refuse = |edit: &dyn Fn(&mut serde_json::Value)| {
            let mut changed = value.clone();
            edit(&mut changed);
            match parse(&changed) {
                Err(Error::InvalidRequest(message)) => message,
                other => panic!("not refused: {:?}", other.err()),
            }
        };
        for message in [
            // Another curve's key, or no key, under this type.
            refuse(&|v| v["type"] = "ecdsa-p384".into()),
            refuse(&|v| v["type"] = "rsa-2048".into()),
            refuse(&|v| v["versions"][0]["material"] = STANDARD.encode([7u8; 64]).into()),
            // A private key is never in an envelope layout.
            refuse(&|v| v["versions"][1]["payload_format"] = 3.into()),
            refuse(&|v| v["options"]["derived"] = true.into()),
        ] {
            assert!(message.starts_with("invalid backup"), "{message}");
        }
    }

    #[test]
    fn an_hmac_key_backs_up_its_key_size() {
        let mut value = sample();
        value["type"] = "hmac".into();
        value["options"]["key_size"] = 48.into();
        value["versions"][1]["material"] = STANDARD.encode([7u8; 48]).into();
        assert!(parse(&value).is_ok());
        value["options"]["key_size"] = 16.into();
        assert!(parse(&value).is_err());
    }
}
