//! The keys held in memory, per (tenant, mount) and name: loaded from the store on first
//! use, re-read after a change, and forgotten when their key, mount or tenant goes (or the
//! cluster's change feed had a gap). Forgetting a key drops its cached data keys too.

use std::sync::{atomic::Ordering, Arc};

use super::{counter::Counter, KeyState, Transit, VersionState};
use crate::{
    error::{Error, Result},
    MountId, TenantId,
};

impl Transit {
    /// A key's state, if held in memory.
    fn cached_state(&self, tenant: TenantId, mount: MountId, name: &str) -> Option<Arc<KeyState>> {
        self.keys
            .read()
            .ok()?
            .get(&(tenant, mount))?
            .get(name)
            .cloned()
    }

    /// Forgets one key (it was deleted, or the store no longer has it).
    pub(super) fn forget(&self, tenant: TenantId, mount: MountId, name: &str) {
        if let Ok(mut keys) = self.keys.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            if let Some(mount_keys) = keys.get_mut(&(tenant, mount)) {
                mount_keys.remove(name);
            }
        }
    }

    /// The in-memory state of a key, loading it from the store on first use.
    pub(super) async fn state(
        &self,
        tenant: TenantId,
        mount: MountId,
        name: &str,
    ) -> Result<Option<Arc<KeyState>>> {
        if let Some(state) = self.cached_state(tenant, mount, name) {
            return Ok(Some(state));
        }
        self.reload(tenant, mount, name).await
    }

    /// Re-reads a key from the store, keeping the counters of versions already loaded.
    pub(super) async fn reload(
        &self,
        tenant: TenantId,
        mount: MountId,
        name: &str,
    ) -> Result<Option<Arc<KeyState>>> {
        let started = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let Some(record) = self.store.get_key(tenant, mount, name).await? else {
            self.forget(tenant, mount, name);
            return Ok(None);
        };
        let version_records = self.store.get_key_versions(tenant, record.id).await?;
        let previous = self
            .cached_state(tenant, mount, name)
            .filter(|p| p.record.id == record.id);
        let versions = version_records
            .into_iter()
            .map(|v| {
                previous
                    .as_ref()
                    .and_then(|p| p.version(v.version).cloned())
                    // A restore wraps a version again under another backend key: the state
                    // in memory holds the old wrap.
                    .filter(|p| {
                        p.record.backend_reference == v.backend_reference
                            && p.record.wrapped_dek == v.wrapped_dek
                    })
                    .unwrap_or_else(|| {
                        Arc::new(VersionState {
                            counter: Counter::new(v.counter_reserved),
                            record: v,
                            fill: tokio::sync::Mutex::new(()),
                        })
                    })
            })
            .collect::<Vec<_>>();
        let first = record.min_available_version.max(1);
        if versions.len() as u64 != u64::from(record.latest_version) + 1 - u64::from(first)
            || versions
                .iter()
                .enumerate()
                .any(|(i, v)| u64::from(v.record.version) != i as u64 + u64::from(first))
        {
            return Err(Error::internal(format!(
                "key {} has inconsistent versions",
                record.id
            )));
        }
        let state = Arc::new(KeyState { record, versions });
        if let Ok(mut keys) = self.keys.write() {
            let mount_keys = keys.entry((tenant, mount)).or_default();
            if self.generation.load(Ordering::SeqCst) == started {
                mount_keys.insert(name.to_owned(), state.clone());
            } else {
                // Another reload or a forget started meanwhile, so what this one read may be
                // stale; but so may what the cache holds, put there by a reload that began
                // before both (a key re-read, then a new version written here while a
                // refresh from the cluster ran: the last reload to finish skipped its
                // insert and left the re-read's version in place). Drop it: the next use
                // reads the store.
                mount_keys.remove(name);
            }
        }
        Ok(Some(state))
    }

    /// Forgets every key of a deleted tenant and drops their cached data keys.
    pub fn forget_tenant(&self, tenant: TenantId) {
        let removed: Vec<_> = self
            .keys
            .write()
            .map(|mut keys| {
                self.generation.fetch_add(1, Ordering::SeqCst);
                let mounts: Vec<_> = keys.keys().filter(|(t, _)| *t == tenant).copied().collect();
                mounts.into_iter().filter_map(|m| keys.remove(&m)).collect()
            })
            .unwrap_or_default();
        for state in removed.into_iter().flat_map(|keys| keys.into_values()) {
            if let Some(instance) = self.backends.get(&state.record.backend) {
                instance.cache().purge_key(tenant, state.record.id);
            }
        }
    }

    /// Re-reads a cached key that another node changed (configuration, a new version, a
    /// trim, a restore) or deleted, keeping the counters of its versions; a deleted or trimmed key's
    /// data keys are dropped (a trimmed key's kept versions are unwrapped again on use).
    pub async fn refresh_key(&self, tenant: TenantId, key: crate::KeyId) -> Result<()> {
        let cached: Vec<Arc<KeyState>> = self
            .keys
            .read()
            .map(|keys| {
                keys.iter()
                    .filter(|((t, _), _)| *t == tenant)
                    .flat_map(|(_, names)| names.values())
                    .filter(|state| state.record.id == key)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for state in cached {
            let record = &state.record;
            let reloaded = self.reload(tenant, record.mount, &record.name).await?;
            // Deleted, or trimmed: the data keys of versions gone for good leave memory.
            // Restored over itself: its data keys were unwrapped through the backend key
            // the restore replaced.
            let gone = reloaded.as_ref().is_none_or(|fresh| {
                fresh.record.min_available_version > record.min_available_version
                    || fresh.record.backend_reference != record.backend_reference
            });
            if gone {
                if let Some(instance) = self.backends.get(&record.backend) {
                    instance.cache().purge_key(tenant, record.id);
                }
            }
        }
        Ok(())
    }

    /// Forgets the cached keys of a tenant's mounts that are not in `mounts` (another node
    /// disabled them).
    pub fn forget_mounts_except(&self, tenant: TenantId, mounts: &[MountId]) {
        let gone: Vec<MountId> = self
            .keys
            .read()
            .map(|keys| {
                keys.keys()
                    .filter(|(t, m)| *t == tenant && !mounts.contains(m))
                    .map(|(_, m)| *m)
                    .collect()
            })
            .unwrap_or_default();
        for mount in gone {
            self.forget_mount(tenant, mount);
        }
    }

    /// Forgets every cached key (changes may have been missed); keys are re-read on next
    /// use and their counters resume past the persisted reservations.
    pub fn forget_all(&self) {
        if let Ok(mut keys) = self.keys.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            keys.clear();
        }
    }

    /// Forgets every cached key of a mount (after the mount was disabled).
    pub fn forget_mount(&self, tenant: TenantId, mount: MountId) {
        let removed = self.keys.write().ok().and_then(|mut keys| {
            self.generation.fetch_add(1, Ordering::SeqCst);
            keys.remove(&(tenant, mount))
        });
        for state in removed.into_iter().flat_map(|keys| keys.into_values()) {
            if let Some(instance) = self.backends.get(&state.record.backend) {
                instance.cache().purge_key(tenant, state.record.id);
            }
        }
    }
}
