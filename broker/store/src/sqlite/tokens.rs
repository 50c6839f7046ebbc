//! Tokens: issuing, looking up, using, revoking and tidying.
//!
//! Only the methods whose transactions differ between the engines; the rest, and the
//! `Store` impl, are in `shared/tokens.rs`.

use keybroker_core::{store::StoreError, TenantId};

use super::{get, map_error, to_u64, BoundQuery, SqliteStore};

impl SqliteStore {
    /// Runs `query`, which deletes a tree of tokens and returns their hashes, in a
    /// transaction.
    pub(super) async fn revoke_tree(
        &self,
        query: BoundQuery<'_>,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let (_turn, mut tx) = self.write_transaction().await?;
        let rows = query.fetch_all(&mut *tx).await.map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        rows.iter().map(|row| get(row, "hash")).collect()
    }

    /// Revokes a token of `tenant` alone and orphans its children, in one transaction;
    /// returns the hashes of both (empty if there is no such token).
    pub(super) async fn revoke_orphan(
        &self,
        tenant: TenantId,
        accessor: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let (_turn, mut tx) = self.write_transaction().await?;
        let revoked =
            sqlx::query("DELETE FROM tokens WHERE tenant_id = ? AND accessor = ? RETURNING hash")
                .bind(tenant.to_string())
                .bind(accessor)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_error)?;
        if revoked.is_empty() {
            return Ok(Vec::new());
        }
        let orphaned = sqlx::query(
            "UPDATE tokens SET parent_accessor = NULL WHERE parent_accessor = ? RETURNING hash",
        )
        .bind(accessor)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        revoked
            .iter()
            .chain(&orphaned)
            .map(|row| get(row, "hash"))
            .collect()
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
