//! Template of the `Store` methods for named metadata values and the audit log checkpoints
//! (see the parent module).

/// Appends the metadata and audit checkpoint methods, then hands on to `tenants`.
macro_rules! methods {
    ($store:ident, $dialect:ident, [$($methods:tt)*], [$($items:tt)*]) => {
        $crate::shared::tenants::methods! { $store, $dialect, [$($methods)*
            async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
                sqlx::query_scalar($crate::shared::sql!($dialect,
                    sqlite: "SELECT value FROM meta WHERE name = ?",
                    postgres: "SELECT value FROM meta WHERE name = $1",
                ))
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_error)
            }

            async fn put_meta_if_absent(&self, name: &str, value: &[u8]) -> Result<bool, StoreError> {
                let result = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                    postgres: "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                ))
                .bind(name)
                .bind(value)
                .execute(&self.pool)
                .await
                .map_err(map_error)?;
                Ok(result.rows_affected() == 1)
            }

            async fn put_audit_checkpoint(
                &self,
                sink: &str,
                sequence: u64,
                head: &[u8],
            ) -> Result<(), StoreError> {
                // Strictly greater: the first head recorded for a sequence stands.
                sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "INSERT INTO audit_checkpoints (sink, sequence, head) VALUES (?, ?, ?) \
                     ON CONFLICT (sink) DO UPDATE SET sequence = excluded.sequence, head = excluded.head \
                     WHERE excluded.sequence > audit_checkpoints.sequence",
                    postgres: "INSERT INTO audit_checkpoints (sink, sequence, head) VALUES ($1, $2, $3) \
                     ON CONFLICT (sink) DO UPDATE SET sequence = excluded.sequence, head = excluded.head \
                     WHERE excluded.sequence > audit_checkpoints.sequence",
                ))
                .bind(sink)
                .bind(to_i64(sequence))
                .bind(head)
                .execute(&self.pool)
                .await
                .map_err(map_error)?;
                Ok(())
            }

            async fn latest_audit_checkpoint(
                &self,
                sink: &str,
            ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
                let row = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT sequence, head FROM audit_checkpoints WHERE sink = ?",
                    postgres: "SELECT sequence, head FROM audit_checkpoints WHERE sink = $1",
                ))
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
        ], [$($items)*] }
    };
}

pub(crate) use methods;
