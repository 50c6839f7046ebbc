//! Loading the root key from the configured seal (DESIGN §2).

use std::{
    fs,
    io::Write,
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::Path,
};

use base64::{engine::general_purpose::STANDARD, Engine as _};
use keybroker_core::seal::RootKey;
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

/// Loads the root key. A missing key file is generated (mode 0600) only if `may_generate`
/// (the store is empty), so a lost key file never silently replaces the real key.
pub fn load_root_key(seal: &SealConfig, may_generate: bool) -> Result<RootKey, SealError> {
    match seal {
        SealConfig::Env { env } => {
            let text = Zeroizing::new(std::env::var(env).map_err(|_| {
                SealError::Missing(format!("environment variable {env} is not set"))
            })?);
            decode(&text, &format!("environment variable {env}"))
        }
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
