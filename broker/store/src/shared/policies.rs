//! Template of the `Store` methods for ACL policies, by tenant and name (see the parent
//! module).

/// Appends the policy methods, then hands on to `mounts`. Writes go through the engine's
/// `execute_write`, which on PostgreSQL announces them in their transaction.
macro_rules! methods {
    ($store:ident, $dialect:ident, [$($methods:tt)*], [$($items:tt)*]) => {
        $crate::shared::mounts::methods! { $store, $dialect, [$($methods)*
            async fn put_policy(
                &self,
                tenant: TenantId,
                name: &str,
                text: &str,
                now: i64,
            ) -> Result<(), StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "INSERT INTO policies (tenant_id, name, text, updated_at) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (tenant_id, name) DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at",
                    postgres: "INSERT INTO policies (tenant_id, name, text, updated_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (tenant_id, name) DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at",
                ))
                .bind(tenant.to_string())
                .bind(name)
                .bind(text)
                .bind(now);
                self.execute_write(query, |_| [Change::Policies(tenant)]).await?;
                Ok(())
            }

            async fn get_policy(&self, tenant: TenantId, name: &str) -> Result<Option<String>, StoreError> {
                sqlx::query_scalar($crate::shared::sql!($dialect,
                    sqlite: "SELECT text FROM policies WHERE tenant_id = ? AND name = ?",
                    postgres: "SELECT text FROM policies WHERE tenant_id = $1 AND name = $2",
                ))
                .bind(tenant.to_string())
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_error)
            }

            async fn list_policies(&self, tenant: TenantId) -> Result<Vec<String>, StoreError> {
                sqlx::query_scalar($crate::shared::sql!($dialect,
                    sqlite: "SELECT name FROM policies WHERE tenant_id = ? ORDER BY name",
                    postgres: "SELECT name FROM policies WHERE tenant_id = $1 ORDER BY name",
                ))
                .bind(tenant.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(map_error)
            }

            async fn delete_policy(&self, tenant: TenantId, name: &str) -> Result<bool, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "DELETE FROM policies WHERE tenant_id = ? AND name = ?",
                    postgres: "DELETE FROM policies WHERE tenant_id = $1 AND name = $2",
                ))
                .bind(tenant.to_string())
                .bind(name);
                let rows = self.execute_write(query, |rows| (rows == 1).then_some(Change::Policies(tenant))).await?;
                Ok(rows == 1)
            }
        ], [$($items)*] }
    };
}

pub(crate) use methods;
