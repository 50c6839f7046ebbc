//! Tenants: creating, listing, and deleting one with everything it owns.
//!
//! Only the methods whose transactions differ between the engines; the rest, and the
//! `Store` impl, are in `shared/tenants.rs`.

use keybroker_core::{changes::Change, store::StoreError, TenantId};

use super::feed::announce_in;
use super::tokens::{hashes, token_changes};
use super::{execute_with_id, lock_row, map_error, PostgresStore};

impl PostgresStore {
    pub(super) async fn delete_tenant(&self, tenant: TenantId) -> Result<bool, StoreError> {
        if tenant == TenantId::ROOT {
            return Ok(false);
        }
        let id = tenant.to_string();
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        // Locking the tenant first makes writes referring to it (they take a key-share lock
        // for their foreign key) finish before, or fail after: none slips in unannounced.
        let lock = sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE");
        if !lock_row(&mut tx, lock.bind(&id)).await? {
            return Ok(false);
        }
        // Tokens first (revocation): the tenant's, and any its mounts issued, which the
        // mounts' cascade would delete unannounced. Then mounts, whose keys, versions,
        // AppRole rows and mount-storage entries cascade.
        let revoked = sqlx::query(
            "DELETE FROM tokens WHERE tenant_id = $1 \
             OR auth_mount_id IN (SELECT id FROM mounts WHERE tenant_id = $1) RETURNING hash",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let revoked = hashes(&revoked)?;
        for statement in [
            "DELETE FROM policies WHERE tenant_id = $1",
            "DELETE FROM mounts WHERE tenant_id = $1",
        ] {
            execute_with_id(&mut tx, statement, &id).await?;
        }
        let deleted = execute_with_id(&mut tx, "DELETE FROM tenants WHERE id = $1", &id).await?;
        let changes = [Change::TenantDeleted(tenant), Change::Tenants];
        announce_in(&mut tx, changes.into_iter().chain(token_changes(&revoked))).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(deleted == 1)
    }
}
