//! Template of the `Store` methods for tenants: creating, listing, and deleting one with
//! everything it owns (see the parent module).

/// Appends the tenant methods, then hands on to `policies`. Creating a tenant goes through
/// the engine's `execute_write` (PostgreSQL announces it); deleting one is the engine's own
/// (`<engine>/tenants.rs`): PostgreSQL locks the tenant first and announces what goes.
macro_rules! methods {
    ($store:ident, $dialect:ident, [$($methods:tt)*], [$($items:tt)*]) => {
        $crate::shared::policies::methods! { $store, $dialect, [$($methods)*
            async fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)",
                    postgres: "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)",
                ))
                .bind(tenant.id.to_string())
                .bind(&tenant.name)
                .bind(tenant.created_at);
                self.execute_write(query, |_| [Change::Tenants]).await?;
                Ok(())
            }

            async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT * FROM tenants WHERE id <> ? ORDER BY name",
                    postgres: "SELECT * FROM tenants WHERE id <> $1 ORDER BY name",
                ));
                all_records(&self.pool, query.bind(TenantId::ROOT.to_string()), tenant_from_row).await
            }

            async fn delete_tenant(&self, tenant: TenantId) -> Result<bool, StoreError> {
                self.delete_tenant(tenant).await
            }
        ], [$($items)*] }
    };
}

pub(crate) use methods;
