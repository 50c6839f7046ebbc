//! ACL policies, by tenant and name.
//!
//! Only the methods whose transactions differ between the engines; the rest, and the
//! `Store` impl, are in `shared/policies.rs`.

use keybroker_core::{changes::Change, store::StoreError, TenantId};

use super::feed::announce_in;
use super::{map_error, PostgresStore};

impl PostgresStore {
    pub(super) async fn put_policy(
        &self,
        tenant: TenantId,
        name: &str,
        text: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        sqlx::query(
            "INSERT INTO policies (tenant_id, name, text, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at",
        )
        .bind(tenant.to_string())
        .bind(name)
        .bind(text)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        announce_in(&mut tx, [Change::Policies(tenant)]).await?;
        tx.commit().await.map_err(map_error)
    }

    pub(super) async fn delete_policy(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = sqlx::query("DELETE FROM policies WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.to_string())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        let deleted = result.rows_affected() == 1;
        if deleted {
            announce_in(&mut tx, [Change::Policies(tenant)]).await?;
        }
        tx.commit().await.map_err(map_error)?;
        Ok(deleted)
    }
}
