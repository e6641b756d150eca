//! A cap per key on what a key holds at once (streams, dials): what one
//! identity holds cannot take what the others need.
//!
//! A [`Quota`] counts per key; [`Quota::try_hold`] hands out a [`Held`]
//! while the key is under its cap, and dropping the `Held` gives it back,
//! so no return path can leak a slot. Keys at zero are removed: the table
//! is as large as the number of keys holding something right now.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

/// Counts of what each key holds, each capped at the same number.
#[derive(Debug)]
pub struct Quota<K: Eq + Hash> {
    cap: usize,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash + Clone> Quota<K> {
    /// A quota that lets each key hold `cap` at once (at least one).
    pub fn new(cap: usize) -> Quota<K> {
        Quota {
            cap: cap.max(1),
            held: Arc::default(),
        }
    }

    /// The cap per key.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// One more for `key`, or `None` when it already holds its cap.
    pub fn try_hold(&self, key: &K) -> Option<Held<K>> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(key.clone()).or_insert(0);
        if *count >= self.cap {
            return None;
        }
        *count += 1;
        Some(Held {
            key: key.clone(),
            held: self.held.clone(),
        })
    }

    /// What `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.get(key).copied().unwrap_or(0)
    }
}

/// One slot of a key's quota, given back when dropped.
#[derive(Debug)]
pub struct Held<K: Eq + Hash> {
    key: K,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash> Drop for Held<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_up_to_its_cap_and_gets_slots_back_on_drop() {
        let quota = Quota::new(2);
        let a1 = quota.try_hold(&"a");
        let a2 = quota.try_hold(&"a");
        assert!(a1.is_some() && a2.is_some());
        assert!(quota.try_hold(&"a").is_none(), "a is at its cap");
        assert!(quota.try_hold(&"b").is_some(), "b has its own cap");
        drop(a1);
        assert_eq!(quota.held(&"a"), 1);
        assert!(quota.try_hold(&"a").is_some());
    }

    #[test]
    fn keys_at_zero_leave_the_table() {
        let quota = Quota::new(1);
        drop(quota.try_hold(&"a"));
        assert!(quota
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty());
    }
}
