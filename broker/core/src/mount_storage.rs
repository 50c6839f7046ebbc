//! Mount storage: each mount's own key/value store of JSON documents (Vault's
//! `logical.Storage` view of a backend), so an engine or auth method keeps its state without
//! a table, a `Store` method or a migration of its own.
//!
//! - [`MountStorage`] is one mount's view (the store, the tenant, the mount id): typed
//!   `get`/`put`/`delete`/`list`. Keys are checked here ([`is_valid_key`]): a bad key is
//!   the caller's 400, never a storage error.
//! - Every entry has a version (1 when created, one more at each write); a write or delete
//!   may expect the entry absent or at a version ([`Expect`]), atomically in the store, so
//!   two nodes writing the same entry never silently overwrite each other: the loser gets
//!   [`Error::Conflict`], reads again and decides.
//! - Entries go with their mount and with their tenant. Every write is announced to the
//!   cluster ([`crate::changes::Change::MountEntry`]) in its own transaction; a node keeping
//!   entries in memory ([`EntryCache`]) drops them on that change.

use std::sync::{Arc, Mutex};

use moka::sync::Cache;
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    error::{Error, Result},
    store::{Expect, Store, StoreError},
    MountId, TenantId,
};

/// Longest key, in bytes.
pub const MAX_KEY_LEN: usize = 512;

/// Entries kept by an [`EntryCache`] unless told otherwise.
pub const DEFAULT_ENTRY_CACHE_CAPACITY: u64 = 10_000;

/// Whether `key` may name an entry: 1 to [`MAX_KEY_LEN`] bytes of UTF-8 without control
/// characters (PostgreSQL text cannot hold NUL; the others are never meant).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && is_valid_prefix(key)
}

/// Whether `prefix` may start keys to list: as a key, but possibly empty.
fn is_valid_prefix(prefix: &str) -> bool {
    prefix.len() <= MAX_KEY_LEN && !prefix.chars().any(char::is_control)
}

fn check_key(key: &str) -> Result<()> {
    if is_valid_key(key) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "invalid storage key: use 1-{MAX_KEY_LEN} bytes without control characters"
    )))
}

/// A document read from mount storage, with the version to expect when writing it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The document.
    pub value: T,
    /// Its version.
    pub version: u64,
}

impl<T> Versioned<T> {
    /// What a write replacing this very version expects: that it is unchanged.
    pub fn unchanged(&self) -> Expect {
        Expect::Version(self.version)
    }
}

/// One mount's storage.
#[derive(Clone)]
pub struct MountStorage {
    store: Arc<dyn Store>,
    tenant: TenantId,
    mount: MountId,
}

impl std::fmt::Debug for MountStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountStorage")
            .field("tenant", &self.tenant)
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

impl MountStorage {
    /// The storage of `mount`, a mount of `tenant`.
    pub fn new(store: Arc<dyn Store>, tenant: TenantId, mount: MountId) -> Self {
        Self {
            store,
            tenant,
            mount,
        }
    }

    /// The tenant owning the mount.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// The mount.
    pub fn mount(&self) -> MountId {
        self.mount
    }

    /// The document under `key` with its version, if any. A document that is not a `T` is
    /// an internal error (a bug or a corrupted store).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>> {
        check_key(key)?;
        let Some(entry) = self.store.get_entry(self.tenant, self.mount, key).await? else {
            return Ok(None);
        };
        let value = decode(key, entry.value)?;
        Ok(Some(Versioned {
            value,
            version: entry.version,
        }))
    }

    /// Writes `value` under `key` if the entry is as `expect`ed; returns its new version.
    /// [`Error::Conflict`] (nothing written) if it is not.
    pub async fn put<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        expect: Expect,
    ) -> Result<u64> {
        let value = serde_json::to_value(value)
            .map_err(|e| Error::internal_from(format!("encoding storage entry {key:?}"), e))?;
        self.put_json(key, &value, expect).await
    }

    /// [`MountStorage::put`] of a document already in JSON.
    pub async fn put_json(
        &self,
        key: &str,
        value: &serde_json::Value,
        expect: Expect,
    ) -> Result<u64> {
        check_key(key)?;
        self.store
            .put_entry(self.tenant, self.mount, key, value, expect)
            .await
            .map_err(|error| conflict(key, error))
    }

    /// Deletes the entry under `key` if it is as `expect`ed; returns whether there was one.
    /// [`Error::Conflict`] (nothing deleted) if it is not.
    pub async fn delete(&self, key: &str, expect: Expect) -> Result<bool> {
        check_key(key)?;
        self.store
            .delete_entry(self.tenant, self.mount, key, expect)
            .await
            .map_err(|error| conflict(key, error))
    }

    /// The keys starting with `prefix` (every key for `""`), whole and sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        if !is_valid_prefix(prefix) {
            return Err(Error::invalid(format!(
                "invalid storage prefix: use at most {MAX_KEY_LEN} bytes without control characters"
            )));
        }
        Ok(self
            .store
            .list_entries(self.tenant, self.mount, prefix)
            .await?)
    }
}

