//! Tenants (namespaces): isolated worlds with their own mounts, tokens and keys. Names are
//! canonical and resolved once, at the edge, into an immutable [`Tenant`].

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
};

use crate::{
    clock::Clock,
    error::{Error, Result},
    store::{Store, StoreError, TenantRecord},
    Tenant, TenantId,
};

/// Names no tenant may take: the root namespace and the broker's own top-level routes.
pub const RESERVED_NAMES: &[&str] = &["root", "sys", "auth", "identity", "cubbyhole"];

/// Checks a tenant name: `^[a-z0-9][a-z0-9_-]{0,63}$`.
pub fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'))
}

/// Every tenant, held in memory by name and id.
pub struct Tenants {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    by_name: RwLock<HashMap<String, Tenant>>,
}

impl std::fmt::Debug for Tenants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tenants(..)")
    }
}

fn to_tenant(record: TenantRecord) -> Tenant {
    Tenant {
        id: record.id,
        name: Arc::from(record.name),
    }
}

impl Tenants {
    /// Loads every tenant from the store.
    pub async fn load(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Result<Self> {
        let tenants = Self {
            store,
            clock,
            by_name: RwLock::new(HashMap::new()),
        };
        tenants.reload().await?;
        Ok(tenants)
    }

    /// Re-reads the tenants from the store.
    pub async fn reload(&self) -> Result<()> {
        let map = self
            .store
            .list_tenants()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), to_tenant(r)))
            .collect();
        if let Ok(mut by_name) = self.by_name.write() {
            *by_name = map;
        }
        Ok(())
    }

    /// The tenant called `name` (`root` or empty is the root namespace).
    pub fn resolve(&self, name: &str) -> Option<Tenant> {
        if name.is_empty() || name == TenantId::ROOT_NAME {
            return Some(Tenant::root());
        }
        self.by_name.read().ok()?.get(name).cloned()
    }

    /// The tenant with this id.
    pub fn by_id(&self, id: TenantId) -> Option<Tenant> {
        if id == TenantId::ROOT {
            return Some(Tenant::root());
        }
        self.by_name
            .read()
            .ok()?
            .values()
            .find(|t| t.id == id)
            .cloned()
    }

    /// Every tenant except root, sorted by name.
    pub fn list(&self) -> Vec<Tenant> {
        let mut all: Vec<Tenant> = self
            .by_name
            .read()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Creates a tenant. `root_mount_names` are the first segments of the root namespace's
    /// mounts: a tenant may not shadow one (`/v1/<name>/…` must stay unambiguous).
    pub async fn create(&self, name: &str, root_mount_names: &[String]) -> Result<Tenant> {
        if !valid_name(name) {
            return Err(Error::invalid(format!(
                "invalid namespace name {name:?}: use 1-64 of a-z, 0-9, '-' and '_', starting with a letter or digit"
            )));
        }
        if RESERVED_NAMES.contains(&name) || root_mount_names.iter().any(|m| m == name) {
            return Err(Error::invalid(format!(
                "namespace name \"{name}\" is reserved"
            )));
        }
        let record = TenantRecord {
            id: TenantId::random(),
            name: name.to_owned(),
            created_at: self.clock.now_unix(),
        };
        match self.store.create_tenant(&record).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                return Err(Error::invalid(format!(
                    "namespace \"{name}\" already exists"
                )))
            }
            Err(other) => return Err(other.into()),
        }
        self.reload().await?;
        Ok(to_tenant(record))
    }

    /// Deletes a tenant's row and everything it owns in the store; the caller purges caches.
    pub async fn delete(&self, name: &str) -> Result<Option<Tenant>> {
        let Some(tenant) = self.resolve(name).filter(|t| t.id != TenantId::ROOT) else {
            return Ok(None);
        };
        self.store.delete_tenant(tenant.id).await?;
        self.reload().await?;
        Ok(Some(tenant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["acme", "a", "globex-2", "x_y", "0day"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "Acme", "-a", "_a", "a/b", "a b", "é", &"a".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
