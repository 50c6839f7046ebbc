//! Template of the `Store` methods for transit keys, their versions and the per-version
//! counters (see the parent module).

/// Appends the key methods, `insert_key` and `insert_version`, then finishes the impl.
/// Every key method is shared; single-statement writes go through the engine's `execute_write`.
macro_rules! methods {
    ($store:ident, $dialect:ident, [$($methods:tt)*], [$($items:tt)*]) => {
        $crate::shared::finish! { $store, $dialect, [$($methods)*
            async fn create_key(
                &self,
                key: &KeyRecord,
                first: &KeyVersionRecord,
            ) -> Result<(), StoreError> {
                let (_turn, mut tx) = self.write_transaction().await?;
                insert_key(&mut tx, key).await?;
                insert_version(&mut tx, key.tenant, first).await?;
                tx.commit().await.map_err(map_error)
            }

            async fn get_key(
                &self,
                tenant: TenantId,
                mount: MountId,
                name: &str,
            ) -> Result<Option<KeyRecord>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT * FROM transit_keys WHERE tenant_id = ? AND mount_id = ? AND name = ?",
                    postgres: "SELECT * FROM transit_keys WHERE tenant_id = $1 AND mount_id = $2 AND name = $3",
                ));
                let query = query.bind(tenant.to_string()).bind(mount.to_string()).bind(name);
                optional_record(&self.pool, query, key_from_row).await
            }

            async fn get_key_versions(
                &self,
                tenant: TenantId,
                key: KeyId,
            ) -> Result<Vec<KeyVersionRecord>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT * FROM transit_key_versions WHERE tenant_id = ? AND key_id = ? ORDER BY version",
                    postgres: "SELECT * FROM transit_key_versions WHERE tenant_id = $1 AND key_id = $2 ORDER BY version",
                ));
                let query = query.bind(tenant.to_string()).bind(key.to_string());
                all_records(&self.pool, query, version_from_row).await
            }

            async fn list_keys(&self, tenant: TenantId, mount: MountId) -> Result<Vec<String>, StoreError> {
                sqlx::query_scalar($crate::shared::sql!($dialect,
                    sqlite: "SELECT name FROM transit_keys WHERE tenant_id = ? AND mount_id = ? ORDER BY name",
                    postgres: "SELECT name FROM transit_keys WHERE tenant_id = $1 AND mount_id = $2 ORDER BY name",
                ))
                .bind(tenant.to_string())
                .bind(mount.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(map_error)
            }

            async fn list_auto_rotating_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
                // No parameter: the same text on both engines.
                let query = sqlx::query("SELECT * FROM transit_keys WHERE auto_rotate_period > 0");
                all_records(&self.pool, query, key_from_row).await
            }

            async fn update_key_config(&self, key: &KeyRecord) -> Result<(), StoreError> {
                // A trim that raised min_available_version past either min version since the
                // caller read the key wins: nothing changes.
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "UPDATE transit_keys SET min_decryption_version = ?, min_encryption_version = ?, \
                     deletion_allowed = ?, auto_rotate_period = ?, exportable = ?, \
                     allow_plaintext_backup = ? WHERE tenant_id = ? AND id = ? \
                     AND min_available_version <= ? AND min_available_version <= ?",
                    postgres: "UPDATE transit_keys SET min_decryption_version = $1, min_encryption_version = $2, \
                     deletion_allowed = $3, auto_rotate_period = $4, exportable = $5, \
                     allow_plaintext_backup = $6 WHERE tenant_id = $7 AND id = $8 \
                     AND min_available_version <= $9 AND min_available_version <= $10",
                ))
                .bind(i64::from(key.min_decryption_version))
                .bind(i64::from(key.min_encryption_version))
                .bind(key.deletion_allowed)
                .bind(to_i64(key.auto_rotate_period))
                .bind(key.options.exportable)
                .bind(key.options.allow_plaintext_backup)
                .bind(key.tenant.to_string())
                .bind(key.id.to_string())
                .bind(i64::from(key.min_decryption_version))
                .bind(i64::from(key.min_encryption_version));
                self.execute_write(query, |rows| (rows > 0).then_some(Change::Key(key.tenant, key.id))).await?;
                Ok(())
            }

            async fn trim_key_versions(
                &self,
                tenant: TenantId,
                key: KeyId,
                min_available_version: u32,
            ) -> Result<Vec<KeyVersionRecord>, StoreError> {
                let (_turn, mut tx) = self.write_transaction().await?;
                // Checked against the row as committed (on PostgreSQL, a racing config
                // change or trim waits on the row lock): never lowered, never above either
                // min version.
                let moved = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "UPDATE transit_keys SET min_available_version = ? \
                     WHERE tenant_id = ? AND id = ? AND min_available_version <= ? \
                     AND min_decryption_version >= ? AND min_encryption_version >= ?",
                    postgres: "UPDATE transit_keys SET min_available_version = $1 \
                     WHERE tenant_id = $2 AND id = $3 AND min_available_version <= $4 \
                     AND min_decryption_version >= $5 AND min_encryption_version >= $6",
                ))
                .bind(i64::from(min_available_version))
                .bind(tenant.to_string())
                .bind(key.to_string())
                .bind(i64::from(min_available_version))
                .bind(i64::from(min_available_version))
                .bind(i64::from(min_available_version))
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
                if moved.rows_affected() != 1 {
                    return Err(StoreError::ExpectationFailed);
                }
                let deleted = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "DELETE FROM transit_key_versions WHERE tenant_id = ? AND key_id = ? \
                     AND version < ? RETURNING *",
                    postgres: "DELETE FROM transit_key_versions WHERE tenant_id = $1 AND key_id = $2 \
                     AND version < $3 RETURNING *",
                ))
                .bind(tenant.to_string())
                .bind(key.to_string())
                .bind(i64::from(min_available_version))
                .fetch_all(&mut *tx)
                .await
                .map_err(map_error)?;
                let mut versions = deleted
                    .iter()
                    .map(version_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                versions.sort_by_key(|v| v.version);
                $crate::shared::postgres_only!($dialect, {
                    feed::announce_in(&mut tx, [Change::Key(tenant, key)]).await?;
                });
                tx.commit().await.map_err(map_error)?;
                Ok(versions)
            }

            async fn add_key_version(
                &self,
                tenant: TenantId,
                expected_latest: u32,
                version: &KeyVersionRecord,
            ) -> Result<bool, StoreError> {
                let (_turn, mut tx) = self.write_transaction().await?;
                // Compare-and-set. On PostgreSQL, a racing rotation waits on the row lock,
                // then re-checks `latest_version` against the committed row and moves
                // nothing.
                let moved = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "UPDATE transit_keys SET latest_version = ?, rotated_at = ? \
                     WHERE tenant_id = ? AND id = ? AND latest_version = ?",
                    postgres: "UPDATE transit_keys SET latest_version = $1, rotated_at = $2 \
                     WHERE tenant_id = $3 AND id = $4 AND latest_version = $5",
                ))
                .bind(i64::from(version.version))
                .bind(version.created_at)
                .bind(tenant.to_string())
                .bind(version.key.to_string())
                .bind(i64::from(expected_latest))
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
                if moved.rows_affected() != 1 {
                    return Ok(false);
                }
                insert_version(&mut tx, tenant, version).await?;
                $crate::shared::postgres_only!($dialect, {
                    feed::announce_in(&mut tx, [Change::Key(tenant, version.key)]).await?;
                });
                tx.commit().await.map_err(map_error)?;
                Ok(true)
            }

            async fn restore_key(
                &self,
                key: &KeyRecord,
                versions: &[KeyVersionRecord],
                replace: bool,
            ) -> Result<Option<KeyId>, StoreError> {
                let tenant = key.tenant;
                let (_turn, mut tx) = self.write_transaction().await?;
                let mut replaced = None;
                // (version, counter_reserved) of the key restored over itself.
                let mut counted: Vec<(i64, i64)> = Vec::new();
                if replace {
                    // On PostgreSQL the row lock holds off a racing rotation or config change
                    // until this restore commits.
                    let existing: Option<String> = sqlx::query_scalar($crate::shared::sql!($dialect,
                        sqlite: "SELECT id FROM transit_keys WHERE tenant_id = ? AND mount_id = ? AND name = ?",
                        postgres: "SELECT id FROM transit_keys WHERE tenant_id = $1 AND mount_id = $2 AND name = $3 \
                         FOR UPDATE",
                    ))
                    .bind(tenant.to_string())
                    .bind(key.mount.to_string())
                    .bind(&key.name)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_error)?;
                    if let Some(text) = existing {
                        let id = KeyId::parse(&text).ok_or_else(|| corrupt("transit key id"))?;
                        if id == key.id {
                            // Deleting the versions first reads their counts as they stand
                            // (locked on PostgreSQL): a count never goes backwards.
                            let rows = sqlx::query($crate::shared::sql!($dialect,
                                sqlite: "DELETE FROM transit_key_versions WHERE tenant_id = ? AND key_id = ? \
                                 RETURNING version, counter_reserved",
                                postgres: "DELETE FROM transit_key_versions WHERE tenant_id = $1 AND key_id = $2 \
                                 RETURNING version, counter_reserved",
                            ))
                            .bind(tenant.to_string())
                            .bind(id.to_string())
                            .fetch_all(&mut *tx)
                            .await
                            .map_err(map_error)?;
                            for row in &rows {
                                counted.push((get(row, "version")?, get(row, "counter_reserved")?));
                            }
                        }
                        sqlx::query($crate::shared::sql!($dialect,
                            sqlite: "DELETE FROM transit_keys WHERE tenant_id = ? AND id = ?",
                            postgres: "DELETE FROM transit_keys WHERE tenant_id = $1 AND id = $2",
                        ))
                        .bind(tenant.to_string())
                        .bind(id.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(map_error)?;
                        replaced = Some(id);
                    }
                }
                insert_key(&mut tx, key).await?;
                for version in versions {
                    let mut version = version.clone();
                    if let Some((_, reserved)) =
                        counted.iter().find(|(v, _)| *v == i64::from(version.version))
                    {
                        let reserved = to_u64(*reserved, "counter_reserved")?;
                        version.counter_reserved = version.counter_reserved.max(reserved);
                    }
                    insert_version(&mut tx, tenant, &version).await?;
                }
                $crate::shared::postgres_only!($dialect, {
                    let mut changes = vec![Change::Key(tenant, key.id)];
                    changes.extend(replaced.filter(|id| *id != key.id).map(|id| Change::Key(tenant, id)));
                    feed::announce_in(&mut tx, changes).await?;
                });
                tx.commit().await.map_err(map_error)?;
                Ok(replaced)
            }

            async fn delete_key(&self, tenant: TenantId, key: KeyId) -> Result<(), StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "DELETE FROM transit_keys WHERE tenant_id = ? AND id = ?",
                    postgres: "DELETE FROM transit_keys WHERE tenant_id = $1 AND id = $2",
                ))
                .bind(tenant.to_string())
                .bind(key.to_string());
                self.execute_write(query, |rows| (rows > 0).then_some(Change::Key(tenant, key))).await?;
                Ok(())
            }

            async fn reserve_counter(
                &self,
                tenant: TenantId,
                key: KeyId,
                version: u32,
                block: u64,
                limit: u64,
            ) -> Result<(u64, u64), StoreError> {
                // One statement, atomic against every other writer of the row (on PostgreSQL,
                // on any node: the row lock queues them). The right-hand sides see the row as
                // it was before this update, so `counter_previous` keeps the value before
                // this reservation. PostgreSQL's new value is SQLite's
                // MIN(reserved + block, MAX(reserved, limit)), written so that it cannot
                // overflow: reserved + LEAST(block, GREATEST(limit - reserved, 0)).
                let row = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "UPDATE transit_key_versions \
                     SET counter_previous = counter_reserved, \
                         counter_reserved = MIN(counter_reserved + ?, MAX(counter_reserved, ?)) \
                     WHERE tenant_id = ? AND key_id = ? AND version = ? \
                     RETURNING counter_previous, counter_reserved",
                    postgres: "UPDATE transit_key_versions \
                     SET counter_previous = counter_reserved, \
                         counter_reserved = counter_reserved \
                             + LEAST($1, GREATEST($2 - counter_reserved, 0)) \
                     WHERE tenant_id = $3 AND key_id = $4 AND version = $5 \
                     RETURNING counter_previous, counter_reserved",
                ))
                .bind(to_i64(block))
                .bind(to_i64(limit))
                .bind(tenant.to_string())
                .bind(key.to_string())
                .bind(i64::from(version))
                .fetch_optional(&self.pool)
                .await
                .map_err(map_error)?
                .ok_or_else(|| corrupt("key version to count does not exist"))?;
                let before = to_u64(get(&row, "counter_previous")?, "counter_previous")?;
                let after = to_u64(get(&row, "counter_reserved")?, "counter_reserved")?;
                Ok((before, after))
            }
        ], [$($items)*
            /// Inserts a key's row in `tx` (a key's creation or restore).
            async fn insert_key(
                tx: &mut sqlx::Transaction<'_, Engine>,
                key: &KeyRecord,
            ) -> Result<(), StoreError> {
                sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "INSERT INTO transit_keys (id, tenant_id, mount_id, name, key_type, backend, mode, \
                     backend_reference, min_decryption_version, min_encryption_version, deletion_allowed, \
                     auto_rotate_period, latest_version, created_at, rotated_at, bound, derived, \
                     convergent_encryption, exportable, allow_plaintext_backup, imported, key_size, \
                     imported_key_allow_rotation, min_available_version) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    postgres: "INSERT INTO transit_keys (id, tenant_id, mount_id, name, key_type, backend, mode, \
                     backend_reference, min_decryption_version, min_encryption_version, deletion_allowed, \
                     auto_rotate_period, latest_version, created_at, rotated_at, bound, derived, \
                     convergent_encryption, exportable, allow_plaintext_backup, imported, key_size, \
                     imported_key_allow_rotation, min_available_version) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                     $17, $18, $19, $20, $21, $22, $23, $24)",
                ))
                .bind(key.id.to_string())
                .bind(key.tenant.to_string())
                .bind(key.mount.to_string())
                .bind(&key.name)
                .bind(&key.key_type)
                .bind(&key.backend)
                .bind(key.mode.as_str())
                .bind(&key.backend_reference)
                .bind(i64::from(key.min_decryption_version))
                .bind(i64::from(key.min_encryption_version))
                .bind(key.deletion_allowed)
                .bind(to_i64(key.auto_rotate_period))
                .bind(i64::from(key.latest_version))
                .bind(key.created_at)
                .bind(key.rotated_at)
                .bind(key.bound)
                .bind(key.options.derived)
                .bind(key.options.convergent_encryption)
                .bind(key.options.exportable)
                .bind(key.options.allow_plaintext_backup)
                .bind(key.options.imported)
                .bind(i64::from(key.options.key_size))
                .bind(key.options.imported_key_allow_rotation)
                .bind(i64::from(key.min_available_version))
                .execute(&mut **tx)
                .await
                .map_err(map_error)?;
                Ok(())
            }

            /// Inserts a key version in `tx` (a key's creation, rotation or restore).
            async fn insert_version(
                tx: &mut sqlx::Transaction<'_, Engine>,
                tenant: TenantId,
                version: &KeyVersionRecord,
            ) -> Result<(), StoreError> {
                sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "INSERT INTO transit_key_versions (key_id, tenant_id, version, backend_reference, \
                     wrapped_dek, payload_format, created_at, counter_reserved, public_key) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    postgres: "INSERT INTO transit_key_versions (key_id, tenant_id, version, backend_reference, \
                     wrapped_dek, payload_format, created_at, counter_reserved, public_key) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                ))
                .bind(version.key.to_string())
                .bind(tenant.to_string())
                .bind(i64::from(version.version))
                .bind(&version.backend_reference)
                .bind(&version.wrapped_dek)
                .bind(i64::from(version.payload_format))
                .bind(version.created_at)
                .bind(to_i64(version.counter_reserved))
                .bind(&version.public_key)
                .execute(&mut **tx)
                .await
                .map_err(map_error)?;
                Ok(())
            }
        ] }
    };
}

pub(crate) use methods;
