//! The durable per-version encryption counter (ARCHITECTURE.md §3).
//!
//! Counts are reserved in the store in blocks before they are used, so a crash at any point
//! leaves the persisted count at or above the number of encryptions acknowledged; after a
//! restart counting resumes past the persisted count (the rest of a block is skipped, never
//! reused). When a version's count reaches the rotation threshold it is exhausted and the
//! key rotates. The next window is reserved ahead, in the background, so that encryptions
//! seldom wait for the durable write; a crash then skips at most two windows.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// In-memory window `[issued, limit)` of counts reserved in the store.
pub(super) struct Counter {
    issued: AtomicU64,
    limit: AtomicU64,
    refill: tokio::sync::Mutex<()>,
    /// A window reserved ahead of need (durable already), installed when the current one
    /// is used up.
    prefetched: std::sync::Mutex<Option<(u64, u64)>>,
    prefetching: AtomicBool,
}

/// Outcome of asking for counts.
pub(super) enum Take {
    /// The counts were taken.
    Taken,
    /// The reserved window is used up: reserve more in the store.
    NeedsRefill,
}

impl Counter {
    /// A counter whose store row says `reserved` counts are already spoken for.
    pub(super) fn new(reserved: u64) -> Self {
        Self {
            issued: AtomicU64::new(reserved),
            limit: AtomicU64::new(reserved),
            refill: tokio::sync::Mutex::new(()),
            prefetched: std::sync::Mutex::new(None),
            prefetching: AtomicBool::new(false),
        }
    }

    /// Whether to reserve the next window now: the current one has at most `low_water`
    /// counts left, none is reserved ahead yet, and no reservation is in flight. Claims the
    /// in-flight flag when it answers `true`.
    pub(super) fn start_prefetch(&self, low_water: u64) -> bool {
        let remaining = self
            .limit
            .load(Ordering::Acquire)
            .saturating_sub(self.issued.load(Ordering::Acquire));
        if remaining > low_water || self.prefetching.load(Ordering::Acquire) {
            return false;
        }
        if self.prefetched.lock().map(|p| p.is_some()).unwrap_or(true) {
            return false;
        }
        !self.prefetching.swap(true, Ordering::AcqRel)
    }

    /// Records the outcome of a background reservation.
    pub(super) fn finish_prefetch(&self, window: Option<(u64, u64)>) {
        if let (Some(window), Ok(mut slot)) = (window, self.prefetched.lock()) {
            *slot = Some(window);
        }
        self.prefetching.store(false, Ordering::Release);
    }

    /// The window reserved ahead, if any (call under `lock_refill`).
    pub(super) fn take_prefetched(&self) -> Option<(u64, u64)> {
        self.prefetched.lock().ok()?.take()
    }

    /// Takes `n` counts from the reserved window if they fit.
    pub(super) fn try_take(&self, n: u64) -> Take {
        let mut current = self.issued.load(Ordering::Acquire);
        loop {
            let limit = self.limit.load(Ordering::Acquire);
            let Some(next) = current.checked_add(n) else {
                return Take::NeedsRefill;
            };
            if next > limit {
                return Take::NeedsRefill;
            }
            match self.issued.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Take::Taken,
                Err(actual) => current = actual,
            }
        }
    }

    /// Serialises refills of this counter.
    pub(super) async fn lock_refill(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.refill.lock().await
    }

    /// Installs a freshly reserved window `[start, end)` (call under `lock_refill`).
    pub(super) fn install(&self, start: u64, end: u64) {
        // Lower `limit` first so no taker sees the new start with the old limit.
        self.limit.store(start, Ordering::Release);
        self.issued.store(start, Ordering::Release);
        self.limit.store(end, Ordering::Release);
    }
}
