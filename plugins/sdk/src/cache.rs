//! The keys an instance has verified: on a key's first use a plugin checks with its backend
//! that the key is its tenant's (tags, labels) and of which kind it is; later uses of the
//! same reference read that here and cost no verification call.

use std::{
    collections::HashMap,
    fmt::Display,
    hash::Hash,
    sync::{Mutex, PoisonError},
};

use keybroker_plugin_abi::KeyHandle;

use crate::reference::KeyReference;

/// What an instance knows of the keys it verified, by reference. A poisoned lock (a panic
/// elsewhere while holding it) is recovered: the map holds no invariant a panic could break.
#[derive(Debug)]
pub struct VerifiedKeys<K, V> {
    keys: Mutex<HashMap<K, V>>,
}

impl<K, V> Default for VerifiedKeys<K, V> {
    fn default() -> Self {
        Self {
            keys: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash, V: Clone> VerifiedKeys<K, V> {
    /// What was verified of `key`, if it was.
    pub fn get(&self, key: &K) -> Option<V> {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Records what was verified of `key`.
    pub fn insert(&self, key: K, value: V) {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, value);
    }

    /// Forgets `key` (deleted).
    pub fn remove(&self, key: &K) {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// What was verified of `key`, verifying it with `verify` on its first use (the lock is
    /// not held meanwhile: two first uses at once may both verify).
    pub fn get_or_verify<E>(&self, key: &K, verify: impl FnOnce(&K) -> Result<V, E>) -> Result<V, E>
    where
        K: Clone,
    {
        if let Some(value) = self.get(key) {
            return Ok(value);
        }
        let value = verify(key)?;
        self.insert(key.clone(), value.clone());
        Ok(value)
    }
}

impl<K: Display + Eq + Hash, V: Clone> VerifiedKeys<KeyReference<K>, V> {
    /// Records what was verified of a key the plugin just created or bound, and returns
    /// its handle (the encoded reference) for the host.
    pub fn handle(&self, reference: KeyReference<K>, value: V) -> KeyHandle {
        let encoded = reference.encode();
        self.insert(reference, value);
        KeyHandle {
            reference: encoded.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn verifies_once_and_forgets_on_removal() {
        let cache = VerifiedKeys::<String, u8>::default();
        let mut calls = 0;
        let mut verify = |_: &String| -> Result<u8, ()> {
            calls += 1;
            Ok(7)
        };
        assert_eq!(cache.get_or_verify(&"k".to_owned(), &mut verify), Ok(7));
        assert_eq!(cache.get_or_verify(&"k".to_owned(), &mut verify), Ok(7));
        cache.remove(&"k".to_owned());
        assert_eq!(cache.get(&"k".to_owned()), None);
        assert_eq!(cache.get_or_verify(&"k".to_owned(), &mut verify), Ok(7));
        assert_eq!(calls, 2);
        let failed: Result<u8, &str> = cache.get_or_verify(&"x".to_owned(), |_| Err("no"));
        assert_eq!(failed, Err("no"));
        assert_eq!(cache.get(&"x".to_owned()), None);
    }
}
