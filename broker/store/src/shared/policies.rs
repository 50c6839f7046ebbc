//! Template of the `Store` methods for ACL policies, by tenant and name (see the parent
//! module).

/// Appends the policy methods, then hands on to `mounts`. Writing and deleting a policy are
/// the engine's own (`<engine>/policies.rs`): PostgreSQL announces them.
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
                self.put_policy(tenant, name, text, now).await
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
                self.delete_policy(tenant, name).await
            }
        ], [$($items)*] }
    };
}

pub(crate) use methods;
