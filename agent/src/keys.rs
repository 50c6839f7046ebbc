//! The agent's keys: named AES-256 keys from key files or environment variables, or held
//! in an HSM ([`crate::hsm`]).
//!
//! A key file holds either the 32 raw key bytes (a file of exactly 32 bytes) or their
//! standard base64 (any other length; surrounding whitespace ignored), e.g. made with
//! `head -c 32 /dev/urandom > data.key` or `openssl rand -base64 32 > data.key`, then
//! `chmod 600`. A file that group or others may access is refused. An environment variable
//! holds the base64 form. Errors name the key and where it came from, never its bytes.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aes_gcm::{Aes256Gcm, KeyInit as _};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use zeroize::Zeroizing;

use crate::files::{read_private_file, PrivateFileError};
use crate::hsm::{Hsm, HsmKey};

/// Length of an AES-256 key in bytes.
pub const KEY_BYTES: usize = 32;

/// Longest accepted key name.
const MAX_NAME_CHARS: usize = 128;

/// One AES-256 key. Wiped on drop; `Debug` shows nothing of it.
pub struct AgentKey(Zeroizing<[u8; KEY_BYTES]>);

impl AgentKey {
    /// Takes the key bytes (already in wiped-on-drop memory).
    pub fn new(bytes: Zeroizing<[u8; KEY_BYTES]>) -> Self {
        Self(bytes)
    }

    /// A fresh random key (for tests and for operators' tooling).
    pub fn generate() -> Self {
        use rand::RngCore as _;
        let mut bytes = Zeroizing::new([0u8; KEY_BYTES]);
        rand::rngs::OsRng.fill_bytes(bytes.as_mut());
        Self(bytes)
    }

    /// An AES-256-GCM cipher for one operation.
    ///
    /// Made per operation rather than kept: the AES crate does not wipe its round keys on
    /// drop here, so a long-lived cipher would keep an expanded copy of the key in memory for
    /// the life of the process.
    pub(crate) fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }
}

impl fmt::Debug for AgentKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("AgentKey([redacted])")
    }
}

/// Where a key's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A key file (raw 32 bytes or base64), readable by its owner only.
    File(PathBuf),
    /// An environment variable holding the base64 of the key.
    Env(String),
    /// An AES-256 key in the configured HSM: `label:<CKA_LABEL>` or `id:<hex CKA_ID>`.
    Hsm(String),
}

impl fmt::Display for KeySource {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(formatter, "key file {}", path.display()),
            Self::Env(variable) => write!(formatter, "environment variable {variable}"),
            Self::Hsm(backend_key) => write!(formatter, "HSM object {backend_key}"),
        }
    }
}

/// Why a key could not be loaded. No variant carries key material or the text it was read
/// from.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The key file could not be opened or read.
    #[error("key {name:?}: cannot read key file {path}: {source}")]
    Read {
        /// The key's name.
        name: String,
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The key file may be accessed by group or others.
    #[error(
        "key {name:?}: key file {path} is accessible to group or others (mode {mode:o}); \
         chmod 600 it"
    )]
    Permissions {
        /// The key's name.
        name: String,
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The environment variable is not set.
    #[error("key {name:?}: environment variable {variable} is not set")]
    EnvMissing {
        /// The key's name.
        name: String,
        /// The variable.
        variable: String,
    },
    /// The bytes found are not an AES-256 key.
    #[error("key {name:?}: {source_description} is not an AES-256 key: {reason}")]
    Malformed {
        /// The key's name.
        name: String,
        /// Where the bytes came from ([`KeySource`] in words).
        source_description: String,
        /// What is wrong, in words that quote nothing of the input.
        reason: String,
    },
    /// The name is not usable as a key name.
    #[error("key name {name:?} is invalid: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Two keys have the same name.
    #[error("key {name:?} is defined more than once")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// The key is in an HSM, but no HSM is configured.
    #[error("key {name:?}: it is in an HSM, but no HSM is configured")]
    HsmNotConfigured {
        /// The key's name.
        name: String,
    },
    /// The HSM object could not be bound: missing, ambiguous, of the wrong type, or the
    /// token could not be reached.
    #[error("key {name:?}: HSM object {backend_key}: {reason}")]
    Hsm {
        /// The key's name.
        name: String,
        /// `label:<CKA_LABEL>` or `id:<hex CKA_ID>`.
        backend_key: String,
        /// The PKCS#11 backend's reason.
        reason: String,
    },
}

