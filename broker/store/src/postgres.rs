//! PostgreSQL implementation of the `Store` trait, for a cluster of broker nodes sharing one
//! database (ARCHITECTURE.md §7).
//!
//! The SQL is that of `sqlite.rs`, translated statement by statement, so every method
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
use sha2::{Digest, Sha256};
use sqlx::{
    migrate::MigrateError,
    postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow},
    Connection, Row,
};
use tokio::{
    sync::{broadcast, watch},
    task::JoinHandle,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The notification channel every node listens on.
const CHANNEL: &str = "keybroker_changes";
/// Heartbeat payloads: `heartbeat:<store id>:<nanoseconds since the store's base instant
/// when it was sent>`. Never a [`Change`]; other stores' heartbeats are ignored.
const HEARTBEAT_PREFIX: &str = "heartbeat:";
/// Changes buffered per subscriber before it lags (and must resync).
const BROADCAST_CAPACITY: usize = 4096;
/// Server-side bound on every statement of the pool (not on migrations, which may be long).
const STATEMENT_TIMEOUT: &str = "5s";
/// Reconnection backoff of the listener: from the first to the last, doubling.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(50), Duration::from_secs(1));

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

fn hashes(rows: &[PgRow]) -> Result<Vec<Vec<u8>>, StoreError> {
    rows.iter().map(|row| get(row, "hash")).collect()
}

fn token_changes(hashes: &[Vec<u8>]) -> impl Iterator<Item = Change> + '_ {
    hashes.iter().map(|hash| Change::Token(hash.clone()))
}

/// Announces changes inside the caller's transaction: Postgres delivers them when (and only
/// if) it commits. One notification per change keeps each payload far below the 8000-byte
/// limit; one statement sends them all.
async fn announce_in(
    connection: &mut PgConnection,
    changes: impl IntoIterator<Item = Change>,
) -> Result<(), StoreError> {
    let payloads: Vec<String> = changes.into_iter().map(|c| c.encode()).collect();
    if payloads.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload")
        .bind(CHANNEL)
        .bind(payloads)
        .execute(connection)
        .await
        .map_err(map_error)?;
    Ok(())
}

