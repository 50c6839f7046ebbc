//! PostgreSQL implementation of the `Store` trait, for a cluster of broker nodes sharing one
//! database (ARCHITECTURE.md §7).
//!
//! The SQL is that of `sqlite/`, translated statement by statement, so every method
//! behaves the same (one conformance suite runs against both). On top of it:
//! - every write that makes cached state stale announces a [`Change`] with `pg_notify` in
//!   the write's own transaction, so the announcement is delivered if and only if the write
//!   commits;
//! - a listener task (one dedicated connection, `LISTEN keybroker_changes`) feeds every
//!   node's announcements to [`Store::subscribe`]rs, and sends [`Change::Resync`] after its
//!   connection was lost, since whatever was announced meanwhile is lost;
//! - a heartbeat task announces this store's own heartbeat every `heartbeat`; when the
//!   listener hears it back, the whole path (pool → database → listener) is proven to work
//!   up to the moment the heartbeat was sent, which [`Store::last_in_sync`] reports;
//! - periodic jobs take a session-level advisory lock on a connection of their own, held by
//!   the [`JobGuard`] (dropping it ends the session, which releases the lock).
//!
//! Requests fail fast when the database is down: pool acquisition and connection attempts
//! are bounded by [`PostgresOptions`], statements by a server-side `statement_timeout`.
//!
//! The files are the twins of `sqlite/`: one per aggregate (`meta`, `tenants`, `policies`,
//! `mounts`, `tokens`, `approle`, `keys`) holds its statements as inherent methods of
//! [`PostgresStore`], and the `Store` impl below only forwards to them (an inherent method is
//! found before a trait method of the same name). The cluster machinery stands apart: `feed`
//! (announcements, the listener, the heartbeat) and `jobs` (advisory locks).

mod approle;
mod feed;
mod jobs;
mod keys;
mod meta;
mod mounts;
mod policies;
mod tenants;
#[cfg(test)]
mod tests;
mod tokens;

use std::{
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use keybroker_core::{
    changes::{Change, JobGuard},
    store::{
        AppRoleRecord, Expect, KeyMode, KeyRecord, KeyVersionRecord, MountEntry, MountRecord,
        SecretIdRecord, Store, StoreError, TenantRecord, TokenRecord,
    },
    KeyId, MountId, TenantId,
};
use sqlx::{
    migrate::MigrateError,
    postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow},
    Connection, Row,
};
use tokio::{
    sync::{broadcast, watch},
    task::JoinHandle,
};

use self::feed::{heartbeats, listen, Feed, BROADCAST_CAPACITY};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Server-side bound on every statement of the pool (not on migrations, which may be long).
const STATEMENT_TIMEOUT: &str = "5s";

/// Connection and timing settings of a [`PostgresStore`].
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Connections in the pool (the listener and job locks use connections of their own).
    pub max_connections: u32,
    /// How long a request waits for a pooled connection (including connecting) before it
    /// fails with `StoreError::Unavailable`.
    pub acquire_timeout: Duration,
    /// How long opening a dedicated connection (migrations, listener, first heartbeat) may
    /// take.
    pub connect_timeout: Duration,
    /// How often the store proves its change feed works end to end.
    pub heartbeat: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            heartbeat: Duration::from_millis(500),
        }
    }
}

/// The store shared by a cluster of nodes. Clones share the pool and the change feed; the
/// background tasks end when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PgPool,
    changes: broadcast::Sender<Change>,
    /// Nanoseconds after `base` at which the latest heartbeat heard back was sent.
    in_sync: watch::Receiver<u64>,
    base: Instant,
    _tasks: Arc<Tasks>,
}

