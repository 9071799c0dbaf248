//! Decoded lake columns kept in memory between queries, least recently used
//! first out, within a byte budget.
//!
//! A lake file never changes once written (compaction writes new files
//! under new names), so a column decoded from it stays right for as long as
//! it is kept. Dashboards ask the same few questions of the same recent
//! hours every refresh; decoding those files again each time (decompressing
//! and unpacking pages, a codec per column chunk) was most of a small
//! query's work.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::{Array, ArrayRef};

/// One column of one file: the file's path and the column's index in the
/// scan schema.
type ColumnKey = (Arc<Path>, usize);

struct Entry {
    column: ArrayRef,
    bytes: usize,
    last_used: u64,
}

#[derive(Default)]
struct Columns {
    entries: HashMap<ColumnKey, Entry>,
    /// `last_used` → key, oldest first.
    by_age: BTreeMap<u64, ColumnKey>,
    bytes: usize,
    clock: u64,
}

/// Hits and misses since the cache was made, by column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColumnCacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Bytes held now.
    pub bytes: usize,
}

pub struct ColumnCache {
    budget: usize,
    columns: Mutex<Columns>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for ColumnCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnCache")
            .field("budget", &self.budget)
            .field("stats", &self.stats())
            .finish()
    }
}

impl ColumnCache {
    /// A cache holding at most `budget` bytes of columns.
    pub fn new(budget: usize) -> ColumnCache {
        ColumnCache {
            budget,
            columns: Mutex::new(Columns::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    pub fn stats(&self) -> ColumnCacheStats {
        ColumnCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: self.lock().bytes,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Columns> {
        self.columns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The kept columns `columns` of `file` (in that order, `None` where
    /// one is not kept), marking those found as just used.
    pub fn get(&self, file: &Path, columns: &[usize]) -> Vec<Option<ArrayRef>> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let key_file: Arc<Path> = Arc::from(file);
        let found: Vec<Option<ArrayRef>> = columns
            .iter()
            .map(|&index| {
                let key = (key_file.clone(), index);
                let entry = state.entries.get_mut(&key)?;
                state.clock += 1;
                state.by_age.remove(&entry.last_used);
                entry.last_used = state.clock;
                state.by_age.insert(state.clock, key);
                Some(entry.column.clone())
            })
            .collect();
        let hits = found.iter().filter(|c| c.is_some()).count() as u64;
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses
            .fetch_add(columns.len() as u64 - hits, Ordering::Relaxed);
        found
    }

    /// Keeps `column` (column `index` of `file`), dropping the least
    /// recently used columns while over the budget. A column larger than
    /// the whole budget is not kept.
    pub fn insert(&self, file: &Path, index: usize, column: ArrayRef) {
        let bytes = column.get_array_memory_size();
        if bytes > self.budget {
            return;
        }
        let mut guard = self.lock();
        let state = &mut *guard;
        let key: ColumnKey = (Arc::from(file), index);
        state.clock += 1;
        let clock = state.clock;
        if let Some(old) = state.entries.insert(
            key.clone(),
            Entry {
                column,
                bytes,
                last_used: clock,
            },
        ) {
            state.by_age.remove(&old.last_used);
            state.bytes -= old.bytes;
        }
        state.by_age.insert(clock, key);
        state.bytes += bytes;
        while state.bytes > self.budget {
            let Some((_, oldest)) = state.by_age.pop_first() else {
                break;
            };
            if let Some(evicted) = state.entries.remove(&oldest) {
                state.bytes -= evicted.bytes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int64Array;

    fn column(len: usize) -> ArrayRef {
        Arc::new(Int64Array::from(vec![7i64; len]))
    }

    #[test]
    fn a_kept_column_is_returned_as_kept_and_counted_as_a_hit() {
        let cache = ColumnCache::new(1 << 20);
        let file = Path::new("/lake/a.parquet");
        let kept = column(100);
        cache.insert(file, 3, kept.clone());
        let found = cache.get(file, &[3, 4]);
        assert!(Arc::ptr_eq(found[0].as_ref().expect("kept"), &kept));
        assert!(found[1].is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 1));
        assert_eq!(stats.bytes, kept.get_array_memory_size());
    }

    #[test]
    fn over_budget_the_least_recently_used_column_goes_first() {
        let one = column(1000).get_array_memory_size();
        let cache = ColumnCache::new(one * 2);
        let (a, b) = (Path::new("/lake/a.parquet"), Path::new("/lake/b.parquet"));
        cache.insert(a, 0, column(1000));
        cache.insert(b, 0, column(1000));
        // a is used again, so b is now the oldest.
        assert!(cache.get(a, &[0])[0].is_some());
        cache.insert(a, 1, column(1000));
        assert!(cache.get(a, &[0])[0].is_some());
        assert!(cache.get(a, &[1])[0].is_some());
        assert!(cache.get(b, &[0])[0].is_none());
        assert_eq!(cache.stats().bytes, one * 2);
    }

    #[test]
    fn a_column_larger_than_the_budget_is_not_kept_and_evicts_nothing() {
        let cache = ColumnCache::new(column(10).get_array_memory_size());
        let file = Path::new("/lake/a.parquet");
        cache.insert(file, 0, column(10));
        cache.insert(file, 1, column(10_000));
        assert!(cache.get(file, &[0])[0].is_some());
        assert!(cache.get(file, &[1])[0].is_none());
    }

    #[test]
    fn keeping_a_column_again_replaces_it_without_counting_it_twice() {
        let cache = ColumnCache::new(1 << 20);
        let file = Path::new("/lake/a.parquet");
        cache.insert(file, 0, column(10));
        cache.insert(file, 0, column(10));
        assert_eq!(cache.stats().bytes, column(10).get_array_memory_size());
    }
}
