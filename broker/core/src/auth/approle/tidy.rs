//! Tidy (Vault API: `auth/approle/tidy/secret-id`): deletes a mount's expired secret_ids in
//! batches, one tidy per mount at a time.

use std::{collections::HashSet, sync::Mutex};

use crate::{error::Result, store::MountRecord, MountId};

use super::AppRoles;

/// Expired secret_ids deleted per store statement by a tidy.
const TIDY_BATCH: u32 = 500;

impl AppRoles {
    /// Deletes a mount's expired secret_ids in small batches, yielding between them so
    /// logins never wait on it. Returns how many were deleted, or `None` if a tidy of the
    /// mount is already running.
    pub async fn tidy(&self, mount: &MountRecord) -> Result<Option<u64>> {
        let Some(_running) = TidyGuard::start(&self.tidying, mount.id) else {
            return Ok(None);
        };
        let mut total = 0;
        loop {
            let deleted = self
                .store
                .tidy_approle_secret_ids(mount.tenant, mount.id, self.clock.now_unix(), TIDY_BATCH)
                .await?;
            total += deleted;
            if deleted < u64::from(TIDY_BATCH) {
                return Ok(Some(total));
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Marks a mount's tidy as running until dropped.
struct TidyGuard<'a> {
    running: &'a Mutex<HashSet<MountId>>,
    mount: MountId,
}

impl<'a> TidyGuard<'a> {
    fn start(running: &'a Mutex<HashSet<MountId>>, mount: MountId) -> Option<Self> {
        let mut set = running.lock().ok()?;
        // Not `then_some`: it would build a guard even for a mount already running, and
        // dropping that guard would lock `running` again while `set` holds it (a deadlock),
        // then take the running tidy's mount out of the set.
        if set.insert(mount) {
            Some(Self { running, mount })
        } else {
            None
        }
    }
}

impl Drop for TidyGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.running.lock() {
            set.remove(&self.mount);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tidy_per_mount_at_a_time() {
        let running = Mutex::new(HashSet::new());
        let (first, other) = (MountId::random(), MountId::random());
        let guard = TidyGuard::start(&running, first);
        assert!(guard.is_some());
        assert!(TidyGuard::start(&running, first).is_none());
        assert!(TidyGuard::start(&running, other).is_some(), "another mount");
        drop(guard);
        assert!(
            TidyGuard::start(&running, first).is_some(),
            "after the first ended"
        );
    }
}
