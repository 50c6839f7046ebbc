//! Periodic jobs: a session-level advisory lock per job name, held by a [`JobGuard`].

use keybroker_core::{changes::JobGuard, store::StoreError};
use sha2::{Digest, Sha256};

use super::{map_error, PostgresStore};

impl PostgresStore {
    pub(super) async fn try_lock_job(&self, job: &str) -> Result<Option<JobGuard>, StoreError> {
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
}

/// A stable advisory lock key per job name (the same on every node and every version).
fn job_lock_key(job: &str) -> i64 {
    let digest = Sha256::digest(format!("keybroker job: {job}").as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}
