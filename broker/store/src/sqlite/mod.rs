//! SQLite implementation of the `Store` trait.
//!
//! The `Store` impl is written by `crate::shared::store_impl!` from the templates both
//! engines share, with SQLite's SQL. What runs differently from PostgreSQL is SQLite's own,
//! as inherent methods of [`SqliteStore`]: `execute_write` (below) runs a single-statement
//! write, and one file per aggregate (`tenants`, `mounts`, `tokens`) holds the methods whose
//! transactions differ, which the impl forwards to (an inherent method is found before a
//! trait method of the same name). `postgres/` has the same files.

mod mounts;
mod tenants;
#[cfg(test)]
mod tests;
mod tokens;

use std::{path::Path, str::FromStr, time::Duration};

use keybroker_core::{
    changes::Change,
    store::{
        AppRoleRecord, Expect, KeyMode, KeyOptions, KeyRecord, KeyVersionRecord, MountEntry,
        MountRecord, SecretIdRecord, Store, StoreError, TenantRecord, TokenRecord,
        WrappedResponseRecord, WrappedResponseRenewal,
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
    /// Taken by every write of this process, so that writers queue here, in order, rather
    /// than race for SQLite's one write lock and sleep in its busy handler (which backs off
    /// up to 100 ms at a time: the tail of concurrent writes).
    writes: std::sync::Arc<tokio::sync::Mutex<()>>,
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
        Self::with_options(SqliteConnectOptions::new().filename(path)).await
    }

    /// Opens from a `sqlite:` URL.
    pub async fn open_url(url: &str) -> Result<Self, StoreError> {
        Self::with_options(SqliteConnectOptions::from_str(url).map_err(map_error)?).await
    }

    /// Opens `options` (creating the file if needed) in WAL mode with `synchronous=FULL`,
    /// foreign keys on, and applies migrations.
    async fn with_options(options: SqliteConnectOptions) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            // A local file: no connection to lose, so no ping before each query.
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(map_error)?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| StoreError::Other(Box::new(e)))?;
        Ok(Self {
            pool,
            writes: std::sync::Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Waits for this process's turn to write.
    pub(super) async fn write_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }
}

impl SqliteStore {
    /// Runs `query`, a write, on the pool; its number of rows affected. One node, nothing to
    /// announce: `changes` (what PostgreSQL would announce) is not called.
    async fn execute_write<C: IntoIterator<Item = Change>>(
        &self,
        query: BoundQuery<'_>,
        _changes: impl FnOnce(u64) -> C,
    ) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let result = query.execute(&self.pool).await.map_err(map_error)?;
        Ok(result.rows_affected())
    }
}

/// The engine of this module, for the shared templates.
type Engine = sqlx::Sqlite;

crate::shared::store_impl!(SqliteStore, sqlite, {});
