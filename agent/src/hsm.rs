//! Keys held in an on-prem HSM, reached over PKCS#11.
//!
//! The agent reuses the workspace's PKCS#11 backend (`keybroker-plugin-pkcs11`), linked in
//! rather than loaded as a `.so`, and drives it through the plugin ABI's plain `Backend`
//! trait: one backend instance for the `[hsm]` table (module pinned by its SHA-256, token
//! found by label, user PIN from an owner-only file or a variable), and each HSM key bound
//! once at start (`bind_key`, key type `aes256-gcm96`), so that a missing object or one of
//! the wrong type stops the agent before it serves anything.
//!
//! Encryption is AES-256-GCM inside the token with a fresh random 96-bit IV per call (the
//! agent draws it, as for its software keys) and the request's AAD; the plugin's blob
//! `0x01 ‖ iv(12) ‖ ciphertext ‖ tag(16)` is split into the XKS fields and put back together
//! for decryption. The key never leaves the token; the PIN is read by the plugin into
//! zeroizing memory and never logged.
//!
//! The plugin's own log lines (its start-up summary, recoveries) and availability reports go
//! to `tracing` through [`TracingHost`].

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use keybroker_plugin_abi::abi_stable::sabi_trait::TD_Opaque;
use keybroker_plugin_abi::abi_stable::std_types::{RSlice, RStr, RString};
use keybroker_plugin_abi::{
    key_type, Backend as _, BindKeyRequest, DecryptRequest, EncryptRequest, ErrorKind, HostBox,
    HostServices, HostServices_TO, LogLevel, PluginError,
};
use keybroker_plugin_pkcs11::Pkcs11Backend;
use rand::RngCore as _;
use zeroize::Zeroizing;

use crate::files::{read_private_file, PrivateFileError};

/// The tenant id every HSM key is bound under: the agent is the backend's only user.
pub const BIND_TENANT: &str = "keybroker-agent";

/// The IV length the agent draws (the AES-GCM standard length).
const IV_BYTES: usize = 12;

/// The AES-GCM tag length.
const TAG_BYTES: usize = 16;

/// The first byte of the plugin's ciphertext blob.
const BLOB_FORMAT_V1: u8 = 0x01;

/// Where the HSM user PIN is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file holding the PIN (one trailing newline ignored), readable by its owner only.
    File(PathBuf),
    /// An environment variable of the agent's process.
    Env(String),
}

/// The `[hsm]` table, validated: which module, which token, where the PIN is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HsmConfig {
    /// The PKCS#11 module (`.so`).
    pub module: PathBuf,
    /// Lowercase hex SHA-256 of the module file: nothing else is loaded.
    pub module_sha256: String,
    /// The token's label (slots are found by label, never by number).
    pub token_label: String,
    /// The user PIN.
    pub pin: PinSource,
}

/// Why the HSM could not be opened. No variant carries the PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The PIN file could not be read.
    #[error("pin_file {}: cannot read: {source}", path.display())]
    PinRead {
        /// The PIN file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The PIN file may be accessed by group or others.
    #[error(
        "pin_file {}: accessible to group or others (mode {mode:o}); chmod 600 it",
        path.display()
    )]
    PinPermissions {
        /// The PIN file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The module could not be loaded, the token found or the login done.
    #[error("token {token:?}: {reason}")]
    Open {
        /// The token's label.
        token: String,
        /// The PKCS#11 backend's reason (names a field, a file or a `CKR_*` value).
        reason: String,
    },
}

/// One PKCS#11 backend instance: one token of one module.
pub struct Hsm {
    backend: Pkcs11Backend,
    token_label: String,
}

impl fmt::Debug for Hsm {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Hsm")
            .field("token_label", &self.token_label)
            .finish_non_exhaustive()
    }
}

