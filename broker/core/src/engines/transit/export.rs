//! [Export key](https://openbao.org/api-docs/secret/transit/#export-key):
//! `GET /transit/export/:type/:name(/:version)`, with Vault's checks in Vault's order and
//! its messages (`path_export.go`).
//!
//! What keybroker exports, and what it refuses with the reason:
//! - `encryption-key` and `hmac-key` of an exportable key: each version's key and HMAC key
//!   as Vault holds them. Only versions made in Vault's layout (`PayloadFormat::Vault`) have
//!   such keys; a version made in keybroker's envelope before the key became exportable has
//!   a DEK from which the keys are derived per binding, which means nothing to Vault: it is
//!   refused by number. Only a backend instance that holds its keys in the broker (the
//!   local KEK) has exportable keys at all (creation and config refuse the others).
//! - `public-key` of an asymmetric key, on every backend: the version's stored public key.
//! - `signing-key` of an exportable asymmetric key (and `encryption-key` of an RSA one, as in
//!   Vault): each version's private key, which the backend hands out as PKCS #8 (only an
//!   instance with `capability::PRIVATE_KEY_TRANSFER`, the local KEK: creation and config
//!   refuse `exportable` elsewhere). Asymmetric keys keep no HMAC key here: `hmac-key` of
//!   one is refused with the reason.
//! - `format` (`raw`, `der`, `pem`) as Vault writes each (`key_format.rs`).

use base64::{engine::general_purpose::STANDARD, Engine as _};
use zeroize::Zeroizing;

use super::{
    key_format::{self, ExportFormat},
    key_type::KeyType,
    keys::check_instance_releases,
    validate_key_name, KeyState, Transit,
};
use crate::{
    crypto::PayloadFormat,
    error::{Error, Result},
    store::{KeyMode, KeyRecord},
    MountId, Tenant,
};

/// What an export asks for (Vault's export types).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportType {
    /// A symmetric version's encryption key.
    EncryptionKey,
    /// An asymmetric version's private key.
    SigningKey,
    /// A version's HMAC key (an `hmac` key's key).
    HmacKey,
    /// An asymmetric version's public key.
    PublicKey,
    /// An asymmetric version's certificate chain (keybroker keeps none).
    CertificateChain,
}

impl ExportType {
    /// Vault's name of an export type; Vault's error for another.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "encryption-key" => Self::EncryptionKey,
            "signing-key" => Self::SigningKey,
            "hmac-key" => Self::HmacKey,
            "public-key" => Self::PublicKey,
            "certificate-chain" => Self::CertificateChain,
            other => return Err(Error::invalid(format!("invalid export type: {other}"))),
        })
    }

    fn is_private(self) -> bool {
        !matches!(self, Self::PublicKey | Self::CertificateChain)
    }
}

/// An export's answer: the key's name and type, and each version's exported value.
pub struct ExportedKeys {
    /// The key's name.
    pub name: String,
    /// The key's type.
    pub key_type: String,
    /// Version → base64 key or PEM, ascending.
    pub keys: Vec<(u32, Zeroizing<String>)>,
}

impl std::fmt::Debug for ExportedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedKeys")
            .field("name", &self.name)
            .field("key_type", &self.key_type)
            .finish_non_exhaustive()
    }
}

/// Why a key's material never leaves the broker, if it does not: a symmetric key held by
/// its backend (direct mode).
pub(super) fn material_stays_in_backend(record: &KeyRecord) -> Option<String> {
    let asymmetric = KeyType::parse(&record.key_type).is_ok_and(KeyType::is_asymmetric);
    (record.mode == KeyMode::Direct && !asymmetric).then(|| {
        format!(
            "key type {} in mode={} is held by its backend and never leaves it: it cannot be \
             exportable or backed up in plaintext",
            record.key_type,
            record.mode.as_str()
        )
    })
}

