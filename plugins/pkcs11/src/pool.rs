//! A bounded pool of PKCS#11 sessions for one instance.
//!
//! At most `max_sessions` sessions exist at once (idle or in use); a call that finds none
//! free waits until one is returned or its deadline passes. Sessions are opened with
//! cryptoki's "do not close on drop" flavour: whether a session may be closed depends on
//! the module's generation (after a re-initialisation its handle number may belong to
//! someone else's new session), which only the caller holding the module knows. So the pool
//! counts and stores sessions; the caller opens, validates and closes them.

use std::time::Instant;

use cryptoki::session::Session;
use parking_lot::{Condvar, Mutex};

/// A session and the module generation it was opened in.
#[derive(Debug)]
pub(crate) struct PooledSession {
    pub(crate) session: Session,
    pub(crate) generation: u64,
}

/// What [`Pool::take`] hands out.
#[derive(Debug)]
pub(crate) enum Taken {
    /// An idle session of the current generation, to validate before use.
    Idle(PooledSession),
    /// Room for one more session: open it, then [`Pool::put`] it back when done, or
    /// [`Pool::release`] the room if opening failed.
    Room,
}

/// Counts of the pool, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Sessions that exist now, idle or in use.
    pub open: usize,
    /// The most that ever existed at once.
    pub peak: usize,
    /// Sessions waiting in the pool.
    pub idle: usize,
}

#[derive(Debug, Default)]
struct State {
    idle: Vec<PooledSession>,
    /// Sessions that exist (idle, in use, or being opened).
    open: usize,
    peak: usize,
}

/// The pool.
#[derive(Debug)]
pub(crate) struct Pool {
    max: usize,
    state: Mutex<State>,
    returned: Condvar,
}

impl Pool {
    /// An empty pool for at most `max` sessions.
    pub(crate) fn new(max: usize) -> Pool {
        Pool {
            max,
            state: Mutex::new(State::default()),
            returned: Condvar::new(),
        }
    }

    /// An idle session of `generation`, or room to open one, waiting until `deadline`;
    /// `None` when the deadline passed first. Idle sessions of older generations are
    /// forgotten on the way (never closed: their handles are not ours any more).
    pub(crate) fn take(&self, generation: u64, deadline: Instant) -> Option<Taken> {
        let mut state = self.state.lock();
        loop {
            let before = state.idle.len();
            state.idle.retain(|pooled| pooled.generation == generation);
            let stale = before - state.idle.len();
            state.open -= stale;
            if stale > 0 {
                self.returned.notify_all();
            }
            if let Some(pooled) = state.idle.pop() {
                return Some(Taken::Idle(pooled));
            }
            if state.open < self.max {
                state.open += 1;
                state.peak = state.peak.max(state.open);
                return Some(Taken::Room);
            }
            if self.returned.wait_until(&mut state, deadline).timed_out() {
                return None;
            }
        }
    }

    /// Returns a healthy session for reuse.
    pub(crate) fn put(&self, pooled: PooledSession) {
        self.state.lock().idle.push(pooled);
        self.returned.notify_one();
    }

    /// A session taken from the pool is gone (closed, or dead), or the room taken to open one
    /// was not used.
    pub(crate) fn release(&self) {
        let mut state = self.state.lock();
        state.open = state.open.saturating_sub(1);
        self.returned.notify_one();
    }

    /// Empties the pool, handing back the idle sessions (to close or forget).
    pub(crate) fn drain(&self) -> Vec<PooledSession> {
        let mut state = self.state.lock();
        let idle = std::mem::take(&mut state.idle);
        state.open -= idle.len();
        self.returned.notify_all();
        idle
    }

    /// Current counts.
    pub(crate) fn stats(&self) -> SessionStats {
        let state = self.state.lock();
        SessionStats {
            open: state.open,
            peak: state.peak,
            idle: state.idle.len(),
        }
    }

    /// Largest number of sessions.
    pub(crate) fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn room_is_bounded_and_freed() {
        let pool = Pool::new(2);
        let soon = || Instant::now() + Duration::from_millis(50);
        assert!(matches!(pool.take(0, soon()), Some(Taken::Room)));
        assert!(matches!(pool.take(0, soon()), Some(Taken::Room)));
        let started = Instant::now();
        assert!(pool.take(0, soon()).is_none(), "a third session");
        assert!(started.elapsed() >= Duration::from_millis(40));
        assert_eq!(
            pool.stats(),
            SessionStats {
                open: 2,
                peak: 2,
                idle: 0
            }
        );
        // Freed from another thread while this one waits.
        std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                pool.release();
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            assert!(matches!(pool.take(0, deadline), Some(Taken::Room)));
        });
        assert_eq!(pool.stats().peak, 2);
        pool.release();
        pool.release();
        assert_eq!(pool.stats().open, 0);
        assert!(pool.drain().is_empty());
    }
}
