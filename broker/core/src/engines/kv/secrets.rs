//! A secret's data: read, write, patch, soft delete, undelete, destroy and subkeys (Vault
//! KV v2's `data/`, `delete/`, `undelete/`, `destroy/`, `subkeys/`), and version 1's
//! read, write and delete of the same documents.
//!
//! Every change is one read of the secret's document and one compare-and-set of it;
//! losing the compare-and-set to another writer (on this node or another) reads again and
//! decides again, so `cas` is checked against what is really stored.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use super::{
    document::{SecretDoc, VersionDoc, VersionMetadata},
    metadata::KvConfig,
    Kv, KvMount, SecretPath, WRITE_ATTEMPTS,
};
use crate::{
    engines::transit::Transit,
    error::{Error, Result},
};

/// A version as a read or write reports it: its metadata and the secret's
/// `custom_metadata`.
#[derive(Clone, Debug)]
pub struct Written {
    /// The version's metadata.
    pub metadata: VersionMetadata,
    /// The secret's `custom_metadata`.
    pub custom_metadata: Option<BTreeMap<String, String>>,
}

/// What a read of a version finds.
#[derive(Debug)]
pub enum DataRead {
    /// No such secret or version (404, no body).
    Missing,
    /// The version is deleted or destroyed (404 with its metadata, as Vault answers).
    Gone(Written),
    /// The version's data (JSON text of an object).
    Found(Written, Zeroizing<Vec<u8>>),
}

/// What a change of versions does: `delete/` (or `DELETE data/`), `undelete/`, `destroy/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionChange {
    /// A soft delete: the version reads as deleted from now on.
    Delete,
    /// Undoes a soft delete (not a destruction).
    Undelete,
    /// Destroys the version's data for good.
    Destroy,
}

fn conflict() -> Error {
    Error::Conflict("the secret was changed concurrently too often; try again".to_owned())
}

/// Vault's `validateCheckAndSetOption`.
fn check_cas(cas: Option<u64>, config: &KvConfig, doc: &SecretDoc) -> Result<()> {
    match cas {
        Some(cas) if cas != doc.current_version => Err(Error::invalid(
            "check-and-set parameter did not match the current version",
        )),
        Some(_) => Ok(()),
        None if config.cas_required || doc.cas_required => Err(Error::invalid(
            "check-and-set parameter required for this call",
        )),
        None => Ok(()),
    }
}

/// When a version made at `created` is deleted by itself: after the shorter of the mount's
/// and the secret's `delete_version_after` that is set (Vault's `deletionTime`).
fn deletion_time(created: i64, config: &KvConfig, doc: &SecretDoc) -> Option<i64> {
    let after = [config.delete_version_after, doc.delete_version_after]
        .into_iter()
        .filter(|d| *d > 0)
        .min()?;
    let nanos = i64::try_from(after).ok()?.checked_mul(1_000_000_000)?;
    created.checked_add(nanos)
}

/// `value` with every leaf replaced by null, down to `depth` levels (0: all), as Vault's
/// `subkeys` answers.
fn subkeys(value: &serde_json::Value, depth: u64, level: u64) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) if depth == 0 || level < depth => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), subkeys(v, depth, level + 1)))
                .collect(),
        ),
        _ => serde_json::Value::Null,
    }
}

/// Applies an RFC 7396 JSON merge patch (Vault's `HandlePatchOperation`).
fn merge_patch(target: &mut serde_json::Value, patch: &serde_json::Value) {
    let serde_json::Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = serde_json::Value::Object(serde_json::Map::new());
    }
    if let serde_json::Value::Object(target) = target {
        for (key, value) in patch {
            if value.is_null() {
                target.remove(key);
            } else {
                merge_patch(
                    target.entry(key.clone()).or_insert(serde_json::Value::Null),
                    value,
                );
            }
        }
    }
}

impl Kv {
    /// Reads a version (`None`: the current one) of the secret at `path`.
    pub async fn read(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
        path: &SecretPath,
        version: Option<u64>,
    ) -> Result<DataRead> {
        let key = self.secret_key(mount, path);
        let Some(doc) = self.load_read(mount, &key).await? else {
            return Ok(DataRead::Missing);
        };
        self.read_doc(transit, mount, &doc, version).await
    }