fn decode<T: DeserializeOwned>(key: &str, value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| Error::internal_from(format!("stored entry {key:?}"), e))
}

fn conflict(key: &str, error: StoreError) -> Error {
    match error {
        StoreError::ExpectationFailed => {
            Error::Conflict(format!("{key:?} was changed concurrently; try again"))
        }
        other => other.into(),
    }
}

/// Where an entry lives.
type EntryId = (TenantId, MountId, String);

/// About how many bytes a document holds: its strings and keys, and a few per other value.
fn text_bytes(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::String(text) => text.len(),
        serde_json::Value::Array(items) => items.iter().map(text_bytes).sum(),
        serde_json::Value::Object(members) => members
            .iter()
            .map(|(name, item)| name.len() + text_bytes(item))
            .sum(),
        _ => 8,
    }
}

/// Entries of mount storage a node keeps in memory, for state read at every request (an
/// auth method's configuration and roles). Whoever writes an entry through this node drops
/// it here ([`EntryCache::forget`]), or replaces it by what it wrote
/// ([`EntryCache::remember`]); a write on another node arrives as
/// [`crate::changes::Change::MountEntry`] and is dropped the same way.
pub struct EntryCache {
    /// The document under each key with its version, or `None` when there was none.
    entries: Cache<EntryId, Option<Arc<Versioned<serde_json::Value>>>>,
    /// Bumped by every invalidation: an entry read before one is not kept (it may be the
    /// very value the invalidation was about).
    generation: Mutex<u64>,
}

impl std::fmt::Debug for EntryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntryCache(..)")
    }
}