impl Hsm {
    /// Checks the PIN file (owner-only), pins and loads the module, finds the token and logs
    /// in.
    pub fn open(config: &HsmConfig) -> Result<Self, HsmError> {
        let open_error = |reason: String| HsmError::Open {
            token: config.token_label.clone(),
            reason,
        };
        let mut plugin_config = serde_json::json!({
            "module": std::path::absolute(&config.module)
                .map_err(|error| open_error(format!(
                    "module {}: {error}",
                    config.module.display()
                )))?,
            "module_sha256": config.module_sha256,
            "token_label": config.token_label,
        });
        match &config.pin {
            PinSource::File(path) => {
                // The plugin only warns about a PIN file others can read; the agent holds
                // every secret file to the same owner-only rule.
                drop(read_private_file(path).map_err(|error| match error {
                    PrivateFileError::Io(source) => HsmError::PinRead {
                        path: path.clone(),
                        source,
                    },
                    PrivateFileError::Permissions(mode) => HsmError::PinPermissions {
                        path: path.clone(),
                        mode,
                    },
                })?);
                plugin_config["pin_file"] = serde_json::json!(path);
            }
            PinSource::Env(variable) => plugin_config["pin_env"] = serde_json::json!(variable),
        }
        let backend =
            keybroker_plugin_pkcs11::new_backend(&plugin_config.to_string(), TracingHost::boxed())
                .map_err(|error| open_error(error.message.into_string()))?;
        Ok(Self {
            backend,
            token_label: config.token_label.clone(),
        })
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.token_label
    }

    /// Binds the AES-256 key `backend_key` (`label:<CKA_LABEL>` or `id:<hex CKA_ID>`) for the
    /// agent key `name`: the object must exist, be the only AES-256 secret key it names and
    /// be allowed to encrypt and decrypt. The error is the backend's reason.
    pub fn bind(self: &Arc<Self>, name: &str, backend_key: &str) -> Result<HsmKey, String> {
        let handle = self
            .backend
            .bind_key(BindKeyRequest {
                tenant_id: BIND_TENANT.into(),
                key_id: fresh_key_id(name).into(),
                key_type: key_type::AES256_GCM96.into(),
                backend_key: backend_key.into(),
            })
            .map_err(|error| error.message.into_string())?;
        Ok(HsmKey {
            hsm: Arc::clone(self),
            reference: handle.reference.into_string(),
            backend_key: backend_key.to_owned(),
        })
    }
}

/// A broker-style key id, unique per binding (the backend records none for bound keys, but
/// logs it).
fn fresh_key_id(name: &str) -> String {
    let mut random = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut random);
    let suffix: String = random.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{name}-{suffix}")
}

/// An AES-256 key in the HSM, bound at start.
pub struct HsmKey {
    hsm: Arc<Hsm>,
    reference: String,
    backend_key: String,
}

impl fmt::Debug for HsmKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("HsmKey")
            .field("token_label", &self.hsm.token_label)
            .field("backend_key", &self.backend_key)
            .finish_non_exhaustive()
    }
}

/// An HSM operation that failed.
#[derive(Debug)]
pub(crate) enum HsmOperationError {
    /// The tag did not verify: wrong ciphertext, IV, tag or AAD.
    InvalidCiphertext,
    /// The token cannot be reached now (the backend's reason, naming the token and a
    /// `CKR_*` value).
    Unavailable(String),
    /// Anything else (the backend's reason).
    Failed(String),
}

impl From<PluginError> for HsmOperationError {
    fn from(error: PluginError) -> Self {
        match error.kind {
            ErrorKind::INVALID_CIPHERTEXT => Self::InvalidCiphertext,
            ErrorKind::UNAVAILABLE => Self::Unavailable(error.message.into_string()),
            _ => Self::Failed(error.message.into_string()),
        }
    }
}

/// What an HSM encryption returns, split as XKS wants it.
pub(crate) struct Sealed {
    pub(crate) iv: Vec<u8>,
    pub(crate) ciphertext: Vec<u8>,
    pub(crate) tag: Vec<u8>,
}

impl HsmKey {
    /// `label:<CKA_LABEL>` or `id:<hex CKA_ID>`, as configured.
    pub fn backend_key(&self) -> &str {
        &self.backend_key
    }

