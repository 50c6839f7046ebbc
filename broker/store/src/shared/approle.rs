//! Template of the `Store` methods for AppRole roles and their secret IDs (see the parent
//! module). All of them are shared: no cache holds them, so nothing is announced.

/// Appends the AppRole methods, then hands on to `keys`.
macro_rules! methods {
    ($store:ident, $dialect:ident, [$($methods:tt)*], [$($items:tt)*]) => {
        $crate::shared::keys::methods! { $store, $dialect, [$($methods)*
            async fn put_approle_role(&self, role: &AppRoleRecord) -> Result<(), StoreError> {
                // An upsert, never a delete and insert: the role's secret_ids (ON DELETE
                // CASCADE) survive an update.
                sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "INSERT INTO approle_roles (tenant_id, mount_id, name, role_id, bind_secret_id, \
                     secret_id_num_uses, secret_id_ttl, secret_id_bound_cidrs, token_bound_cidrs, \
                     token_policies, token_ttl, token_max_ttl, token_explicit_max_ttl, token_num_uses, \
                     token_no_default_policy, created_at, token_period) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (tenant_id, mount_id, name) DO UPDATE SET \
                     role_id = excluded.role_id, bind_secret_id = excluded.bind_secret_id, \
                     secret_id_num_uses = excluded.secret_id_num_uses, \
                     secret_id_ttl = excluded.secret_id_ttl, \
                     secret_id_bound_cidrs = excluded.secret_id_bound_cidrs, \
                     token_bound_cidrs = excluded.token_bound_cidrs, \
                     token_policies = excluded.token_policies, token_ttl = excluded.token_ttl, \
                     token_max_ttl = excluded.token_max_ttl, \
                     token_explicit_max_ttl = excluded.token_explicit_max_ttl, \
                     token_num_uses = excluded.token_num_uses, \
                     token_no_default_policy = excluded.token_no_default_policy, \
                     token_period = excluded.token_period",
                    postgres: "INSERT INTO approle_roles (tenant_id, mount_id, name, role_id, bind_secret_id, \
                     secret_id_num_uses, secret_id_ttl, secret_id_bound_cidrs, token_bound_cidrs, \
                     token_policies, token_ttl, token_max_ttl, token_explicit_max_ttl, token_num_uses, \
                     token_no_default_policy, created_at, token_period) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                     ON CONFLICT (tenant_id, mount_id, name) DO UPDATE SET \
                     role_id = excluded.role_id, bind_secret_id = excluded.bind_secret_id, \
                     secret_id_num_uses = excluded.secret_id_num_uses, \
                     secret_id_ttl = excluded.secret_id_ttl, \
                     secret_id_bound_cidrs = excluded.secret_id_bound_cidrs, \
                     token_bound_cidrs = excluded.token_bound_cidrs, \
                     token_policies = excluded.token_policies, token_ttl = excluded.token_ttl, \
                     token_max_ttl = excluded.token_max_ttl, \
                     token_explicit_max_ttl = excluded.token_explicit_max_ttl, \
                     token_num_uses = excluded.token_num_uses, \
                     token_no_default_policy = excluded.token_no_default_policy, \
                     token_period = excluded.token_period",
                ))
                .bind(role.tenant.to_string())
                .bind(role.mount.to_string())
                .bind(&role.name)
                .bind(&role.role_id)
                .bind(role.bind_secret_id)
                .bind(to_i64(role.secret_id_num_uses))
                .bind(to_i64(role.secret_id_ttl))
                .bind(to_json(&role.secret_id_bound_cidrs)?)
                .bind(to_json(&role.token_bound_cidrs)?)
                .bind(to_json(&role.token_policies)?)
                .bind(to_i64(role.token_ttl))
                .bind(to_i64(role.token_max_ttl))
                .bind(to_i64(role.token_explicit_max_ttl))
                .bind(to_i64(role.token_num_uses))
                .bind(role.token_no_default_policy)
                .bind(role.created_at)
                .bind(to_i64(role.token_period))
                .execute(&self.pool)
                .await
                .map_err(map_error)?;
                Ok(())
            }

            async fn get_approle_role(
                &self,
                tenant: TenantId,
                mount: MountId,
                name: &str,
            ) -> Result<Option<AppRoleRecord>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT * FROM approle_roles WHERE tenant_id = ? AND mount_id = ? AND name = ?",
                    postgres: "SELECT * FROM approle_roles WHERE tenant_id = $1 AND mount_id = $2 AND name = $3",
                ));
                let query = query.bind(tenant.to_string()).bind(mount.to_string()).bind(name);
                optional_record(&self.pool, query, role_from_row).await
            }

            async fn get_approle_role_by_role_id(
                &self,
                tenant: TenantId,
                mount: MountId,
                role_id: &str,
            ) -> Result<Option<AppRoleRecord>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT * FROM approle_roles WHERE tenant_id = ? AND mount_id = ? AND role_id = ?",
                    postgres: "SELECT * FROM approle_roles WHERE tenant_id = $1 AND mount_id = $2 AND role_id = $3",
                ));
                let query = query.bind(tenant.to_string()).bind(mount.to_string()).bind(role_id);
                optional_record(&self.pool, query, role_from_row).await
            }

            async fn list_approle_roles(
                &self,
                tenant: TenantId,
                mount: MountId,
            ) -> Result<Vec<String>, StoreError> {
                sqlx::query_scalar($crate::shared::sql!($dialect,
                    sqlite: "SELECT name FROM approle_roles WHERE tenant_id = ? AND mount_id = ? ORDER BY name",
                    postgres: "SELECT name FROM approle_roles WHERE tenant_id = $1 AND mount_id = $2 ORDER BY name",
                ))
                .bind(tenant.to_string())
                .bind(mount.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(map_error)
            }

            async fn delete_approle_role(
                &self,
                tenant: TenantId,
                mount: MountId,
                name: &str,
            ) -> Result<bool, StoreError> {
                // Its secret_ids go with it (ON DELETE CASCADE).
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "DELETE FROM approle_roles WHERE tenant_id = ? AND mount_id = ? AND name = ?",
                    postgres: "DELETE FROM approle_roles WHERE tenant_id = $1 AND mount_id = $2 AND name = $3",
                ));
                let query = query.bind(tenant.to_string()).bind(mount.to_string()).bind(name);
                let result = query.execute(&self.pool).await.map_err(map_error)?;
                Ok(result.rows_affected() == 1)
            }

            async fn put_approle_secret_id(&self, secret_id: &SecretIdRecord) -> Result<(), StoreError> {
                sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "INSERT INTO approle_secret_ids (tenant_id, mount_id, role_name, hash, accessor, \
                     metadata, cidr_list, token_bound_cidrs, uses_remaining, num_uses, ttl, created_at, \
                     expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    postgres: "INSERT INTO approle_secret_ids (tenant_id, mount_id, role_name, hash, accessor, \
                     metadata, cidr_list, token_bound_cidrs, uses_remaining, num_uses, ttl, created_at, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                ))
                .bind(secret_id.tenant.to_string())
                .bind(secret_id.mount.to_string())
                .bind(&secret_id.role_name)
                .bind(&secret_id.hash)
                .bind(&secret_id.accessor)
                .bind(to_json(&secret_id.metadata)?)
                .bind(to_json(&secret_id.cidr_list)?)
                .bind(to_json(&secret_id.token_bound_cidrs)?)
                .bind(secret_id.uses_remaining.map(to_i64))
                .bind(to_i64(secret_id.num_uses))
                .bind(to_i64(secret_id.ttl))
                .bind(secret_id.created_at)
                .bind(secret_id.expires_at)
                .execute(&self.pool)
                .await
                .map_err(map_error)?;
                Ok(())
            }

            async fn get_approle_secret_id(
                &self,
                tenant: TenantId,
                mount: MountId,
                role_name: &str,
                hash: &[u8],
            ) -> Result<Option<SecretIdRecord>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT * FROM approle_secret_ids \
                     WHERE tenant_id = ? AND mount_id = ? AND role_name = ? AND hash = ?",
                    postgres: "SELECT * FROM approle_secret_ids \
                     WHERE tenant_id = $1 AND mount_id = $2 AND role_name = $3 AND hash = $4",
                ));
                let query = query.bind(tenant.to_string()).bind(mount.to_string());
                optional_record(&self.pool, query.bind(role_name).bind(hash), secret_id_from_row).await
            }

            async fn get_approle_secret_id_by_accessor(
                &self,
                tenant: TenantId,
                mount: MountId,
                role_name: &str,
                accessor: &str,
            ) -> Result<Option<SecretIdRecord>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT * FROM approle_secret_ids \
                     WHERE tenant_id = ? AND mount_id = ? AND role_name = ? AND accessor = ?",
                    postgres: "SELECT * FROM approle_secret_ids \
                     WHERE tenant_id = $1 AND mount_id = $2 AND role_name = $3 AND accessor = $4",
                ));
                let query = query.bind(tenant.to_string()).bind(mount.to_string()).bind(role_name);
                optional_record(&self.pool, query.bind(accessor), secret_id_from_row).await
            }

            async fn list_approle_secret_id_accessors(
                &self,
                tenant: TenantId,
                mount: MountId,
                role_name: &str,
            ) -> Result<Vec<String>, StoreError> {
                sqlx::query_scalar($crate::shared::sql!($dialect,
                    sqlite: "SELECT accessor FROM approle_secret_ids \
                     WHERE tenant_id = ? AND mount_id = ? AND role_name = ? ORDER BY accessor",
                    postgres: "SELECT accessor FROM approle_secret_ids \
                     WHERE tenant_id = $1 AND mount_id = $2 AND role_name = $3 ORDER BY accessor",
                ))
                .bind(tenant.to_string())
                .bind(mount.to_string())
                .bind(role_name)
                .fetch_all(&self.pool)
                .await
                .map_err(map_error)
            }

            async fn delete_approle_secret_id(
                &self,
                tenant: TenantId,
                mount: MountId,
                role_name: &str,
                hash: &[u8],
            ) -> Result<bool, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "DELETE FROM approle_secret_ids \
                     WHERE tenant_id = ? AND mount_id = ? AND role_name = ? AND hash = ?",
                    postgres: "DELETE FROM approle_secret_ids \
                     WHERE tenant_id = $1 AND mount_id = $2 AND role_name = $3 AND hash = $4",
                ));
                let query = query.bind(tenant.to_string()).bind(mount.to_string());
                let query = query.bind(role_name).bind(hash);
                let result = query.execute(&self.pool).await.map_err(map_error)?;
                Ok(result.rows_affected() == 1)
            }

            async fn use_approle_secret_id(
                &self,
                tenant: TenantId,
                mount: MountId,
                role_name: &str,
                hash: &[u8],
            ) -> Result<Option<u64>, StoreError> {
                let tenant = tenant.to_string();
                let mount = mount.to_string();
                // One statement: of any number of concurrent logins (on PostgreSQL, on any
                // number of nodes), exactly as many as there were uses left see a row come
                // back (on PostgreSQL the row lock queues them; each re-checks
                // `uses_remaining > 0` against the committed row).
                let left: Option<i64> = sqlx::query_scalar($crate::shared::sql!($dialect,
                    sqlite: "UPDATE approle_secret_ids SET uses_remaining = uses_remaining - 1 \
                     WHERE tenant_id = ? AND mount_id = ? AND role_name = ? AND hash = ? \
                     AND uses_remaining > 0 RETURNING uses_remaining",
                    postgres: "UPDATE approle_secret_ids SET uses_remaining = uses_remaining - 1 \
                     WHERE tenant_id = $1 AND mount_id = $2 AND role_name = $3 AND hash = $4 \
                     AND uses_remaining > 0 RETURNING uses_remaining",
                ))
                .bind(&tenant)
                .bind(&mount)
                .bind(role_name)
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_error)?;
                if left.is_none() || left == Some(0) {
                    let query = sqlx::query($crate::shared::sql!($dialect,
                        sqlite: "DELETE FROM approle_secret_ids \
                         WHERE tenant_id = ? AND mount_id = ? AND role_name = ? AND hash = ? \
                         AND uses_remaining <= 0",
                        postgres: "DELETE FROM approle_secret_ids \
                         WHERE tenant_id = $1 AND mount_id = $2 AND role_name = $3 AND hash = $4 \
                         AND uses_remaining <= 0",
                    ));
                    let query = query.bind(&tenant).bind(&mount).bind(role_name).bind(hash);
                    query.execute(&self.pool).await.map_err(map_error)?;
                }
                left.map(|l| to_u64(l, "approle_secret_ids.uses_remaining"))
                    .transpose()
            }

            async fn tidy_approle_secret_ids(
                &self,
                tenant: TenantId,
                mount: MountId,
                now: i64,
                limit: u32,
            ) -> Result<u64, StoreError> {
                // PostgreSQL has no rowid: there, the batch is chosen by primary key.
                let result = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "DELETE FROM approle_secret_ids WHERE rowid IN ( \
                         SELECT rowid FROM approle_secret_ids \
                         WHERE mount_id = ?1 AND tenant_id = ?2 \
                         AND expires_at IS NOT NULL AND expires_at <= ?3 LIMIT ?4)",
                    postgres: "DELETE FROM approle_secret_ids WHERE (tenant_id, mount_id, role_name, hash) IN ( \
                         SELECT tenant_id, mount_id, role_name, hash FROM approle_secret_ids \
                         WHERE mount_id = $1 AND tenant_id = $2 \
                         AND expires_at IS NOT NULL AND expires_at <= $3 LIMIT $4)",
                ))
                .bind(mount.to_string())
                .bind(tenant.to_string())
                .bind(now)
                .bind(i64::from(limit))
                .execute(&self.pool)
                .await
                .map_err(map_error)?;
                Ok(result.rows_affected())
            }
        ], [$($items)*] }
    };
}

pub(crate) use methods;
