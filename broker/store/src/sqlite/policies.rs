//! ACL policies, by tenant and name.
//!
//! Only the methods whose transactions differ between the engines; the rest, and the
//! `Store` impl, are in `shared/policies.rs`.

use keybroker_core::{store::StoreError, TenantId};

use super::{map_error, SqliteStore};

impl SqliteStore {
    pub(super) async fn put_policy(
        &self,
        tenant: TenantId,
        name: &str,
        text: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO policies (tenant_id, name, text, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at",
        )
        .bind(tenant.to_string())
        .bind(name)
        .bind(text)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    pub(super) async fn delete_policy(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM policies WHERE tenant_id = ? AND name = ?")
            .bind(tenant.to_string())
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }
}