impl Transit {
    /// Refuses to make `record` exportable or plaintext-backed-up where its material never
    /// leaves its backend (direct-mode symmetric keys, an instance that keeps its keys
    /// outside the broker or never hands out private keys).
    pub(super) fn check_material_may_leave(
        &self,
        tenant: &Tenant,
        record: &KeyRecord,
    ) -> Result<()> {
        if let Some(reason) = material_stays_in_backend(record) {
            return Err(Error::invalid(reason));
        }
        let instance = self.instance(tenant, &record.backend)?;
        check_instance_releases(instance.as_ref(), KeyType::parse(&record.key_type)?)
    }

    /// Exports a key's versions (all, or `version`: a number, `v<number>` or `latest`).
    pub async fn export_key(
        &self,
        tenant: &Tenant,
        mount: MountId,
        name: &str,
        export_type: ExportType,
        version: Option<&str>,
        format: ExportFormat,
    ) -> Result<ExportedKeys> {
        validate_key_name(name)?;
        let state = self.existing(tenant, mount, name).await?;
        let record = &state.record;
        let key_type = KeyType::parse(&record.key_type)?;
        if !record.options.exportable && export_type.is_private() {
            // Vault's message; where the key could never be made exportable, the reason.
            return Err(match self.check_material_may_leave(tenant, record) {
                Err(Error::InvalidRequest(reason)) => {
                    Error::invalid(format!("private key material is not exportable: {reason}"))
                }
                _ => Error::invalid("private key material is not exportable"),
            });
        }
        match export_type {
            ExportType::EncryptionKey
                if key_type.aead().is_none() && !matches!(key_type, KeyType::Rsa(_)) =>
            {
                return Err(Error::invalid("encryption not supported for the key"))
            }
            ExportType::SigningKey if !key_type.is_asymmetric() => {
                return Err(Error::invalid("signing not supported for the key"))
            }
            ExportType::HmacKey if key_type.is_asymmetric() => {
                return Err(Error::invalid(format!(
                    "key type {} keeps no HMAC key in keybroker: its versions are private keys \
                     held by the backend, and keybroker derives HMAC keys only in its envelope",
                    record.key_type
                )))
            }
            ExportType::CertificateChain if !key_type.is_asymmetric() => {
                return Err(Error::invalid(
                    "certificate chain not supported for keys that do not support signing",
                ))
            }
            ExportType::CertificateChain => {
                return Err(Error::invalid(
                    "selected key version does not have a certificate chain imported",
                ))
            }
            ExportType::PublicKey if !key_type.is_asymmetric() => {
                return Err(Error::invalid(format!(
                    "unknown key type {} for export type public-key",
                    record.key_type
                )))
            }
            _ => {}
        }
        let versions = match version {
            None | Some("") => state.versions.iter().map(|v| v.record.version).collect(),
            Some(text) => vec![requested_version(&state, text)?],
        };
        let mut keys = Vec::with_capacity(versions.len());
        if export_type == ExportType::PublicKey {
            for number in versions {
                let version = state
                    .version(number)
                    .ok_or_else(|| Error::internal("missing key version"))?;
                let public_key = version
                    .record
                    .public_key
                    .as_deref()
                    .ok_or_else(|| Error::internal("asymmetric version without public key"))?;
                keys.push((
                    number,
                    Zeroizing::new(key_format::public_key(key_type, format, public_key)?),
                ));
            }
        } else if key_type.is_asymmetric() {
            self.export_private_keys(tenant, &state, key_type, format, &versions, &mut keys)
                .await?;
        } else {
            format.check_symmetric()?;
            self.export_private(tenant, &state, export_type, &versions, &mut keys)
                .await?;
        }
        Ok(ExportedKeys {
            name: record.name.clone(),
            key_type: record.key_type.clone(),
            keys,
        })
    }

