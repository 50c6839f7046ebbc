//! Tenants: creating, listing, and deleting one with everything it owns.
//!
//! Only the methods whose transactions differ between the engines; the rest, and the
//! `Store` impl, are in `shared/tenants.rs`.

use keybroker_core::{store::StoreError, TenantId};

use super::{execute_with_id, map_error, SqliteStore};

impl SqliteStore {
    pub(super) async fn delete_tenant(&self, tenant: TenantId) -> Result<bool, StoreError> {
        if tenant == TenantId::ROOT {
            return Ok(false);
        }
        let id = tenant.to_string();
        let (_turn, mut tx) = self.write_transaction().await?;
        // Tokens first (revocation), then mounts, whose keys and versions, AppRole rows and
        // mount-storage entries cascade.
        for statement in [
            "DELETE FROM tokens WHERE tenant_id = ?",
            "DELETE FROM policies WHERE tenant_id = ?",
            "DELETE FROM mounts WHERE tenant_id = ?",
        ] {
            execute_with_id(&mut tx, statement, &id).await?;
        }
        let deleted = execute_with_id(&mut tx, "DELETE FROM tenants WHERE id = ?", &id).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(deleted == 1)
    }
}
