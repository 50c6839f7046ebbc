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
    /// Mount-storage writes waiting for the next group commit.
    entry_writes: tokio::sync::mpsc::UnboundedSender<EntryWrite>,
}

/// One mount-storage write for the group commit, and where its answer goes.
struct EntryWrite {
    query: BoundScalar<'static, i64>,
    answer: tokio::sync::oneshot::Sender<Result<Option<i64>, StoreError>>,
}

impl std::fmt::Debug for EntryWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EntryWrite(..)")
    }
}

/// Most writes committed together.
const GROUP_COMMIT_MAX: usize = 256;

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
        let writes = std::sync::Arc::new(tokio::sync::Mutex::new(()));
        let (entry_writes, queued) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(commit_groups(pool.clone(), writes.clone(), queued));
        Ok(Self {
            pool,
            writes,
            entry_writes,
        })
    }

    /// Runs `query` (a mount-storage write) in the next group commit; its result once the
    /// commit is durable.
    pub(super) async fn group_commit(
        &self,
        query: BoundScalar<'static, i64>,
    ) -> Result<Option<i64>, StoreError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.entry_writes
            .send(EntryWrite { query, answer })
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".into()))?;
        answered
            .await
            .map_err(|_| StoreError::Unavailable("the store's writer has stopped".into()))?
    }

    /// Waits for this process's turn to write.
    pub(super) async fn write_turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// A write transaction, in this process's turn to write (kept until the returned guard
    /// drops, after the transaction).
    pub(super) async fn write_transaction(
        &self,
    ) -> Result<(WriteTurn<'_>, sqlx::Transaction<'static, sqlx::Sqlite>), StoreError> {
        let turn = self.write_turn().await;
        let tx = begin_write(&self.pool).await?;
        Ok((turn, tx))
    }
}

/// This process's turn to write, held while a write transaction runs.
pub(super) type WriteTurn<'a> = tokio::sync::MutexGuard<'a, ()>;

/// Begins a write transaction that holds SQLite's write lock from its start
/// (`BEGIN IMMEDIATE`). A deferred one that reads before it writes would fail at once with
/// `SQLITE_BUSY` when another connection holds the lock at its first write (SQLite calls
/// no busy handler for a read transaction that wants to write: it could deadlock), for
/// instance while the rollback of a transaction dropped on an error is still pending.
/// Taking the lock first waits for it under the busy timeout instead.
async fn begin_write(
    pool: &SqlitePool,
) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
    pool.begin_with("BEGIN IMMEDIATE").await.map_err(map_error)
}

/// The group commit of mount-storage writes: whatever is queued when the writer gets its
/// turn (up to [`GROUP_COMMIT_MAX`]) runs in one transaction, each statement with its own
/// compare-and-set as if alone, in the order queued, and one commit (one sync of the
/// write-ahead log) makes them all durable; only then is each answered. A commit that
/// fails fails every write of the group. One sync for many concurrent writes is what
/// SQLite cannot do by itself (each transaction syncs).
async fn commit_groups(
    pool: SqlitePool,
    writes: std::sync::Arc<tokio::sync::Mutex<()>>,
    mut queued: tokio::sync::mpsc::UnboundedReceiver<EntryWrite>,
) {
    while let Some(first) = queued.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_COMMIT_MAX {
            match queued.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let _turn = writes.lock().await;
        let mut answers = Vec::with_capacity(group.len());
        let committed = async {
            let mut tx = begin_write(&pool).await?;
            for write in group {
                let result = write
                    .query
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(map_error);
                answers.push((write.answer, result));
            }
            tx.commit().await.map_err(map_error)
        }
        .await;
        for (answer, result) in answers {
            let result = match &committed {
                Ok(()) => result,
                Err(error) => Err(StoreError::Unavailable(format!("commit failed: {error}"))),
            };
            // The writer may have gone (its request cancelled): nothing to tell.
            let _ = answer.send(result);
        }
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
