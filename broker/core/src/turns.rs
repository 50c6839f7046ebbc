//! Turns taken per exact key: tasks that change the same thing wait for each other, in the
//! order they came; tasks on different keys never wait for each other.
//!
//! Written here rather than taken from a crate: the keyed-lock crates on crates.io are
//! small single-author projects, and this is a map of tokio mutexes and one `Drop`. A
//! fixed table of lock stripes (Vault's `locksutil`) would be simpler still, but makes
//! unrelated keys that share a stripe wait for each other's whole write (its sync to disk
//! included): the slowest writes of a busy node were exactly those.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex},
};

type Lock = Arc<tokio::sync::Mutex<()>>;

/// The keys being worked on, each with the turn its holder and waiters share. A key is
/// here only while a task holds or waits for its turn.
pub struct Turns<K> {
    held: Mutex<HashMap<K, Lock>>,
}

impl<K> std::fmt::Debug for Turns<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Turns(..)")
    }
}

impl<K: Hash + Eq + Clone> Default for Turns<K> {
    fn default() -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> Turns<K> {
    /// Waits for `key`'s turn; it is held until the returned guard is dropped. Dropping the
    /// future while it waits gives the place up.
    pub async fn take(&self, key: K) -> Turn<'_, K> {
        let lock = self.entries().entry(key.clone()).or_default().clone();
        let entry = Entry {
            turns: self,
            key,
            lock: Some(lock.clone()),
        };
        Turn {
            _guard: lock.lock_owned().await,
            _entry: entry,
        }
    }

    /// Keys held or waited for now.
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether no key is held or waited for.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<K, Lock>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A key's turn, held until dropped.
#[must_use = "the turn ends when the guard is dropped"]
pub struct Turn<'a, K: Hash + Eq + Clone> {
    // Fields drop in order: the turn is given up first, then the key's entry.
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _entry: Entry<'a, K>,
}

/// One holder's or waiter's share of a key's entry: the last one out removes it.
struct Entry<'a, K: Hash + Eq + Clone> {
    turns: &'a Turns<K>,
    key: K,
    lock: Option<Lock>,
}

impl<K: Hash + Eq + Clone> Drop for Entry<'_, K> {
    fn drop(&mut self) {
        let mut held = self.turns.entries();
        // Under the map's lock: nobody can take a new share between the drop and the count.
        drop(self.lock.take());
        if held
            .get(&self.key)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            held.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn different_keys_do_not_wait_for_each_other() {
        let turns = Turns::default();
        let a = turns.take("a").await;
        // Held beside "a" at once: a stripe table could make these two share a lock.
        let b = tokio::time::timeout(Duration::from_secs(60), turns.take("b"))
            .await
            .expect("b's turn is free while a's is held");
        assert_eq!(turns.len(), 2);
        drop((a, b));
        assert!(turns.is_empty());
    }

    #[tokio::test]
    async fn one_key_is_held_by_one_task_at_a_time_in_order() {
        let turns = Arc::new(Turns::default());
        let first = turns.take("k").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiters = Vec::new();
        for n in 0..3 {
            let (turns, order) = (turns.clone(), order.clone());
            let (queued, is_queued) = tokio::sync::oneshot::channel();
            waiters.push(tokio::spawn(async move {
                let waiting = turns.take("k");
                tokio::pin!(waiting);
                // Polled once so it is queued before the next waiter starts.
                assert!(futures_poll_once(&mut waiting).await.is_none());
                queued.send(()).expect("the test waits");
                let _turn = waiting.await;
                order.lock().expect("order").push(n);
            }));
            is_queued.await.expect("the waiter queued");
        }
        assert!(
            order.lock().expect("order").is_empty(),
            "nobody ran while k was held"
        );
        assert_eq!(turns.len(), 1);
        drop(first);
        for waiter in waiters {
            waiter.await.expect("waiter");
        }
        assert_eq!(*order.lock().expect("order"), vec![0, 1, 2]);
        assert!(turns.is_empty());
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_leaves_nothing_behind() {
        let turns = Turns::default();
        let held = turns.take("k").await;
        {
            let waiting = turns.take("k");
            tokio::pin!(waiting);
            assert!(futures_poll_once(&mut waiting).await.is_none());
        }
        drop(held);
        assert!(turns.is_empty(), "the abandoned wait left its key behind");
        let _again = turns.take("k").await;
        assert_eq!(turns.len(), 1);
    }

    /// Polls `future` once: its output if it was ready.
    async fn futures_poll_once<F: std::future::Future + Unpin>(
        future: &mut F,
    ) -> Option<F::Output> {
        std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *future).poll(cx) {
                std::task::Poll::Ready(output) => Some(output),
                std::task::Poll::Pending => None,
            })
        })
        .await
    }
}
