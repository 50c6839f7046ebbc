//! The transit engine: named, versioned keys per (tenant, mount), Vault's transit API
//! semantics, with each key's versions served by a backend instance in envelope or direct
//! mode.
//!
//! Key metadata is cached in memory as one immutable `KeyState` per key, replaced on every
//! change; per-version encryption counters live in `Arc`s that survive those replacements.
//!
//! One file per operation: `keys.rs` (create, read, list, delete), `config.rs` (a key's
//! configuration), `rotate.rs` (by hand and when due), `encrypt.rs`, `decrypt.rs`
//! (RSA keys: `rsa.rs`), `rewrap.rs`, `datakey.rs`, `sign.rs`, `verify.rs`, `hmac.rs`
//! (HMACs and their verification), `trim.rs`, `backup.rs`, `restore.rs`, `hash.rs` (no key)
//! and `cache_config.rs` (the mount's `cache-config`), and BYOK: `export.rs`,
//! `wrapping_key.rs` (each mount's RSA wrapping key) and `import.rs`. Around them:
//! `cache.rs` (the keys held in memory, and what invalidates them), `envelope.rs` (each
//! version's data key in the DEK cache), `derive.rs` (a derived key's key per `context`, and
//! convergent encryption's nonce), `counter.rs`, `ciphertext.rs` and `key_type.rs`.

mod backup;
mod cache;
pub mod cache_config;
pub mod ciphertext;
mod config;
mod counter;
mod datakey;
mod decrypt;
pub mod derive;
mod encrypt;
mod envelope;
mod export;
mod hash;
mod hmac;
mod import;
mod key_format;
mod key_type;
mod keys;
mod restore;
mod rewrap;
mod rotate;
mod rsa;
mod sign;
mod trim;
mod verify;
mod wrapping_key;

use std::{
    collections::HashMap,
    sync::{atomic::AtomicU64, Arc, RwLock},
};

pub use self::rsa::PaddingScheme;
pub use backup::backup_is_well_formed;
pub use config::KeyConfigUpdate;
pub use datakey::{DataKeyOutput, DataKeyRequest};
pub use decrypt::DecryptItem;
pub use encrypt::{EncryptItem, EncryptOutput};
pub use export::{ExportType, ExportedKeys};
pub use hash::{decode_go_base64, hash_data, HashFunction, HashRequest, SumFormat};
pub use hmac::HmacVerifyItem;
pub use import::ImportOptions;
pub use key_format::ExportFormat;
pub use key_type::KeyType;
pub use keys::{CreateKeyOptions, KeyInfo, VersionInfo};
pub use rewrap::RewrapItem;
pub use sign::{HashAlgorithm, Marshaling, SignOptions, SignOutput};
pub use verify::VerifyItem;
pub use wrapping_key::SecretSealer;

use crate::{
    backend::{BackendInstance, Backends},
    clock::Clock,
    crypto::Binding,
    error::{Error, Result},
    store::{KeyRecord, KeyVersionRecord, Store},
    MountId, Tenant, TenantId,
};
use counter::Counter;

/// Key type of symmetric AES-256-GCM keys, as Vault names it.
pub const AES256_GCM96: &str = "aes256-gcm96";

/// Limits and defaults of the transit engine.
#[derive(Clone, Debug)]
pub struct TransitSettings {
    /// Encryptions per key version before the key rotates by itself (below 2^32).
    pub rotation_threshold: u64,
    /// Encryption counts reserved in the store at a time.
    pub counter_block: u64,
    /// Smallest non-zero `auto_rotate_period`, in seconds (Vault: one hour).
    pub min_auto_rotate_period: u64,
    /// Backend instance of keys created without `backend`.
    pub default_backend: String,
    /// Most items in one `batch_input`.
    pub max_batch_items: usize,
}

impl Default for TransitSettings {
    fn default() -> Self {
        Self {
            rotation_threshold: 4_000_000_000,
            counter_block: 10_000,
            min_auto_rotate_period: 3600,
            default_backend: "local".to_owned(),
            max_batch_items: 10_000,
        }
    }
}

/// One version as held in memory.
struct VersionState {
    record: KeyVersionRecord,
    counter: Counter,
    /// Single-flight for filling the DEK cache of this version.
    fill: tokio::sync::Mutex<()>,
}

/// A key as held in memory: its record and every version it keeps, ascending from the
/// first kept ([`KeyState::first_version`]) to the latest.
struct KeyState {
    record: KeyRecord,
    versions: Vec<Arc<VersionState>>,
}

impl KeyState {
    /// The oldest version kept: 1, or `min_available_version` once the key was trimmed.
    fn first_version(&self) -> u32 {
        self.record.min_available_version.max(1)
    }

    /// Version `version`, if the key keeps it.
    fn version(&self, version: u32) -> Option<&Arc<VersionState>> {
        let index = usize::try_from(version.checked_sub(self.first_version())?).ok()?;
        self.versions.get(index)
    }

