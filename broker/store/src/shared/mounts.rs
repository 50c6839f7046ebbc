//! Template of the `Store` methods for mounts and their mount-scoped storage entries (see
//! the parent module).

/// Appends the mount and mount-storage methods, then hands on to `tokens`. The statements
/// are built here and run by the engine (`execute_write`; `write_entry` and `remove_entry`
/// in `<engine>/mounts.rs`): PostgreSQL runs each in a transaction of its own that announces
/// it. Deleting a mount is the engine's own: PostgreSQL locks the mount first.
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
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "INSERT INTO mounts (id, tenant_id, path, kind, description, config, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                    postgres: "INSERT INTO mounts (id, tenant_id, path, kind, description, config, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                ))
                .bind(mount.id.to_string())
                .bind(mount.tenant.to_string())
                .bind(&mount.path)
                .bind(&mount.kind)
                .bind(&mount.description)
                .bind(mount.config.to_string())
                .bind(mount.created_at);
                self.execute_write(query, |_| [Change::Mounts(mount.tenant)]).await?;
                Ok(())
            }

            async fn update_mount_config(
                &self,
                tenant: TenantId,
                mount: MountId,
                config: &serde_json::Value,
            ) -> Result<(), StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "UPDATE mounts SET config = ? WHERE tenant_id = ? AND id = ?",
                    postgres: "UPDATE mounts SET config = $1 WHERE tenant_id = $2 AND id = $3",
                ))
                .bind(config.to_string())
                .bind(tenant.to_string())
                .bind(mount.to_string());
                self.execute_write(query, |rows| (rows > 0).then_some(Change::Mounts(tenant))).await?;
                Ok(())
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
                // One statement per expectation, the comparison inside it: atomic against
                // every other writer, on this connection pool or another. (On PostgreSQL, two
                // nodes updating the same version: the second waits for the first's row lock,
                // then re-checks its WHERE on the row the first committed, and updates
                // nothing.)
                let statement = match expect {
                    Expect::Any => $crate::shared::sql!($dialect,
                        sqlite: "INSERT INTO mount_entries (tenant_id, mount_id, key, value, version) \
                         VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (tenant_id, mount_id, key) \
                         DO UPDATE SET value = excluded.value, version = mount_entries.version + 1 \
                         RETURNING version",
                        postgres: "INSERT INTO mount_entries (tenant_id, mount_id, key, value, version) \
                         VALUES ($1, $2, $3, $4, 1) ON CONFLICT (tenant_id, mount_id, key) \
                         DO UPDATE SET value = excluded.value, version = mount_entries.version + 1 \
                         RETURNING version",
                    ),
                    Expect::Absent => $crate::shared::sql!($dialect,
                        sqlite: "INSERT INTO mount_entries (tenant_id, mount_id, key, value, version) \
                         VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (tenant_id, mount_id, key) DO NOTHING \
                         RETURNING version",
                        postgres: "INSERT INTO mount_entries (tenant_id, mount_id, key, value, version) \
                         VALUES ($1, $2, $3, $4, 1) ON CONFLICT (tenant_id, mount_id, key) DO NOTHING \
                         RETURNING version",
                    ),
                    Expect::Version(_) => $crate::shared::sql!($dialect,
                        sqlite: "UPDATE mount_entries SET value = ?4, version = version + 1 \
                         WHERE tenant_id = ?1 AND mount_id = ?2 AND key = ?3 AND version = ?5 \
                         RETURNING version",
                        postgres: "UPDATE mount_entries SET value = $4, version = version + 1 \
                         WHERE tenant_id = $1 AND mount_id = $2 AND key = $3 AND version = $5 \
                         RETURNING version",
                    ),
                };
                // Every argument owned: the engine may hand the query to a writer task
                // (SQLite's group commit).
                let mut query = sqlx::query_scalar(statement)
                    .bind(tenant.to_string())
                    .bind(mount.to_string())
                    .bind(key.to_owned())
                    .bind(value.to_string());
                if let Expect::Version(version) = expect {
                    query = query.bind(to_i64(version));
                }
                // Nothing written: the expectation failed.
                let version = self.write_entry(query, tenant, mount, key).await?;
                to_u64(version.ok_or(StoreError::ExpectationFailed)?, "mount_entries.version")
            }

            async fn delete_entry(
                &self,
                tenant: TenantId,
                mount: MountId,
                key: &str,
                expect: Expect,
            ) -> Result<bool, StoreError> {
                let (tenant_text, mount_text) = (tenant.to_string(), mount.to_string());
                let (statement, version) = match expect {
                    Expect::Absent => {
                        let present = sqlx::query($crate::shared::sql!($dialect,
                            sqlite: "SELECT 1 FROM mount_entries WHERE tenant_id = ? AND mount_id = ? AND key = ?",
                            postgres: "SELECT 1 FROM mount_entries \
                             WHERE tenant_id = $1 AND mount_id = $2 AND key = $3",
                        ))
                        .bind(&tenant_text)
                        .bind(&mount_text)
                        .bind(key)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(map_error)?
                        .is_some();
                        return if present {
                            Err(StoreError::ExpectationFailed)
                        } else {
                            Ok(false)
                        };
                    }
                    Expect::Any => (
                        $crate::shared::sql!($dialect,
                            sqlite: "DELETE FROM mount_entries WHERE tenant_id = ?1 AND mount_id = ?2 AND key = ?3",
                            postgres: "DELETE FROM mount_entries WHERE tenant_id = $1 AND mount_id = $2 AND key = $3",
                        ),
                        None,
                    ),
                    Expect::Version(version) => (
                        $crate::shared::sql!($dialect,
                            sqlite: "DELETE FROM mount_entries \
                             WHERE tenant_id = ?1 AND mount_id = ?2 AND key = ?3 AND version = ?4",
                            postgres: "DELETE FROM mount_entries \
                             WHERE tenant_id = $1 AND mount_id = $2 AND key = $3 AND version = $4",
                        ),
                        Some(to_i64(version)),
                    ),
                };
                let mut query = sqlx::query(statement).bind(&tenant_text).bind(&mount_text).bind(key);
                if let Some(version) = version {
                    query = query.bind(version);
                }
                let deleted = self.remove_entry(query, tenant, mount, key).await?;
                if !deleted && version.is_some() {
                    return Err(StoreError::ExpectationFailed);
                }
                Ok(deleted)
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
