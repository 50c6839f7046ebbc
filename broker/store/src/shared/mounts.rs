//! Template of the `Store` methods for mounts and their mount-scoped storage entries (see
//! the parent module).

/// Appends the mount and mount-storage methods, then hands on to `tokens`. Every write is
/// the engine's own (`<engine>/mounts.rs`): PostgreSQL runs it in a transaction of its own
/// that announces it, and locks a mount before deleting it.
macro_rules! methods {
    ($store:ident, $dialect:ident, [$($methods:tt)*], [$($items:tt)*]) => {
        $crate::shared::tokens::methods! { $store, $dialect, [$($methods)*
            async fn list_mounts(&self, tenant: TenantId) -> Result<Vec<MountRecord>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT * FROM mounts WHERE tenant_id = ? ORDER BY path",
                    postgres: "SELECT * FROM mounts WHERE tenant_id = $1 ORDER BY path",
                ));
                all_records(&self.pool, query.bind(tenant.to_string()), mount_from_row).await
            }

            async fn create_mount(&self, mount: &MountRecord) -> Result<(), StoreError> {
                self.create_mount(mount).await
            }

            async fn update_mount_config(
                &self,
                tenant: TenantId,
                mount: MountId,
                config: &serde_json::Value,
            ) -> Result<(), StoreError> {
                self.update_mount_config(tenant, mount, config).await
            }

            async fn delete_mount(&self, tenant: TenantId, mount: MountId) -> Result<bool, StoreError> {
                self.delete_mount(tenant, mount).await
            }

            async fn get_entry(
                &self,
                tenant: TenantId,
                mount: MountId,
                key: &str,
            ) -> Result<Option<MountEntry>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT value, version FROM mount_entries \
                     WHERE tenant_id = ? AND mount_id = ? AND key = ?",
                    postgres: "SELECT value, version FROM mount_entries \
                     WHERE tenant_id = $1 AND mount_id = $2 AND key = $3",
                ));
                let query = query.bind(tenant.to_string()).bind(mount.to_string()).bind(key);
                optional_record(&self.pool, query, entry_from_row).await
            }

            async fn put_entry(
                &self,
                tenant: TenantId,
                mount: MountId,
                key: &str,
                value: &serde_json::Value,
                expect: Expect,
            ) -> Result<u64, StoreError> {
                self.put_entry(tenant, mount, key, value, expect).await
            }

            async fn delete_entry(
                &self,
                tenant: TenantId,
                mount: MountId,
                key: &str,
                expect: Expect,
            ) -> Result<bool, StoreError> {
                self.delete_entry(tenant, mount, key, expect).await
            }

            async fn list_entries(
                &self,
                tenant: TenantId,
                mount: MountId,
                prefix: &str,
            ) -> Result<Vec<String>, StoreError> {
                // On PostgreSQL the key column sorts and compares in the "C" collation: byte
                // order, as SQLite.
                let end = crate::prefix_end(prefix);
                let statement = if end.is_some() {
                    $crate::shared::sql!($dialect,
                        sqlite: "SELECT key FROM mount_entries WHERE tenant_id = ? AND mount_id = ? \
                         AND key >= ? AND key < ? ORDER BY key",
                        postgres: "SELECT key FROM mount_entries WHERE tenant_id = $1 AND mount_id = $2 \
                         AND key >= $3 AND key < $4 ORDER BY key",
                    )
                } else {
                    $crate::shared::sql!($dialect,
                        sqlite: "SELECT key FROM mount_entries WHERE tenant_id = ? AND mount_id = ? \
                         AND key >= ? ORDER BY key",
                        postgres: "SELECT key FROM mount_entries WHERE tenant_id = $1 AND mount_id = $2 \
                         AND key >= $3 ORDER BY key",
                    )
                };
                let mut query = sqlx::query_scalar(statement)
                    .bind(tenant.to_string())
                    .bind(mount.to_string())
                    .bind(prefix);
                if let Some(end) = end {
                    query = query.bind(end);
                }
                query.fetch_all(&self.pool).await.map_err(map_error)
            }
        ], [$($items)*] }
    };
}

pub(crate) use methods;
