//! Each tenant's ACL policies: stored as checked HCL text, parsed once, combined into one
//! [`Acl`] per distinct policy set and cached until a policy of that tenant changes.
//!
//! The cache ([`AclCache`]) is bounded: a caller who can mint tokens with many distinct
//! policy sets (unknown names grant nothing but still make a distinct set) must not grow it
//! without limit. A policy write flushes only its own tenant's sets, and concurrent first
//! uses of one set build it once.

use std::{
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use moka::sync::Cache;
use tokio::sync::OnceCell;

use crate::{
    auth::token::{DEFAULT_POLICY, ROOT_POLICY},
    clock::Clock,
    error::{Error, Result},
    policy::{self, Acl, Policy},
    store::Store,
    TenantId,
};

/// Distinct (tenant, policy set) pairs whose compiled ACLs are kept by default.
pub const DEFAULT_ACL_CACHE_CAPACITY: u64 = 10_000;

type AclKey = (TenantId, Vec<String>);

/// One cached policy set. The slot enters the cache *before* its ACL is built, so:
/// - every concurrent first use of the set finds the same slot and waits for the one build
///   (`OnceCell`), instead of each reading and parsing the policies again;
/// - a policy write that invalidates the tenant while the build runs removes the slot
///   itself: callers arriving after the write make a fresh slot and read the new policies,
///   and the build that raced the write answers only the callers that started before it.
///   (Inserting the finished ACL afterwards, as `get_with` of an async cache would, could
///   cache a set read before the write for good.)
///
/// A failed build (store error) leaves the slot empty; the next caller builds again.
type AclSlot = Arc<OnceCell<Arc<Acl>>>;

/// Compiled ACLs by (tenant, policy set), at most `capacity` of them (moka's TinyLFU keeps
/// the sets in use when a caller floods it with fresh ones).
pub(crate) struct AclCache {
    slots: Cache<AclKey, AclSlot>,
    /// ACLs built (not found in the cache), for metrics and tests.
    builds: AtomicU64,
}

impl AclCache {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            slots: Cache::builder()
                .max_capacity(capacity)
                // Per-tenant invalidation (`forget_tenant`).
                .support_invalidation_closures()
                .build(),
            builds: AtomicU64::new(0),
        }
    }

    /// The ACL of `key`, built by `build` unless cached or being built by another caller.
    pub(crate) async fn get_or_build<F, Fut>(&self, key: AclKey, build: F) -> Result<Arc<Acl>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Acl>>,
    {
        let slot = self.slots.get_with(key, AclSlot::default);
        slot.get_or_try_init(|| async {
            self.builds.fetch_add(1, Ordering::Relaxed);
            build().await.map(Arc::new)
        })
        .await
        .cloned()
    }

    /// Drops one tenant's ACLs; other tenants' stay. Entries inserted up to now are never
    /// returned again (moka checks the predicate on every read until it has removed them).
    pub(crate) fn forget_tenant(&self, tenant: TenantId) {
        if self
            .slots
            .invalidate_entries_if(move |(owner, _), _| *owner == tenant)
            .is_err()
        {
            // Only if invalidation closures were not enabled: dropping everything is safe.
            self.slots.invalidate_all();
        }
    }

    pub(crate) fn forget_all(&self) {
        self.slots.invalidate_all();
    }

    /// ACLs built so far.
    pub(crate) fn builds(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }
}

/// Policies of every tenant.
pub struct Policies {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    acls: AclCache,
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Policies(..)")
    }
}

fn policy_error(error: policy::PolicyError) -> Error {
    Error::invalid(error.to_string())
}

