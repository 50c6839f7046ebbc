//! Template of the `Store` methods for tokens: issuing, looking up, using, revoking and
//! tidying, and token roles (see the parent module).

/// Appends the token methods, then hands on to `approle`. Revoking (`revoke_tree`, given
/// the query), using and tidying are the engine's own (`<engine>/tokens.rs`), renewing
/// goes through `execute_write`: PostgreSQL announces every token they touch, in their
/// transaction.
macro_rules! methods {
    ($store:ident, $dialect:ident, [$($methods:tt)*], [$($items:tt)*]) => {
        $crate::shared::approle::methods! { $store, $dialect, [$($methods)*
            async fn put_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError> {
                let (_turn, mut tx) = self.write_transaction().await?;
                for token in tokens {
                    sqlx::query($crate::shared::sql!($dialect,
                        sqlite: "INSERT INTO tokens (hash, accessor, tenant_id, policies, display_name, \
                         created_at, expires_at, ttl, max_expires_at, uses_remaining, parent_accessor, \
                         meta, renewable, bound_cidrs, period, auth_mount_id) \
                         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        postgres: "INSERT INTO tokens (hash, accessor, tenant_id, policies, display_name, \
                         created_at, expires_at, ttl, max_expires_at, uses_remaining, parent_accessor, \
                         meta, renewable, bound_cidrs, period, auth_mount_id) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                    ))
                    .bind(&token.hash)
                    .bind(&token.accessor)
                    .bind(token.tenant.to_string())
                    .bind(to_json(&token.policies)?)
                    .bind(&token.display_name)
                    .bind(token.created_at)
                    .bind(token.expires_at)
                    .bind(to_i64(token.ttl))
                    .bind(token.max_expires_at)
                    .bind(token.uses_remaining.map(to_i64))
                    .bind(&token.parent_accessor)
                    .bind(to_json(&token.meta)?)
                    .bind(token.renewable)
                    .bind(to_json(&token.bound_cidrs)?)
                    .bind(to_i64(token.period))
                    .bind(token.auth_mount.map(|m| m.to_string()))
                    .execute(&mut *tx)
                    .await
                    .map_err(map_error)?;
                }
                tx.commit().await.map_err(map_error)
            }

            async fn get_token(&self, hash: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT * FROM tokens WHERE hash = ?",
                    postgres: "SELECT * FROM tokens WHERE hash = $1",
                ));
                optional_record(&self.pool, query.bind(hash), token_from_row).await
            }

            async fn get_token_by_accessor(
                &self,
                tenant: TenantId,
                accessor: &str,
            ) -> Result<Option<TokenRecord>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT * FROM tokens WHERE tenant_id = ? AND accessor = ?",
                    postgres: "SELECT * FROM tokens WHERE tenant_id = $1 AND accessor = $2",
                ))
                .bind(tenant.to_string())
                .bind(accessor);
                optional_record(&self.pool, query, token_from_row).await
            }

            async fn revoke_token_tree(
                &self,
                tenant: TenantId,
                accessor: &str,
            ) -> Result<Vec<Vec<u8>>, StoreError> {
                // The token and its descendants, in the engine's transaction.
                let statement = $crate::shared::sql!($dialect,
                    sqlite: "WITH RECURSIVE tree(accessor) AS ( \
                         SELECT accessor FROM tokens WHERE tenant_id = ?1 AND accessor = ?2 \
                         UNION SELECT t.accessor FROM tokens t JOIN tree ON t.parent_accessor = tree.accessor) \
                     DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM tree) \
                     RETURNING hash",
                    postgres: "WITH RECURSIVE tree(accessor) AS ( \
                         SELECT accessor FROM tokens WHERE tenant_id = $1 AND accessor = $2 \
                         UNION SELECT t.accessor FROM tokens t JOIN tree ON t.parent_accessor = tree.accessor) \
                     DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM tree) \
                     RETURNING hash",
                );
                let query = sqlx::query(statement).bind(tenant.to_string()).bind(accessor);
                self.revoke_tree(query).await
            }

            async fn revoke_mount_tokens(
                &self,
                tenant: TenantId,
                mount: MountId,
            ) -> Result<Vec<Vec<u8>>, StoreError> {
                // The tokens the mount issued and their descendants.
                let statement = $crate::shared::sql!($dialect,
                    sqlite: "WITH RECURSIVE tree(accessor) AS ( \
                         SELECT accessor FROM tokens WHERE tenant_id = ?1 AND auth_mount_id = ?2 \
                         UNION SELECT t.accessor FROM tokens t JOIN tree ON t.parent_accessor = tree.accessor) \
                     DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM tree) \
                     RETURNING hash",
                    postgres: "WITH RECURSIVE tree(accessor) AS ( \
                         SELECT accessor FROM tokens WHERE tenant_id = $1 AND auth_mount_id = $2 \
                         UNION SELECT t.accessor FROM tokens t JOIN tree ON t.parent_accessor = tree.accessor) \
                     DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM tree) \
                     RETURNING hash",
                );
                let query = sqlx::query(statement).bind(tenant.to_string()).bind(mount.to_string());
                self.revoke_tree(query).await
            }

            async fn set_token_expiry(&self, hash: &[u8], expires_at: i64) -> Result<(), StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "UPDATE tokens SET expires_at = ? WHERE hash = ?",
                    postgres: "UPDATE tokens SET expires_at = $1 WHERE hash = $2",
                ))
                .bind(expires_at)
                .bind(hash);
                self.execute_write(query, |rows| (rows > 0).then(|| Change::Token(hash.to_vec()))).await?;
                Ok(())
            }

            async fn use_token(&self, hash: &[u8]) -> Result<Option<u64>, StoreError> {
                self.use_token(hash).await
            }

            async fn tidy_tokens(&self, now: i64) -> Result<Vec<Vec<u8>>, StoreError> {
                self.tidy_tokens(now).await
            }

            async fn revoke_token_orphan(
                &self,
                tenant: TenantId,
                accessor: &str,
            ) -> Result<Vec<Vec<u8>>, StoreError> {
                self.revoke_orphan(tenant, accessor).await
            }

            async fn list_token_accessors(&self, tenant: TenantId) -> Result<Vec<String>, StoreError> {
                sqlx::query_scalar($crate::shared::sql!($dialect,
                    sqlite: "SELECT accessor FROM tokens WHERE tenant_id = ? ORDER BY accessor",
                    postgres: "SELECT accessor FROM tokens WHERE tenant_id = $1 ORDER BY accessor",
                ))
                .bind(tenant.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(map_error)
            }

            async fn put_token_role(
                &self,
                tenant: TenantId,
                name: &str,
                role: &serde_json::Value,
            ) -> Result<(), StoreError> {
                // No node caches roles: nothing to announce.
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "INSERT INTO token_roles (tenant_id, name, role) VALUES (?, ?, ?) \
                     ON CONFLICT (tenant_id, name) DO UPDATE SET role = excluded.role",
                    postgres: "INSERT INTO token_roles (tenant_id, name, role) VALUES ($1, $2, $3) \
                     ON CONFLICT (tenant_id, name) DO UPDATE SET role = excluded.role",
                ))
                .bind(tenant.to_string())
                .bind(name)
                .bind(to_json(role)?);
                self.execute_write(query, |_| Vec::new()).await?;
                Ok(())
            }

            async fn get_token_role(
                &self,
                tenant: TenantId,
                name: &str,
            ) -> Result<Option<serde_json::Value>, StoreError> {
                let role: Option<String> = sqlx::query_scalar($crate::shared::sql!($dialect,
                    sqlite: "SELECT role FROM token_roles WHERE tenant_id = ? AND name = ?",
                    postgres: "SELECT role FROM token_roles WHERE tenant_id = $1 AND name = $2",
                ))
                .bind(tenant.to_string())
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_error)?;
                role.map(|text| serde_json::from_str(&text).map_err(|_| corrupt("token_roles.role")))
                    .transpose()
            }

            async fn delete_token_role(&self, tenant: TenantId, name: &str) -> Result<bool, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "DELETE FROM token_roles WHERE tenant_id = ? AND name = ?",
                    postgres: "DELETE FROM token_roles WHERE tenant_id = $1 AND name = $2",
                ))
                .bind(tenant.to_string())
                .bind(name);
                Ok(self.execute_write(query, |_| Vec::new()).await? > 0)
            }

            async fn list_token_roles(&self, tenant: TenantId) -> Result<Vec<String>, StoreError> {
                sqlx::query_scalar($crate::shared::sql!($dialect,
                    sqlite: "SELECT name FROM token_roles WHERE tenant_id = ? ORDER BY name",
                    postgres: "SELECT name FROM token_roles WHERE tenant_id = $1 ORDER BY name",
                ))
                .bind(tenant.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(map_error)
            }

            async fn put_wrapped_response(
                &self,
                record: &WrappedResponseRecord,
            ) -> Result<(), StoreError> {
                // No node caches wrapped responses: nothing to announce.
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "INSERT INTO wrapped_responses (hash, id, tenant_id, accessor, created_at, \
                     expires_at, ttl, creation_path, wrapped_accessor, sealed) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    postgres: "INSERT INTO wrapped_responses (hash, id, tenant_id, accessor, created_at, \
                     expires_at, ttl, creation_path, wrapped_accessor, sealed) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                ))
                .bind(&record.hash)
                .bind(&record.id)
                .bind(record.tenant.to_string())
                .bind(&record.accessor)
                .bind(record.created_at)
                .bind(record.expires_at)
                .bind(to_i64(record.ttl))
                .bind(&record.creation_path)
                .bind(&record.wrapped_accessor)
                .bind(&record.sealed);
                self.execute_write(query, |_| Vec::new()).await?;
                Ok(())
            }

            async fn get_wrapped_response(
                &self,
                tenant: TenantId,
                hash: &[u8],
                now: i64,
            ) -> Result<Option<WrappedResponseRecord>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "SELECT * FROM wrapped_responses \
                     WHERE hash = ? AND tenant_id = ? AND expires_at > ?",
                    postgres: "SELECT * FROM wrapped_responses \
                     WHERE hash = $1 AND tenant_id = $2 AND expires_at > $3",
                ))
                .bind(hash)
                .bind(tenant.to_string())
                .bind(now);
                optional_record(&self.pool, query, wrapped_response_from_row).await
            }

            async fn take_wrapped_response(
                &self,
                tenant: TenantId,
                hash: &[u8],
                now: i64,
            ) -> Result<Option<WrappedResponseRecord>, StoreError> {
                // One statement: the row is gone for everyone else the moment it is read.
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "DELETE FROM wrapped_responses \
                     WHERE hash = ? AND tenant_id = ? AND expires_at > ? RETURNING *",
                    postgres: "DELETE FROM wrapped_responses \
                     WHERE hash = $1 AND tenant_id = $2 AND expires_at > $3 RETURNING *",
                ))
                .bind(hash)
                .bind(tenant.to_string())
                .bind(now);
                optional_record(&self.pool, query, wrapped_response_from_row).await
            }

            async fn rewrap_wrapped_response(
                &self,
                tenant: TenantId,
                old_hash: &[u8],
                now: i64,
                renewed: &WrappedResponseRenewal,
            ) -> Result<Option<WrappedResponseRecord>, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "UPDATE wrapped_responses \
                     SET hash = ?, accessor = ?, created_at = ?, expires_at = ? \
                     WHERE hash = ? AND tenant_id = ? AND expires_at > ? RETURNING *",
                    postgres: "UPDATE wrapped_responses \
                     SET hash = $1, accessor = $2, created_at = $3, expires_at = $4 \
                     WHERE hash = $5 AND tenant_id = $6 AND expires_at > $7 RETURNING *",
                ))
                .bind(&renewed.hash)
                .bind(&renewed.accessor)
                .bind(renewed.created_at)
                .bind(renewed.expires_at)
                .bind(old_hash)
                .bind(tenant.to_string())
                .bind(now);
                optional_record(&self.pool, query, wrapped_response_from_row).await
            }

            async fn tidy_wrapped_responses(&self, now: i64) -> Result<u64, StoreError> {
                let query = sqlx::query($crate::shared::sql!($dialect,
                    sqlite: "DELETE FROM wrapped_responses WHERE expires_at <= ?",
                    postgres: "DELETE FROM wrapped_responses WHERE expires_at <= $1",
                ))
                .bind(now);
                self.execute_write(query, |_| Vec::new()).await
            }
        ], [$($items)*] }
    };
}

pub(crate) use methods;
