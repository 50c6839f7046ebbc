//! Mounts and their mount-scoped storage entries.
//!
//! Only the methods whose transactions differ between the engines; the rest, and the
//! `Store` impl, are in `shared/mounts.rs`.

use keybroker_core::{changes::Change, store::StoreError, KeyId, MountId, TenantId};

use super::feed::announce_in;
use super::tokens::token_changes;
use super::{lock_row, map_error, BoundQuery, BoundScalar, PostgresStore};

impl PostgresStore {
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
        let lock = sqlx::query("SELECT 1 FROM mounts WHERE tenant_id = $1 AND id = $2 FOR UPDATE");
        if !lock_row(&mut tx, lock.bind(&tenant_text).bind(&mount_text)).await? {
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

    /// Runs `query`, a mount-storage write returning the entry's new version, if any, and
    /// announces the entry in the same transaction.
    pub(super) async fn write_entry(
        &self,
        query: BoundScalar<'_, i64>,
        tenant: TenantId,
        mount: MountId,
        key: &str,
    ) -> Result<Option<i64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let version = query.fetch_optional(&mut *tx).await.map_err(map_error)?;
        // Nothing written: the transaction rolls back with nothing to announce.
        if version.is_some() {
            announce_in(&mut tx, [Change::MountEntry(tenant, mount, key.to_owned())]).await?;
            tx.commit().await.map_err(map_error)?;
        }
        Ok(version)
    }

    /// Runs `query`, a mount-storage deletion, and announces the entry in the same
    /// transaction; whether it deleted the entry.
    pub(super) async fn remove_entry(
        &self,
        query: BoundQuery<'_>,
        tenant: TenantId,
        mount: MountId,
        key: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = query.execute(&mut *tx).await.map_err(map_error)?;
        if result.rows_affected() != 1 {
            return Ok(false);
        }
        announce_in(&mut tx, [Change::MountEntry(tenant, mount, key.to_owned())]).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(true)
    }
}
