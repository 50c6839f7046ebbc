//! Loading the root key from the configured seal (ARCHITECTURE.md §2).

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_core::{seal::RootKey, Tenant};
use zeroize::Zeroizing;

use crate::config::SealConfig;

/// Why the root key could not be had. Messages never contain key material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The key file or variable is missing.
    #[error("root key not found: {0}")]
    Missing(String),
    /// The key is malformed or exposed.
    #[error("root key refused: {0}")]
    Invalid(String),
    /// The key file could not be read or written.
    #[error("root key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn decode(text: &str, origin: &str) -> Result<RootKey, SealError> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text.trim())
            .map_err(|_| SealError::Invalid(format!("{origin} is not valid base64")))?,
    );
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() != key.len() {
        return Err(SealError::Invalid(format!(
            "{origin} must hold 32 bytes (base64)"
        )));
    }
    key.copy_from_slice(&bytes);
    Ok(RootKey::new(key))
}

/// Loads the root key of a file or environment seal. A missing key file is generated (mode
/// 0600) only if `may_generate` (the store is empty), so a lost key file never silently
/// replaces the real key.
pub fn load_root_key(seal: &SealConfig, may_generate: bool) -> Result<RootKey, SealError> {
    match seal {
        SealConfig::Env { env } => {
            let text = Zeroizing::new(std::env::var(env).map_err(|_| {
                SealError::Missing(format!("environment variable {env} is not set"))
            })?);
            decode(&text, &format!("environment variable {env}"))
        }
        SealConfig::Backend { instance, .. } => Err(SealError::Invalid(format!(
            "the root key of seal type \"backend\" (instance \"{instance}\") is unwrapped by the backend"
        ))),
        SealConfig::File { path } => {
            if !path.exists() {
                if !may_generate {
                    return Err(SealError::Missing(format!(
                        "{} does not exist and the store is already initialised",
                        path.display()
                    )));
                }
                generate_file(path)?;
            }
            let io = |source| SealError::Io {
                path: path.display().to_string(),
                source,
            };
            let mode = fs::metadata(path).map_err(io)?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(SealError::Invalid(format!(
                    "{} is accessible to group or others (mode {:o}); chmod 600 it",
                    path.display(),
                    mode & 0o777
                )));
            }
            let text = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
            decode(&text, &path.display().to_string())
        }
    }
}

/// Store meta entry holding the root key wrapped by the seal's backend instance.
pub const BACKEND_SEAL_META: &str = "seal-backend";

/// The AAD of the wrapped root key: binds it to its purpose (backends that authenticate
/// AAD refuse to unwrap it as anything else).
const BACKEND_SEAL_AAD: &[u8] = b"keybroker root key, seal v1";

/// Transit key id under which the seal's backend key is created or bound (root namespace).
const BACKEND_SEAL_KEY_ID: &str = "keybroker-seal";

/// What the store keeps of a backend seal (JSON under [`BACKEND_SEAL_META`]).
#[derive(serde::Serialize, serde::Deserialize)]
struct BackendSealRecord {
    /// The instance that wrapped the key.
    instance: String,
    /// The backend key's reference (the plugin's own syntax).
    reference: String,
    /// Whether the broker created that key (else it was bound by `[seal] key`).
    created: bool,
    /// The wrapped root key (base64).
    wrapped: String,
}