impl EntryCache {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: u64) -> Self {
        Self::of(
            Cache::builder()
                .max_capacity(capacity)
                .support_invalidation_closures()
                .build(),
        )
    }

    /// A cache of entries of at most `max_bytes` of text in all (keys and the strings of
    /// their documents), for documents whose size the caller does not bound.
    pub fn with_max_bytes(max_bytes: u64) -> Self {
        Self::of(
            Cache::builder()
                .max_capacity(max_bytes)
                .weigher(
                    |(_, _, key): &EntryId, entry: &Option<Arc<Versioned<serde_json::Value>>>| {
                        let bytes = key.len()
                            + entry.as_deref().map_or(0, |entry| text_bytes(&entry.value));
                        u32::try_from(bytes).unwrap_or(u32::MAX)
                    },
                )
                .support_invalidation_closures()
                .build(),
        )
    }

    fn of(entries: Cache<EntryId, Option<Arc<Versioned<serde_json::Value>>>>) -> Self {
        Self {
            entries,
            generation: Mutex::new(0),
        }
    }

    /// The document under `key` in `storage`, read from the store unless cached.
    pub async fn get<T: DeserializeOwned>(
        &self,
        storage: &MountStorage,
        key: &str,
    ) -> Result<Option<T>> {
        Ok(self
            .get_versioned(storage, key)
            .await?
            .map(|entry| entry.value))
    }

    /// [`EntryCache::get`] with the entry's version. Only a node that is the store's sole
    /// writer may compare and set against a cached version: elsewhere another node may have
    /// deleted and recreated the entry, back at the same version, before this node hears.
    pub async fn get_versioned<T: DeserializeOwned>(
        &self,
        storage: &MountStorage,
        key: &str,
    ) -> Result<Option<Versioned<T>>> {
        let id = (storage.tenant, storage.mount, key.to_owned());
        let cached = match self.entries.get(&id) {
            Some(cached) => cached,
            None => {
                let before = self.generation();
                let read = storage.get::<serde_json::Value>(key).await?.map(Arc::new);
                self.insert_unless_invalidated(before, id, read.clone());
                read
            }
        };
        cached
            .map(|entry| {
                Ok(Versioned {
                    value: decode(key, serde_json::Value::clone(&entry.value))?,
                    version: entry.version,
                })
            })
            .transpose()
    }

    fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert_unless_invalidated(
        &self,
        before: u64,
        id: EntryId,
        value: Option<Arc<Versioned<serde_json::Value>>>,
    ) {
        // Under the lock: an invalidation cannot slip between the check and the insert.
        let generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        if *generation == before {
            self.entries.insert(id, value);
        }
    }

    /// Runs `drop` as an invalidation.
    fn invalidate(
        &self,
        drop: impl FnOnce(&Cache<EntryId, Option<Arc<Versioned<serde_json::Value>>>>),
    ) {
        let mut generation = self.generation.lock().unwrap_or_else(|e| e.into_inner());
        *generation += 1;
        drop(&self.entries);
    }

    /// Drops one entry (it was written or deleted).
    pub fn forget(&self, tenant: TenantId, mount: MountId, key: &str) {
        self.invalidate(|entries| entries.invalidate(&(tenant, mount, key.to_owned())));
    }

    /// Replaces one entry by what this node just wrote there, at `version`: only where this
    /// node is the store's sole writer (see [`EntryCache::get_versioned`]).
    pub fn remember(
        &self,
        tenant: TenantId,
        mount: MountId,
        key: &str,
        value: serde_json::Value,
        version: u64,
    ) {
        self.invalidate(|entries| {
            entries.insert(
                (tenant, mount, key.to_owned()),
                Some(Arc::new(Versioned { value, version })),
            );
        });
    }

    /// Drops every entry of a mount.
    pub fn forget_mount(&self, tenant: TenantId, mount: MountId) {
        self.invalidate(|entries| {
            if entries
                .invalidate_entries_if(move |(t, m, _), _| *t == tenant && *m == mount)
                .is_err()
            {
                entries.invalidate_all();
            }
        });
    }

    /// Drops every entry of a tenant's mounts.
    pub fn forget_tenant(&self, tenant: TenantId) {
        self.invalidate(|entries| {
            if entries
                .invalidate_entries_if(move |(t, _, _), _| *t == tenant)
                .is_err()
            {
                entries.invalidate_all();
            }
        });
    }

    /// Drops every entry (changes may have been missed).
    pub fn forget_all(&self) {
        self.invalidate(Cache::invalidate_all);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_bounded_and_free_of_control_characters() {
        for good in [
            "config",
            "role/web",
            "a:b",
            "é",
            " ",
            &"k".repeat(MAX_KEY_LEN),
            &"é".repeat(MAX_KEY_LEN / 2),
        ] {
            assert!(is_valid_key(good), "{good:?}");
            assert!(check_key(good).is_ok());
        }
        for bad in [
            "",
            "a\0b",
            "line\n",
            "\u{7f}",
            "\u{85}",
            &"k".repeat(MAX_KEY_LEN + 1),
            &format!("{}é", "k".repeat(MAX_KEY_LEN - 1)),
        ] {
            assert!(!is_valid_key(bad), "{bad:?}");
            assert!(matches!(check_key(bad), Err(Error::InvalidRequest(_))));
        }
        assert!(is_valid_prefix(""));
        assert!(!is_valid_prefix("\0"));
    }

    #[test]
    fn a_lost_compare_and_set_is_a_conflict_and_other_failures_keep_their_kind() {
        assert!(matches!(
            conflict("role/web", StoreError::ExpectationFailed),
            Error::Conflict(message) if message.contains("role/web")
        ));
        assert!(matches!(
            conflict("k", StoreError::Gone),
            Error::InvalidRequest(_)
        ));
        assert!(matches!(
            conflict("k", StoreError::Unavailable("down".into())),
            Error::Unavailable(_)
        ));
    }
}
