//! Transit keys, their versions and the per-version counters.
//!
//! Only the methods whose transactions differ between the engines; the rest, and the
//! `Store` impl, are in `shared/keys.rs`.

use keybroker_core::{
    changes::Change,
    store::{KeyRecord, StoreError},
    KeyId, TenantId,
};

use super::feed::announce_in;
use super::{map_error, to_i64, PostgresStore};

impl PostgresStore {
    pub(super) async fn update_key_config(&self, key: &KeyRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = sqlx::query(
            "UPDATE transit_keys SET min_decryption_version = $1, min_encryption_version = $2, \
             deletion_allowed = $3, auto_rotate_period = $4 WHERE tenant_id = $5 AND id = $6",
        )
        .bind(i64::from(key.min_decryption_version))
        .bind(i64::from(key.min_encryption_version))
        .bind(key.deletion_allowed)
        .bind(to_i64(key.auto_rotate_period))
        .bind(key.tenant.to_string())
        .bind(key.id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        if result.rows_affected() > 0 {
            announce_in(&mut tx, [Change::Key(key.tenant, key.id)]).await?;
        }
        tx.commit().await.map_err(map_error)
    }

    pub(super) async fn delete_key(&self, tenant: TenantId, key: KeyId) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = sqlx::query("DELETE FROM transit_keys WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(key.to_string())
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        if result.rows_affected() > 0 {
            announce_in(&mut tx, [Change::Key(tenant, key)]).await?;
        }
        tx.commit().await.map_err(map_error)
    }
}