impl Policies {
    /// Policies backed by `store`, caching [`DEFAULT_ACL_CACHE_CAPACITY`] policy sets.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self::with_capacity(store, clock, DEFAULT_ACL_CACHE_CAPACITY)
    }

    /// Policies backed by `store`, caching the ACLs of at most `capacity` distinct
    /// (tenant, policy set) pairs.
    pub fn with_capacity(store: Arc<dyn Store>, clock: Arc<dyn Clock>, capacity: u64) -> Self {
        Self {
            store,
            clock,
            acls: AclCache::new(capacity),
        }
    }

    /// How many ACLs were built rather than found in the cache (for metrics).
    pub fn acl_builds(&self) -> u64 {
        self.acls.builds()
    }

    /// The ACL of a token with these policies in `tenant`. Unknown policy names grant
    /// nothing, as in Vault.
    pub async fn acl(&self, tenant: TenantId, names: &[String]) -> Result<Arc<Acl>> {
        self.acls
            .get_or_build((tenant, names.to_vec()), || async move {
                if names.iter().any(|n| n == ROOT_POLICY) {
                    return Ok(Acl::new(&[], true));
                }
                let mut parsed = Vec::new();
                for name in names {
                    if let Some(policy) = self.load(tenant, name).await? {
                        parsed.push(Arc::new(policy));
                    }
                }
                Ok(Acl::new(&parsed, false))
            })
            .await
    }

    async fn load(&self, tenant: TenantId, name: &str) -> Result<Option<Policy>> {
        let text = match self.store.get_policy(tenant, name).await? {
            Some(text) => text,
            None if name == DEFAULT_POLICY => policy::DEFAULT_POLICY.to_owned(),
            None => return Ok(None),
        };
        policy::parse(name, &text)
            .map(Some)
            .map_err(|e| Error::internal(format!("stored policy {name} no longer parses: {e}")))
    }

    fn invalidate(&self, tenant: TenantId) {
        self.acls.forget_tenant(tenant);
    }

    /// Creates or replaces a policy after checking it; returns the canonical name.
    pub async fn write(&self, tenant: TenantId, name: &str, text: &str) -> Result<String> {
        let name = policy::validate_name(name).map_err(policy_error)?;
        policy::parse(&name, text).map_err(policy_error)?;
        self.store
            .put_policy(tenant, &name, text, self.clock.now_unix())
            .await?;
        self.invalidate(tenant);
        Ok(name)
    }

    /// A policy's text (`default` has a built-in text until it is written).
    pub async fn read(&self, tenant: TenantId, name: &str) -> Result<String> {
        let name = name.to_ascii_lowercase();
        if name == ROOT_POLICY {
            return Ok(String::new());
        }
        match self.store.get_policy(tenant, &name).await? {
            Some(text) => Ok(text),
            None if name == DEFAULT_POLICY => Ok(policy::DEFAULT_POLICY.to_owned()),
            None => Err(Error::NotFound(format!("policy \"{name}\" not found"))),
        }
    }

    /// Names of a tenant's policies, with `default` and `root` as Vault lists them.
    pub async fn list(&self, tenant: TenantId) -> Result<Vec<String>> {
        let mut names = self.store.list_policies(tenant).await?;
        for builtin in [DEFAULT_POLICY, ROOT_POLICY] {
            if !names.iter().any(|n| n == builtin) {
                names.push(builtin.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Deletes a policy; `default` and `root` cannot be deleted.
    pub async fn delete(&self, tenant: TenantId, name: &str) -> Result<()> {
        let name = name.to_ascii_lowercase();
        if name == DEFAULT_POLICY || name == ROOT_POLICY {
            return Err(Error::invalid(format!("cannot delete \"{name}\" policy")));
        }
        self.store.delete_policy(tenant, &name).await?;
        self.invalidate(tenant);
        Ok(())
    }

    /// Forgets every cached ACL (changes may have been missed).
    pub fn forget_all(&self) {
        self.acls.forget_all();
    }

    /// Forgets a deleted tenant's ACLs.
    pub fn forget_tenant(&self, tenant: TenantId) {
        self.invalidate(tenant);
    }
}

#[cfg(test)]
mod tests {
    use std::{future::poll_fn, pin::pin, sync::atomic::AtomicUsize, task::Poll};

    use tokio::sync::{Barrier, Notify};

    use super::*;
    use crate::policy::Capability;

    fn tenant(n: u8) -> TenantId {
        TenantId::parse(&format!("00000000-0000-4000-8000-0000000000{n:02x}")).unwrap()
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    /// An ACL granting `read` on `path` only.
    fn reads(path: &str) -> Acl {
        let text = format!("path \"{path}\" {{ capabilities = [\"read\"] }}");
        Acl::new(&[Arc::new(policy::parse("p", &text).unwrap())], false)
    }

    /// Polls `future` once, as an executor would, and says whether it finished.
    async fn poll_once<F: Future>(future: std::pin::Pin<&mut F>) -> bool {
        let mut future = future;
        poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready())).await
    }

    #[tokio::test]
    async fn concurrent_first_uses_of_a_set_build_it_once() {
        let cache = AclCache::new(100);
        let (started, release) = (&AtomicUsize::new(0), &Notify::new());
        let build = || async move {
            started.fetch_add(1, Ordering::SeqCst);
            release.notified().await;
            Ok(reads("secret/a"))
        };
        let key = (tenant(1), names(&["app"]));
        let mut calls: Vec<_> = (0..32)
            .map(|_| Box::pin(cache.get_or_build(key.clone(), build)))
            .collect();
        // Every call gets as far as it can before the build is released: the first starts
        // the build and waits on the gate; the others must wait on that build rather than
        // start their own.
        for call in &mut calls {
            assert!(!poll_once(call.as_mut()).await);
        }
        assert_eq!(started.load(Ordering::SeqCst), 1);
        release.notify_one();
        let mut acls = Vec::new();
        for call in calls {
            acls.push(call.await.unwrap());
        }
        assert_eq!(cache.builds(), 1);
        assert!(acls.iter().all(|acl| Arc::ptr_eq(acl, &acls[0])));
        assert!(acls[0].allows("secret/a", Capability::Read, false));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_first_uses_on_several_threads_build_once() {
        const CALLERS: usize = 64;
        let cache = Arc::new(AclCache::new(100));
        let barrier = Arc::new(Barrier::new(CALLERS));
        let tasks: Vec<_> = (0..CALLERS)
            .map(|_| {
                let (cache, barrier) = (cache.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    cache
                        .get_or_build((tenant(1), names(&["app"])), || async move {
                            Ok(reads("secret/a"))
                        })
                        .await
                })
            })
            .collect();
        for task in tasks {
            assert!(task
                .await
                .unwrap()
                .unwrap()
                .allows("secret/a", Capability::Read, false));
        }
        assert_eq!(cache.builds(), 1);
    }

    #[tokio::test]
    async fn forgetting_a_tenant_keeps_every_other_tenants_acls() {
        let cache = AclCache::new(100);
        let (acme, globex) = (tenant(1), tenant(2));
        let set = names(&["app"]);
        let acme_before = cache
            .get_or_build((acme, set.clone()), || async { Ok(reads("old")) })
            .await
            .unwrap();
        let globex_before = cache
            .get_or_build((globex, set.clone()), || async { Ok(reads("g")) })
            .await
            .unwrap();
        assert_eq!(cache.builds(), 2);

        cache.forget_tenant(acme);
        let acme_after = cache
            .get_or_build((acme, set.clone()), || async { Ok(reads("new")) })
            .await
            .unwrap();
        assert_eq!(cache.builds(), 3, "acme's set is rebuilt");
        assert!(acme_after.allows("new", Capability::Read, false));
        assert!(!acme_after.allows("old", Capability::Read, false));
        assert!(!Arc::ptr_eq(&acme_before, &acme_after));

        let globex_after = cache
            .get_or_build((globex, set), || async { Ok(reads("rebuilt")) })
            .await
            .unwrap();
        assert_eq!(cache.builds(), 3, "globex's set stayed cached");
        assert!(Arc::ptr_eq(&globex_before, &globex_after));
    }

    #[tokio::test]
    async fn a_build_racing_a_policy_write_never_stays_cached() {
        let cache = AclCache::new(100);
        let key = (tenant(1), names(&["app"]));
        let release = &Notify::new();
        let mut racing = pin!(cache.get_or_build(key.clone(), || async move {
            release.notified().await;
            Ok(reads("before-the-write"))
        }));
        assert!(!poll_once(racing.as_mut()).await);
        // The policy write lands while the build above still reads the old policies.
        cache.forget_tenant(key.0);
        let after = cache
            .get_or_build(key.clone(), || async { Ok(reads("after-the-write")) })
            .await
            .unwrap();
        assert!(after.allows("after-the-write", Capability::Read, false));
        release.notify_one();
        let raced = racing.await.unwrap();
        assert!(raced.allows("before-the-write", Capability::Read, false));
        // The racing build answered its own caller only.
        let later = cache
            .get_or_build(key, || async { Ok(reads("unexpected")) })
            .await
            .unwrap();
        assert!(Arc::ptr_eq(&later, &after));
        assert_eq!(cache.builds(), 2);
    }

    #[tokio::test]
    async fn a_failed_build_is_retried_by_the_next_caller() {
        let cache = AclCache::new(100);
        let key = (tenant(1), names(&["app"]));
        let failed = cache
            .get_or_build(key.clone(), || async {
                Err(Error::internal("store unavailable"))
            })
            .await;
        assert!(failed.is_err());
        let acl = cache
            .get_or_build(key, || async { Ok(reads("a")) })
            .await
            .unwrap();
        assert!(acl.allows("a", Capability::Read, false));
        assert_eq!(cache.builds(), 2);
    }

    #[tokio::test]
    async fn the_cache_stays_bounded_and_correct_past_its_capacity() {
        const CAPACITY: u64 = 16;
        let cache = AclCache::new(CAPACITY);
        // A caller minting tokens with ever new policy sets.
        for i in 0..2_000 {
            let path = format!("p/{i}");
            let acl = cache
                .get_or_build((tenant(1), vec![format!("made-up-{i}")]), || {
                    let acl = reads(&path);
                    async move { Ok(acl) }
                })
                .await
                .unwrap();
            assert!(acl.allows(&path, Capability::Read, false));
            assert!(!acl.allows("p/other", Capability::Read, false));
        }
        cache.slots.run_pending_tasks();
        assert!(
            cache.slots.entry_count() <= CAPACITY,
            "{} entries",
            cache.slots.entry_count()
        );
        // Whatever was evicted, every set still gets its own ACL.
        for i in [0, 999, 1_999] {
            let path = format!("p/{i}");
            let acl = cache
                .get_or_build((tenant(1), vec![format!("made-up-{i}")]), || {
                    let acl = reads(&path);
                    async move { Ok(acl) }
                })
                .await
                .unwrap();
            assert!(acl.allows(&path, Capability::Read, false));
        }
    }
}
