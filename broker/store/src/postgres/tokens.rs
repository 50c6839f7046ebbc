//! Tokens: issuing, looking up, using, revoking and tidying.
//!
//! Only the methods whose transactions differ between the engines; the rest, and the
//! `Store` impl, are in `shared/tokens.rs`.

use keybroker_core::{changes::Change, store::StoreError, TenantId};
use sqlx::postgres::PgRow;

use super::feed::announce_in;
use super::{get, map_error, to_u64, BoundQuery, PostgresStore};

impl PostgresStore {
    /// Runs `query`, which deletes a tree of tokens and returns their hashes, in a
    /// transaction.
    pub(super) async fn revoke_tree(
        &self,
        query: BoundQuery<'_>,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let rows = query.fetch_all(&mut *tx).await.map_err(map_error)?;
        let revoked = hashes(&rows)?;
        announce_in(&mut tx, token_changes(&revoked)).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(revoked)
    }

    /// Revokes a token of `tenant` alone and orphans its children, in one transaction that
    /// announces both; returns their hashes (empty if there is no such token).
    pub(super) async fn revoke_orphan(
        &self,
        tenant: TenantId,
        accessor: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let revoked =
            sqlx::query("DELETE FROM tokens WHERE tenant_id = $1 AND accessor = $2 RETURNING hash")
                .bind(tenant.to_string())
                .bind(accessor)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_error)?;
        if revoked.is_empty() {
            return Ok(Vec::new());
        }
        let orphaned = sqlx::query(
            "UPDATE tokens SET parent_accessor = NULL WHERE parent_accessor = $1 RETURNING hash",
        )
        .bind(accessor)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let mut changed = hashes(&revoked)?;
        changed.extend(hashes(&orphaned)?);
        announce_in(&mut tx, token_changes(&changed)).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(changed)
    }

    pub(super) async fn use_token(&self, hash: &[u8]) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        // One statement consumes the use: concurrent callers queue on the row lock and
        // re-check `uses_remaining > 0` against the committed row, so exactly as many
        // succeed as there were uses left.
        let left: Option<i64> = sqlx::query_scalar(
            "UPDATE tokens SET uses_remaining = uses_remaining - 1 \
             WHERE hash = $1 AND uses_remaining > 0 RETURNING uses_remaining",
        )
        .bind(hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?;
        let mut touched = left.is_some();
        if left.is_none() || left == Some(0) {
            // The last use (or none left): the token is gone for everyone from now on.
            let deleted = sqlx::query("DELETE FROM tokens WHERE hash = $1 AND uses_remaining <= 0")
                .bind(hash)
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
            touched |= deleted.rows_affected() > 0;
        }
        if touched {
            announce_in(&mut tx, [Change::Token(hash.to_vec())]).await?;
        }
        tx.commit().await.map_err(map_error)?;
        left.map(|l| to_u64(l, "uses_remaining")).transpose()
    }

    pub(super) async fn tidy_tokens(&self, now: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let rows = sqlx::query(
            "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= $1 RETURNING hash",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let tidied = hashes(&rows)?;
        announce_in(&mut tx, token_changes(&tidied)).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(tidied)
    }
}

pub(super) fn hashes(rows: &[PgRow]) -> Result<Vec<Vec<u8>>, StoreError> {
    rows.iter().map(|row| get(row, "hash")).collect()
}

pub(super) fn token_changes(hashes: &[Vec<u8>]) -> impl Iterator<Item = Change> + '_ {
    hashes.iter().map(|hash| Change::Token(hash.clone()))
}