/// Checks a key name: 1 to 128 characters of `A-Z a-z 0-9 . _ -`. (`*` is refused: in the
/// allowlist it means "every key".)
pub fn validate_key_name(name: &str) -> Result<(), KeyError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.chars().count() > MAX_NAME_CHARS {
        Some("it is longer than 128 characters")
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Some("use only letters, digits, '.', '_' and '-'")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(KeyError::InvalidName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// Loads one software key from `source` (a file or a variable). `env` looks up environment
/// variables (pass `|name| std::env::var_os(name)`; tests pass their own). An HSM source is
/// [`KeyError::HsmNotConfigured`]: HSM keys are bound by [`KeyStore::load_with_hsm`].
pub fn load_key(
    name: &str,
    source: &KeySource,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<AgentKey, KeyError> {
    match source {
        KeySource::File(path) => load_file(name, path),
        KeySource::Env(variable) => load_env(name, variable, env),
        KeySource::Hsm(_) => Err(KeyError::HsmNotConfigured {
            name: name.to_owned(),
        }),
    }
}

fn load_file(name: &str, path: &Path) -> Result<AgentKey, KeyError> {
    let contents = read_private_file(path).map_err(|error| match error {
        PrivateFileError::Io(source) => KeyError::Read {
            name: name.to_owned(),
            path: path.to_owned(),
            source,
        },
        PrivateFileError::Permissions(mode) => KeyError::Permissions {
            name: name.to_owned(),
            path: path.to_owned(),
            mode,
        },
    })?;
    let source_description = KeySource::File(path.to_owned()).to_string();
    if contents.len() == KEY_BYTES {
        let mut key = Zeroizing::new([0u8; KEY_BYTES]);
        key.copy_from_slice(&contents);
        return Ok(AgentKey::new(key));
    }
    decode_base64(name, &source_description, &contents)
}

fn load_env(
    name: &str,
    variable: &str,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Result<AgentKey, KeyError> {
    let source_description = KeySource::Env(variable.to_owned()).to_string();
    let value = env(variable).ok_or_else(|| KeyError::EnvMissing {
        name: name.to_owned(),
        variable: variable.to_owned(),
    })?;
    match value.into_string() {
        Ok(text) => {
            let text = Zeroizing::new(text);
            decode_base64(name, &source_description, text.as_bytes())
        }
        Err(value) => {
            // Wipe what we were handed before reporting.
            drop(Zeroizing::new(value.into_encoded_bytes()));
            Err(KeyError::Malformed {
                name: name.to_owned(),
                source_description,
                reason: "not base64 (the value is not even UTF-8)".to_owned(),
            })
        }
    }
}

/// Standard base64 (surrounding whitespace ignored) of exactly [`KEY_BYTES`] bytes.
fn decode_base64(name: &str, source_description: &str, text: &[u8]) -> Result<AgentKey, KeyError> {
    let malformed = |reason: String| KeyError::Malformed {
        name: name.to_owned(),
        source_description: source_description.to_owned(),
        reason,
    };
    let trimmed = text.trim_ascii();
    if trimmed.is_empty() {
        return Err(malformed("it is empty".to_owned()));
    }
    // Sized up front so decoding never reallocates and leaves a stray copy behind.
    let mut decoded = Zeroizing::new(Vec::with_capacity(base64::decoded_len_estimate(
        trimmed.len(),
    )));
    // The decoder's own error names the offending byte: report the reason only.
    STANDARD.decode_vec(trimmed, &mut decoded).map_err(|_| {
        malformed(format!(
            "neither {KEY_BYTES} raw bytes nor base64 (standard alphabet, padded)"
        ))
    })?;
    if decoded.len() != KEY_BYTES {
        return Err(malformed(format!(
            "the base64 decodes to {} bytes, an AES-256 key is {KEY_BYTES}",
            decoded.len()
        )));
    }
    let mut key = Zeroizing::new([0u8; KEY_BYTES]);
    key.copy_from_slice(&decoded);
    Ok(AgentKey::new(key))
}

/// One of the agent's keys: its bytes in the agent's memory, or a reference to a key that
/// stays in the HSM.
#[derive(Debug)]
pub enum StoredKey {
    /// An AES-256 key from a file or a variable.
    Software(AgentKey),
    /// An AES-256 key in the HSM.
    Hsm(HsmKey),
}

impl From<AgentKey> for StoredKey {
    fn from(key: AgentKey) -> Self {
        Self::Software(key)
    }
}

impl From<HsmKey> for StoredKey {
    fn from(key: HsmKey) -> Self {
        Self::Hsm(key)
    }
}

/// The agent's keys by name.
#[derive(Default)]
pub struct KeyStore {
    keys: BTreeMap<String, StoredKey>,
}

impl KeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads every `(name, source)` without an HSM (an HSM source is
    /// [`KeyError::HsmNotConfigured`]); see [`KeyStore::load_with_hsm`].
    pub fn load<'a>(
        specs: impl IntoIterator<Item = (&'a str, &'a KeySource)>,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Self, KeyError> {
        Self::load_with_hsm(specs, env, None)
    }

    /// Loads every `(name, source)`, binding HSM keys in `hsm`; the first failure stops
    /// loading (keys loaded so far are wiped as the partial store is dropped).
    pub fn load_with_hsm<'a>(
        specs: impl IntoIterator<Item = (&'a str, &'a KeySource)>,
        env: &dyn Fn(&str) -> Option<OsString>,
        hsm: Option<&Arc<Hsm>>,
    ) -> Result<Self, KeyError> {
        let mut store = Self::new();
        for (name, source) in specs {
            validate_key_name(name)?;
            if store.contains(name) {
                return Err(KeyError::Duplicate {
                    name: name.to_owned(),
                });
            }
            let key: StoredKey = match (source, hsm) {
                (KeySource::Hsm(backend_key), Some(hsm)) => hsm
                    .bind(name, backend_key)
                    .map_err(|reason| KeyError::Hsm {
                        name: name.to_owned(),
                        backend_key: backend_key.clone(),
                        reason,
                    })?
                    .into(),
                _ => load_key(name, source, env)?.into(),
            };
            store.insert(name, key)?;
        }
        Ok(store)
    }

    /// Adds a key under `name` (checked by [`validate_key_name`]); a name already present is
    /// refused.
    pub fn insert(&mut self, name: &str, key: impl Into<StoredKey>) -> Result<(), KeyError> {
        validate_key_name(name)?;
        if self.keys.contains_key(name) {
            return Err(KeyError::Duplicate {
                name: name.to_owned(),
            });
        }
        self.keys.insert(name.to_owned(), key.into());
        Ok(())
    }

    /// The key named `name`.
    pub fn get(&self, name: &str) -> Option<&StoredKey> {
        self.keys.get(name)
    }

    /// Whether a key named `name` is loaded.
    pub fn contains(&self, name: &str) -> bool {
        self.keys.contains_key(name)
    }

    /// The names of the loaded keys, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.keys.keys().map(String::as_str)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

impl fmt::Debug for KeyStore {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("KeyStore")
            .field("names", &self.keys.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;

    /// 32 bytes of 0x41 ('A'), and its base64.
    const KEY: [u8; 32] = [0x41; 32];
    const KEY_B64: &str = "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=";

    fn key_file(contents: &[u8], mode: u32) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(contents).unwrap();
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        file
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    fn key_bytes(key: &AgentKey) -> [u8; 32] {
        *key.0
    }

    #[test]
    fn an_hsm_key_without_an_hsm_is_refused_naming_the_key() {
        let source = KeySource::Hsm("label:acme-kek".into());
        let error = KeyStore::load([("data", &source)], &no_env).unwrap_err();
        assert!(
            matches!(error, KeyError::HsmNotConfigured { .. }),
            "{error:?}"
        );
        assert!(error.to_string().contains("\"data\""), "{error}");
        assert_eq!(source.to_string(), "HSM object label:acme-kek");
    }

    #[test]
    fn key_file_in_base64_or_raw_loads() {
        let base64 = key_file(format!("{KEY_B64}\n").as_bytes(), 0o600);
        let key = load_key("data", &KeySource::File(base64.path().into()), &no_env).unwrap();
        assert_eq!(key_bytes(&key), KEY);

        let raw_bytes: Vec<u8> = (0..32).collect();
        let raw = key_file(&raw_bytes, 0o400);
        let key = load_key("data", &KeySource::File(raw.path().into()), &no_env).unwrap();
        assert_eq!(key_bytes(&key).to_vec(), raw_bytes);
    }

    #[test]
    fn key_file_readable_by_group_or_others_is_refused_naming_the_mode() {
        for mode in [0o640, 0o604, 0o660, 0o644] {
            let file = key_file(KEY_B64.as_bytes(), mode);
            let error =
                load_key("data", &KeySource::File(file.path().into()), &no_env).unwrap_err();
            assert!(matches!(error, KeyError::Permissions { .. }), "{error:?}");
            let message = error.to_string();
            assert!(message.contains(&format!("mode {mode:o}")), "{message}");
            assert!(message.contains("chmod 600"), "{message}");
            assert!(message.contains("\"data\""), "{message}");
        }
    }

    #[test]
    fn missing_key_file_is_a_read_error_naming_the_path() {
        let path = PathBuf::from("/nonexistent/keybroker-agent/data.key");
        let error = load_key("data", &KeySource::File(path), &no_env).unwrap_err();
        assert!(matches!(error, KeyError::Read { .. }), "{error:?}");
        assert!(error
            .to_string()
            .contains("/nonexistent/keybroker-agent/data.key"));
    }

    #[test]
    fn malformed_key_files_are_refused_without_echoing_them() {
        let cases: [&[u8]; 5] = [
            b"",
            b"not*base64*at*all*secretish-content\n",
            // Base64 of 16 bytes: valid base64, wrong length.
            b"c2VjcmV0aXNoLWJ5dGVzIQ==",
            // 33 raw bytes (a raw key with a newline).
            b"secretish-raw-key-bytes-32-long!\n",
            // Base64 of 48 bytes.
            b"c2VjcmV0aXNoLWJ5dGVzIWMyVmpjbVYwYVhOb0xXSjVkR1Z6SVE9PWMyVmpjbVYwYVhOb0xX",
        ];
        for contents in cases {
            let file = key_file(contents, 0o600);
            let error =
                load_key("logs", &KeySource::File(file.path().into()), &no_env).unwrap_err();
            assert!(matches!(error, KeyError::Malformed { .. }), "{error:?}");
            let shown = format!("{error} {error:?}");
            assert!(!shown.contains("secretish"), "{shown}");
            assert!(!shown.contains("c2VjcmV0"), "{shown}");
            assert!(shown.contains("\"logs\""), "{shown}");
        }
    }

    #[test]
    fn env_key_loads_from_base64_and_refuses_bad_values_without_echoing_them() {
        let env = |name: &str| match name {
            "AGENT_KEY" => Some(OsString::from(format!("  {KEY_B64}\n"))),
            "AGENT_KEY_SHORT" => Some(OsString::from("c2VjcmV0aXNoLWJ5dGVzIQ==")),
            "AGENT_KEY_GARBAGE" => Some(OsString::from("secretish!!")),
            _ => None,
        };
        let key = load_key("data", &KeySource::Env("AGENT_KEY".into()), &env).unwrap();
        assert_eq!(key_bytes(&key), KEY);

        for variable in ["AGENT_KEY_SHORT", "AGENT_KEY_GARBAGE"] {
            let error = load_key("data", &KeySource::Env(variable.into()), &env).unwrap_err();
            assert!(matches!(error, KeyError::Malformed { .. }), "{error:?}");
            let shown = format!("{error} {error:?}");
            assert!(shown.contains(variable), "{shown}");
            assert!(!shown.contains("secretish"), "{shown}");
            assert!(!shown.contains("c2VjcmV0"), "{shown}");
        }

        let error = load_key("data", &KeySource::Env("AGENT_KEY_UNSET".into()), &env).unwrap_err();
        assert!(matches!(error, KeyError::EnvMissing { .. }), "{error:?}");
        assert!(error.to_string().contains("AGENT_KEY_UNSET is not set"));
    }

    #[test]
    fn env_key_loads_through_the_real_environment_lookup() {
        // PATH is always set and is not a key: proves `std::env::var_os` is usable as the
        // lookup without mutating the process environment from a test.
        let error = load_key("data", &KeySource::Env("PATH".into()), &|name| {
            std::env::var_os(name)
        })
        .unwrap_err();
        assert!(matches!(error, KeyError::Malformed { .. }), "{error:?}");
    }

    #[test]
    fn store_holds_several_keys_and_refuses_duplicates_and_bad_names() {
        let data = key_file(KEY_B64.as_bytes(), 0o600);
        let data_source = KeySource::File(data.path().into());
        let env_source = KeySource::Env("LOGS_KEY".into());
        let env = |name: &str| (name == "LOGS_KEY").then(|| OsString::from(KEY_B64));
        let store = KeyStore::load([("data", &data_source), ("logs", &env_source)], &env).unwrap();
        assert_eq!(store.names().collect::<Vec<_>>(), ["data", "logs"]);
        assert!(store.get("data").is_some() && store.get("logs").is_some());
        assert!(store.get("other").is_none());

        let error =
            KeyStore::load([("data", &data_source), ("data", &env_source)], &env).unwrap_err();
        assert!(matches!(error, KeyError::Duplicate { .. }), "{error:?}");

        for name in ["", "*", "a b", "x/y", &"k".repeat(129)] {
            let error = KeyStore::load([(name, &data_source)], &env).unwrap_err();
            assert!(
                matches!(error, KeyError::InvalidName { .. }),
                "{name:?}: {error:?}"
            );
        }
    }

    #[test]
    fn debug_of_keys_shows_no_key_bytes() {
        let mut store = KeyStore::new();
        store
            .insert("data", AgentKey::new(Zeroizing::new(KEY)))
            .unwrap();
        let shown = format!("{store:?} {:?}", store.get("data").unwrap());
        assert!(shown.contains("data"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
        assert!(!shown.contains("65"), "{shown}");
        assert!(
            !shown.contains("AAAA") && !shown.contains(KEY_B64),
            "{shown}"
        );
    }
}