    /// AES-256-GCM in the token with a fresh random IV and `aad`.
    pub(crate) fn encrypt(
        &self,
        plaintext: &[u8],
        aad: &[u8],
    ) -> Result<Sealed, HsmOperationError> {
        let mut iv = [0u8; IV_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        // The backend wipes the plaintext it is handed.
        let blob = self.hsm.backend.encrypt(EncryptRequest {
            tenant_id: BIND_TENANT.into(),
            key_reference: self.reference.as_str().into(),
            plaintext: plaintext.to_vec().into(),
            aad: aad.to_vec().into(),
            iv: iv.to_vec().into(),
        })?;
        split_blob(&blob).ok_or_else(|| {
            HsmOperationError::Failed("the PKCS#11 backend returned a malformed blob".to_owned())
        })
    }

    /// AES-256-GCM decryption in the token; the tag is checked before any plaintext is
    /// returned.
    pub(crate) fn decrypt(
        &self,
        iv: &[u8],
        ciphertext: &[u8],
        tag: &[u8],
        aad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, HsmOperationError> {
        let mut blob = Vec::with_capacity(1 + iv.len() + ciphertext.len() + tag.len());
        blob.push(BLOB_FORMAT_V1);
        blob.extend_from_slice(iv);
        blob.extend_from_slice(ciphertext);
        blob.extend_from_slice(tag);
        let plaintext = self.hsm.backend.decrypt(DecryptRequest {
            tenant_id: BIND_TENANT.into(),
            key_reference: self.reference.as_str().into(),
            ciphertext: blob.into(),
            aad: aad.to_vec().into(),
        })?;
        Ok(Zeroizing::new(plaintext))
    }
}

/// `0x01 ‖ iv(12) ‖ ciphertext ‖ tag(16)` → its parts.
fn split_blob(blob: &[u8]) -> Option<Sealed> {
    let (&version, rest) = blob.split_first()?;
    if version != BLOB_FORMAT_V1 {
        return None;
    }
    let (iv, sealed) = rest.split_first_chunk::<IV_BYTES>()?;
    let (ciphertext, tag) = sealed.split_last_chunk::<TAG_BYTES>()?;
    Some(Sealed {
        iv: iv.to_vec(),
        ciphertext: ciphertext.to_vec(),
        tag: tag.to_vec(),
    })
}

/// The host side of the plugin ABI for the agent: the backend's log lines and availability
/// reports go to `tracing` (the backend never puts key material or the PIN in them).
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingHost;

impl TracingHost {
    /// This host as the handle the backend's constructor takes.
    pub fn boxed() -> HostBox {
        HostServices_TO::from_value(Self, TD_Opaque)
    }
}

impl HostServices for TracingHost {
    fn set_instance_available(&self, available: bool, reason: RStr<'_>) {
        if available {
            tracing::info!(reason = %reason, "HSM available again");
        } else {
            tracing::warn!(reason = %reason, "HSM unavailable");
        }
    }

    fn set_keys_available(
        &self,
        key_references: RSlice<'_, RString>,
        available: bool,
        reason: RStr<'_>,
    ) {
        let count = key_references.len();
        if available {
            tracing::info!(keys = count, reason = %reason, "HSM keys available again");
        } else {
            tracing::warn!(keys = count, reason = %reason, "HSM keys unavailable");
        }
    }

    fn log(&self, level: LogLevel, message: RStr<'_>) {
        match level {
            LogLevel::ERROR => tracing::error!(target: "keybroker_agent::hsm", "{message}"),
            LogLevel::WARN => tracing::warn!(target: "keybroker_agent::hsm", "{message}"),
            LogLevel::INFO => tracing::info!(target: "keybroker_agent::hsm", "{message}"),
            _ => tracing::debug!(target: "keybroker_agent::hsm", "{message}"),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn blobs_split_into_iv_ciphertext_and_tag_and_foreign_ones_are_refused() {
        let mut blob = vec![BLOB_FORMAT_V1];
        blob.extend_from_slice(&[7; IV_BYTES]);
        blob.extend_from_slice(b"abc");
        blob.extend_from_slice(&[9; TAG_BYTES]);
        let sealed = split_blob(&blob).unwrap();
        assert_eq!(sealed.iv, [7; IV_BYTES]);
        assert_eq!(sealed.ciphertext, b"abc");
        assert_eq!(sealed.tag, [9; TAG_BYTES]);
        assert!(split_blob(&blob[..1 + IV_BYTES + TAG_BYTES - 1]).is_none());
        blob[0] = 2;
        assert!(split_blob(&blob).is_none());
    }
}
