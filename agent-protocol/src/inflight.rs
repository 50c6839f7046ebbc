//! The broker's table of requests sent on one agent connection and not yet answered.

use std::collections::HashMap;
use std::time::Instant;

/// Requests in flight on one connection: request id → (deadline, `T`), where `T` is whatever
/// completes the waiting caller (the gateway stores a oneshot sender).
///
/// Ids come from a counter that starts at 1 and only goes up, so within a table's life an id
/// is never reused: a late reply for a request that already expired finds nothing
/// ([`Inflight::complete`] returns `None`) and can never complete a newer request. Time is a
/// parameter (`now`, `deadline`), never read here.
#[derive(Debug)]
pub struct Inflight<T> {
    entries: HashMap<u64, (Instant, T)>,
    next_id: u64,
}

impl<T> Default for Inflight<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Inflight<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            entries: HashMap::new(),
            next_id: 1,
        }
    }

    /// Records `value` until `deadline` and returns the id to put in the request frame.
    pub fn insert(&mut self, deadline: Instant, value: T) -> u64 {
        let id = self.next_id;
        // 2^64 ids: at a billion requests a second, ~585 years to wrap.
        self.next_id = self.next_id.wrapping_add(1);
        self.entries.insert(id, (deadline, value));
        id
    }

    /// Removes and returns the entry for a reply with this id; `None` if the id is unknown,
    /// already completed or expired (the caller drops that reply).
    pub fn complete(&mut self, id: u64) -> Option<T> {
        self.entries.remove(&id).map(|(_, value)| value)
    }

    /// Removes and returns, in id order, every entry whose deadline is at or before `now`.
    pub fn expire(&mut self, now: Instant) -> Vec<(u64, T)> {
        let mut expired_ids: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, (deadline, _))| *deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        expired_ids.sort_unstable();
        expired_ids
            .into_iter()
            .filter_map(|id| self.entries.remove(&id).map(|(_, value)| (id, value)))
            .collect()
    }

    /// The earliest deadline in the table, for scheduling the next [`Inflight::expire`].
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.values().map(|(deadline, _)| *deadline).min()
    }

    /// Removes and returns, in id order, everything in flight: the connection is lost and
    /// each caller must be failed.
    pub fn drain(&mut self) -> Vec<(u64, T)> {
        let mut all: Vec<(u64, T)> = self
            .entries
            .drain()
            .map(|(id, (_, value))| (id, value))
            .collect();
        all.sort_unstable_by_key(|(id, _)| *id);
        all
    }

    /// Number of requests in flight.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::time::Duration;

    #[test]
    fn ids_are_unique_even_after_completion() {
        let start = Instant::now();
        let mut table = Inflight::new();
        let mut seen = HashSet::new();
        for round in 0..100 {
            let id = table.insert(start, round);
            assert!(seen.insert(id), "id {id} reused");
            if round % 2 == 0 {
                assert_eq!(table.complete(id), Some(round));
            }
        }
        table.drain();
        let id = table.insert(start, 0);
        assert!(seen.insert(id), "id {id} reused after drain");
    }

    #[test]
    fn complete_returns_the_value_once() {
        let mut table = Inflight::new();
        let deadline = Instant::now() + Duration::from_secs(1);
        let first = table.insert(deadline, "first");
        let second = table.insert(deadline, "second");
        assert_eq!(table.len(), 2);
        assert_eq!(table.complete(second), Some("second"));
        assert_eq!(table.complete(second), None, "completed twice");
        assert_eq!(table.complete(12345), None, "unknown id");
        assert_eq!(table.len(), 1);
        assert_eq!(table.complete(first), Some("first"));
        assert!(table.is_empty());
    }

    #[test]
    fn expire_removes_only_what_is_past_its_deadline() {
        let start = Instant::now();
        let mut table = Inflight::new();
        let soon = table.insert(start + Duration::from_millis(100), "soon");
        let later = table.insert(start + Duration::from_millis(300), "later");
        let sooner = table.insert(start + Duration::from_millis(50), "sooner");
        assert_eq!(
            table.next_deadline(),
            Some(start + Duration::from_millis(50))
        );

        assert!(table.expire(start + Duration::from_millis(49)).is_empty());
        let expired = table.expire(start + Duration::from_millis(100));
        assert_eq!(expired, vec![(soon, "soon"), (sooner, "sooner")]);
        assert_eq!(table.len(), 1);

        // A late reply for an expired request finds nothing; the live one still completes.
        assert_eq!(table.complete(soon), None);
        assert_eq!(table.complete(later), Some("later"));
        assert_eq!(table.next_deadline(), None);
    }

    #[test]
    fn drain_fails_everything_in_flight() {
        let start = Instant::now();
        let mut table = Inflight::new();
        let ids: Vec<u64> = (0..5)
            .map(|n| table.insert(start + Duration::from_secs(n), n))
            .collect();
        let drained = table.drain();
        assert_eq!(drained, ids.iter().copied().zip(0..5).collect::<Vec<_>>());
        assert!(table.is_empty());
        assert!(ids.iter().all(|id| table.complete(*id).is_none()));
        assert!(table.expire(start + Duration::from_secs(10)).is_empty());
    }
}
