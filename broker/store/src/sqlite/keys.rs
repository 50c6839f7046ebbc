//! Transit keys, their versions and the per-version counters.

use keybroker_core::{
    store::{KeyRecord, KeyVersionRecord, StoreError},
    KeyId, MountId, TenantId,
};

use super::{corrupt, get, key_from_row, map_error, to_i64, to_u64, version_from_row, SqliteStore};

impl SqliteStore {
    pub(super) async fn create_key(
        &self,
        key: &KeyRecord,
        first: &KeyVersionRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        sqlx::query(
            "INSERT INTO transit_keys (id, tenant_id, mount_id, name, key_type, backend, mode, \
             backend_reference, min_decryption_version, min_encryption_version, deletion_allowed, \
             auto_rotate_period, latest_version, created_at, rotated_at, bound) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(key.id.to_string())
        .bind(key.tenant.to_string())
        .bind(key.mount.to_string())
        .bind(&key.name)
        .bind(&key.key_type)
        .bind(&key.backend)
        .bind(key.mode.as_str())
        .bind(&key.backend_reference)
        .bind(i64::from(key.min_decryption_version))
        .bind(i64::from(key.min_encryption_version))
        .bind(key.deletion_allowed)
        .bind(to_i64(key.auto_rotate_period))
        .bind(i64::from(key.latest_version))
        .bind(key.created_at)
        .bind(key.rotated_at)
        .bind(key.bound)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        insert_version(&mut tx, key.tenant, first).await?;
        tx.commit().await.map_err(map_error)
    }

    pub(super) async fn get_key(
        &self,
        tenant: TenantId,
        mount: MountId,
        name: &str,
    ) -> Result<Option<KeyRecord>, StoreError> {
        sqlx::query("SELECT * FROM transit_keys WHERE tenant_id = ? AND mount_id = ? AND name = ?")
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    pub(super) async fn get_key_versions(
        &self,
        tenant: TenantId,
        key: KeyId,
    ) -> Result<Vec<KeyVersionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM transit_key_versions WHERE tenant_id = ? AND key_id = ? ORDER BY version",
        )
        .bind(tenant.to_string())
        .bind(key.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter().map(version_from_row).collect()
    }

    pub(super) async fn list_keys(
        &self,
        tenant: TenantId,
        mount: MountId,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT name FROM transit_keys WHERE tenant_id = ? AND mount_id = ? ORDER BY name",
        )
        .bind(tenant.to_string())
        .bind(mount.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)
    }

    pub(super) async fn list_auto_rotating_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM transit_keys WHERE auto_rotate_period > 0")
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter().map(key_from_row).collect()
    }

    pub(super) async fn update_key_config(&self, key: &KeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE transit_keys SET min_decryption_version = ?, min_encryption_version = ?, \
             deletion_allowed = ?, auto_rotate_period = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(i64::from(key.min_decryption_version))
        .bind(i64::from(key.min_encryption_version))
        .bind(key.deletion_allowed)
        .bind(to_i64(key.auto_rotate_period))
        .bind(key.tenant.to_string())
        .bind(key.id.to_string())
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    pub(super) async fn add_key_version(
        &self,
        tenant: TenantId,
        expected_latest: u32,
        version: &KeyVersionRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let moved = sqlx::query(
            "UPDATE transit_keys SET latest_version = ?, rotated_at = ? \
             WHERE tenant_id = ? AND id = ? AND latest_version = ?",
        )
        .bind(i64::from(version.version))
        .bind(version.created_at)
        .bind(tenant.to_string())
        .bind(version.key.to_string())
        .bind(i64::from(expected_latest))
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        if moved.rows_affected() != 1 {
            return Ok(false);
        }
        insert_version(&mut tx, tenant, version).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(true)
    }

    pub(super) async fn delete_key(&self, tenant: TenantId, key: KeyId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM transit_keys WHERE tenant_id = ? AND id = ?")
            .bind(tenant.to_string())
            .bind(key.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    pub(super) async fn reserve_counter(
        &self,
        tenant: TenantId,
        key: KeyId,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Result<(u64, u64), StoreError> {
        // One statement, atomic against every other writer of the row. Right-hand sides see
        // the old row, so `counter_previous` keeps the value before this reservation.
        let row = sqlx::query(
            "UPDATE transit_key_versions \
             SET counter_previous = counter_reserved, \
                 counter_reserved = MIN(counter_reserved + ?, MAX(counter_reserved, ?)) \
             WHERE tenant_id = ? AND key_id = ? AND version = ? \
             RETURNING counter_previous, counter_reserved",
        )
        .bind(to_i64(block))
        .bind(to_i64(limit))
        .bind(tenant.to_string())
        .bind(key.to_string())
        .bind(i64::from(version))
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?
        .ok_or_else(|| corrupt("key version to count does not exist"))?;
        let before = to_u64(get(&row, "counter_previous")?, "counter_previous")?;
        let after = to_u64(get(&row, "counter_reserved")?, "counter_reserved")?;
        Ok((before, after))
    }
}

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    tenant: TenantId,
    version: &KeyVersionRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO transit_key_versions (key_id, tenant_id, version, backend_reference, \
         wrapped_dek, payload_format, created_at, counter_reserved, public_key) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(version.key.to_string())
    .bind(tenant.to_string())
    .bind(i64::from(version.version))
    .bind(&version.backend_reference)
    .bind(&version.wrapped_dek)
    .bind(i64::from(version.payload_format))
    .bind(version.created_at)
    .bind(to_i64(version.counter_reserved))
    .bind(&version.public_key)
    .execute(&mut **tx)
    .await
    .map_err(map_error)?;
    Ok(())
}
