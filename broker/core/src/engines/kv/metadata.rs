//! A secret's metadata (`metadata/:path`: read, write, patch, delete), listings, the
//! mount's `config`, and the rewrap of data keys after a rotation of the mount's key.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{
    document::{SecretDoc, SecretMetadata},
    path::SECRET_PREFIX,
    Kv, KvMount, SecretPath, KEY_NAME, WRITE_ATTEMPTS,
};
use crate::{
    engines::transit::{DecryptItem, RewrapItem, Transit},
    error::{Error, Result},
    store::Expect,
};

/// The mount storage key of the mount's `config`.
const CONFIG_ENTRY: &str = "config";

/// The mount storage key of the version of the mount's key that the latest completed
/// rewrap pass left every data key under.
const REWRAPPED_ENTRY: &str = "rewrapped";

/// What [`REWRAPPED_ENTRY`] holds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Rewrapped {
    key_version: u32,
}

/// Most `custom_metadata` pairs, and their longest key and value (Vault's limits).
const MAX_CUSTOM_METADATA_KEYS: usize = 64;
const MAX_CUSTOM_METADATA_KEY_LEN: usize = 128;
const MAX_CUSTOM_METADATA_VALUE_LEN: usize = 512;

/// A KV v2 mount's `config` (Vault API: kv v2, configure the KV engine).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KvConfig {
    /// Versions kept per secret (0: Vault's default, 10).
    pub max_versions: u32,
    /// Whether every write needs `cas`.
    pub cas_required: bool,
    /// Seconds after which a new version is deleted by itself (0: never).
    pub delete_version_after: u64,
}

/// What a metadata write or patch changes (`None`: unchanged).
#[derive(Clone, Debug, Default)]
pub struct MetadataUpdate {
    /// `max_versions`.
    pub max_versions: Option<u32>,
    /// `cas_required`.
    pub cas_required: Option<bool>,
    /// `delete_version_after`, seconds.
    pub delete_version_after: Option<u64>,
    /// `custom_metadata`: a write replaces it; a patch merges it, a `None` value removing
    /// its key.
    pub custom_metadata: Option<BTreeMap<String, Option<String>>>,
}

/// What a rewrap pass over a mount did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Versions whose data key was encrypted again under the latest key version.
    pub rewrapped: u64,
    /// Versions whose data key the latest key version already encrypted.
    pub current: u64,
}

