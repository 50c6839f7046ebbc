//! Mounts and their mount-scoped storage entries.
//!
//! Only the methods whose transactions differ between the engines; the rest, and the
//! `Store` impl, are in `shared/mounts.rs`.

use keybroker_core::{
    changes::Change,
    store::{Expect, MountRecord, StoreError},
    KeyId, MountId, TenantId,
};

use super::feed::announce_in;
use super::tokens::token_changes;
use super::{map_error, to_i64, to_u64, PostgresStore};

impl PostgresStore {
    pub(super) async fn create_mount(&self, mount: &MountRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        sqlx::query(
            "INSERT INTO mounts (id, tenant_id, path, kind, description, config, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(mount.id.to_string())
        .bind(mount.tenant.to_string())
        .bind(&mount.path)
        .bind(&mount.kind)
        .bind(&mount.description)
        .bind(mount.config.to_string())
        .bind(mount.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        announce_in(&mut tx, [Change::Mounts(mount.tenant)]).await?;
        tx.commit().await.map_err(map_error)
    }

    pub(super) async fn update_mount_config(
        &self,
        tenant: TenantId,
        mount: MountId,
        config: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = sqlx::query("UPDATE mounts SET config = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(config.to_string())
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        if result.rows_affected() > 0 {
            announce_in(&mut tx, [Change::Mounts(tenant)]).await?;
        }
        tx.commit().await.map_err(map_error)
    }

    pub(super) async fn delete_mount(
        &self,
        tenant: TenantId,
        mount: MountId,
    ) -> Result<bool, StoreError> {
        let tenant_text = tenant.to_string();
        let mount_text = mount.to_string();
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        // Locked first: a token being stored for this mount (its foreign key takes a
        // key-share lock on the mount) commits before and is found below, or fails after.
        let exists =
            sqlx::query("SELECT 1 FROM mounts WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
                .bind(&tenant_text)
                .bind(&mount_text)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_error)?
                .is_some();
        if !exists {
            return Ok(false);
        }
        // What the cascade will delete and other nodes may have cached: tokens the mount
        // issued, keys in it.
        let tokens: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM tokens WHERE auth_mount_id = $1")
                .bind(&mount_text)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_error)?;
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT id FROM transit_keys WHERE mount_id = $1")
                .bind(&mount_text)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_error)?;
        // Keys and their versions, tokens it issued, its AppRole rows and mount-storage
        // entries go with the mount (ON DELETE CASCADE); the entries are announced by
        // `Change::Mounts` alone.
        let result = sqlx::query("DELETE FROM mounts WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant_text)
            .bind(&mount_text)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        let keys = keys
            .iter()
            .filter_map(|key| KeyId::parse(key))
            .map(|key| Change::Key(tenant, key));
        announce_in(
            &mut tx,
            std::iter::once(Change::Mounts(tenant))
                .chain(token_changes(&tokens))
                .chain(keys),
        )
        .await?;
        tx.commit().await.map_err(map_error)?;
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
        // One statement per expectation, the comparison inside it. Two nodes updating the
        // same version: the second waits for the first's row lock, then re-checks its WHERE
        // on the row the first committed, and updates nothing.
        let statement = match expect {
            Expect::Any => {
                "INSERT INTO mount_entries (tenant_id, mount_id, key, value, version) \
                 VALUES ($1, $2, $3, $4, 1) ON CONFLICT (tenant_id, mount_id, key) \
                 DO UPDATE SET value = excluded.value, version = mount_entries.version + 1 \
                 RETURNING version"
            }
            Expect::Absent => {
                "INSERT INTO mount_entries (tenant_id, mount_id, key, value, version) \
                 VALUES ($1, $2, $3, $4, 1) ON CONFLICT (tenant_id, mount_id, key) DO NOTHING \
                 RETURNING version"
            }
            Expect::Version(_) => {
                "UPDATE mount_entries SET value = $4, version = version + 1 \
                 WHERE tenant_id = $1 AND mount_id = $2 AND key = $3 AND version = $5 \
                 RETURNING version"
            }
        };
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let mut query = sqlx::query_scalar(statement)
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .bind(key)
            .bind(value.to_string());
        if let Expect::Version(version) = expect {
            query = query.bind(to_i64(version));
        }
        let version: Option<i64> = query.fetch_optional(&mut *tx).await.map_err(map_error)?;
        // Nothing written: the transaction rolls back with nothing to announce.
        let version = version.ok_or(StoreError::ExpectationFailed)?;
        announce_in(&mut tx, [Change::MountEntry(tenant, mount, key.to_owned())]).await?;
        tx.commit().await.map_err(map_error)?;
        to_u64(version, "mount_entries.version")
    }

    pub(super) async fn delete_entry(
        &self,
        tenant: TenantId,
        mount: MountId,
        key: &str,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        let (tenant_text, mount_text) = (tenant.to_string(), mount.to_string());
        let (statement, version) = match expect {
            Expect::Absent => {
                let present = sqlx::query(
                    "SELECT 1 FROM mount_entries \
                     WHERE tenant_id = $1 AND mount_id = $2 AND key = $3",
                )
                .bind(&tenant_text)
                .bind(&mount_text)
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
                "DELETE FROM mount_entries WHERE tenant_id = $1 AND mount_id = $2 AND key = $3",
                None,
            ),
            Expect::Version(version) => (
                "DELETE FROM mount_entries \
                 WHERE tenant_id = $1 AND mount_id = $2 AND key = $3 AND version = $4",
                Some(to_i64(version)),
            ),
        };
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let mut query = sqlx::query(statement)
            .bind(&tenant_text)
            .bind(&mount_text)
            .bind(key);
        if let Some(version) = version {
            query = query.bind(version);
        }
        let deleted = query
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected()
            == 1;
        if !deleted {
            return match version {
                Some(_) => Err(StoreError::ExpectationFailed),
                None => Ok(false),
            };
        }
        announce_in(&mut tx, [Change::MountEntry(tenant, mount, key.to_owned())]).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(true)
    }
}
