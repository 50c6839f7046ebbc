//! One secret as stored: its path, settings and versions (each version's data encrypted
//! under its own data key), the whole document sealed (`mod.rs`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DEFAULT_MAX_VERSIONS;

/// The mount storage entry of a secret: the sealed document, base64.
#[derive(Serialize, Deserialize)]
pub(super) struct StoredSecret {
    pub(super) sealed: String,
}

/// A secret's document, as sealed.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct SecretDoc {
    /// The secret's path (only ever stored sealed).
    pub(super) path: String,
    /// A random id of this secret, made when it was first written: part of every version's
    /// binding, so a version moved to another secret does not decrypt.
    pub(super) id: String,
    /// Unix nanoseconds.
    pub(super) created_time: i64,
    /// Unix nanoseconds.
    pub(super) updated_time: i64,
    pub(super) current_version: u64,
    pub(super) oldest_version: u64,
    pub(super) max_versions: u32,
    pub(super) cas_required: bool,
    /// Seconds (0: never).
    pub(super) delete_version_after: u64,
    pub(super) custom_metadata: Option<BTreeMap<String, String>>,
    /// Writes of the metadata itself (OpenBao's `current_metadata_version`).
    #[serde(default)]
    pub(super) metadata_version: u64,
    pub(super) versions: BTreeMap<u64, VersionDoc>,
}

/// One version, as sealed.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct VersionDoc {
    /// Unix nanoseconds.
    pub(super) created_time: i64,
    /// Unix nanoseconds; the version reads as deleted from then on.
    pub(super) deletion_time: Option<i64>,
    pub(super) destroyed: bool,
    /// The version's data key, encrypted by the mount's key (a transit ciphertext); none
    /// once destroyed.
    pub(super) dek: Option<String>,
    /// `nonce ‖ ciphertext ‖ tag` of the data's JSON, base64; none once destroyed.
    pub(super) data: Option<String>,
}

/// What a secret's metadata says (Vault's `metadata/:path` read).
#[derive(Clone, Debug)]
pub struct SecretMetadata {
    /// Unix nanoseconds.
    pub created_time: i64,
    /// Unix nanoseconds.
    pub updated_time: i64,
    /// The latest version (0: none yet).
    pub current_version: u64,
    /// The oldest version kept (0 until a version was pruned).
    pub oldest_version: u64,
    /// The secret's own `max_versions` (0: the mount's).
    pub max_versions: u32,
    /// Whether writes need `cas`.
    pub cas_required: bool,
    /// Seconds (0: never).
    pub delete_version_after: u64,
    /// The secret's `custom_metadata`.
    pub custom_metadata: Option<BTreeMap<String, String>>,
    /// Writes of the metadata itself.
    pub metadata_version: u64,
    /// Every version kept.
    pub versions: BTreeMap<u64, VersionMetadata>,
}

/// One version's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionMetadata {
    /// The version number.
    pub version: u64,
    /// Unix nanoseconds.
    pub created_time: i64,
    /// Unix nanoseconds (none: not deleted, nor due to be).
    pub deletion_time: Option<i64>,
    /// Whether its data is gone for good.
    pub destroyed: bool,
}

impl VersionDoc {
    /// Whether the version reads as deleted at `now` (nanoseconds).
    pub(super) fn is_deleted(&self, now: i64) -> bool {
        self.deletion_time.is_some_and(|t| t <= now)
    }

    pub(super) fn metadata(&self, version: u64) -> VersionMetadata {
        VersionMetadata {
            version,
            created_time: self.created_time,
            deletion_time: self.deletion_time,
            destroyed: self.destroyed,
        }
    }
}

impl SecretDoc {
    /// A secret with no version yet.
    pub(super) fn new(path: String, now: i64) -> Self {
        Self {
            path,
            id: hex::encode(crate::crypto::random_bytes(16).as_slice()),
            created_time: now,
            updated_time: now,
            current_version: 0,
            oldest_version: 0,
            max_versions: 0,
            cas_required: false,
            delete_version_after: 0,
            custom_metadata: None,
            metadata_version: 0,
            versions: BTreeMap::new(),
        }
    }

    pub(super) fn metadata(&self) -> SecretMetadata {
        SecretMetadata {
            created_time: self.created_time,
            updated_time: self.updated_time,
            current_version: self.current_version,
            oldest_version: self.oldest_version,
            max_versions: self.max_versions,
            cas_required: self.cas_required,
            delete_version_after: self.delete_version_after,
            custom_metadata: self.custom_metadata.clone(),
            metadata_version: self.metadata_version,
            versions: self
                .versions
                .iter()
                .map(|(n, v)| (*n, v.metadata(*n)))
                .collect(),
        }
    }

    /// Adds version `current_version + 1` and prunes the oldest past `max_versions` (the
    /// larger of the secret's and the mount's, else [`DEFAULT_MAX_VERSIONS`]), as Vault's
    /// `AddVersion` does.
    pub(super) fn add_version(&mut self, version: VersionDoc, mount_max_versions: u32) -> u64 {
        self.current_version += 1;
        self.updated_time = version.created_time;
        if self.created_time == 0 {
            // A secret first written now was made with its first version, as in Vault.
            self.created_time = version.created_time;
        }
        self.versions.insert(self.current_version, version);
        let max = match self.max_versions.max(mount_max_versions) {
            0 => DEFAULT_MAX_VERSIONS,
            max => max,
        };
        if self.current_version - self.oldest_version >= u64::from(max) {
            let delete_up_to = self.current_version - u64::from(max);
            self.versions.retain(|n, _| *n > delete_up_to);
            self.oldest_version = delete_up_to + 1;
        }
        self.current_version
    }
}
