//! Tokens: issuing, looking up, using, revoking and tidying.

use keybroker_core::{
    store::{StoreError, TokenRecord},
    MountId, TenantId,
};

use super::{get, map_error, to_i64, to_json, to_u64, token_from_row, SqliteStore};

impl SqliteStore {
    pub(super) async fn put_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        for token in tokens {
            sqlx::query(
                "INSERT INTO tokens (hash, accessor, tenant_id, policies, display_name, \
                 created_at, expires_at, ttl, max_expires_at, uses_remaining, parent_accessor, \
                 meta, renewable, bound_cidrs, period, auth_mount_id) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&token.hash)
            .bind(&token.accessor)
            .bind(token.tenant.to_string())
            .bind(to_json(&token.policies)?)
            .bind(&token.display_name)
            .bind(token.created_at)
            .bind(token.expires_at)
            .bind(to_i64(token.ttl))
            .bind(token.max_expires_at)
            .bind(token.uses_remaining.map(to_i64))
            .bind(&token.parent_accessor)
            .bind(to_json(&token.meta)?)
            .bind(token.renewable)
            .bind(to_json(&token.bound_cidrs)?)
            .bind(to_i64(token.period))
            .bind(token.auth_mount.map(|m| m.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        }
        tx.commit().await.map_err(map_error)
    }

    pub(super) async fn get_token(&self, hash: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query("SELECT * FROM tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    pub(super) async fn get_token_by_accessor(
        &self,
        tenant: TenantId,
        accessor: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query("SELECT * FROM tokens WHERE tenant_id = ? AND accessor = ?")
            .bind(tenant.to_string())
            .bind(accessor)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    pub(super) async fn revoke_token_tree(
        &self,
        tenant: TenantId,
        accessor: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let rows = sqlx::query(
            "WITH RECURSIVE tree(accessor) AS ( \
                 SELECT accessor FROM tokens WHERE tenant_id = ?1 AND accessor = ?2 \
                 UNION SELECT t.accessor FROM tokens t JOIN tree ON t.parent_accessor = tree.accessor) \
             DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM tree) \
             RETURNING hash",
        )
        .bind(tenant.to_string())
        .bind(accessor)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        rows.iter().map(|row| get(row, "hash")).collect()
    }

    pub(super) async fn revoke_mount_tokens(
        &self,
        tenant: TenantId,
        mount: MountId,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let rows = sqlx::query(
            "WITH RECURSIVE tree(accessor) AS ( \
                 SELECT accessor FROM tokens WHERE tenant_id = ?1 AND auth_mount_id = ?2 \
                 UNION SELECT t.accessor FROM tokens t JOIN tree ON t.parent_accessor = tree.accessor) \
             DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM tree) \
             RETURNING hash",
        )
        .bind(tenant.to_string())
        .bind(mount.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        rows.iter().map(|row| get(row, "hash")).collect()
    }

    pub(super) async fn set_token_expiry(
        &self,
        hash: &[u8],
        expires_at: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE tokens SET expires_at = ? WHERE hash = ?")
            .bind(expires_at)
            .bind(hash)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    pub(super) async fn use_token(&self, hash: &[u8]) -> Result<Option<u64>, StoreError> {
        let left: Option<i64> = sqlx::query_scalar(
            "UPDATE tokens SET uses_remaining = uses_remaining - 1 \
             WHERE hash = ? AND uses_remaining > 0 RETURNING uses_remaining",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        if left.is_none() || left == Some(0) {
            // The last use (or none left): the token is gone for everyone from now on.
            sqlx::query("DELETE FROM tokens WHERE hash = ? AND uses_remaining <= 0")
                .bind(hash)
                .execute(&self.pool)
                .await
                .map_err(map_error)?;
        }
        left.map(|l| to_u64(l, "uses_remaining")).transpose()
    }

    pub(super) async fn tidy_tokens(&self, now: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = sqlx::query(
            "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ? RETURNING hash",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter().map(|row| get(row, "hash")).collect()
    }
}
