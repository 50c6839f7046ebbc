//! Named metadata values and the audit log checkpoints.

use keybroker_core::store::StoreError;

use super::{get, map_error, to_i64, to_u64, SqliteStore};

impl SqliteStore {
    pub(super) async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT value FROM meta WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)
    }

    pub(super) async fn put_meta_if_absent(
        &self,
        name: &str,
        value: &[u8],
    ) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    pub(super) async fn put_audit_checkpoint(
        &self,
        sink: &str,
        sequence: u64,
        head: &[u8],
    ) -> Result<(), StoreError> {
        // Strictly greater: the first head recorded for a sequence stands.
        sqlx::query(
            "INSERT INTO audit_checkpoints (sink, sequence, head) VALUES (?, ?, ?) \
             ON CONFLICT (sink) DO UPDATE SET sequence = excluded.sequence, head = excluded.head \
             WHERE excluded.sequence > audit_checkpoints.sequence",
        )
        .bind(sink)
        .bind(to_i64(sequence))
        .bind(head)
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    pub(super) async fn latest_audit_checkpoint(
        &self,
        sink: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let row = sqlx::query("SELECT sequence, head FROM audit_checkpoints WHERE sink = ?")
            .bind(sink)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?;
        row.map(|row| {
            Ok((
                to_u64(get(&row, "sequence")?, "audit_checkpoints.sequence")?,
                get(&row, "head")?,
            ))
        })
        .transpose()
    }
}
