//! SQLite implementation of the `Store` trait.
//!
//! One file per aggregate (`meta`, `tenants`, `policies`, `mounts`, `tokens`, `approle`,
//! `keys`) holds its statements as inherent methods of [`SqliteStore`]; the `Store` impl below
//! only forwards to them (an inherent method is found before a trait method of the same
//! name). `postgres/` is this folder's file-for-file twin.

mod approle;
mod keys;
mod meta;
mod mounts;
mod policies;
mod tenants;
#[cfg(test)]
mod tests;
mod tokens;

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
        self.get_meta(name).await
    }

    async fn put_meta_if_absent(&self, name: &str, value: &[u8]) -> Result<bool, StoreError> {
        self.put_meta_if_absent(name, value).await
    }

    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), StoreError> {
        self.create_tenant(tenant).await
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        self.list_tenants().await
    }

    async fn delete_tenant(&self, tenant: TenantId) -> Result<bool, StoreError> {
        self.delete_tenant(tenant).await
    }

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
        self.get_policy(tenant, name).await
    }

    async fn list_policies(&self, tenant: TenantId) -> Result<Vec<String>, StoreError> {
        self.list_policies(tenant).await
    }

    async fn delete_policy(&self, tenant: TenantId, name: &str) -> Result<bool, StoreError> {
        self.delete_policy(tenant, name).await
    }

    async fn list_mounts(&self, tenant: TenantId) -> Result<Vec<MountRecord>, StoreError> {
        self.list_mounts(tenant).await
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
        self.get_entry(tenant, mount, key).await
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
        self.list_entries(tenant, mount, prefix).await
    }

    async fn put_tokens(&self, tokens: &[TokenRecord]) -> Result<(), StoreError> {
        self.put_tokens(tokens).await
    }

    async fn get_token(&self, hash: &[u8]) -> Result<Option<TokenRecord>, StoreError> {
        self.get_token(hash).await
    }

    async fn get_token_by_accessor(
        &self,
        tenant: TenantId,
        accessor: &str,
    ) -> Result<Option<TokenRecord>, StoreError> {
        self.get_token_by_accessor(tenant, accessor).await
    }

    async fn revoke_token_tree(
        &self,
        tenant: TenantId,
        accessor: &str,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.revoke_token_tree(tenant, accessor).await
    }

    async fn revoke_mount_tokens(
        &self,
        tenant: TenantId,
        mount: MountId,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.revoke_mount_tokens(tenant, mount).await
    }

    async fn set_token_expiry(&self, hash: &[u8], expires_at: i64) -> Result<(), StoreError> {
        self.set_token_expiry(hash, expires_at).await
    }

    async fn use_token(&self, hash: &[u8]) -> Result<Option<u64>, StoreError> {
        self.use_token(hash).await
    }

    async fn tidy_tokens(&self, now: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        self.tidy_tokens(now).await
    }

    async fn put_approle_role(&self, role: &AppRoleRecord) -> Result<(), StoreError> {
        self.put_approle_role(role).await
    }

    async fn get_approle_role(
        &self,
        tenant: TenantId,
        mount: MountId,
        name: &str,
    ) -> Result<Option<AppRoleRecord>, StoreError> {
        self.get_approle_role(tenant, mount, name).await
    }

    async fn get_approle_role_by_role_id(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_id: &str,
    ) -> Result<Option<AppRoleRecord>, StoreError> {
        self.get_approle_role_by_role_id(tenant, mount, role_id)
            .await
    }

    async fn list_approle_roles(
        &self,
        tenant: TenantId,
        mount: MountId,
    ) -> Result<Vec<String>, StoreError> {
        self.list_approle_roles(tenant, mount).await
    }

    async fn delete_approle_role(
        &self,
        tenant: TenantId,
        mount: MountId,
        name: &str,
    ) -> Result<bool, StoreError> {
        self.delete_approle_role(tenant, mount, name).await
    }

    async fn put_approle_secret_id(&self, secret_id: &SecretIdRecord) -> Result<(), StoreError> {
        self.put_approle_secret_id(secret_id).await
    }

    async fn get_approle_secret_id(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_name: &str,
        hash: &[u8],
    ) -> Result<Option<SecretIdRecord>, StoreError> {
        self.get_approle_secret_id(tenant, mount, role_name, hash)
            .await
    }

    async fn get_approle_secret_id_by_accessor(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_name: &str,
        accessor: &str,
    ) -> Result<Option<SecretIdRecord>, StoreError> {
        self.get_approle_secret_id_by_accessor(tenant, mount, role_name, accessor)
            .await
    }

    async fn list_approle_secret_id_accessors(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_name: &str,
    ) -> Result<Vec<String>, StoreError> {
        self.list_approle_secret_id_accessors(tenant, mount, role_name)
            .await
    }

    async fn delete_approle_secret_id(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_name: &str,
        hash: &[u8],
    ) -> Result<bool, StoreError> {
        self.delete_approle_secret_id(tenant, mount, role_name, hash)
            .await
    }

    async fn use_approle_secret_id(
        &self,
        tenant: TenantId,
        mount: MountId,
        role_name: &str,
        hash: &[u8],
    ) -> Result<Option<u64>, StoreError> {
        self.use_approle_secret_id(tenant, mount, role_name, hash)
            .await
    }

    async fn tidy_approle_secret_ids(
        &self,
        tenant: TenantId,
        mount: MountId,
        now: i64,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.tidy_approle_secret_ids(tenant, mount, now, limit)
            .await
    }

    async fn create_key(
        &self,
        key: &KeyRecord,
        first: &KeyVersionRecord,
    ) -> Result<(), StoreError> {
        self.create_key(key, first).await
    }

    async fn get_key(
        &self,
        tenant: TenantId,
        mount: MountId,
        name: &str,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.get_key(tenant, mount, name).await
    }

    async fn get_key_versions(
        &self,
        tenant: TenantId,
        key: KeyId,
    ) -> Result<Vec<KeyVersionRecord>, StoreError> {
        self.get_key_versions(tenant, key).await
    }

    async fn list_keys(&self, tenant: TenantId, mount: MountId) -> Result<Vec<String>, StoreError> {
        self.list_keys(tenant, mount).await
    }

    async fn list_auto_rotating_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.list_auto_rotating_keys().await
    }

    async fn update_key_config(&self, key: &KeyRecord) -> Result<(), StoreError> {
        self.update_key_config(key).await
    }

    async fn add_key_version(
        &self,
        tenant: TenantId,
        expected_latest: u32,
        version: &KeyVersionRecord,
    ) -> Result<bool, StoreError> {
        self.add_key_version(tenant, expected_latest, version).await
    }

    async fn delete_key(&self, tenant: TenantId, key: KeyId) -> Result<(), StoreError> {
        self.delete_key(tenant, key).await
    }

    async fn reserve_counter(
        &self,
        tenant: TenantId,
        key: KeyId,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Result<(u64, u64), StoreError> {
        self.reserve_counter(tenant, key, version, block, limit)
            .await
    }

    async fn put_audit_checkpoint(
        &self,
        sink: &str,
        sequence: u64,
        head: &[u8],
    ) -> Result<(), StoreError> {
        self.put_audit_checkpoint(sink, sequence, head).await
    }

    async fn latest_audit_checkpoint(
        &self,
        sink: &str,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        self.latest_audit_checkpoint(sink).await
    }
}
