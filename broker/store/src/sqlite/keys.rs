//! Transit keys, their versions and the per-version counters.
//!
//! Only the methods whose transactions differ between the engines; the rest, and the
//! `Store` impl, are in `shared/keys.rs`.

use keybroker_core::{
    store::{KeyRecord, StoreError},
    KeyId, TenantId,
};

use super::{map_error, to_i64, SqliteStore};

impl SqliteStore {
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

    pub(super) async fn delete_key(&self, tenant: TenantId, key: KeyId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM transit_keys WHERE tenant_id = ? AND id = ?")
            .bind(tenant.to_string())
            .bind(key.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }
}
