//! Values kept in memory between queries within a byte budget, the least
//! recently used dropped first: the bookkeeping the column cache and the
//! condensed rollup cache share.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

struct Entry<V> {
    value: V,
    bytes: usize,
    last_used: u64,
}

pub(crate) struct MemoryLru<K, V> {
    budget: usize,
    entries: HashMap<K, Entry<V>>,
    /// `last_used` → key, oldest first.
    by_age: BTreeMap<u64, K>,
    bytes: usize,
    clock: u64,
}

impl<K: Clone + Eq + Hash, V: Clone> MemoryLru<K, V> {
    pub(crate) fn new(budget: usize) -> MemoryLru<K, V> {
        MemoryLru {
            budget,
            entries: HashMap::new(),
            by_age: BTreeMap::new(),
            bytes: 0,
            clock: 0,
        }
    }

    pub(crate) fn budget(&self) -> usize {
        self.budget
    }

    /// Bytes held now.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The value kept under `key` when `wanted` accepts it, marked as just
    /// used.
    pub(crate) fn get(&mut self, key: &K, wanted: impl Fn(&V) -> bool) -> Option<V> {
        let entry = self.entries.get_mut(key).filter(|e| wanted(&e.value))?;
        self.clock += 1;
        self.by_age.remove(&entry.last_used);
        entry.last_used = self.clock;
        self.by_age.insert(self.clock, key.clone());
        Some(entry.value.clone())
    }

    /// Keeps `value` (of `bytes`) under `key`, replacing what was there and
    /// dropping the least recently used values while over the budget. A
    /// value larger than the whole budget is not kept.
    pub(crate) fn insert(&mut self, key: K, value: V, bytes: usize) {
        if bytes > self.budget {
            return;
        }
        self.clock += 1;
        let clock = self.clock;
        if let Some(old) = self.entries.insert(
            key.clone(),
            Entry {
                value,
                bytes,
                last_used: clock,
            },
        ) {
            self.by_age.remove(&old.last_used);
            self.bytes -= old.bytes;
        }
        self.by_age.insert(clock, key);
        self.bytes += bytes;
        while self.bytes > self.budget {
            let Some((_, oldest)) = self.by_age.pop_first() else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.bytes -= evicted.bytes;
            }
        }
    }
}