    async fn read_doc(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
        doc: &SecretDoc,
        version: Option<u64>,
    ) -> Result<DataRead> {
        let number = version.filter(|v| *v > 0).unwrap_or(doc.current_version);
        let Some(stored) = doc.versions.get(&number) else {
            return Ok(DataRead::Missing);
        };
        let view = Written {
            metadata: stored.metadata(number),
            custom_metadata: doc.custom_metadata.clone(),
        };
        if stored.is_deleted(self.now_nanos()) || stored.destroyed {
            return Ok(DataRead::Gone(view));
        }
        let (Some(dek), Some(data)) = (&stored.dek, &stored.data) else {
            return Err(Error::internal("a KV version without data"));
        };
        let plain = self
            .open_version(transit, mount, &doc.id, number, dek, data)
            .await?;
        Ok(DataRead::Found(view, plain))
    }

    /// Writes a new version with `data` (the JSON text of an object), if `cas` (Vault's
    /// `options.cas`) matches or is not needed.
    pub async fn write(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
        path: &SecretPath,
        data: &[u8],
        cas: Option<u64>,
    ) -> Result<Written> {
        let key = self.secret_key(mount, path);
        let config = self.config(mount).await?;
        let _turn = self.write_turn(mount, &key).await;
        for _ in 0..WRITE_ATTEMPTS {
            let (mut doc, expected) = match self.load(mount, &key).await? {
                Some(loaded) => loaded,
                None => (SecretDoc::new(path.as_string(), 0), 0),
            };
            check_cas(cas, &config, &doc)?;
            match self
                .add_version(transit, mount, &key, &mut doc, expected, &config, data)
                .await
            {
                Err(Error::Conflict(_)) => continue,
                other => return other,
            }
        }
        Err(conflict())
    }

    /// Patches the current version with an RFC 7396 merge patch into a new version.
    /// `Missing` when there is no secret, `Gone` when its current version is deleted or
    /// destroyed (Vault's 404s); `Found` carries the new version, without data.
    pub async fn patch(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
        path: &SecretPath,
        patch: &serde_json::Value,
        cas: Option<u64>,
    ) -> Result<DataRead> {
        let key = self.secret_key(mount, path);
        let config = self.config(mount).await?;
        let _turn = self.write_turn(mount, &key).await;
        for _ in 0..WRITE_ATTEMPTS {
            let Some((mut doc, expected)) = self.load(mount, &key).await? else {
                return Ok(DataRead::Missing);
            };
            check_cas(cas, &config, &doc)?;
            let current = match self.read_doc(transit, mount, &doc, None).await? {
                DataRead::Found(_, current) => current,
                other => return Ok(other),
            };
            let mut value: serde_json::Value = serde_json::from_slice(&current)
                .map_err(|e| Error::internal_from("stored KV data", e))?;
            merge_patch(&mut value, patch);
            let patched = Zeroizing::new(
                serde_json::to_vec(&value).map_err(|e| Error::internal_from("KV data", e))?,
            );
            match self
                .add_version(transit, mount, &key, &mut doc, expected, &config, &patched)
                .await
            {
                Err(Error::Conflict(_)) => continue,
                Ok(written) => return Ok(DataRead::Found(written, Zeroizing::new(Vec::new()))),
                Err(error) => return Err(error),
            }
        }
        Err(conflict())
    }

    /// Encrypts `data` as the document's next version and stores the document.
    #[allow(clippy::too_many_arguments)]
    async fn add_version(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
        key: &str,
        doc: &mut SecretDoc,
        expected: u64,
        config: &KvConfig,
        data: &[u8],
    ) -> Result<Written> {
        let number = doc.current_version + 1;
        let (dek, sealed) = self
            .seal_version(transit, mount, &doc.id, number, data)
            .await?;
        let created = self.now_nanos();
        let version = VersionDoc {
            created_time: created,
            deletion_time: deletion_time(created, config, doc),
            destroyed: false,
            dek: Some(dek),
            data: Some(sealed),
        };
        let metadata = version.metadata(number);
        doc.add_version(version, config.max_versions);
        self.save(mount, key, doc, expected).await?;
        Ok(Written {
            metadata,
            custom_metadata: doc.custom_metadata.clone(),
        })
    }

