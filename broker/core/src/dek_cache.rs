//! The per-instance cache of unwrapped data keys.
//!
//! One cache per backend instance, so an instance's `on_unavailable = evict` drops exactly
//! its own keys and metrics are per instance. Entries are keyed by (tenant id, key id,
//! version) and hold one `Arc<DataKey>`: no stray copies, and the key schedule is zeroized
//! when the last holder (cache or an in-flight request) lets go.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use moka::sync::Cache;

use crate::{crypto::DataKey, KeyId, TenantId};

/// Cache key: immutable ids only.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct CacheKey {
    /// Owning tenant.
    pub tenant: TenantId,
    /// Owning key.
    pub key: KeyId,
    /// Key version.
    pub version: u32,
}

/// A cached data key with the backend reference that unwrapped it.
#[derive(Debug)]
pub struct CachedKey {
    /// The derived data key.
    pub data_key: DataKey,
    /// The backend key reference that wrapped its DEK (for per-key eviction).
    pub backend_reference: String,
}

/// Hit/miss counters and the cache itself.
pub struct DekCache {
    cache: Cache<CacheKey, Arc<CachedKey>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for DekCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DekCache")
            .field("entries", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

/// Snapshot of a cache's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups served from the cache.
    pub hits: u64,
    /// Lookups that had to ask the backend.
    pub misses: u64,
    /// Entries currently held.
    pub entries: u64,
}

impl DekCache {
    /// A cache holding at most `capacity` keys, each for at most `ttl`.
    pub fn new(ttl: Duration, capacity: u64) -> Self {
        let cache = Cache::builder()
            .max_capacity(capacity)
            .time_to_live(ttl)
            .support_invalidation_closures()
            .build();
        Self {
            cache,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Looks up a key, counting the hit or miss.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<CachedKey>> {
        let found = self.cache.get(key);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Looks up a key without counting: a second look after waiting for another request's
    /// fill, whose lookup was already counted.
    pub fn peek(&self, key: &CacheKey) -> Option<Arc<CachedKey>> {
        self.cache.get(key)
    }

    /// Stores a freshly unwrapped key.
    pub fn insert(&self, key: CacheKey, value: Arc<CachedKey>) {
        self.cache.insert(key, value);
    }

    /// Drops every version of one transit key (rotation, deletion, config change).
    pub fn purge_key(&self, tenant: TenantId, key: KeyId) {
        // Only fails if closures were not enabled at build time, which `new` does.
        let _ = self
            .cache
            .invalidate_entries_if(move |k, _| k.tenant == tenant && k.key == key);
    }

    /// Drops every entry whose DEK was wrapped under one of `references`.
    pub fn purge_references(&self, references: Vec<String>) {
        let _ = self
            .cache
            .invalidate_entries_if(move |_, v| references.contains(&v.backend_reference));
    }

    /// Drops everything (instance unavailable with `on_unavailable = evict`).
    pub fn purge_all(&self) {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
    }

    /// Current counters.
    pub fn stats(&self) -> CacheStats {
        self.cache.run_pending_tasks();
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            entries: self.cache.entry_count(),
        }
    }
}