/// Aborts the background tasks when the store goes away.
#[derive(Debug)]
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Whether the error means the database cannot be reached right now (as opposed to a
/// refused or failed statement).
fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            // Class 08: connection exceptions. 57P01 admin_shutdown, 57P02 crash_shutdown,
            // 57P03 cannot_connect_now, 57P05 idle_session_timeout, 53300
            // too_many_connections.
            code.starts_with("08")
                || matches!(&*code, "57P01" | "57P02" | "57P03" | "57P05" | "53300")
        }),
        _ => false,
    }
}

fn map_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::Gone,
        error if is_unavailable(error) => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Other(Box::new(error)),
    }
}

fn migrate_error(error: MigrateError) -> StoreError {
    match &error {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) if is_unavailable(e) => {
            StoreError::Unavailable(error.to_string())
        }
        _ => StoreError::Other(Box::new(error)),
    }
}

crate::rows::row_decoders!(PgRow, sqlx::Postgres);

/// Applies the migrations on a dedicated connection. sqlx's migrator holds a Postgres
/// advisory lock (`pg_advisory_lock`, keyed by the database name) while it checks and applies
/// them, so nodes starting together apply each migration exactly once. The connection is
/// closed afterwards: if a migration fails, ending the session releases the lock, which a
/// pooled connection would keep.
async fn migrate(options: &PgConnectOptions, connect_timeout: Duration) -> Result<(), StoreError> {
    let mut connection = tokio::time::timeout(connect_timeout, PgConnection::connect_with(options))
        .await
        .map_err(|_| StoreError::Unavailable("connecting to PostgreSQL timed out".to_owned()))?
        .map_err(map_error)?;
    let result = MIGRATOR.run(&mut connection).await.map_err(migrate_error);
    let _ = connection.close().await;
    result
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/database`), applies migrations (under
    /// an advisory lock, so nodes may start together), starts the change listener and the
    /// heartbeat, and returns once the first heartbeat came back. `Unavailable` if the
    /// database cannot be reached within the options' timeouts.
    pub async fn open(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let base = Instant::now();
        let connect = PgConnectOptions::from_str(url)
            .map_err(map_error)?
            .application_name("keybroker");
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(
                connect
                    .clone()
                    .options([("statement_timeout", STATEMENT_TIMEOUT)]),
            )
            .await
            .map_err(map_error)?;
        migrate(&connect, options.connect_timeout).await?;

        let (changes, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (in_sync_sender, mut in_sync) = watch::channel(0u64);
        let node = uuid::Uuid::new_v4().to_string();
        let listener = listen(&connect, options.connect_timeout).await?;
        let feed = Feed {
            options: connect,
            connect_timeout: options.connect_timeout,
            silence: options
                .heartbeat
                .saturating_mul(10)
                .max(Duration::from_secs(5)),
            changes: changes.clone(),
            in_sync: in_sync_sender,
            node: node.clone(),
        };
        let tasks = Tasks(vec![
            tokio::spawn(feed.run(listener)),
            tokio::spawn(heartbeats(
                pool.clone(),
                node,
                base,
                options.heartbeat,
                options.acquire_timeout.saturating_add(options.heartbeat),
            )),
        ]);
        let first_heartbeat =
            tokio::time::timeout(options.connect_timeout, in_sync.wait_for(|sent| *sent > 0))
                .await
                .map(|heard| heard.is_ok());
        if first_heartbeat != Ok(true) {
            return Err(StoreError::Unavailable(
                "the change feed did not deliver this node's heartbeat".to_owned(),
            ));
        }
        Ok(Self {
            pool,
            changes,
            in_sync,
            base,
            _tasks: Arc::new(tasks),
        })
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn subscribe(&self) -> Option<broadcast::Receiver<Change>> {
        self.subscribe()
    }

    fn last_in_sync(&self) -> Option<Instant> {
        self.last_in_sync()
    }

    async fn announce(&self, change: &Change) -> Result<(), StoreError> {
        self.announce(change).await
    }

    async fn try_lock_job(&self, job: &str) -> Result<Option<JobGuard>, StoreError> {
        self.try_lock_job(job).await
    }

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