    /// The version a ciphertext or signature (`what`) names, if it may still be read: at
    /// most the latest, at least `min_decryption_version` (Vault's rules).
    fn readable_version(&self, what: &str, number: u32) -> Result<Arc<VersionState>> {
        let record = &self.record;
        if number > record.latest_version {
            return Err(Error::invalid(format!(
                "invalid {what}: key version {number} is higher than the latest version {}",
                record.latest_version
            )));
        }
        // A trimmed version is always below min_decryption_version (a trim never goes
        // past it): gone for good, it reads as too old, as in Vault.
        if number < record.min_decryption_version || number < self.first_version() {
            return Err(Error::invalid(
                "ciphertext or signature version is disallowed by policy (too old)",
            ));
        }
        self.version(number)
            .cloned()
            .ok_or_else(|| Error::internal("missing key version"))
    }

    fn binding(&self, version: u32) -> Binding {
        Binding {
            tenant: self.record.tenant,
            key: self.record.id,
            version,
        }
    }
}

/// Keys held in memory, per (tenant, mount), by name (looked up by `&str`, no allocation).
type KeyTable = HashMap<(TenantId, MountId), HashMap<String, Arc<KeyState>>>;

/// The transit engine.
pub struct Transit {
    store: Arc<dyn Store>,
    backends: Arc<dyn Backends>,
    clock: Arc<dyn Clock>,
    settings: TransitSettings,
    keys: RwLock<KeyTable>,
    /// Bumped when a reload starts or keys are forgotten: a reload that another overtook
    /// returns its state without caching it, so an older read never replaces a newer one.
    generation: AtomicU64,
    /// Each mount's wrapping key for BYOK imports (`wrapping_key.rs`).
    wrapping_keys: wrapping_key::WrappingKeys,
}

impl std::fmt::Debug for Transit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transit")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// Checks a key name: letters, digits, `-`, `_`, `.`; no `..`; at most 128 bytes.
pub fn validate_key_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 128
        && !name.contains("..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            "invalid key name: use 1-128 letters, digits, '-', '_' or '.', without '..'",
        ))
    }
}

impl Transit {
    /// The engine over a store and a set of backend instances.
    pub fn new(
        store: Arc<dyn Store>,
        backends: Arc<dyn Backends>,
        clock: Arc<dyn Clock>,
        settings: TransitSettings,
    ) -> Self {
        Self {
            store,
            backends,
            clock,
            settings,
            keys: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            wrapping_keys: wrapping_key::WrappingKeys::new(None),
        }
    }

    /// The backend instance a key is created in: `requested`, or the default.
    pub fn backend_for<'a>(&'a self, requested: Option<&'a str>) -> &'a str {
        requested
            .filter(|b| !b.is_empty())
            .unwrap_or(&self.settings.default_backend)
    }

    /// The backend instance serving a key, if loaded and allowed for the tenant.
    fn instance(&self, tenant: &Tenant, name: &str) -> Result<Arc<dyn BackendInstance>> {
        match self.backends.get(name) {
            Some(instance) if instance.allows_tenant(&tenant.name) => Ok(instance),
            Some(_) => Err(Error::invalid(format!(
                "backend instance \"{name}\" is not available to this tenant"
            ))),
            None => Err(Error::Unavailable(format!(
                "backend instance \"{name}\" is not loaded"
            ))),
        }
    }

    /// Refuses an empty batch, and one of more than `max_batch_items`.
    fn check_batch_size(&self, items: usize) -> Result<()> {
        if items == 0 {
            return Err(Error::invalid("missing plaintext or batch_input"));
        }
        if items > self.settings.max_batch_items {
            return Err(Error::invalid(format!(
                "batch_input has more than {} items",
                self.settings.max_batch_items
            )));
        }
        Ok(())
    }
}

/// Per-item results of a batch; the outer error fails the whole request.
type ItemResults<T> = Vec<Result<T>>;

/// A key record for unit tests: an envelope `aes256-gcm96` key with these versions.
#[cfg(test)]
fn test_record(latest: u32, available: u32, decryption: u32, encryption: u32) -> KeyRecord {
    KeyRecord {
        id: crate::KeyId::random(),
        tenant: TenantId::ROOT,
        mount: MountId::random(),
        name: "k".to_owned(),
        key_type: AES256_GCM96.to_owned(),
        backend: "local".to_owned(),
        mode: crate::store::KeyMode::Envelope,
        backend_reference: None,
        min_available_version: available,
        min_decryption_version: decryption,
        min_encryption_version: encryption,
        deletion_allowed: false,
        bound: false,
        auto_rotate_period: 0,
        latest_version: latest,
        created_at: 0,
        rotated_at: 0,
        options: crate::store::KeyOptions::default(),
    }
}
