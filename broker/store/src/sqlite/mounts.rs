//! Mounts and their mount-scoped storage entries.
//!
//! Only the methods whose transactions differ between the engines; the rest, and the
//! `Store` impl, are in `shared/mounts.rs`.

use keybroker_core::{store::StoreError, MountId, TenantId};

use super::{map_error, BoundQuery, BoundScalar, SqliteStore};

impl SqliteStore {
    pub(super) async fn delete_mount(
        &self,
        tenant: TenantId,
        mount: MountId,
    ) -> Result<bool, StoreError> {
        // Keys and their versions, AppRole rows and mount-storage entries go with the mount
        // (ON DELETE CASCADE).
        let _turn = self.write_turn().await;
        let result = sqlx::query("DELETE FROM mounts WHERE tenant_id = ? AND id = ?")
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    /// Runs `query`, a mount-storage write returning the entry's new version, if any: in
    /// the next group commit (`super::group_commit`), answered once it is durable.
    pub(super) async fn write_entry(
        &self,
        query: BoundScalar<'static, i64>,
        _tenant: TenantId,
        _mount: MountId,
        _key: &str,
    ) -> Result<Option<i64>, StoreError> {
        self.group_commit(query).await
    }

    /// Runs `query`, a mount-storage deletion; whether it deleted the entry.
    pub(super) async fn remove_entry(
        &self,
        query: BoundQuery<'_>,
        _tenant: TenantId,
        _mount: MountId,
        _key: &str,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let result = query.execute(&self.pool).await.map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }
}
