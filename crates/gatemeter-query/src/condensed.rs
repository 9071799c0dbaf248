//! A stored rollup file's rows merged over the columns a statement does
//! not read, kept in memory between queries.
//!
//! A KPI statement groups a rollup file's rows by a few of its dimensions
//! (latency by model and hour reads the hour, the model, the outcome and
//! the error class, not the team, provider or key), so most of the rows it
//! merges differ only in columns it never looks at. Merging them once per
//! file and projection — sums added, sketches merged, by the column's
//! [`MergeRule`] — leaves a tenth of the rows, and a dashboard refreshing
//! the same hours reads those instead of merging the file again. A rollup
//! file never changes once written (docs/lake.md, "Rollups"), so what is
//! kept stays right.
//!
//! Only statements that add rows up may read condensed rows: every column
//! they aggregate is merged by its own rule (`sum` of a count or money,
//! `min`/`max` of the time bounds, `ddsketch_merge` of a sketch), and a
//! row's other columns are dimensions. A statement counting rows would
//! count fewer; the KPI statements, the alert evaluator's sums and the
//! spend baseline never do, and the SQL views read whole files.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arrow_array::cast::AsArray;
use arrow_array::types::{ArrowPrimitiveType, Decimal128Type, Int64Type};
use arrow_array::{Array, ArrayRef, BinaryArray, PrimitiveArray, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::error::{DataFusionError, Result};

use crate::column_cache::ColumnCacheStats;
use crate::memory_lru::MemoryLru;
use crate::sketch::DdSketch;
use crate::stored_rollups::MergeRule;

/// The condensed cache's share of the column cache's budget: condensed
/// rows are a tenth of a file's and few projections are asked for.
pub(crate) const CONDENSED_SHARE_OF_COLUMN_CACHE: usize = 4;

/// `batch` (columns of one rollup file) with its rows of equal dimensions
/// merged into one, each other column by its [`MergeRule`]. Returned as it
/// is when no two rows share their dimensions or it has no column to merge
/// (merging would then count distinct dimensions, not add anything up).
pub(crate) fn condense(batch: &RecordBatch) -> Result<RecordBatch> {
    let schema = batch.schema();
    let rules: Vec<MergeRule> = schema.fields().iter().map(|f| MergeRule::of(f)).collect();
    if rules.iter().all(|rule| *rule == MergeRule::Group) {
        return Ok(batch.clone());
    }
    let (group_of, firsts) = groups(batch, &rules)?;
    if firsts.len() == batch.num_rows() {
        return Ok(batch.clone());
    }
    let groups = firsts.len();
    let firsts = UInt32Array::from(firsts);
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .zip(&rules)
        .map(|((column, field), rule)| -> Result<ArrayRef> {
            let merged: ArrayRef = match (rule, field.data_type()) {
                (MergeRule::Group, _) => take(column, &firsts, None)?,
                (MergeRule::Sum, DataType::Int64) => Arc::new(fold::<Int64Type>(
                    column,
                    &group_of,
                    groups,
                    i64::checked_add,
                )?),
                (MergeRule::Sum, DataType::Decimal128(precision, scale)) => Arc::new(
                    fold::<Decimal128Type>(column, &group_of, groups, i128::checked_add)?
                        .with_precision_and_scale(*precision, *scale)?,
                ),
                (MergeRule::Min | MergeRule::Max, stored) => {
                    let pick: fn(i64, i64) -> Option<i64> = if *rule == MergeRule::Min {
                        |a: i64, b: i64| Some(a.min(b))
                    } else {
                        |a: i64, b: i64| Some(a.max(b))
                    };
                    let as_int = cast(column, &DataType::Int64)?;
                    let merged = fold::<Int64Type>(&as_int, &group_of, groups, pick)?;
                    cast(&merged, stored)?
                }
                (MergeRule::Sketch, _) => Arc::new(merge_sketches(column, &group_of, groups)?),
                (MergeRule::Sum, other) => {
                    return Err(DataFusionError::Internal(format!(
                        "rollup column {} of type {other} has no sum",
                        field.name()
                    )))
                }
            };
            Ok(merged)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(schema, columns)?)
}

/// Each row's group (by the columns whose rule is [`MergeRule::Group`])
/// and each group's first row.
fn groups(batch: &RecordBatch, rules: &[MergeRule]) -> Result<(Vec<usize>, Vec<u32>)> {
    let dimensions: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .zip(rules)
        .filter(|(_, rule)| **rule == MergeRule::Group)
        .map(|(column, _)| column.clone())
        .collect();
    let rows = batch.num_rows();
    if dimensions.is_empty() {
        return Ok((vec![0; rows], if rows > 0 { vec![0] } else { vec![] }));
    }
    let converter = RowConverter::new(
        dimensions
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )?;
    let converted = converter.convert_columns(&dimensions)?;
    let mut seen = HashMap::with_capacity(rows);
    let mut group_of = Vec::with_capacity(rows);
    let mut firsts = Vec::new();
    for row in 0..rows {
        let next = firsts.len();
        let group = *seen.entry(converted.row(row)).or_insert_with(|| {
            firsts.push(row as u32);
            next
        });
        group_of.push(group);
    }
    Ok((group_of, firsts))
}

/// `column`'s values folded per group with `combine` (nulls skipped; a
/// group of nulls only is null, as SQL's `sum`, `min` and `max` give).
fn fold<T: ArrowPrimitiveType>(
    column: &ArrayRef,
    group_of: &[usize],
    groups: usize,
    combine: fn(T::Native, T::Native) -> Option<T::Native>,
) -> Result<PrimitiveArray<T>> {
    let values = column.as_primitive::<T>();
    let mut folded: Vec<Option<T::Native>> = vec![None; groups];
    for (row, &group) in group_of.iter().enumerate() {
        if values.is_valid(row) {
            let value = values.value(row);
            folded[group] = Some(match folded[group] {
                None => value,
                Some(sum) => combine(sum, value).ok_or_else(|| {
                    DataFusionError::Execution("a rollup sum overflowed".to_owned())
                })?,
            });
        }
    }
    Ok(folded.into_iter().collect())
}

/// The stored sketches of each group merged (null where all were null).
fn merge_sketches(column: &ArrayRef, group_of: &[usize], groups: usize) -> Result<BinaryArray> {
    let stored = column.as_binary::<i32>();
    let mut merged: Vec<Option<DdSketch>> = vec![None; groups];
    for (row, &group) in group_of.iter().enumerate() {
        if stored.is_valid(row) {
            merged[group]
                .get_or_insert_with(DdSketch::new)
                .merge_bytes(stored.value(row))
                .map_err(|e| DataFusionError::Execution(format!("a stored sketch: {e}")))?;
        }
    }
    Ok(merged
        .iter()
        .map(|sketch| sketch.as_ref().map(DdSketch::to_bytes))
        .collect())
}

/// One file's rows condensed for one projection: the file, and the
/// projected columns as the scan reads them.
type CondensedKey = (Arc<Path>, Arc<[Field]>);

/// Condensed rollup rows kept between queries, least recently used first
/// out, within a byte budget.
pub struct CondensedCache {
    kept: Mutex<MemoryLru<CondensedKey, RecordBatch>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for CondensedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CondensedCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl CondensedCache {
    pub fn new(budget: usize) -> CondensedCache {
        CondensedCache {
            kept: Mutex::new(MemoryLru::new(budget)),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryLru<CondensedKey, RecordBatch>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hits and misses by file read.
    pub fn stats(&self) -> ColumnCacheStats {
        ColumnCacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            bytes: self.lock().bytes(),
        }
    }

    /// `file`'s condensed rows of the columns `fields`, when kept.
    pub(crate) fn get(&self, file: &Path, fields: &Arc<[Field]>) -> Option<RecordBatch> {
        let found = self
            .lock()
            .get(&(Arc::from(file), fields.clone()), |_| true);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub(crate) fn insert(&self, file: &Path, fields: Arc<[Field]>, rows: RecordBatch) {
        let bytes = rows.get_array_memory_size();
        self.lock().insert((Arc::from(file), fields), rows, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Decimal128Array, StringArray, TimestampMicrosecondArray};
    use arrow_schema::{Schema, TimeUnit};

    fn sketch_of(values: &[f64]) -> Vec<u8> {
        let mut sketch = DdSketch::new();
        for value in values {
            sketch.add(*value);
        }
        sketch.to_bytes()
    }

    /// A row: team, model, attempts, spend (nano-dollars), first start and
    /// the durations of its sketch.
    type Row<'a> = (&'a str, &'a str, Option<i64>, i128, i64, Option<&'a [f64]>);

    fn rollup(rows: &[Row<'_>]) -> RecordBatch {
        let time = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("team", DataType::Utf8, true),
            Field::new("requested_model", DataType::Utf8, true),
            Field::new("attempts", DataType::Int64, true),
            Field::new("spend_usd", DataType::Decimal128(20, 9), true),
            Field::new("first_request_start", time, true),
            Field::new("duration_sketch", DataType::Binary, true),
        ]));
        let sketches: Vec<Option<Vec<u8>>> = rows.iter().map(|r| r.5.map(sketch_of)).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                Arc::new(
                    rows.iter()
                        .map(|r| r.2)
                        .collect::<PrimitiveArray<Int64Type>>(),
                ),
                Arc::new(
                    rows.iter()
                        .map(|r| Some(r.3))
                        .collect::<Decimal128Array>()
                        .with_precision_and_scale(20, 9)
                        .expect("decimal"),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.4))
                        .with_timezone("UTC"),
                ),
                Arc::new(
                    sketches
                        .iter()
                        .map(|s| s.as_deref())
                        .collect::<BinaryArray>(),
                ),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn rows_of_equal_dimensions_add_up_and_their_sketches_merge() {
        let rows = rollup(&[
            ("a", "m", Some(2), 1_500_000_000, 30, Some(&[100.0, 200.0])),
            ("b", "m", Some(5), 7, 10, None),
            ("a", "m", Some(3), 2_000_000_001, 20, Some(&[300.0])),
            ("a", "m", None, 1, 40, None),
        ]);
        let condensed = condense(&rows).expect("condense");
        assert_eq!(condensed.schema(), rows.schema());
        assert_eq!(condensed.num_rows(), 2);
        let teams = condensed.column(0).as_string::<i32>();
        assert_eq!((teams.value(0), teams.value(1)), ("a", "b"));
        let attempts = condensed.column(2).as_primitive::<Int64Type>();
        assert_eq!((attempts.value(0), attempts.value(1)), (5, 5));
        let spend = condensed.column(3).as_primitive::<Decimal128Type>();
        assert_eq!(spend.value(0), 3_500_000_002);
        assert_eq!(spend.data_type(), &DataType::Decimal128(20, 9));
        let first = condensed
            .column(4)
            .as_primitive::<arrow_array::types::TimestampMicrosecondType>();
        assert_eq!((first.value(0), first.value(1)), (20, 10));
        assert_eq!(condensed.column(4).data_type(), rows.column(4).data_type());
        let sketches = condensed.column(5).as_binary::<i32>();
        assert_eq!(sketches.value(0), sketch_of(&[100.0, 200.0, 300.0]));
        assert!(sketches.is_null(1), "a group without a sketch has none");
    }

    #[test]
    fn a_group_of_null_counts_stays_null() {
        let rows = rollup(&[("a", "m", None, 1, 1, None), ("a", "m", None, 2, 2, None)]);
        let condensed = condense(&rows).expect("condense");
        assert_eq!(condensed.num_rows(), 1);
        assert!(condensed.column(2).is_null(0));
    }

    #[test]
    fn rows_without_a_column_to_merge_are_returned_as_they_are() {
        let rows = rollup(&[
            ("a", "m", Some(1), 1, 1, None),
            ("a", "m", Some(1), 1, 1, None),
        ]);
        let dimensions_only = rows.project(&[0, 1]).expect("project");
        assert_eq!(condense(&dimensions_only).expect("condense").num_rows(), 2);
        let distinct = rollup(&[
            ("a", "m", Some(1), 1, 1, None),
            ("b", "m", Some(1), 1, 1, None),
        ]);
        assert_eq!(condense(&distinct).expect("condense"), distinct);
    }

    #[test]
    fn kept_rows_are_found_by_file_and_projection() {
        let cache = CondensedCache::new(1 << 20);
        let rows = rollup(&[("a", "m", Some(1), 1, 1, None)]);
        let fields: Arc<[Field]> = rows
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        let file = Path::new("/lake/rollups/h.parquet");
        assert!(cache.get(file, &fields).is_none());
        cache.insert(file, fields.clone(), rows.clone());
        assert_eq!(cache.get(file, &fields), Some(rows));
        let fewer: Arc<[Field]> = fields[..2].to_vec().into();
        assert!(cache.get(file, &fewer).is_none(), "another projection");
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (1, 2));
    }
}