    /// Marks `versions` (`None`: the current one) as `change` says; a missing secret or
    /// version is skipped, as in Vault.
    pub async fn change_versions(
        &self,
        mount: &KvMount<'_>,
        path: &SecretPath,
        versions: Option<&[u64]>,
        change: VersionChange,
    ) -> Result<()> {
        if versions.is_some_and(<[u64]>::is_empty) {
            return Err(Error::invalid("no version number provided"));
        }
        let key = self.secret_key(mount, path);
        let _turn = self.write_turn(mount, &key).await;
        for _ in 0..WRITE_ATTEMPTS {
            let Some((mut doc, expected)) = self.load(mount, &key).await? else {
                return Ok(());
            };
            let now = self.now_nanos();
            let current = [doc.current_version];
            let mut changed = false;
            for number in versions.unwrap_or(&current) {
                let Some(version) = doc.versions.get_mut(number) else {
                    continue;
                };
                match change {
                    VersionChange::Delete if !version.destroyed && !version.is_deleted(now) => {
                        version.deletion_time = Some(now);
                        changed = true;
                    }
                    VersionChange::Undelete
                        if !version.destroyed && version.deletion_time.is_some() =>
                    {
                        version.deletion_time = None;
                        changed = true;
                    }
                    VersionChange::Destroy if !version.destroyed => {
                        version.destroyed = true;
                        version.dek = None;
                        version.data = None;
                        changed = true;
                    }
                    _ => {}
                }
            }
            if !changed {
                return Ok(());
            }
            match self.save(mount, &key, &doc, expected).await {
                Err(Error::Conflict(_)) => continue,
                other => return other,
            }
        }
        Err(conflict())
    }

    /// The keys of a version's data, each leaf null, down to `depth` levels (0: all):
    /// `subkeys/:path`. Answers like a read, the data replaced by its subkeys.
    pub async fn subkeys(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
        path: &SecretPath,
        version: Option<u64>,
        depth: u64,
    ) -> Result<(DataRead, Option<serde_json::Value>)> {
        match self.read(transit, mount, path, version).await? {
            DataRead::Found(view, data) => {
                let value: serde_json::Value = serde_json::from_slice(&data)
                    .map_err(|e| Error::internal_from("stored KV data", e))?;
                let keys = subkeys(&value, depth, 0);
                Ok((
                    DataRead::Found(view, Zeroizing::new(Vec::new())),
                    Some(keys),
                ))
            }
            other => Ok((other, None)),
        }
    }

    /// Version 1: the secret's data (`GET :path`), if there is a secret.
    pub async fn read_unversioned(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
        path: &SecretPath,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        match self.read(transit, mount, path, None).await? {
            DataRead::Found(_, data) => Ok(Some(data)),
            DataRead::Missing | DataRead::Gone(_) => Ok(None),
        }
    }

    /// Version 1: replaces the secret's data (`POST :path`), kept as its only version.
    pub async fn write_unversioned(
        &self,
        transit: &Transit,
        mount: &KvMount<'_>,
        path: &SecretPath,
        data: &[u8],
    ) -> Result<()> {
        let key = self.secret_key(mount, path);
        let config = KvConfig {
            max_versions: 1,
            ..KvConfig::default()
        };
        let _turn = self.write_turn(mount, &key).await;
        for _ in 0..WRITE_ATTEMPTS {
            let (mut doc, expected) = match self.load(mount, &key).await? {
                Some(loaded) => loaded,
                None => (SecretDoc::new(path.as_string(), 0), 0),
            };
            // One version, always number 1: a fresh data key each time, so reusing the
            // number reuses no nonce under any key.
            doc.versions.clear();
            doc.current_version = 0;
            doc.oldest_version = 0;
            match self
                .add_version(transit, mount, &key, &mut doc, expected, &config, data)
                .await
            {
                Err(Error::Conflict(_)) => continue,
                other => return other.map(|_| ()),
            }
        }
        Err(conflict())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}, "n": 1}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}, "n": 1}));
    }

    #[test]
    fn subkeys_null_every_leaf_to_depth() {
        let value = json!({"a": 1, "b": {"c": {"d": 2}}});
        assert_eq!(
            subkeys(&value, 0, 0),
            json!({"a": null, "b": {"c": {"d": null}}})
        );
        assert_eq!(subkeys(&value, 1, 0), json!({"a": null, "b": null}));
        assert_eq!(subkeys(&value, 2, 0), json!({"a": null, "b": {"c": null}}));
    }

    #[test]
    fn deletion_time_takes_the_shorter_setting() {
        let config = KvConfig {
            delete_version_after: 60,
            ..KvConfig::default()
        };
        let mut doc = SecretDoc::new("p".to_owned(), 0);
        assert_eq!(deletion_time(0, &config, &doc), Some(60_000_000_000));
        doc.delete_version_after = 10;
        assert_eq!(deletion_time(0, &config, &doc), Some(10_000_000_000));
        assert_eq!(
            deletion_time(0, &KvConfig::default(), &SecretDoc::new("p".into(), 0)),
            None
        );
    }
}
