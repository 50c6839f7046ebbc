//! Mounts and their mount-scoped storage entries.
//!
//! Only the methods whose transactions differ between the engines; the rest, and the
//! `Store` impl, are in `shared/mounts.rs`.

use keybroker_core::{
    store::{Expect, MountRecord, StoreError},
    MountId, TenantId,
};

use super::{map_error, to_i64, to_u64, SqliteStore};

impl SqliteStore {
    pub(super) async fn create_mount(&self, mount: &MountRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mounts (id, tenant_id, path, kind, description, config, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(mount.id.to_string())
        .bind(mount.tenant.to_string())
        .bind(&mount.path)
        .bind(&mount.kind)
        .bind(&mount.description)
        .bind(mount.config.to_string())
        .bind(mount.created_at)
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    pub(super) async fn update_mount_config(
        &self,
        tenant: TenantId,
        mount: MountId,
        config: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE mounts SET config = ? WHERE tenant_id = ? AND id = ?")
            .bind(config.to_string())
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    pub(super) async fn delete_mount(
        &self,
        tenant: TenantId,
        mount: MountId,
    ) -> Result<bool, StoreError> {
        // Keys and their versions, AppRole rows and mount-storage entries go with the mount
        // (ON DELETE CASCADE).
        let result = sqlx::query("DELETE FROM mounts WHERE tenant_id = ? AND id = ?")
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    pub(super) async fn put_entry(
        &self,
        tenant: TenantId,
        mount: MountId,
        key: &str,
        value: &serde_json::Value,
        expect: Expect,
    ) -> Result<u64, StoreError> {
        // One statement per expectation, the comparison inside it: atomic against every
        // other writer, on this connection pool or another.
        let statement = match expect {
            Expect::Any => {
                "INSERT INTO mount_entries (tenant_id, mount_id, key, value, version) \
                 VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (tenant_id, mount_id, key) \
                 DO UPDATE SET value = excluded.value, version = mount_entries.version + 1 \
                 RETURNING version"
            }
            Expect::Absent => {
                "INSERT INTO mount_entries (tenant_id, mount_id, key, value, version) \
                 VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (tenant_id, mount_id, key) DO NOTHING \
                 RETURNING version"
            }
            Expect::Version(_) => {
                "UPDATE mount_entries SET value = ?4, version = version + 1 \
                 WHERE tenant_id = ?1 AND mount_id = ?2 AND key = ?3 AND version = ?5 \
                 RETURNING version"
            }
        };
        let mut query = sqlx::query_scalar(statement)
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .bind(key)
            .bind(value.to_string());
        if let Expect::Version(version) = expect {
            query = query.bind(to_i64(version));
        }
        let version: Option<i64> = query.fetch_optional(&self.pool).await.map_err(map_error)?;
        let version = version.ok_or(StoreError::ExpectationFailed)?;
        to_u64(version, "mount_entries.version")
    }

    pub(super) async fn delete_entry(
        &self,
        tenant: TenantId,
        mount: MountId,
        key: &str,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        let (tenant, mount) = (tenant.to_string(), mount.to_string());
        let (statement, version) = match expect {
            Expect::Absent => {
                let present = sqlx::query(
                    "SELECT 1 FROM mount_entries WHERE tenant_id = ? AND mount_id = ? AND key = ?",
                )
                .bind(&tenant)
                .bind(&mount)
                .bind(key)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_error)?
                .is_some();
                return if present {
                    Err(StoreError::ExpectationFailed)
                } else {
                    Ok(false)
                };
            }
            Expect::Any => (
                "DELETE FROM mount_entries WHERE tenant_id = ?1 AND mount_id = ?2 AND key = ?3",
                None,
            ),
            Expect::Version(version) => (
                "DELETE FROM mount_entries \
                 WHERE tenant_id = ?1 AND mount_id = ?2 AND key = ?3 AND version = ?4",
                Some(to_i64(version)),
            ),
        };
        let mut query = sqlx::query(statement).bind(&tenant).bind(&mount).bind(key);
        if let Some(version) = version {
            query = query.bind(version);
        }
        let deleted = query
            .execute(&self.pool)
            .await
            .map_err(map_error)?
            .rows_affected()
            == 1;
        if !deleted && version.is_some() {
            return Err(StoreError::ExpectationFailed);
        }
        Ok(deleted)
    }
}
