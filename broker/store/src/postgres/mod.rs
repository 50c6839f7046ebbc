//! PostgreSQL implementation of the `Store` trait, for a cluster of broker nodes sharing one
//! database (ARCHITECTURE.md §7).
//!
//! The SQL is SQLite's, translated statement by statement (side by side in `shared/`), so
//! every method behaves the same (one conformance suite runs against both). On top of it:
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
//! The `Store` impl is written by `crate::shared::store_impl!` from the templates both
//! engines share, with PostgreSQL's SQL. What locks, or announces in its transaction, is
//! PostgreSQL's own, as inherent methods of [`PostgresStore`]: `execute_write` (below) runs
//! a single-statement write and announces it, and one file per aggregate (`tenants`,
//! `mounts`, `tokens`, as in `sqlite/`) holds the methods whose transactions differ, which
//! the impl forwards to (an inherent method is found before a trait method of the same
//! name). The cluster machinery stands apart: `feed` (announcements, the listener, the
//! heartbeat) and `jobs` (advisory locks).

mod feed;
mod jobs;
mod mounts;
mod tenants;
#[cfg(test)]
mod tests;
mod tokens;

use std::{
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use keybroker_core::{
    changes::{Change, JobGuard},
    store::{
        AppRoleRecord, Expect, KeyMode, KeyOptions, KeyRecord, KeyVersionRecord, MountEntry,
        MountRecord, SecretIdRecord, Store, StoreError, TenantRecord, TokenRecord,
        WrappedResponseRecord, WrappedResponseRenewal,
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

/// Runs `query` (`SELECT 1 … FOR UPDATE`) in `tx`, locking the row it selects until `tx`
/// ends; whether there is such a row.
async fn lock_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    query: BoundQuery<'_>,
) -> Result<bool, StoreError> {
    let row = query.fetch_optional(&mut **tx).await.map_err(map_error)?;
    Ok(row.is_some())
}

impl PostgresStore {
    /// A write transaction; nodes and connections settle with row locks, so there is no
    /// turn to wait for (the guard is `()`, for the templates shared with SQLite).
    async fn write_transaction(
        &self,
    ) -> Result<((), sqlx::Transaction<'static, sqlx::Postgres>), StoreError> {
        Ok(((), self.pool.begin().await.map_err(map_error)?))
    }

    /// Runs `query`, a write, in a transaction that announces `changes` (given the number of
    /// rows affected) and commits; the number of rows affected.
    async fn execute_write<C: IntoIterator<Item = Change>>(
        &self,
        query: BoundQuery<'_>,
        changes: impl FnOnce(u64) -> C,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_error)?;
        let rows = query
            .execute(&mut *tx)
            .await
            .map_err(map_error)?
            .rows_affected();
        feed::announce_in(&mut tx, changes(rows)).await?;
        tx.commit().await.map_err(map_error)?;
        Ok(rows)
    }
}

/// The engine of this module, for the shared templates.
type Engine = sqlx::Postgres;

crate::shared::store_impl!(PostgresStore, postgres, {
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
});
