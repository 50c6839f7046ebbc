//! Each tenant's ACL policies: stored as checked HCL text, parsed once, combined into one
//! [`Acl`] per distinct policy set and cached until a policy of that tenant changes.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
};

use crate::{
    clock::Clock,
    error::{Error, Result},
    policy::{self, Acl, Policy},
    store::Store,
    tokens::{DEFAULT_POLICY, ROOT_POLICY},
    TenantId,
};

type AclKey = (TenantId, Vec<String>);

/// Policies of every tenant.
pub struct Policies {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    acls: RwLock<HashMap<AclKey, Arc<Acl>>>,
    /// Bumped by every invalidation: an ACL built while one happened is not cached.
    generation: AtomicU64,
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
    /// Policies backed by `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            clock,
            acls: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
        }
    }

    /// The ACL of a token with these policies in `tenant`. Unknown policy names grant
    /// nothing, as in Vault.
    pub async fn acl(&self, tenant: TenantId, names: &[String]) -> Result<Arc<Acl>> {
        let key = (tenant, names.to_vec());
        if let Some(acl) = self.acls.read().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(acl);
        }
        let before = self.generation.load(Ordering::SeqCst);
        let root = names.iter().any(|n| n == ROOT_POLICY);
        let mut parsed = Vec::new();
        if !root {
            for name in names {
                if let Some(policy) = self.load(tenant, name).await? {
                    parsed.push(Arc::new(policy));
                }
            }
        }
        let acl = Arc::new(Acl::new(&parsed, root));
        if let Ok(mut acls) = self.acls.write() {
            // A policy changed while it was read: this ACL answers this request only.
            if self.generation.load(Ordering::SeqCst) == before {
                acls.insert(key, acl.clone());
            }
        }
        Ok(acl)
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
        if let Ok(mut acls) = self.acls.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            acls.retain(|(t, _), _| *t != tenant);
        }
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
        if let Ok(mut acls) = self.acls.write() {
            self.generation.fetch_add(1, Ordering::SeqCst);
            acls.clear();
        }
    }

    /// Forgets a deleted tenant's ACLs.
    pub fn forget_tenant(&self, tenant: TenantId) {
        self.invalidate(tenant);
    }
}