/// Vault's `validateCustomMetadata`, with its messages.
fn check_custom_metadata(metadata: &BTreeMap<String, String>) -> Result<()> {
    const PREFIX: &str = "custom_metadata validation failed";
    if metadata.len() > MAX_CUSTOM_METADATA_KEYS {
        return Err(Error::invalid(format!(
            "{PREFIX}: payload must contain at most {MAX_CUSTOM_METADATA_KEYS} keys, provided {}",
            metadata.len()
        )));
    }
    let printable = |s: &str| !s.chars().any(char::is_control);
    let mut errors = Vec::new();
    for (key, value) in metadata {
        if key.is_empty() || key.len() > MAX_CUSTOM_METADATA_KEY_LEN {
            errors.push(format!(
                "{PREFIX}: length of key {key:?} is {} but must be 0 < len(key) <= {MAX_CUSTOM_METADATA_KEY_LEN}",
                key.len()
            ));
        }
        if value.is_empty() || value.len() > MAX_CUSTOM_METADATA_VALUE_LEN {
            errors.push(format!(
                "{PREFIX}: length of value for key {key:?} is {} but must be 0 < len(value) <= {MAX_CUSTOM_METADATA_VALUE_LEN}",
                value.len()
            ));
        }
        if !printable(key) {
            errors.push(format!(
                "{PREFIX}: key {key:?} contains unprintable characters"
            ));
        }
        if !printable(value) {
            errors.push(format!(
                "{PREFIX}: value for key {key:?} contains unprintable characters"
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(errors.join("; ")))
    }
}

impl Kv {
    /// The storage key of the secret at `path`.
    pub(super) fn secret_key(&self, mount: &KvMount<'_>, path: &SecretPath) -> String {
        self.paths
            .storage_key(mount.tenant.id, mount.mount.id, path, false)
    }

    /// The mount's `config` (kept by the node's cache of reads).
    pub async fn config(&self, mount: &KvMount<'_>) -> Result<KvConfig> {
        Ok(self
            .reads
            .get::<KvConfig>(&self.storage(mount), CONFIG_ENTRY)
            .await?
            .unwrap_or_default())
    }

    /// Replaces the mount's `config`.
    pub async fn set_config(&self, mount: &KvMount<'_>, config: &KvConfig) -> Result<()> {
        let written = self
            .storage(mount)
            .put(CONFIG_ENTRY, config, Expect::Any)
            .await;
        self.reads
            .forget(mount.tenant.id, mount.mount.id, CONFIG_ENTRY);
        written.map(|_| ())
    }

    /// The secret's metadata, if there is a secret.
    pub async fn read_metadata(
        &self,
        mount: &KvMount<'_>,
        path: &SecretPath,
    ) -> Result<Option<SecretMetadata>> {
        let key = self.secret_key(mount, path);
        Ok(self.load_read(mount, &key).await?.map(|doc| doc.metadata()))
    }

    /// Whether there is a secret at `path` (Vault's existence check).
    pub async fn exists(&self, mount: &KvMount<'_>, path: &SecretPath) -> Result<bool> {
        let key = self.secret_key(mount, path);
        let stored = self
            .reads
            .get::<super::document::StoredSecret>(&self.storage(mount), &key)
            .await?;
        Ok(stored.is_some())
    }

    /// Writes the secret's settings (`metadata/:path`), creating a secret without versions
    /// if there is none; `patch` merges `custom_metadata` and needs the secret to exist
    /// (`false` when it does not). Returns Vault's warnings.
    pub async fn write_metadata(
        &self,
        mount: &KvMount<'_>,
        path: &SecretPath,
        update: &MetadataUpdate,
        patch: bool,
    ) -> Result<Option<Vec<String>>> {
        let mut warnings = Vec::new();
        let config = self.config(mount).await?;
        if update.cas_required == Some(false) && config.cas_required {
            warnings.push(
                "\"cas_required\" set to false, but is mandated by backend config. This value \
                 will be ignored."
                    .to_owned(),
            );
        }
        let key = self.secret_key(mount, path);
        let _turn = self.write_turn(mount, &key).await;
        for _ in 0..WRITE_ATTEMPTS {
            let (mut doc, expected) = match self.load(mount, &key).await? {
                Some(loaded) => loaded,
                None if patch => return Ok(None),
                None => (SecretDoc::new(path.as_string(), self.now_nanos()), 0),
            };
            if let Some(max) = update.max_versions {
                doc.max_versions = max;
            }
            if let Some(cas) = update.cas_required {
                doc.cas_required = cas;
            }
            if let Some(after) = update.delete_version_after {
                doc.delete_version_after = after;
            }
            if let Some(given) = &update.custom_metadata {
                let mut merged = if patch {
                    doc.custom_metadata.clone().unwrap_or_default()
                } else {
                    BTreeMap::new()
                };
                for (k, v) in given {
                    match v {
                        Some(v) => {
                            merged.insert(k.clone(), v.clone());
                        }
                        None => {
                            merged.remove(k);
                        }
                    }
                }
                check_custom_metadata(&merged)?;
                doc.custom_metadata = Some(merged);
            }
            doc.updated_time = self.now_nanos();
            doc.metadata_version += 1;
            match self.save(mount, &key, &doc, expected).await {
                Ok(()) => return Ok(Some(warnings)),
                Err(Error::Conflict(_)) => continue,
                Err(error) => return Err(error),
            }
        }
        Err(Error::Conflict(
            "the secret was changed concurrently too often; try again".to_owned(),
        ))
    }

    /// Deletes the secret with every version (`DELETE metadata/:path`); a missing one is
    /// no error.
    pub async fn delete_metadata(&self, mount: &KvMount<'_>, path: &SecretPath) -> Result<()> {
        let key = self.secret_key(mount, path);
        let _turn = self.write_turn(mount, &key).await;
        let deleted = self.storage(mount).delete(&key, Expect::Any).await;
        self.reads.forget(mount.tenant.id, mount.mount.id, &key);
        deleted.map(|_| ())
    }

    /// The names directly in `folder`: secrets, and folders with a trailing `/`, sorted.
    pub async fn list(&self, mount: &KvMount<'_>, folder: &SecretPath) -> Result<Vec<String>> {
        let prefix = self
            .paths
            .storage_key(mount.tenant.id, mount.mount.id, folder, true);
        let keys = self.storage(mount).list(&prefix).await?;
        let depth = folder.segments().len();
        // One document per child: a secret's own, or any one below a subfolder, which
        // names the subfolder in its path.
        let mut children: BTreeMap<&str, (bool, Option<&str>)> = BTreeMap::new();
        for key in &keys {
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            match rest.split_once('/') {
                None => children.entry(rest).or_default().0 = true,
                Some((child, _)) => {
                    children.entry(child).or_default().1.get_or_insert(key);
                }
            }
        }
        let mut names = BTreeSet::new();
        for (child, (is_secret, below)) in children {
            let leaf_key = format!("{prefix}{child}");
            for (key, folder_name) in [
                (is_secret.then_some(leaf_key.as_str()), false),
                (below, true),
            ] {
                let Some(key) = key else { continue };
                let Some(doc) = self.load_read(mount, key).await? else {
                    continue; // deleted meanwhile
                };
                let Some(name) = doc.path.split('/').nth(depth) else {
                    continue;
                };
                names.insert(if folder_name {
                    format!("{name}/")
                } else {
                    name.to_owned()
                });
            }
        }
        Ok(names.into_iter().collect())
    }

    /// The version of the mount's key the latest completed rewrap pass left every data key
    /// under (0: none ran yet).
    pub async fn rewrapped_version(&self, mount: &KvMount<'_>) -> Result<u32> {
        Ok(self
            .storage(mount)
            .get::<Rewrapped>(REWRAPPED_ENTRY)
            .await?
            .map_or(0, |r| r.value.key_version))
    }

    /// How many data keys each version of the mount's key encrypts.
    pub async fn data_key_versions(&self, mount: &KvMount<'_>) -> Result<BTreeMap<u32, u64>> {
        let mut counts = BTreeMap::new();
        for key in self.storage(mount).list(SECRET_PREFIX).await? {
            let Some((doc, _)) = self.load(mount, &key).await? else {
                continue;
            };
            for dek in doc.versions.values().filter_map(|v| v.dek.as_deref()) {
                if let Ok((version, _)) = crate::engines::transit::ciphertext::parse(dek) {
                    *counts.entry(version).or_insert(0) += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Rewraps the mount's data keys if its key rotated since the last completed pass
    /// ([`Kv::rewrap_mount`]), then records the version they are all under. `None` when
    /// there was nothing to do.
    pub async fn rewrap_if_rotated(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
    ) -> Result<Option<RewrapReport>> {
        let latest = transit
            .read_key(mount.tenant, mount.mount.id, KEY_NAME)
            .await?
            .record
            .latest_version;
        if self.rewrapped_version(mount).await? >= latest {
            return Ok(None);
        }
        let report = self.rewrap_mount(transit, mount).await?;
        self.storage(mount)
            .put(
                REWRAPPED_ENTRY,
                &Rewrapped {
                    key_version: latest,
                },
                Expect::Any,
            )
            .await?;
        Ok(Some(report))
    }

    /// Encrypts every version's data key that an older version of the mount's key encrypts
    /// again under the latest one (after a rotation), so older key versions can go.
    pub async fn rewrap_mount(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
    ) -> Result<RewrapReport> {
        let latest = transit
            .read_key(mount.tenant, mount.mount.id, KEY_NAME)
            .await?
            .record
            .latest_version;
        let prefix = format!("v{latest}:");
        let mut report = RewrapReport::default();
        for key in self.storage(mount).list(SECRET_PREFIX).await? {
            let _turn = self.write_turn(mount, &key).await;
            for _ in 0..WRITE_ATTEMPTS {
                let Some((mut doc, expected)) = self.load(mount, &key).await? else {
                    break;
                };
                let id = doc.id.clone();
                let mut stale = Vec::new();
                for (number, version) in &doc.versions {
                    match &version.dek {
                        Some(dek)
                            if dek
                                .strip_prefix("vault:")
                                .is_some_and(|d| !d.starts_with(&prefix)) =>
                        {
                            stale.push(*number)
                        }
                        Some(_) => report.current += 1,
                        None => {}
                    }
                }
                if stale.is_empty() {
                    break;
                }
                let items = stale
                    .iter()
                    .filter_map(|n| {
                        let dek = doc.versions.get(n)?.dek.clone()?;
                        Some(RewrapItem {
                            decrypt: DecryptItem {
                                ciphertext: dek,
                                associated_data: super::binding(mount, &id, *n),
                                context: Vec::new(),
                                padding_scheme: None,
                            },
                            key_version: 0,
                        })
                    })
                    .collect();
                let rewrapped = transit
                    .rewrap(mount.tenant, mount.mount.id, KEY_NAME, items)
                    .await?;
                for (number, result) in stale.iter().zip(rewrapped) {
                    if let Some(version) = doc.versions.get_mut(number) {
                        version.dek = Some(result?.ciphertext);
                    }
                }
                match self.save(mount, &key, &doc, expected).await {
                    Ok(()) => {
                        report.rewrapped += stale.len() as u64;
                        break;
                    }
                    Err(Error::Conflict(_)) => continue,
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_metadata_limits_are_vaults() {
        let mut m = BTreeMap::new();
        m.insert("k".to_owned(), "v".to_owned());
        assert!(check_custom_metadata(&m).is_ok());
        m.insert("e".to_owned(), String::new());
        assert!(check_custom_metadata(&m).is_err());
        let many: BTreeMap<_, _> = (0..65).map(|i| (i.to_string(), "v".to_owned())).collect();
        assert!(check_custom_metadata(&many).is_err());
    }
}
