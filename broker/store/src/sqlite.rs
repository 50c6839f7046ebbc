//! SQLite implementation of the `Store` trait.

use std::{path::Path, str::FromStr, time::Duration};

use async_trait::async_trait;
use keybroker_core::{
    store::{
        AppRoleRecord, Expect, KeyMode, KeyRecord, KeyVersionRecord, MountEntry, MountRecord,
        SecretIdRecord, Store, StoreError, TenantRecord, TokenRecord,
    },
    KeyId, MountId, TenantId,
};
use sqlx::{
    sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
    },
    Row, SqlitePool,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The embedded store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn map_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::Gone,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Other(Box::new(error)),
    }
}

crate::rows::row_decoders!(SqliteRow, sqlx::Sqlite);

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies migrations.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        Self::with_options(options).await
    }

    /// Opens from a `sqlite:` URL.
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(map_error)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        Self::with_options(options).await
    }

    async fn with_options(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(map_error)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Other(Box::new(e)))?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT value FROM meta WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)
    }

    async fn put_meta_if_absent(&self, name: &str, value: &[u8]) -> Result<bool, StoreError> {
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

    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
            .bind(tenant.id.to_string())
            .bind(&tenant.name)
            .bind(tenant.created_at)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tenants WHERE id <> ? ORDER BY name")
            .bind(TenantId::ROOT.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter()
            .map(|row| {
                Ok(TenantRecord {
                    id: tenant_id(row, "id")?,
                    name: get(row, "name")?,
                    created_at: get(row, "created_at")?,
                })
            })
            .collect()
    }

    async fn delete_tenant(&self, tenant: TenantId) -> Result<bool, StoreError> {
        if tenant == TenantId::ROOT {
            return Ok(false);
        }
        let id = tenant.to_string();
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        // Tokens first (revocation), then mounts, whose keys and versions, AppRole rows and
        // mount-storage entries cascade.
        for statement in [
            "DELETE FROM tokens WHERE tenant_id = ?",
            "DELETE FROM policies WHERE tenant_id = ?",
            "DELETE FROM mounts WHERE tenant_id = ?",
        ] {
            sqlx::query(statement)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
        }
        let deleted = sqlx::query("DELETE FROM tenants WHERE id = ?")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        Ok(deleted.rows_affected() == 1)
    }

    async fn put_policy(
        &self,
        tenant: TenantId,
        name: &str,
        text: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO policies (tenant_id, name, text, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at",
        )
        .bind(tenant.to_string())
        .bind(name)
        .bind(text)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn get_policy(&self, tenant: TenantId, name: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT text FROM policies WHERE tenant_id = ? AND name = ?")
            .bind(tenant.to_string())
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)
    }

    async fn list_policies(&self, tenant: TenantId) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT name FROM policies WHERE tenant_id = ? ORDER BY name")
            .bind(tenant.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)
    }

    async fn delete_policy(&self, tenant: TenantId, name: &str) -> Result<bool, StoreError> {
        let result = sqlx::query("DELETE FROM policies WHERE tenant_id = ? AND name = ?")
            .bind(tenant.to_string())
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn list_mounts(&self, tenant: TenantId) -> Result<Vec<MountRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM mounts WHERE tenant_id = ? ORDER BY path")
            .bind(tenant.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter().map(mount_from_row).collect()
    }

    async fn create_mount(&self, mount: &MountRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mounts (id, tenant_id, path, kind, description, config, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(mount.id.to_string())
        .bind(mount.tenant.to_string())
        .bind(&mount.path)
        .bind(&mount.kind)
        .bind(&mount.description)
        .bind(mount.config.to_string())
        .bind(mount.created_at)
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn update_mount_config(
        &self,
        tenant: TenantId,
        mount: MountId,
        config: &serde_json::Value,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE mounts SET config = ? WHERE tenant_id = ? AND id = ?")
            .bind(config.to_string())
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn delete_mount(&self, tenant: TenantId, mount: MountId) -> Result<bool, StoreError> {
        // Keys and their versions, AppRole rows and mount-storage entries go with the mount
        // (ON DELETE CASCADE).
        let result = sqlx::query("DELETE FROM mounts WHERE tenant_id = ? AND id = ?")
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn get_entry(
        &self,
        tenant: TenantId,
        mount: MountId,
        key: &str,
    ) -> Result<Option<MountEntry>, StoreError> {
        sqlx::query(
            "SELECT value, version FROM mount_entries \
             WHERE tenant_id = ? AND mount_id = ? AND key = ?",
        )
        .bind(tenant.to_string())
        .bind(mount.to_string())
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?
        .as_ref()
        .map(entry_from_row)
        .transpose()
    }

    async fn put_entry(
        &self,
        tenant: TenantId,
        mount: MountId,
        key: &str,
        value: &serde_json::Value,
        expect: Expect,
    ) -> Result<u64, StoreError> {
        // One statement per expectation, the comparison inside it: atomic against every
        // other writer, on this connection pool or another.
        let statement = match expect {
            Expect::Any => {
                "INSERT INTO mount_entries (tenant_id, mount_id, key, value, version) \
                 VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (tenant_id, mount_id, key) \
                 DO UPDATE SET value = excluded.value, version = mount_entries.version + 1 \
                 RETURNING version"
            }
            Expect::Absent => {
                "INSERT INTO mount_entries (tenant_id, mount_id, key, value, version) \
                 VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT (tenant_id, mount_id, key) DO NOTHING \
                 RETURNING version"
            }
            Expect::Version(_) => {
                "UPDATE mount_entries SET value = ?4, version = version + 1 \
                 WHERE tenant_id = ?1 AND mount_id = ?2 AND key = ?3 AND version = ?5 \
                 RETURNING version"
            }
        };
        let mut query = sqlx::query_scalar(statement)
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .bind(key)
            .bind(value.to_string());
        if let Expect::Version(version) = expect {
            query = query.bind(to_i64(version));
        }
        let version: Option<i64> = query.fetch_optional(&self.pool).await.map_err(map_error)?;
        let version = version.ok_or(StoreError::ExpectationFailed)?;
        to_u64(version, "mount_entries.version")
    }

    async fn delete_entry(
        &self,
        tenant: TenantId,
        mount: MountId,
        key: &str,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        let (tenant, mount) = (tenant.to_string(), mount.to_string());
        let (statement, version) = match expect {
            Expect::Absent => {
                let present = sqlx::query(
                    "SELECT 1 FROM mount_entries WHERE tenant_id = ? AND mount_id = ? AND key = ?",
                )
                .bind(&tenant)
                .bind(&mount)
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
                "DELETE FROM mount_entries WHERE tenant_id = ?1 AND mount_id = ?2 AND key = ?3",
                None,
            ),
            Expect::Version(version) => (
                "DELETE FROM mount_entries \
                 WHERE tenant_id = ?1 AND mount_id = ?2 AND key = ?3 AND version = ?4",
                Some(to_i64(version)),
            ),
        };
        let mut query = sqlx::query(statement).bind(&tenant).bind(&mount).bind(key);
        if let Some(version) = version {
            query = query.bind(version);
        }
        let deleted = query
            .execute(&self.pool)
            .await
            .map_err(map_error)?
            .rows_affected()
            == 1;
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
        let end = crate::prefix_end(prefix);
        let statement = if end.is_some() {
            "SELECT key FROM mount_entries WHERE tenant_id = ? AND mount_id = ? \
             AND key >= ? AND key < ? ORDER BY key"
        } else {
            "SELECT key FROM mount_entries WHERE tenant_id = ? AND mount_id = ? \
             AND key >= ? ORDER BY key"
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

    async fn put_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        for token in tokens {
            sqlx::query(
                "INSERT INTO tokens (hash, accessor, tenant_id, policies, display_name, \
                 created_at, expires_at, ttl, max_expires_at, uses_remaining, parent_accessor, \
                 meta, renewable, bound_cidrs, period, auth_mount_id) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
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
        sqlx::query("SELECT * FROM tokens WHERE hash = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn get_token_by_accessor(
        &self,
        tenant: TenantId,
        accessor: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query("SELECT * FROM tokens WHERE tenant_id = ? AND accessor = ?")
            .bind(tenant.to_string())
            .bind(accessor)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?
            .as_ref()
            .map(token_from_row)
            .transpose()
    }

    async fn revoke_token_tree(
        &self,
        tenant: TenantId,
        accessor: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let rows = sqlx::query(
            "WITH RECURSIVE tree(accessor) AS ( \
                 SELECT accessor FROM tokens WHERE tenant_id = ?1 AND accessor = ?2 \
                 UNION SELECT t.accessor FROM tokens t JOIN tree ON t.parent_accessor = tree.accessor) \
             DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM tree) \
             RETURNING hash",
        )
        .bind(tenant.to_string())
        .bind(accessor)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        rows.iter().map(|row| get(row, "hash")).collect()
    }

    async fn revoke_mount_tokens(
        &self,
        tenant: TenantId,
        mount: MountId,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let rows = sqlx::query(
            "WITH RECURSIVE tree(accessor) AS ( \
                 SELECT accessor FROM tokens WHERE tenant_id = ?1 AND auth_mount_id = ?2 \
                 UNION SELECT t.accessor FROM tokens t JOIN tree ON t.parent_accessor = tree.accessor) \
             DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM tree) \
             RETURNING hash",
        )
        .bind(tenant.to_string())
        .bind(mount.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        tx.commit().await.map_err(map_error)?;
        rows.iter().map(|row| get(row, "hash")).collect()
    }

    async fn set_token_expiry(&self, hash: &[u8], expires_at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE tokens SET expires_at = ? WHERE hash = ?")
            .bind(expires_at)
            .bind(hash)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn use_token(&self, hash: &[u8]) -> Result<Option<u64>, StoreError> {
        let left: Option<i64> = sqlx::query_scalar(
            "UPDATE tokens SET uses_remaining = uses_remaining - 1 \
             WHERE hash = ? AND uses_remaining > 0 RETURNING uses_remaining",
        )
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        if left.is_none() || left == Some(0) {
            // The last use (or none left): the token is gone for everyone from now on.
            sqlx::query("DELETE FROM tokens WHERE hash = ? AND uses_remaining <= 0")
                .bind(hash)
                .execute(&self.pool)
                .await
                .map_err(map_error)?;
        }
        left.map(|l| to_u64(l, "uses_remaining")).transpose()
    }

    async fn tidy_tokens(&self, now: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        let rows = sqlx::query(
            "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= ? RETURNING hash",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter().map(|row| get(row, "hash")).collect()
    }

    async fn put_approle_role(&self, role: &AppRoleRecord) -> Result<(), StoreError> {
        // An upsert, never a delete and insert: the role's secret_ids (ON DELETE CASCADE)
        // survive an update.
        sqlx::query(
            "INSERT INTO approle_roles (tenant_id, mount_id, name, role_id, bind_secret_id, \
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
        )
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
        sqlx::query("SELECT * FROM approle_roles WHERE tenant_id = ? AND mount_id = ? AND name = ?")
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?
            .as_ref()
            .map(role_from_row)
            .transpose()
    }

    async fn get_approle_role_by_role_id(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_id: &str,
    ) -> Result<Option<AppRoleRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM approle_roles WHERE tenant_id = ? AND mount_id = ? AND role_id = ?",
        )
        .bind(tenant.to_string())
        .bind(mount.to_string())
        .bind(role_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?
        .as_ref()
        .map(role_from_row)
        .transpose()
    }

    async fn list_approle_roles(
        &self,
        tenant: TenantId,
        mount: MountId,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT name FROM approle_roles WHERE tenant_id = ? AND mount_id = ? ORDER BY name",
        )
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
        let result = sqlx::query(
            "DELETE FROM approle_roles WHERE tenant_id = ? AND mount_id = ? AND name = ?",
        )
        .bind(tenant.to_string())
        .bind(mount.to_string())
        .bind(name)
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn put_approle_secret_id(&self, secret_id: &SecretIdRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO approle_secret_ids (tenant_id, mount_id, role_name, hash, accessor, \
             metadata, cidr_list, token_bound_cidrs, uses_remaining, num_uses, ttl, created_at, \
             expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
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
        sqlx::query(
            "SELECT * FROM approle_secret_ids \
             WHERE tenant_id = ? AND mount_id = ? AND role_name = ? AND hash = ?",
        )
        .bind(tenant.to_string())
        .bind(mount.to_string())
        .bind(role_name)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?
        .as_ref()
        .map(secret_id_from_row)
        .transpose()
    }

    async fn get_approle_secret_id_by_accessor(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_name: &str,
        accessor: &str,
    ) -> Result<Option<SecretIdRecord>, StoreError> {
        sqlx::query(
            "SELECT * FROM approle_secret_ids \
             WHERE tenant_id = ? AND mount_id = ? AND role_name = ? AND accessor = ?",
        )
        .bind(tenant.to_string())
        .bind(mount.to_string())
        .bind(role_name)
        .bind(accessor)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?
        .as_ref()
        .map(secret_id_from_row)
        .transpose()
    }

    async fn list_approle_secret_id_accessors(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_name: &str,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT accessor FROM approle_secret_ids \
             WHERE tenant_id = ? AND mount_id = ? AND role_name = ? ORDER BY accessor",
        )
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
        let result = sqlx::query(
            "DELETE FROM approle_secret_ids \
             WHERE tenant_id = ? AND mount_id = ? AND role_name = ? AND hash = ?",
        )
        .bind(tenant.to_string())
        .bind(mount.to_string())
        .bind(role_name)
        .bind(hash)
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
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
        // One statement: of any number of concurrent logins, exactly as many as there were
        // uses left see a row come back.
        let left: Option<i64> = sqlx::query_scalar(
            "UPDATE approle_secret_ids SET uses_remaining = uses_remaining - 1 \
             WHERE tenant_id = ? AND mount_id = ? AND role_name = ? AND hash = ? \
             AND uses_remaining > 0 RETURNING uses_remaining",
        )
        .bind(&tenant)
        .bind(&mount)
        .bind(role_name)
        .bind(hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_error)?;
        if left.is_none() || left == Some(0) {
            sqlx::query(
                "DELETE FROM approle_secret_ids \
                 WHERE tenant_id = ? AND mount_id = ? AND role_name = ? AND hash = ? \
                 AND uses_remaining <= 0",
            )
            .bind(&tenant)
            .bind(&mount)
            .bind(role_name)
            .bind(hash)
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
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
        let result = sqlx::query(
            "DELETE FROM approle_secret_ids WHERE rowid IN ( \
                 SELECT rowid FROM approle_secret_ids \
                 WHERE mount_id = ?1 AND tenant_id = ?2 \
                 AND expires_at IS NOT NULL AND expires_at <= ?3 LIMIT ?4)",
        )
        .bind(mount.to_string())
        .bind(tenant.to_string())
        .bind(now)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected())
    }

    async fn create_key(
        &self,
        key: &KeyRecord,
        first: &KeyVersionRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        sqlx::query(
            "INSERT INTO transit_keys (id, tenant_id, mount_id, name, key_type, backend, mode, \
             backend_reference, min_decryption_version, min_encryption_version, deletion_allowed, \
             auto_rotate_period, latest_version, created_at, rotated_at, bound) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
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
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        insert_version(&mut tx, key.tenant, first).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn get_key(
        &self,
        tenant: TenantId,
        mount: MountId,
        name: &str,
    ) -> Result<Option<KeyRecord>, StoreError> {
        sqlx::query("SELECT * FROM transit_keys WHERE tenant_id = ? AND mount_id = ? AND name = ?")
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)?
            .as_ref()
            .map(key_from_row)
            .transpose()
    }

    async fn get_key_versions(
        &self,
        tenant: TenantId,
        key: KeyId,
    ) -> Result<Vec<KeyVersionRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM transit_key_versions WHERE tenant_id = ? AND key_id = ? ORDER BY version",
        )
        .bind(tenant.to_string())
        .bind(key.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)?;
        rows.iter().map(version_from_row).collect()
    }

    async fn list_keys(&self, tenant: TenantId, mount: MountId) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar(
            "SELECT name FROM transit_keys WHERE tenant_id = ? AND mount_id = ? ORDER BY name",
        )
        .bind(tenant.to_string())
        .bind(mount.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(map_error)
    }

    async fn list_auto_rotating_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM transit_keys WHERE auto_rotate_period > 0")
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter().map(key_from_row).collect()
    }

    async fn update_key_config(&self, key: &KeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE transit_keys SET min_decryption_version = ?, min_encryption_version = ?, \
             deletion_allowed = ?, auto_rotate_period = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(i64::from(key.min_decryption_version))
        .bind(i64::from(key.min_encryption_version))
        .bind(key.deletion_allowed)
        .bind(to_i64(key.auto_rotate_period))
        .bind(key.tenant.to_string())
        .bind(key.id.to_string())
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(())
    }

    async fn add_key_version(
        &self,
        tenant: TenantId,
        expected_latest: u32,
        version: &KeyVersionRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let moved = sqlx::query(
            "UPDATE transit_keys SET latest_version = ?, rotated_at = ? \
             WHERE tenant_id = ? AND id = ? AND latest_version = ?",
        )
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
        tx.commit().await.map_err(map_error)?;
        Ok(true)
    }

    async fn delete_key(&self, tenant: TenantId, key: KeyId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM transit_keys WHERE tenant_id = ? AND id = ?")
            .bind(tenant.to_string())
            .bind(key.to_string())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
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
        // One statement, atomic against every other writer of the row. Right-hand sides see
        // the old row, so `counter_previous` keeps the value before this reservation.
        let row = sqlx::query(
            "UPDATE transit_key_versions \
             SET counter_previous = counter_reserved, \
                 counter_reserved = MIN(counter_reserved + ?, MAX(counter_reserved, ?)) \
             WHERE tenant_id = ? AND key_id = ? AND version = ? \
             RETURNING counter_previous, counter_reserved",
        )
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

    async fn put_audit_checkpoint(
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

    async fn latest_audit_checkpoint(
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

async fn insert_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    tenant: TenantId,
    version: &KeyVersionRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO transit_key_versions (key_id, tenant_id, version, backend_reference, \
         wrapped_dek, payload_format, created_at, counter_reserved, public_key) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("t.db")).await.unwrap();
        crate::conformance::run_all(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn two_stores_on_one_file_race_a_compare_and_set_with_one_winner_per_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let a = SqliteStore::open(&path).await.unwrap();
        let b = SqliteStore::open(&path).await.unwrap();
        crate::conformance::racing_compare_and_set(std::sync::Arc::new(a), std::sync::Arc::new(b))
            .await;
    }

    #[tokio::test]
    async fn concurrent_reservations_never_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        let mount = MountRecord {
            id: MountId::random(),
            tenant: TenantId::ROOT,
            path: "t/".into(),
            kind: "transit".into(),
            description: String::new(),
            config: serde_json::json!({}),
            created_at: 0,
        };
        store.create_mount(&mount).await.unwrap();
        let id = KeyId::random();
        let key = KeyRecord {
            id,
            tenant: TenantId::ROOT,
            mount: mount.id,
            name: "k".into(),
            key_type: "aes256-gcm96".into(),
            backend: "local".into(),
            mode: KeyMode::Envelope,
            backend_reference: None,
            min_decryption_version: 1,
            min_encryption_version: 0,
            deletion_allowed: false,
            bound: false,
            auto_rotate_period: 0,
            latest_version: 1,
            created_at: 0,
            rotated_at: 0,
        };
        let version = KeyVersionRecord {
            key: id,
            version: 1,
            backend_reference: "r".into(),
            wrapped_dek: None,
            payload_format: 2,
            public_key: None,
            created_at: 0,
            counter_reserved: 0,
        };
        store.create_key(&key, &version).await.unwrap();
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .reserve_counter(TenantId::ROOT, id, 1, 10, 1_000)
                    .await
                    .unwrap()
            }));
        }
        let mut windows = Vec::new();
        for task in tasks {
            windows.push(task.await.unwrap());
        }
        windows.sort();
        for pair in windows.windows(2) {
            assert_eq!(
                pair[0].1, pair[1].0,
                "windows overlap or leave gaps: {windows:?}"
            );
        }
        assert_eq!(windows.last().unwrap().1, 160);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_logins_consume_a_secret_id_exactly_once_per_use() {
        use keybroker_core::store::{AppRoleRecord, SecretIdRecord};
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(SqliteStore::open(&dir.path().join("t.db")).await.unwrap());
        let mount = MountRecord {
            id: MountId::random(),
            tenant: TenantId::ROOT,
            path: "auth/approle/".into(),
            kind: "approle".into(),
            description: String::new(),
            config: serde_json::json!({}),
            created_at: 0,
        };
        store.create_mount(&mount).await.unwrap();
        let role = AppRoleRecord::new(TenantId::ROOT, mount.id, "r", "rid", 0);
        store.put_approle_role(&role).await.unwrap();
        for (hash, uses) in [(1u8, 1u64), (2, 5)] {
            store
                .put_approle_secret_id(&SecretIdRecord {
                    hash: vec![hash; 32],
                    accessor: format!("a{hash}"),
                    tenant: TenantId::ROOT,
                    mount: mount.id,
                    role_name: "r".into(),
                    metadata: Default::default(),
                    cidr_list: Vec::new(),
                    token_bound_cidrs: Vec::new(),
                    uses_remaining: Some(uses),
                    num_uses: uses,
                    ttl: 0,
                    created_at: 0,
                    expires_at: None,
                })
                .await
                .unwrap();
            let mut tasks = Vec::new();
            for _ in 0..64 {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    store
                        .use_approle_secret_id(TenantId::ROOT, mount.id, "r", &[hash; 32])
                        .await
                        .unwrap()
                }));
            }
            let mut granted = 0;
            for task in tasks {
                granted += u64::from(task.await.unwrap().is_some());
            }
            assert_eq!(granted, uses, "secret_id with {uses} uses");
        }
    }
}
