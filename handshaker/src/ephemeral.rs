//! Bounded, expiring in-memory maps for short-lived state: fetch challenges
//! (single use), ack tokens and spent proof-of-work stamps.
//!
//! Nothing here survives a restart, which is safe: a lost challenge or ack
//! token only makes the client fetch again (items stay until acked), and a
//! spent stamp is at most 20 minutes from expiring anyway.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

/// The map is at capacity even after dropping expired entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many outstanding entries; retry later")]
pub struct Full;

/// A map whose entries expire at a Unix time and whose size is bounded.
#[derive(Debug)]
pub struct ExpiringMap<K, V> {
    /// Entries with their expiry.
    inner: Mutex<HashMap<K, (V, u64)>>,
    /// Largest number of entries.
    capacity: usize,
}

impl<K: Eq + Hash, V: Clone> ExpiringMap<K, V> {
    /// An empty map holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        ExpiringMap {
            inner: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (V, u64)>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Inserts `key` unless present and unexpired; `Ok(false)` if present.
    pub fn insert_new(&self, key: K, value: V, expires_at: u64, now: u64) -> Result<bool, Full> {
        let mut m = self.lock();
        if let Some((_, exp)) = m.get(&key)
            && *exp >= now
        {
            return Ok(false);
        }
        if m.len() >= self.capacity {
            m.retain(|_, (_, exp)| *exp >= now);
            if m.len() >= self.capacity {
                return Err(Full);
            }
        }
        m.insert(key, (value, expires_at));
        Ok(true)
    }

    /// Whether `key` is present and unexpired.
    pub fn contains(&self, key: &K, now: u64) -> bool {
        self.lock().get(key).is_some_and(|(_, exp)| *exp >= now)
    }

    /// The value of `key` if unexpired.
    pub fn get(&self, key: &K, now: u64) -> Option<V> {
        self.lock()
            .get(key)
            .filter(|(_, exp)| *exp >= now)
            .map(|(v, _)| v.clone())
    }

    /// Removes and returns `key` (single use) if unexpired.
    pub fn take(&self, key: &K, now: u64) -> Option<V> {
        self.lock()
            .remove(key)
            .filter(|(_, exp)| *exp >= now)
            .map(|(v, _)| v)
    }

    /// Removes `key`.
    pub fn remove(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Drops expired entries.
    pub fn prune(&self, now: u64) {
        self.lock().retain(|_, (_, exp)| *exp >= now);
    }

    /// Number of entries (expired ones included until pruned).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod test {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn single_use_expiry_and_capacity() {
        let m = ExpiringMap::new(2);
        assert_eq!(m.insert_new("a", 1, 100, 0), Ok(true));
        assert_eq!(m.insert_new("a", 2, 100, 0), Ok(false));
        assert_eq!(m.insert_new("b", 1, 10, 0), Ok(true));
        assert_eq!(m.insert_new("c", 1, 100, 0), Err(Full));
        // "b" expired: room again.
        assert_eq!(m.insert_new("c", 3, 100, 50), Ok(true));
        assert_eq!(m.take(&"c", 50), Some(3));
        assert_eq!(m.take(&"c", 50), None);
        assert_eq!(m.get(&"a", 101), None);
    }
}
