//! Decoded lake columns kept in memory between queries, least recently used
//! first out, within a byte budget.
//!
//! A lake file never changes once written (compaction writes new files
//! under new names), so a column decoded from it stays right for as long as
//! it is kept. Dashboards ask the same few questions of the same recent
//! hours every refresh; decoding those files again each time (decompressing
//! and unpacking pages, a codec per column chunk) was most of a small
//! query's work.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::{Array, ArrayRef};
use arrow_schema::Field;

use crate::memory_lru::MemoryLru;

/// Bytes a decoded value takes in the cache's estimate (a string view, a
/// decimal). A scan goes through the cache only when all its columns are
/// estimated to fit in it: a larger scan (a month's spend) would push out
/// every column the dashboards refresh from and then find none of its own
/// kept the next time, so it reads Parquet, as does an open window.
pub(crate) const CACHED_BYTES_PER_VALUE: u64 = 16;

/// One column of one file: the file's path and the column's name. Tables
/// of different schemas read the same file (a rollup file is read by the
/// KPI statements and by the SQL views), so a column is known by its name,
/// and a kept column of another type than the one asked for is not it.
type ColumnKey = (Arc<Path>, Arc<str>);

/// Hits and misses since the cache was made, by column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ColumnCacheStats {
    pub hits: u64,
    pub misses: u64,
    /// Bytes held now.
    pub bytes: usize,
}

pub struct ColumnCache {
    columns: Mutex<MemoryLru<ColumnKey, ArrayRef>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for ColumnCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColumnCache")
            .field("budget", &self.budget())
            .field("stats", &self.stats())
            .finish()
    }
}

impl ColumnCache {
    /// A cache holding at most `budget` bytes of columns.
    pub fn new(budget: usize) -> ColumnCache {
        ColumnCache {
            columns: Mutex::new(MemoryLru::new(budget)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    pub fn budget(&self) -> usize {
        self.lock().budget()
    }

    pub fn stats(&self) -> ColumnCacheStats {
        ColumnCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: self.lock().bytes(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryLru<ColumnKey, ArrayRef>> {
        self.columns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The kept columns `columns` of `file` (in that order, `None` where
    /// one is not kept with that name and type), marking those found as
    /// just used.
    pub fn get(&self, file: &Path, columns: &[&Field]) -> Vec<Option<ArrayRef>> {
        let mut kept = self.lock();
        let key_file: Arc<Path> = Arc::from(file);
        let found: Vec<Option<ArrayRef>> = columns
            .iter()
            .map(|field| {
                let key = (key_file.clone(), Arc::from(field.name().as_str()));
                kept.get(&key, |column| column.data_type() == field.data_type())
            })
            .collect();
        let hits = found.iter().filter(|c| c.is_some()).count() as u64;
        self.hits.fetch_add(hits, Ordering::Relaxed);
        self.misses
            .fetch_add(columns.len() as u64 - hits, Ordering::Relaxed);
        found
    }

    /// Keeps `column` (the column `name` of `file`), dropping the least
    /// recently used columns while over the budget. A column larger than
    /// the whole budget is not kept.
    pub fn insert(&self, file: &Path, name: &str, column: ArrayRef) {
        let bytes = column.get_array_memory_size();
        self.lock()
            .insert((Arc::from(file), Arc::from(name)), column, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int32Array, Int64Array};
    use arrow_schema::DataType;

    fn column(len: usize) -> ArrayRef {
        Arc::new(Int64Array::from(vec![7i64; len]))
    }

    fn field(name: &str) -> Field {
        Field::new(name, DataType::Int64, true)
    }

    /// Column `name` of `file` when kept.
    fn kept(cache: &ColumnCache, file: &Path, name: &str) -> Option<ArrayRef> {
        cache.get(file, &[&field(name)]).pop().flatten()
    }

    #[test]
    fn a_kept_column_is_returned_as_kept_and_counted_as_a_hit() {
        let cache = ColumnCache::new(1 << 20);
        let file = Path::new("/lake/a.parquet");
        let kept = column(100);
        cache.insert(file, "d", kept.clone());
        let found = cache.get(file, &[&field("d"), &field("e")]);
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
        cache.insert(a, "x", column(1000));
        cache.insert(b, "x", column(1000));
        // a is used again, so b is now the oldest.
        assert!(kept(&cache, a, "x").is_some());
        cache.insert(a, "y", column(1000));
        assert!(kept(&cache, a, "x").is_some());
        assert!(kept(&cache, a, "y").is_some());
        assert!(kept(&cache, b, "x").is_none());
        assert_eq!(cache.stats().bytes, one * 2);
    }

    #[test]
    fn a_column_larger_than_the_budget_is_not_kept_and_evicts_nothing() {
        let cache = ColumnCache::new(column(10).get_array_memory_size());
        let file = Path::new("/lake/a.parquet");
        cache.insert(file, "x", column(10));
        cache.insert(file, "y", column(10_000));
        assert!(kept(&cache, file, "x").is_some());
        assert!(kept(&cache, file, "y").is_none());
    }

    #[test]
    fn keeping_a_column_again_replaces_it_without_counting_it_twice() {
        let cache = ColumnCache::new(1 << 20);
        let file = Path::new("/lake/a.parquet");
        cache.insert(file, "x", column(10));
        cache.insert(file, "x", column(10));
        assert_eq!(cache.stats().bytes, column(10).get_array_memory_size());
    }

    #[test]
    fn a_kept_column_asked_for_with_another_type_is_a_miss() {
        let cache = ColumnCache::new(1 << 20);
        let file = Path::new("/lake/a.parquet");
        cache.insert(file, "x", column(10));
        let as_int32 = Field::new("x", DataType::Int32, true);
        assert!(cache.get(file, &[&as_int32])[0].is_none());
        cache.insert(file, "x", Arc::new(Int32Array::from(vec![1; 10])));
        assert!(cache.get(file, &[&as_int32])[0].is_some());
        assert!(
            kept(&cache, file, "x").is_none(),
            "replaced by the Int32 column"
        );
    }
}