    /// Each of `versions`' private key, as the backend hands it out, in `format`.
    async fn export_private_keys(
        &self,
        tenant: &Tenant,
        state: &KeyState,
        key_type: KeyType,
        format: ExportFormat,
        versions: &[u32],
        keys: &mut Vec<(u32, Zeroizing<String>)>,
    ) -> Result<()> {
        let record = &state.record;
        self.check_material_may_leave(tenant, record)?;
        let instance = self.instance(tenant, &record.backend)?;
        for number in versions {
            let version = state
                .version(*number)
                .ok_or_else(|| Error::internal("missing key version"))?;
            instance.check_available(&version.record.backend_reference)?;
            let pkcs8 = instance
                .export_private_key(tenant, &version.record.backend_reference)
                .await?;
            keys.push((*number, key_format::private_key(key_type, format, &pkcs8)?));
        }
        Ok(())
    }

    /// Each of `versions`' key (`encryption-key`) or HMAC key (`hmac-key`), base64.
    async fn export_private(
        &self,
        tenant: &Tenant,
        state: &KeyState,
        export_type: ExportType,
        versions: &[u32],
        keys: &mut Vec<(u32, Zeroizing<String>)>,
    ) -> Result<()> {
        let record = &state.record;
        self.check_material_may_leave(tenant, record)?;
        let envelope: Vec<String> = versions
            .iter()
            .filter_map(|n| state.version(*n))
            .filter(|v| v.record.payload_format != PayloadFormat::Vault.code())
            .map(|v| v.record.version.to_string())
            .collect();
        if !envelope.is_empty() {
            return Err(Error::invalid(format!(
                "key \"{}\" version(s) {} were made in keybroker's envelope layout, before the \
                 key became exportable: their data key is derived per version binding and is \
                 not a key Vault or OpenBao could use, so they cannot be exported; versions \
                 made since (rotate the key) can",
                record.name,
                envelope.join(", ")
            )));
        }
        let instance = self.instance(tenant, &record.backend)?;
        for number in versions {
            let version = state
                .version(*number)
                .ok_or_else(|| Error::internal("missing key version"))?;
            let cached = self
                .data_key(tenant, state, version, instance.as_ref())
                .await?;
            let material = match export_type {
                ExportType::EncryptionKey => cached.data_key.key_material(),
                _ => cached.data_key.hmac_key(),
            };
            keys.push((*number, Zeroizing::new(STANDARD.encode(material))));
        }
        Ok(())
    }
}

/// The version an export names, as Vault reads it: `latest`, or a number (optionally
/// `v`-prefixed) at least `min_decryption_version` that the key keeps.
fn requested_version(state: &KeyState, text: &str) -> Result<u32> {
    let number = if text == "latest" {
        state.record.latest_version
    } else {
        text.strip_prefix('v')
            .unwrap_or(text)
            .parse::<i64>()
            .map_err(|_| Error::invalid("invalid key version"))?
            .try_into()
            .unwrap_or(0)
    };
    if number < state.record.min_decryption_version {
        return Err(Error::invalid(
            "version for export is below minimum decryption version",
        ));
    }
    if state.version(number).is_none() {
        return Err(Error::invalid("version does not exist or cannot be found"));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_types_are_vaults_and_others_get_vaults_message() {
        for (name, kind) in [
            ("encryption-key", ExportType::EncryptionKey),
            ("signing-key", ExportType::SigningKey),
            ("hmac-key", ExportType::HmacKey),
            ("public-key", ExportType::PublicKey),
        ] {
            assert_eq!(ExportType::parse(name).unwrap(), kind);
        }
        assert_eq!(
            ExportType::parse("private-key").unwrap_err().to_string(),
            "invalid export type: private-key"
        );
        assert!(!ExportType::PublicKey.is_private());
        assert!(ExportType::HmacKey.is_private());
    }

    #[test]
    fn direct_symmetric_keys_never_leave() {
        let mut record = super::super::test_record(1, 0, 1, 0);
        assert!(material_stays_in_backend(&record).is_none());
        record.mode = KeyMode::Direct;
        assert!(material_stays_in_backend(&record).is_some());
        record.key_type = "ecdsa-p256".to_owned();
        assert!(material_stays_in_backend(&record).is_none());
    }
}