/// A stable advisory lock key per job name (the same on every node and every version).
fn job_lock_key(job: &str) -> i64 {
    let digest = Sha256::digest(format!("keybroker job: {job}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

fn nanos_since(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

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

/// A listener on [`CHANNEL`], on a connection of its own (a fresh one-connection pool each
/// time: an abandoned listener's cleanup can then never hold up the next one).
async fn listen(
    options: &PgConnectOptions,
    connect_timeout: Duration,
) -> Result<PgListener, StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(connect_timeout)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options.clone());
    let connect = async {
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    tokio::time::timeout(connect_timeout, connect)
        .await
        .map_err(|_| {
            StoreError::Unavailable("connecting the change listener timed out".to_owned())
        })?
        .map_err(map_error)
}

/// The listener task's state.
struct Feed {
    options: PgConnectOptions,
    connect_timeout: Duration,
    /// No notification at all for this long (not even our heartbeats) means the connection
    /// is dead without having said so (a half-open TCP connection): reconnect.
    silence: Duration,
    changes: broadcast::Sender<Change>,
    in_sync: watch::Sender<u64>,
    node: String,
}

impl Feed {
    /// Receives announcements forever, reconnecting (with a short backoff) whenever the
    /// connection is lost, then announcing [`Change::Resync`] to this node's subscribers.
    async fn run(self, first: PgListener) {
        let mut listener = Some(first);
        let mut backoff = BACKOFF.0;
        let mut missed = false;
        loop {
            let mut active = match listener.take() {
                Some(active) => active,
                None => match listen(&self.options, self.connect_timeout).await {
                    Ok(active) => active,
                    Err(error) => {
                        tracing::debug!(%error, "change feed: reconnecting failed");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF.1);
                        continue;
                    }
                },
            };
            backoff = BACKOFF.0;
            if std::mem::take(&mut missed) {
                tracing::info!("change feed: listening again, dropping every cache");
                let _ = self.changes.send(Change::Resync);
            }
            loop {
                match tokio::time::timeout(self.silence, active.try_recv()).await {
                    Ok(Ok(Some(notification))) => self.deliver(notification.payload()),
                    Ok(Ok(None)) => {
                        // sqlx reconnected and listens again; what was sent meanwhile is lost.
                        tracing::warn!("change feed: connection lost and re-established");
                        let _ = self.changes.send(Change::Resync);
                    }
                    Ok(Err(error)) => {
                        tracing::warn!(%error, "change feed: connection lost");
                        missed = true;
                        break;
                    }
                    Err(_) => {
                        tracing::warn!("change feed: silent for too long, reconnecting");
                        missed = true;
                        break;
                    }
                }
            }
        }
    }

    fn deliver(&self, payload: &str) {
        if let Some(heartbeat) = payload.strip_prefix(HEARTBEAT_PREFIX) {
            let ours = heartbeat
                .split_once(':')
                .filter(|(node, _)| *node == self.node)
                .and_then(|(_, sent)| sent.parse::<u64>().ok());
            if let Some(sent) = ours {
                self.in_sync.send_if_modified(|latest| {
                    let newer = sent > *latest;
                    if newer {
                        *latest = sent;
                    }
                    newer
                });
            }
            return;
        }
        match Change::decode(payload) {
            Some(change) => {
                // No subscriber is not an error.
                let _ = self.changes.send(change);
            }
            None => tracing::debug!(
                payload = payload.get(..64).unwrap_or(payload),
                "change feed: ignoring an announcement this version does not know"
            ),
        }
    }
}

/// Sends this store's heartbeat through the pool every `every`, forever.
async fn heartbeats(pool: PgPool, node: String, base: Instant, every: Duration, limit: Duration) {
    // A zero period would make `interval` panic.
    let mut ticks = tokio::time::interval(every.max(Duration::from_millis(10)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // The time is taken before sending: every change committed before it is delivered
        // ahead of the heartbeat (Postgres delivers notifications in commit order).
        let payload = format!("{HEARTBEAT_PREFIX}{node}:{}", nanos_since(base));
        let send = sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(payload)
            .execute(&pool);
        match tokio::time::timeout(limit, send).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::debug!(%error, "heartbeat not sent"),
            Err(_) => tracing::debug!("heartbeat not sent: timed out"),
        }
    }
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
        Some(self.changes.subscribe())
    }

    fn last_in_sync(&self) -> Option<Instant> {
        let sent = *self.in_sync.borrow();
        Some(
            self.base
                .checked_add(Duration::from_nanos(sent))
                .unwrap_or(self.base),
        )
    }

    async fn announce(&self, change: &Change) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(change.encode())
            .execute(&self.pool)
            .await
            .map_err(map_error)?;
        Ok(())
    }

    async fn try_lock_job(&self, job: &str) -> Result<Option<JobGuard>, StoreError> {
        let mut connection = self.pool.acquire().await.map_err(map_error)?;
        let granted: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(job_lock_key(job))
            .fetch_one(&mut *connection)
            .await
            .map_err(map_error)?;
        if !granted {
            return Ok(None);
        }
        // The session holds the lock: it leaves the pool for good, and ends (releasing the
        // lock) when the guard drops it.
        Ok(Some(JobGuard::new(connection.detach())))
    }

    async fn get_meta(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT value FROM meta WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)
    }

    async fn put_meta_if_absent(&self, name: &str, value: &[u8]) -> Result<bool, StoreError> {
        let result = sqlx::query(
            "INSERT INTO meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(map_error)?;
        Ok(result.rows_affected() == 1)
    }

    async fn create_tenant(&self, tenant: &TenantRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(tenant.id.to_string())
            .bind(&tenant.name)
            .bind(tenant.created_at)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        announce_in(&mut tx, [Change::Tenants]).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn list_tenants(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM tenants WHERE id <> $1 ORDER BY name")
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
        // Locking the tenant first makes writes referring to it (they take a key-share lock
        // for their foreign key) finish before, or fail after: none slips in unannounced.
        let exists = sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE")
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_error)?
            .is_some();
        if !exists {
            return Ok(false);
        }
        // Tokens first (revocation): the tenant's, and any its mounts issued, which the
        // mounts' cascade would delete unannounced. Then mounts, whose keys, versions,
        // AppRole rows and mount-storage entries cascade.
        let revoked = sqlx::query(
            "DELETE FROM tokens WHERE tenant_id = $1 \
             OR auth_mount_id IN (SELECT id FROM mounts WHERE tenant_id = $1) RETURNING hash",
        )
        .bind(&id)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let revoked = hashes(&revoked)?;
        for statement in [
            "DELETE FROM policies WHERE tenant_id = $1",
            "DELETE FROM mounts WHERE tenant_id = $1",
        ] {
            sqlx::query(statement)
                .bind(&id)
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
        }
        let deleted = sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        let changes = [Change::TenantDeleted(tenant), Change::Tenants];
        announce_in(&mut tx, changes.into_iter().chain(token_changes(&revoked))).await?;
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
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        sqlx::query(
            "INSERT INTO policies (tenant_id, name, text, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (tenant_id, name) DO UPDATE SET text = excluded.text, updated_at = excluded.updated_at",
        )
        .bind(tenant.to_string())
        .bind(name)
        .bind(text)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        announce_in(&mut tx, [Change::Policies(tenant)]).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn get_policy(&self, tenant: TenantId, name: &str) -> Result<Option<String>, StoreError> {
        sqlx::query_scalar("SELECT text FROM policies WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.to_string())
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_error)
    }

    async fn list_policies(&self, tenant: TenantId) -> Result<Vec<String>, StoreError> {
        sqlx::query_scalar("SELECT name FROM policies WHERE tenant_id = $1 ORDER BY name")
            .bind(tenant.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)
    }

    async fn delete_policy(&self, tenant: TenantId, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = sqlx::query("DELETE FROM policies WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.to_string())
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        let deleted = result.rows_affected() == 1;
        if deleted {
            announce_in(&mut tx, [Change::Policies(tenant)]).await?;
        }
        tx.commit().await.map_err(map_error)?;
        Ok(deleted)
    }

    async fn list_mounts(&self, tenant: TenantId) -> Result<Vec<MountRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM mounts WHERE tenant_id = $1 ORDER BY path")
            .bind(tenant.to_string())
            .fetch_all(&self.pool)
            .await
            .map_err(map_error)?;
        rows.iter().map(mount_from_row).collect()
    }

    async fn create_mount(&self, mount: &MountRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        sqlx::query(
            "INSERT INTO mounts (id, tenant_id, path, kind, description, config, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(mount.id.to_string())
        .bind(mount.tenant.to_string())
        .bind(&mount.path)
        .bind(&mount.kind)
        .bind(&mount.description)
        .bind(mount.config.to_string())
        .bind(mount.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        announce_in(&mut tx, [Change::Mounts(mount.tenant)]).await?;
        tx.commit().await.map_err(map_error)
    }

    async fn update_mount_config(
        &self,
        tenant: TenantId,
        mount: MountId,
        config: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = sqlx::query("UPDATE mounts SET config = $1 WHERE tenant_id = $2 AND id = $3")
            .bind(config.to_string())
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        if result.rows_affected() > 0 {
            announce_in(&mut tx, [Change::Mounts(tenant)]).await?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn delete_mount(&self, tenant: TenantId, mount: MountId) -> Result<bool, StoreError> {
        let tenant_text = tenant.to_string();
        let mount_text = mount.to_string();
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        // Locked first: a token being stored for this mount (its foreign key takes a
        // key-share lock on the mount) commits before and is found below, or fails after.
        let exists =
            sqlx::query("SELECT 1 FROM mounts WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
                .bind(&tenant_text)
                .bind(&mount_text)
                .fetch_optional(&mut *tx)
                .await
                .map_err(map_error)?
                .is_some();
        if !exists {
            return Ok(false);
        }
        // What the cascade will delete and other nodes may have cached: tokens the mount
        // issued, keys in it.
        let tokens: Vec<Vec<u8>> =
            sqlx::query_scalar("SELECT hash FROM tokens WHERE auth_mount_id = $1")
                .bind(&mount_text)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_error)?;
        let keys: Vec<String> =
            sqlx::query_scalar("SELECT id FROM transit_keys WHERE mount_id = $1")
                .bind(&mount_text)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_error)?;
        // Keys and their versions, tokens it issued, its AppRole rows and mount-storage
        // entries go with the mount (ON DELETE CASCADE); the entries are announced by
        // `Change::Mounts` alone.
        let result = sqlx::query("DELETE FROM mounts WHERE tenant_id = $1 AND id = $2")
            .bind(&tenant_text)
            .bind(&mount_text)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        let keys = keys
            .iter()
            .filter_map(|key| KeyId::parse(key))
            .map(|key| Change::Key(tenant, key));
        announce_in(
            &mut tx,
            std::iter::once(Change::Mounts(tenant))
                .chain(token_changes(&tokens))
                .chain(keys),
        )
        .await?;
        tx.commit().await.map_err(map_error)?;
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
             WHERE tenant_id = $1 AND mount_id = $2 AND key = $3",
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
        // One statement per expectation, the comparison inside it. Two nodes updating the
        // same version: the second waits for the first's row lock, then re-checks its WHERE
        // on the row the first committed, and updates nothing.
        let statement = match expect {
            Expect::Any => {
                "INSERT INTO mount_entries (tenant_id, mount_id, key, value, version) \
                 VALUES ($1, $2, $3, $4, 1) ON CONFLICT (tenant_id, mount_id, key) \
                 DO UPDATE SET value = excluded.value, version = mount_entries.version + 1 \
                 RETURNING version"
            }
            Expect::Absent => {
                "INSERT INTO mount_entries (tenant_id, mount_id, key, value, version) \
                 VALUES ($1, $2, $3, $4, 1) ON CONFLICT (tenant_id, mount_id, key) DO NOTHING \
                 RETURNING version"
            }
            Expect::Version(_) => {
                "UPDATE mount_entries SET value = $4, version = version + 1 \
                 WHERE tenant_id = $1 AND mount_id = $2 AND key = $3 AND version = $5 \
                 RETURNING version"
            }
        };
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let mut query = sqlx::query_scalar(statement)
            .bind(tenant.to_string())
            .bind(mount.to_string())
            .bind(key)
            .bind(value.to_string());
        if let Expect::Version(version) = expect {
            query = query.bind(to_i64(version));
        }
        let version: Option<i64> = query.fetch_optional(&mut *tx).await.map_err(map_error)?;
        // Nothing written: the transaction rolls back with nothing to announce.
        let version = version.ok_or(StoreError::ExpectationFailed)?;
        announce_in(&mut tx, [Change::MountEntry(tenant, mount, key.to_owned())]).await?;
        tx.commit().await.map_err(map_error)?;
        to_u64(version, "mount_entries.version")
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
                let present = sqlx::query(
                    "SELECT 1 FROM mount_entries \
                     WHERE tenant_id = $1 AND mount_id = $2 AND key = $3",
                )
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
                "DELETE FROM mount_entries WHERE tenant_id = $1 AND mount_id = $2 AND key = $3",
                None,
            ),
            Expect::Version(version) => (
                "DELETE FROM mount_entries \
                 WHERE tenant_id = $1 AND mount_id = $2 AND key = $3 AND version = $4",
                Some(to_i64(version)),
            ),
        };
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let mut query = sqlx::query(statement)
            .bind(&tenant_text)
            .bind(&mount_text)
            .bind(key);
        if let Some(version) = version {
            query = query.bind(version);
        }
        let deleted = query
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected()
            == 1;
        if !deleted {
            return match version {
                Some(_) => Err(StoreError::ExpectationFailed),
                None => Ok(false),
            };
        }
        announce_in(&mut tx, [Change::MountEntry(tenant, mount, key.to_owned())]).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(true)
    }

    async fn list_entries(
        &self,
        tenant: TenantId,
        mount: MountId,
        prefix: &str,
    ) -> Result<Vec<String>, StoreError> {
        // The key column sorts and compares in the "C" collation: byte order, as SQLite.
        let end = crate::prefix_end(prefix);
        let statement = if end.is_some() {
            "SELECT key FROM mount_entries WHERE tenant_id = $1 AND mount_id = $2 \
             AND key >= $3 AND key < $4 ORDER BY key"
        } else {
            "SELECT key FROM mount_entries WHERE tenant_id = $1 AND mount_id = $2 \
             AND key >= $3 ORDER BY key"
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
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
        sqlx::query("SELECT * FROM tokens WHERE hash = $1")
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
        sqlx::query("SELECT * FROM tokens WHERE tenant_id = $1 AND accessor = $2")
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
                 SELECT accessor FROM tokens WHERE tenant_id = $1 AND accessor = $2 \
                 UNION SELECT t.accessor FROM tokens t JOIN tree ON t.parent_accessor = tree.accessor) \
             DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM tree) \
             RETURNING hash",
        )
        .bind(tenant.to_string())
        .bind(accessor)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let revoked = hashes(&rows)?;
        announce_in(&mut tx, token_changes(&revoked)).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(revoked)
    }

    async fn revoke_mount_tokens(
        &self,
        tenant: TenantId,
        mount: MountId,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let rows = sqlx::query(
            "WITH RECURSIVE tree(accessor) AS ( \
                 SELECT accessor FROM tokens WHERE tenant_id = $1 AND auth_mount_id = $2 \
                 UNION SELECT t.accessor FROM tokens t JOIN tree ON t.parent_accessor = tree.accessor) \
             DELETE FROM tokens WHERE accessor IN (SELECT accessor FROM tree) \
             RETURNING hash",
        )
        .bind(tenant.to_string())
        .bind(mount.to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let revoked = hashes(&rows)?;
        announce_in(&mut tx, token_changes(&revoked)).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(revoked)
    }

    async fn set_token_expiry(&self, hash: &[u8], expires_at: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = sqlx::query("UPDATE tokens SET expires_at = $1 WHERE hash = $2")
            .bind(expires_at)
            .bind(hash)
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        if result.rows_affected() > 0 {
            announce_in(&mut tx, [Change::Token(hash.to_vec())]).await?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn use_token(&self, hash: &[u8]) -> Result<Option<u64>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        // One statement consumes the use: concurrent callers queue on the row lock and
        // re-check `uses_remaining > 0` against the committed row, so exactly as many
        // succeed as there were uses left.
        let left: Option<i64> = sqlx::query_scalar(
            "UPDATE tokens SET uses_remaining = uses_remaining - 1 \
             WHERE hash = $1 AND uses_remaining > 0 RETURNING uses_remaining",
        )
        .bind(hash)
        .fetch_optional(&mut *tx)
        .await
        .map_err(map_error)?;
        let mut touched = left.is_some();
        if left.is_none() || left == Some(0) {
            // The last use (or none left): the token is gone for everyone from now on.
            let deleted = sqlx::query("DELETE FROM tokens WHERE hash = $1 AND uses_remaining <= 0")
                .bind(hash)
                .execute(&mut *tx)
                .await
                .map_err(map_error)?;
            touched |= deleted.rows_affected() > 0;
        }
        if touched {
            announce_in(&mut tx, [Change::Token(hash.to_vec())]).await?;
        }
        tx.commit().await.map_err(map_error)?;
        left.map(|l| to_u64(l, "uses_remaining")).transpose()
    }

    async fn tidy_tokens(&self, now: i64) -> Result<Vec<Vec<u8>>, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let rows = sqlx::query(
            "DELETE FROM tokens WHERE expires_at IS NOT NULL AND expires_at <= $1 RETURNING hash",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_error)?;
        let tidied = hashes(&rows)?;
        announce_in(&mut tx, token_changes(&tidied)).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(tidied)
    }

    async fn put_approle_role(&self, role: &AppRoleRecord) -> Result<(), StoreError> {
        // An upsert, never a delete and insert: the role's secret_ids (ON DELETE CASCADE)
        // survive an update.
        sqlx::query(
            "INSERT INTO approle_roles (tenant_id, mount_id, name, role_id, bind_secret_id, \
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
        sqlx::query(
            "SELECT * FROM approle_roles WHERE tenant_id = $1 AND mount_id = $2 AND name = $3",
        )
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
            "SELECT * FROM approle_roles WHERE tenant_id = $1 AND mount_id = $2 AND role_id = $3",
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
            "SELECT name FROM approle_roles WHERE tenant_id = $1 AND mount_id = $2 ORDER BY name",
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
            "DELETE FROM approle_roles WHERE tenant_id = $1 AND mount_id = $2 AND name = $3",
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
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
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
             WHERE tenant_id = $1 AND mount_id = $2 AND role_name = $3 AND hash = $4",
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
             WHERE tenant_id = $1 AND mount_id = $2 AND role_name = $3 AND accessor = $4",
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
             WHERE tenant_id = $1 AND mount_id = $2 AND role_name = $3 ORDER BY accessor",
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
             WHERE tenant_id = $1 AND mount_id = $2 AND role_name = $3 AND hash = $4",
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
        // One statement: of any number of concurrent logins, on any number of nodes,
        // exactly as many as there were uses left see a row come back (the row lock queues
        // them; each re-checks `uses_remaining > 0` against the committed row).
        let left: Option<i64> = sqlx::query_scalar(
            "UPDATE approle_secret_ids SET uses_remaining = uses_remaining - 1 \
             WHERE tenant_id = $1 AND mount_id = $2 AND role_name = $3 AND hash = $4 \
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
                 WHERE tenant_id = $1 AND mount_id = $2 AND role_name = $3 AND hash = $4 \
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
        // Postgres has no rowid: the batch is chosen by primary key.
        let result = sqlx::query(
            "DELETE FROM approle_secret_ids WHERE (tenant_id, mount_id, role_name, hash) IN ( \
                 SELECT tenant_id, mount_id, role_name, hash FROM approle_secret_ids \
                 WHERE mount_id = $1 AND tenant_id = $2 \
                 AND expires_at IS NOT NULL AND expires_at <= $3 LIMIT $4)",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
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
        sqlx::query(
            "SELECT * FROM transit_keys WHERE tenant_id = $1 AND mount_id = $2 AND name = $3",
        )
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
            "SELECT * FROM transit_key_versions WHERE tenant_id = $1 AND key_id = $2 ORDER BY version",
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
            "SELECT name FROM transit_keys WHERE tenant_id = $1 AND mount_id = $2 ORDER BY name",
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
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = sqlx::query(
            "UPDATE transit_keys SET min_decryption_version = $1, min_encryption_version = $2, \
             deletion_allowed = $3, auto_rotate_period = $4 WHERE tenant_id = $5 AND id = $6",
        )
        .bind(i64::from(key.min_decryption_version))
        .bind(i64::from(key.min_encryption_version))
        .bind(key.deletion_allowed)
        .bind(to_i64(key.auto_rotate_period))
        .bind(key.tenant.to_string())
        .bind(key.id.to_string())
        .execute(&mut *tx)
        .await
        .map_err(map_error)?;
        if result.rows_affected() > 0 {
            announce_in(&mut tx, [Change::Key(key.tenant, key.id)]).await?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn add_key_version(
        &self,
        tenant: TenantId,
        expected_latest: u32,
        version: &KeyVersionRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        // Compare-and-set: a racing rotation waits on the row lock, then re-checks
        // `latest_version` against the committed row and moves nothing.
        let moved = sqlx::query(
            "UPDATE transit_keys SET latest_version = $1, rotated_at = $2 \
             WHERE tenant_id = $3 AND id = $4 AND latest_version = $5",
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
        announce_in(&mut tx, [Change::Key(tenant, version.key)]).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(true)
    }

    async fn delete_key(&self, tenant: TenantId, key: KeyId) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let result = sqlx::query("DELETE FROM transit_keys WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_string())
            .bind(key.to_string())
            .execute(&mut *tx)
            .await
            .map_err(map_error)?;
        if result.rows_affected() > 0 {
            announce_in(&mut tx, [Change::Key(tenant, key)]).await?;
        }
        tx.commit().await.map_err(map_error)
    }

    async fn reserve_counter(
        &self,
        tenant: TenantId,
        key: KeyId,
        version: u32,
        block: u64,
        limit: u64,
    ) -> Result<(u64, u64), StoreError> {
        // One statement, atomic against every other writer of the row on any node: the row
        // lock queues them, and the right-hand sides see the row as it was before this
        // update, so `counter_previous` keeps the value before this reservation. The new
        // value is SQLite's MIN(reserved + block, MAX(reserved, limit)), written so that
        // it cannot overflow: reserved + LEAST(block, GREATEST(limit - reserved, 0)).
        let row = sqlx::query(
            "UPDATE transit_key_versions \
             SET counter_previous = counter_reserved, \
                 counter_reserved = counter_reserved \
                     + LEAST($1, GREATEST($2 - counter_reserved, 0)) \
             WHERE tenant_id = $3 AND key_id = $4 AND version = $5 \
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
            "INSERT INTO audit_checkpoints (sink, sequence, head) VALUES ($1, $2, $3) \
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
        let row = sqlx::query("SELECT sequence, head FROM audit_checkpoints WHERE sink = $1")
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
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    tenant: TenantId,
    version: &KeyVersionRecord,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO transit_key_versions (key_id, tenant_id, version, backend_reference, \
         wrapped_dek, payload_format, created_at, counter_reserved, public_key) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
    use std::sync::Arc;

    use keybroker_pg_harness::PgServer;

    use super::*;

    /// Long enough for any delivery (or a reconnection after a restart) on a loaded machine;
    /// only reached when a test fails.
    const PATIENCE: Duration = Duration::from_secs(30);

    /// Options for a store whose server stays up: no deadline of these tests is the fault
    /// under test, and on a loaded machine a pooled connection (32 tasks share a node's 16 in
    /// the concurrency tests), the first connections or the first heartbeat of `open` may
    /// take seconds, beyond the default 2 s.
    fn patient() -> PostgresOptions {
        PostgresOptions {
            acquire_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(60),
            ..PostgresOptions::default()
        }
    }

    async fn open(url: &str) -> PostgresStore {
        PostgresStore::open(url, patient()).await.unwrap()
    }

    /// A fresh server with one database, and two nodes on it.
    async fn cluster() -> (PgServer, PostgresStore, PostgresStore) {
        let server = PgServer::start();
        let url = server.create_database("keybroker");
        let (a, b) = (open(&url).await, open(&url).await);
        (server, a, b)
    }

    /// Waits for `want` on the feed, skipping other changes.
    async fn expect(feed: &mut broadcast::Receiver<Change>, want: &Change) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, feed.recv()).await {
                Ok(Ok(change)) if &change == want => return,
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(error)) => panic!("feed closed waiting for {want:?}: {error}"),
                Err(_) => panic!("{want:?} not delivered within {PATIENCE:?}"),
            }
        }
    }

    /// Every change on the feed up to (not including) `marker`.
    async fn changes_until(feed: &mut broadcast::Receiver<Change>, marker: &Change) -> Vec<Change> {
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout(PATIENCE, feed.recv()).await {
                Ok(Ok(change)) if &change == marker => return seen,
                Ok(Ok(change)) => seen.push(change),
                other => panic!("{marker:?} not delivered: {other:?}"),
            }
        }
    }

    fn mount(path: &str, kind: &str) -> MountRecord {
        MountRecord {
            id: MountId::random(),
            tenant: TenantId::ROOT,
            path: path.into(),
            kind: kind.into(),
            description: String::new(),
            config: serde_json::json!({}),
            created_at: 0,
        }
    }

    fn token(tenant: TenantId, hash: u8, uses: Option<u64>) -> TokenRecord {
        TokenRecord {
            hash: vec![hash; 32],
            accessor: format!("accessor-{hash}"),
            tenant,
            policies: vec!["default".into()],
            display_name: "t".into(),
            created_at: 0,
            expires_at: Some(1_000),
            period: 0,
            ttl: 1_000,
            max_expires_at: None,
            uses_remaining: uses,
            parent_accessor: None,
            meta: Default::default(),
            renewable: true,
            bound_cidrs: Vec::new(),
            auth_mount: None,
        }
    }

    /// A transit mount with key `k` (version 1) in the root tenant.
    async fn key(store: &PostgresStore) -> (KeyRecord, KeyVersionRecord) {
        let mount = mount("transit/", "transit");
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
        (key, version)
    }

    #[tokio::test]
    async fn conforms() {
        let server = PgServer::start();
        let store = open(&server.create_database("conformance")).await;
        crate::conformance::run_all(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_race_a_compare_and_set_with_one_winner_per_version() {
        let (_server, a, b) = cluster().await;
        crate::conformance::racing_compare_and_set(Arc::new(a), Arc::new(b)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_starting_together_migrate_once() {
        let server = PgServer::start();
        let url = server.create_database("fresh");
        let (a, b, c) = tokio::join!(
            PostgresStore::open(&url, patient()),
            PostgresStore::open(&url, patient()),
            PostgresStore::open(&url, patient()),
        );
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        a.put_policy(TenantId::ROOT, "p", "one", 1).await.unwrap();
        assert_eq!(
            c.get_policy(TenantId::ROOT, "p").await.unwrap().as_deref(),
            Some("one")
        );
        drop((a, b, c));
        // And a node starting on the migrated database.
        let d = open(&url).await;
        assert_eq!(d.list_policies(TenantId::ROOT).await.unwrap(), vec!["p"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_on_one_node_reach_the_others() {
        let (_server, a, b) = cluster().await;
        let mut feed = b.subscribe().unwrap();
        let root = TenantId::ROOT;

        // A revoked token.
        a.put_tokens(&[token(root, 1, None)]).await.unwrap();
        a.revoke_token_tree(root, "accessor-1").await.unwrap();
        expect(&mut feed, &Change::Token(vec![1; 32])).await;
        // A used, renewed and tidied token.
        a.put_tokens(&[token(root, 2, Some(5)), token(root, 3, None)])
            .await
            .unwrap();
        assert_eq!(a.use_token(&[2; 32]).await.unwrap(), Some(4));
        expect(&mut feed, &Change::Token(vec![2; 32])).await;
        a.set_token_expiry(&[3; 32], 2_000).await.unwrap();
        expect(&mut feed, &Change::Token(vec![3; 32])).await;
        a.tidy_tokens(5_000).await.unwrap();
        expect(&mut feed, &Change::Token(vec![2; 32])).await;
        expect(&mut feed, &Change::Token(vec![3; 32])).await;

        // A policy write.
        a.put_policy(root, "app", "path \"x\" {}", 1).await.unwrap();
        expect(&mut feed, &Change::Policies(root)).await;

        // A key rotation.
        let (key, first) = key(&a).await;
        expect(&mut feed, &Change::Mounts(root)).await;
        let second = KeyVersionRecord {
            version: 2,
            ..first.clone()
        };
        assert!(a.add_key_version(root, 1, &second).await.unwrap());
        expect(&mut feed, &Change::Key(root, key.id)).await;

        // A tenant deletion, with its tokens.
        let tenant = TenantId::random();
        a.create_tenant(&TenantRecord {
            id: tenant,
            name: "team".into(),
            created_at: 0,
        })
        .await
        .unwrap();
        expect(&mut feed, &Change::Tenants).await;
        a.put_tokens(&[token(tenant, 9, None)]).await.unwrap();
        assert!(a.delete_tenant(tenant).await.unwrap());
        expect_all(
            &mut feed,
            vec![
                Change::TenantDeleted(tenant),
                Change::Tenants,
                Change::Token(vec![9; 32]),
            ],
        )
        .await;

        // A disabled auth mount, with the tokens it issued and the keys in it.
        let auth = mount("auth/approle/", "approle");
        a.create_mount(&auth).await.unwrap();
        a.put_tokens(&[TokenRecord {
            auth_mount: Some(auth.id),
            ..token(root, 10, None)
        }])
        .await
        .unwrap();
        assert!(a.delete_mount(root, auth.id).await.unwrap());
        expect_all(
            &mut feed,
            vec![Change::Mounts(root), Change::Token(vec![10; 32])],
        )
        .await;
        assert!(a.delete_mount(root, key.mount).await.unwrap());
        expect_all(
            &mut feed,
            vec![Change::Mounts(root), Change::Key(root, key.id)],
        )
        .await;

        // Mount-storage writes and deletes, by key; a mount's entries deleted with it are
        // announced by the mount's change.
        let storage = mount("auth/jwt/", "jwt");
        a.create_mount(&storage).await.unwrap();
        expect(&mut feed, &Change::Mounts(root)).await;
        let entry = |key: &str| Change::MountEntry(root, storage.id, key.to_owned());
        let value = serde_json::json!({"policies": ["web"]});
        for expect_as in [Expect::Absent, Expect::Any, Expect::Version(2)] {
            a.put_entry(root, storage.id, "role/web", &value, expect_as)
                .await
                .unwrap();
            expect(&mut feed, &entry("role/web")).await;
        }
        a.put_entry(root, storage.id, "a:b", &value, Expect::Any)
            .await
            .unwrap();
        expect(&mut feed, &entry("a:b")).await;
        assert!(a
            .delete_entry(root, storage.id, "role/web", Expect::Version(3))
            .await
            .unwrap());
        expect(&mut feed, &entry("role/web")).await;
        assert!(a
            .delete_entry(root, storage.id, "a:b", Expect::Any)
            .await
            .unwrap());
        expect(&mut feed, &entry("a:b")).await;
        a.put_entry(root, storage.id, "config", &value, Expect::Any)
            .await
            .unwrap();
        expect(&mut feed, &entry("config")).await;
        assert!(a.delete_mount(root, storage.id).await.unwrap());
        let marker = Change::Plugins;
        a.announce(&marker).await.unwrap();
        assert_eq!(
            changes_until(&mut feed, &marker).await,
            vec![Change::Mounts(root)]
        );

        // What a node announces itself arrives too.
        b.announce(&Change::Plugins).await.unwrap();
        expect(&mut feed, &Change::Plugins).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_that_do_not_commit_announce_nothing() {
        let (_server, a, b) = cluster().await;
        let mut feed = b.subscribe().unwrap();
        let root = TenantId::ROOT;
        let (key, first) = key(&a).await;
        let second = KeyVersionRecord {
            version: 2,
            ..first.clone()
        };
        assert!(a.add_key_version(root, 1, &second).await.unwrap());
        expect(&mut feed, &Change::Key(root, key.id)).await;
        // A mount-storage entry.
        let storage = mount("auth/jwt/", "jwt");
        a.create_mount(&storage).await.unwrap();
        expect(&mut feed, &Change::Mounts(root)).await;
        let value = serde_json::json!(1);
        a.put_entry(root, storage.id, "k", &value, Expect::Absent)
            .await
            .unwrap();
        expect(
            &mut feed,
            &Change::MountEntry(root, storage.id, "k".to_owned()),
        )
        .await;

        // A lost rotation race, a refused mount, a token for a deleted mount, nothing to
        // revoke or delete.
        assert!(!a.add_key_version(root, 1, &second).await.unwrap());
        assert!(matches!(
            a.create_mount(&mount("transit/", "transit")).await,
            Err(StoreError::Conflict)
        ));
        assert!(matches!(
            a.put_tokens(&[TokenRecord {
                auth_mount: Some(MountId::random()),
                ..token(root, 1, None)
            }])
            .await,
            Err(StoreError::Gone)
        ));
        assert!(a
            .revoke_token_tree(root, "nobody")
            .await
            .unwrap()
            .is_empty());
        assert!(!a.delete_policy(root, "none").await.unwrap());
        assert!(!a.delete_mount(root, MountId::random()).await.unwrap());
        assert!(!a.delete_tenant(TenantId::random()).await.unwrap());
        // Mount-storage writes that expected otherwise, or found nothing to delete.
        for expect_as in [Expect::Absent, Expect::Version(2)] {
            assert!(matches!(
                a.put_entry(root, storage.id, "k", &value, expect_as).await,
                Err(StoreError::ExpectationFailed)
            ));
        }
        for expect_as in [Expect::Absent, Expect::Version(2)] {
            assert!(matches!(
                a.delete_entry(root, storage.id, "k", expect_as).await,
                Err(StoreError::ExpectationFailed)
            ));
        }
        assert!(!a
            .delete_entry(root, storage.id, "none", Expect::Any)
            .await
            .unwrap());
        assert!(matches!(
            a.put_entry(root, MountId::random(), "k", &value, Expect::Any)
                .await,
            Err(StoreError::Gone)
        ));
        // Notifications arrive in commit order: everything before the marker is seen first.
        a.announce(&Change::Plugins).await.unwrap();
        let seen = changes_until(&mut feed, &Change::Plugins).await;
        assert!(
            seen.is_empty(),
            "announced without a committed change: {seen:?}"
        );
    }

    /// Waits until every change of `want` was on the feed, in any order.
    async fn expect_all(feed: &mut broadcast::Receiver<Change>, mut want: Vec<Change>) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !want.is_empty() {
            match tokio::time::timeout_at(deadline, feed.recv()).await {
                Ok(Ok(change)) => want.retain(|w| w != &change),
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                other => panic!("{want:?} not delivered: {other:?}"),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_feed_confirms_it_is_in_sync() {
        let (_server, a, _b) = cluster().await;
        let first = a.last_in_sync().unwrap();
        assert!(first <= Instant::now());
        let deadline = Instant::now() + PATIENCE;
        while a.last_in_sync().unwrap() <= first {
            assert!(Instant::now() < deadline, "last_in_sync never advanced");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `store` until a write succeeds: the same store recovers, without being opened
    /// again. Each attempt has the 2 s acquire deadline, which a loaded machine may exceed
    /// while the pool replaces its dead connections; the overall wait is generous.
    async fn writes_again(store: &PostgresStore) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match store.put_policy(TenantId::ROOT, "p", "again", 2).await {
                Ok(()) => return,
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(%error, "not yet");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => {
                    panic!("writes still fail {PATIENCE:?} after the restart: {error}")
                }
            }
        }
    }

    /// Calls made while the server is down end by the 2 s acquire deadline, not when the
    /// server comes back (it stays down until the test restarts it). Bounds on how long they
    /// take are loose: a loaded machine answers late, and the bound only tells a call ended
    /// by the deadline from one left waiting for the server.
    const DOWN_CALL_BOUND: Duration = Duration::from_secs(20);

    /// Options for the store whose server the test stops: the default 2 s acquire deadline is
    /// what ends calls while the server is down (the fault under test). Its dedicated
    /// connections (migrations, the change listener) and the wait for the first heartbeat get
    /// longer, as a loaded machine may need; not so long that the listener, whose connection
    /// attempts back off up to a fifth of it while the server is down, is slow to come back.
    fn restartable() -> PostgresOptions {
        PostgresOptions {
            connect_timeout: Duration::from_secs(10),
            ..PostgresOptions::default()
        }
    }

    /// While the server is down, a call fails as `Unavailable`, promptly (a hang guard).
    async fn fails_fast_while_down(store: &PostgresStore) {
        let started = Instant::now();
        let result = store.get_policy(TenantId::ROOT, "p").await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        let write = store.put_policy(TenantId::ROOT, "p", "lost", 3).await;
        assert!(
            matches!(write, Err(StoreError::Unavailable(_))),
            "{write:?}"
        );
        assert!(
            started.elapsed() < DOWN_CALL_BOUND,
            "two calls took {:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restarted_database_resyncs_and_recovers() {
        let mut server = PgServer::start();
        let url = server.create_database("restart");
        let store = PostgresStore::open(&url, restartable()).await.unwrap();
        let mut feed = store.subscribe().unwrap();
        store
            .put_policy(TenantId::ROOT, "p", "one", 1)
            .await
            .unwrap();

        // A clean restart (fast shutdown ends the sessions).
        server.stop();
        let started = Instant::now();
        let result = store.get_meta("m").await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        assert!(
            started.elapsed() < DOWN_CALL_BOUND,
            "{:?}",
            started.elapsed()
        );
        fails_fast_while_down(&store).await;
        let before = store.last_in_sync().unwrap();
        server.restart();
        writes_again(&store).await;
        expect(&mut feed, &Change::Resync).await;
        let deadline = Instant::now() + PATIENCE;
        while store.last_in_sync().unwrap() <= before {
            assert!(Instant::now() < deadline, "never in sync again");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // A crash (SIGKILL of the postmaster) and crash recovery.
        server.kill9();
        fails_fast_while_down(&store).await;
        server.restart();
        writes_again(&store).await;
        expect(&mut feed, &Change::Resync).await;
        assert_eq!(
            store
                .get_policy(TenantId::ROOT, "p")
                .await
                .unwrap()
                .as_deref(),
            Some("again")
        );
        // The feed works again end to end.
        store.announce(&Change::Plugins).await.unwrap();
        expect(&mut feed, &Change::Plugins).await;
    }

    #[tokio::test]
    async fn opening_an_unreachable_database_fails_fast() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let started = Instant::now();
        let result = PostgresStore::open(
            &format!("postgres://keybroker@127.0.0.1:{port}/x"),
            PostgresOptions::default(),
        )
        .await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        // Nothing listens on the port, ever: only the 2 s acquire deadline ends the attempt.
        assert!(
            started.elapsed() < DOWN_CALL_BOUND,
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_runs_on_one_node_at_a_time() {
        let (_server, a, b) = cluster().await;
        let tidy = a.try_lock_job("tidy").await.unwrap();
        assert!(tidy.is_some());
        assert!(b.try_lock_job("tidy").await.unwrap().is_none());
        assert!(
            a.try_lock_job("tidy").await.unwrap().is_none(),
            "not even twice on one node"
        );
        let rotate = b.try_lock_job("auto-rotate").await.unwrap();
        assert!(rotate.is_some(), "jobs are locked independently");
        drop(tidy);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(_guard) = b.try_lock_job("tidy").await.unwrap() {
                break;
            }
            assert!(Instant::now() < deadline, "the lock was never released");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(rotate);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_uses_on_two_nodes_are_exact() {
        let (_server, a, b) = cluster().await;
        let nodes = [Arc::new(a), Arc::new(b)];
        let auth = mount("auth/approle/", "approle");
        nodes[0].create_mount(&auth).await.unwrap();
        let role = AppRoleRecord::new(TenantId::ROOT, auth.id, "r", "rid", 0);
        nodes[0].put_approle_role(&role).await.unwrap();
        for (hash, uses) in [(1u8, 1u64), (2, 5)] {
            nodes[0]
                .put_approle_secret_id(&SecretIdRecord {
                    hash: vec![hash; 32],
                    accessor: format!("a{hash}"),
                    tenant: TenantId::ROOT,
                    mount: auth.id,
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
            let tasks: Vec<_> = (0..64)
                .map(|i| {
                    let node = nodes[i % 2].clone();
                    tokio::spawn(async move {
                        node.use_approle_secret_id(TenantId::ROOT, auth.id, "r", &[hash; 32])
                            .await
                            .unwrap()
                    })
                })
                .collect();
            let mut left = Vec::new();
            for task in tasks {
                left.extend(task.await.unwrap());
            }
            left.sort_unstable();
            assert_eq!(
                left,
                (0..uses).collect::<Vec<_>>(),
                "secret_id with {uses} uses"
            );
            assert_eq!(
                nodes[1]
                    .get_approle_secret_id(TenantId::ROOT, auth.id, "r", &[hash; 32])
                    .await
                    .unwrap(),
                None
            );
        }

        // Tokens with a use limit, likewise.
        nodes[1]
            .put_tokens(&[token(TenantId::ROOT, 7, Some(3))])
            .await
            .unwrap();
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let node = nodes[i % 2].clone();
                tokio::spawn(async move { node.use_token(&[7; 32]).await.unwrap() })
            })
            .collect();
        let mut left = Vec::new();
        for task in tasks {
            left.extend(task.await.unwrap());
        }
        left.sort_unstable();
        assert_eq!(left, vec![0, 1, 2]);
        assert_eq!(nodes[0].get_token(&[7; 32]).await.unwrap(), None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reservations_and_rotations_on_two_nodes() {
        let (_server, a, b) = cluster().await;
        let (key, first) = key(&a).await;
        let nodes = [Arc::new(a), Arc::new(b)];
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let node = nodes[i % 2].clone();
                tokio::spawn(async move {
                    node.reserve_counter(TenantId::ROOT, key.id, 1, 10, 1_000)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut windows = Vec::new();
        for task in tasks {
            windows.push(task.await.unwrap());
        }
        windows.sort_unstable();
        assert_eq!(windows.first().unwrap().0, 0);
        for pair in windows.windows(2) {
            assert_eq!(
                pair[0].1, pair[1].0,
                "windows overlap or leave gaps: {windows:?}"
            );
        }
        assert_eq!(windows.last().unwrap().1, 320);

        // Racing rotations from the same latest version: exactly one wins.
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let node = nodes[i % 2].clone();
                let version = KeyVersionRecord {
                    version: 2,
                    backend_reference: format!("r{i}"),
                    ..first.clone()
                };
                tokio::spawn(async move {
                    node.add_key_version(TenantId::ROOT, 1, &version)
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            won += usize::from(task.await.unwrap());
        }
        assert_eq!(won, 1);
        let versions = nodes[1]
            .get_key_versions(TenantId::ROOT, key.id)
            .await
            .unwrap();
        assert_eq!(versions.len(), 2);
    }
}
