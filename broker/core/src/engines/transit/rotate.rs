//! [Rotate key](https://developer.hashicorp.com/vault/api-docs/secret/transit#rotate-key): `POST /transit/keys/:name/rotate`.
//!
//! Also the rotation an exhausted version forces, and the periodic job's rotation of keys
//! whose `auto_rotate_period` elapsed.

use std::sync::Arc;

use super::{envelope::remember, validate_key_name, KeyInfo, KeyState, Transit};
use crate::{
    error::{Error, Result},
    store::KeyMode,
    MountId, Tenant,
};

impl Transit {
    /// Adds a version to a key and makes it the latest.
    pub async fn rotate(&self, tenant: &Tenant, mount: MountId, name: &str) -> Result<KeyInfo> {
        validate_key_name(name)?;
        let state = self.existing_reloaded(tenant, mount, name).await?;
        let state = self
            .rotate_from(tenant, &state, state.record.latest_version)
            .await?;
        self.info(tenant, &state).await
    }

    /// Rotates unless someone already moved past `from_version`; returns the fresh state.
    pub(super) async fn rotate_from(
        &self,
        tenant: &Tenant,
        state: &KeyState,
        from_version: u32,
    ) -> Result<Arc<KeyState>> {
        let record = &state.record;
        // Vault's rule (`keysutil.Policy.Rotate`): an imported key rotates only if it was
        // imported with `allow_rotation`.
        if record.options.imported && !record.options.imported_key_allow_rotation {
            return Err(Error::invalid(format!(
                "imported key {} does not allow rotation within Vault",
                record.name
            )));
        }
        let instance = self.instance(tenant, &record.backend)?;
        instance.check_available("")?;
        let next = from_version
            .checked_add(1)
            .ok_or_else(|| Error::invalid("key has reached the maximum number of versions"))?;
        let (version, data_key) = self
            .new_version(tenant, record, next, instance.as_ref(), None)
            .await?;
        let added = self
            .store
            .add_key_version(tenant.id, from_version, &version)
            .await?;
        if added {
            instance.cache().purge_key(tenant.id, record.id);
            remember(instance.as_ref(), tenant, record, next, data_key);
        } else if record.mode == KeyMode::Direct {
            // Another rotation won; the backend key made for ours is unused.
            let _ = instance
                .delete_key(tenant, &version.backend_reference)
                .await;
        }
        self.existing_reloaded(tenant, record.mount, &record.name)
            .await
    }

    /// Rotates every key whose `auto_rotate_period` has elapsed; returns how many rotated.
    pub async fn rotate_due_keys(
        &self,
        tenant_of: impl Fn(crate::TenantId) -> Option<Tenant>,
    ) -> Result<usize> {
        let now = self.clock.now_unix();
        let mut rotated = 0;
        for record in self.store.list_auto_rotating_keys().await? {
            let period = i64::try_from(record.auto_rotate_period).unwrap_or(i64::MAX);
            if now.saturating_sub(record.rotated_at) < period {
                continue;
            }
            let Some(tenant) = tenant_of(record.tenant) else {
                continue;
            };
            let Some(state) = self.reload(tenant.id, record.mount, &record.name).await? else {
                continue;
            };
            match self
                .rotate_from(&tenant, &state, record.latest_version)
                .await
            {
                Ok(_) => rotated += 1,
                Err(error) => tracing::warn!(key = %record.id, %error, "automatic rotation failed"),
            }
        }
        Ok(rotated)
    }
}