/// The root key of a store sealed by the backend `instance`: unwrapped from the store's
/// record, or (a fresh store only) generated, wrapped and recorded. The error is the
/// reason the broker stays sealed; it never holds key material.
pub async fn backend_root_key(
    host: &crate::plugin_host::PluginHost,
    store: &dyn keybroker_core::store::Store,
    instance_name: &str,
    key: Option<&str>,
    fresh: bool,
) -> Result<RootKey, String> {
    use keybroker_core::backend::{BackendEncrypt, BackendInstance as _};

    let record = read_backend_seal(store).await?;
    let instance = host.load_one(instance_name).await?;
    if let Some(reason) = instance.unavailable_reason() {
        return Err(format!(
            "seal backend \"{instance_name}\" unavailable: {reason}"
        ));
    }
    if let Some(record) = record {
        return unwrap_root_key(&instance, instance_name, &record).await;
    }
    if !fresh {
        return Err(format!(
            "the store was initialised with another seal: it holds no root key wrapped by a \
             backend, so [seal] type = \"backend\" (instance \"{instance_name}\") cannot open it"
        ));
    }
    // A fresh store: make the root key and have the backend wrap it.
    let failed = |what: &str, e: keybroker_core::Error| {
        format!("seal backend \"{instance_name}\" cannot {what}: {e}")
    };
    let (reference, created) = match key {
        Some(backend_key) => (
            instance
                .bind_key(
                    &Tenant::root(),
                    BACKEND_SEAL_KEY_ID,
                    "aes256-gcm96",
                    backend_key,
                )
                .await
                .map_err(|e| failed(&format!("use the key \"{backend_key}\""), e))?,
            false,
        ),
        None => (
            instance
                .create_key(&Tenant::root(), BACKEND_SEAL_KEY_ID, "aes256-gcm96")
                .await
                .map_err(|e| failed("create a key for the root key", e))?,
            true,
        ),
    };
    let root = keybroker_core::crypto::generate_dek();
    let mut iv = [0u8; 12];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut iv);
    let wrapped = instance
        .encrypt(
            &Tenant::root(),
            BackendEncrypt {
                reference: &reference,
                plaintext: root.as_ref(),
                aad: BACKEND_SEAL_AAD,
                iv,
            },
        )
        .await
        .map_err(|e| failed("wrap the root key", e))?;
    let record = BackendSealRecord {
        instance: instance_name.to_owned(),
        reference: reference.clone(),
        created,
        wrapped: STANDARD.encode(&wrapped),
    };
    // Unwrap once before recording: a key that cannot unwrap must not seal the store.
    let check = unwrap_root_key(&instance, instance_name, &record).await?;
    let text = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
    let written = store
        .put_meta_if_absent(BACKEND_SEAL_META, &text)
        .await
        .map_err(|e| format!("cannot record the wrapped root key: {e}"))?;
    if written {
        tracing::info!(
            instance = instance_name,
            "generated a root key wrapped by the seal backend"
        );
        return Ok(check);
    }
    // Another node of the cluster initialised first: use its key, drop ours.
    if created {
        if let Err(error) = instance.delete_key(&Tenant::root(), &reference).await {
            tracing::warn!(%error, "could not delete an unused seal key");
        }
    }
    let record = read_backend_seal(store)
        .await?
        .ok_or_else(|| "the wrapped root key vanished from the store".to_owned())?;
    unwrap_root_key(&instance, instance_name, &record).await
}

/// Unwraps the root key of a backend seal record with the seal's instance.
async fn unwrap_root_key(
    instance: &crate::plugin_host::Instance,
    instance_name: &str,
    record: &BackendSealRecord,
) -> Result<RootKey, String> {
    use keybroker_core::backend::{BackendDecrypt, BackendInstance as _};

    if record.instance != instance_name {
        return Err(format!(
            "the store's root key is wrapped by backend instance \"{}\", not \"{instance_name}\"",
            record.instance
        ));
    }
    let wrapped = STANDARD
        .decode(&record.wrapped)
        .map_err(|_| "the store's wrapped root key is not valid base64".to_owned())?;
    let plain = instance
        .decrypt(
            &Tenant::root(),
            BackendDecrypt {
                reference: &record.reference,
                ciphertext: &wrapped,
                aad: BACKEND_SEAL_AAD,
            },
        )
        .await
        .map_err(|e| format!("seal backend \"{instance_name}\" cannot unwrap the root key: {e}"))?;
    let mut key = Zeroizing::new([0u8; 32]);
    if plain.len() != key.len() {
        return Err("the unwrapped root key is not 32 bytes".to_owned());
    }
    key.copy_from_slice(&plain);
    Ok(RootKey::new(key))
}

/// The store's backend seal record, if it has one.
async fn read_backend_seal(
    store: &dyn keybroker_core::store::Store,
) -> Result<Option<BackendSealRecord>, String> {
    let bytes = store
        .get_meta(BACKEND_SEAL_META)
        .await
        .map_err(|e| format!("cannot read the wrapped root key from the store: {e}"))?;
    bytes
        .map(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|_| "the store's wrapped root key record is malformed".to_owned())
        })
        .transpose()
}

fn generate_file(path: &Path) -> Result<(), SealError> {
    let io = |source| SealError::Io {
        path: path.display().to_string(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io)?;
    }
    let key = keybroker_core::crypto::generate_dek();
    let text = Zeroizing::new(STANDARD.encode(key.as_ref()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io)?;
    tracing::info!(path = %path.display(), "generated a new root key file");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_seal_generates_once_and_refuses_loose_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        let seal = SealConfig::File { path: path.clone() };
        assert!(matches!(
            load_root_key(&seal, false),
            Err(SealError::Missing(_))
        ));
        load_root_key(&seal, true).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        load_root_key(&seal, false).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let error = load_root_key(&seal, false).unwrap_err().to_string();
        assert!(error.contains("chmod 600"), "{error}");
    }

    #[test]
    fn malformed_keys_are_refused_without_echoing_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("root.key");
        fs::write(&path, "c2VjcmV0LXNob3J0").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let error = load_root_key(&SealConfig::File { path }, false)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("32 bytes") && !error.contains("c2VjcmV0"),
            "{error}"
        );
    }
}
