//! Compaction (SPEC 2.3, 2.5): the live files of one settled hour partition
//! become one file that holds a single row per `attempt_id` — the copy the
//! `attempts` view would pick: highest `event_version`, then the latest
//! written (`_ingested_at`, `_topic`, `_partition`, `_offset`). One Delta
//! commit adds the new file and removes the files it replaced, so a reader
//! sees either all the old files or the new one, never both.
//!
//! Files committed to the partition later (late events, corrections) stay
//! beside the compacted file until the next compaction; the query layer
//! compares the compacted rows only with those.

use std::collections::BTreeMap;

use arrow::array::{AsArray, PrimitiveArray, RecordBatch};
use arrow::compute::{
    concat_batches, lexsort_to_indices, take_record_batch, SortColumn, SortOptions,
};
use arrow::datatypes::UInt32Type;
use arrow::error::ArrowError;
use deltalake_core::kernel::Action;
use deltalake_core::protocol::DeltaOperation;
use gatemeter_schema::{attempts_schema, EpochMicros};
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::LakeError;
use crate::lake::{commit_metadata, partition_values, remove_action, Lake};
use crate::manifest::FileEntry;
use crate::paths::{object_path, DataFilePath, HourPartition};
use crate::table::Attempt;

/// One hour partition to compact and the live files it has now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionPlan {
    pub partition: HourPartition,
    pub files: Vec<FileEntry>,
}

impl CompactionPlan {
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionSummary {
    pub partition: HourPartition,
    /// The `attempts` table version of the compaction's commit.
    pub version: i64,
    pub files_replaced: usize,
    pub rows_read: u64,
    pub rows_written: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

/// The sort that puts each attempt's winning copy first among its copies.
/// Every column is non-null, so the null order never decides.
const WINNER_ORDER: [(&str, bool); 6] = [
    ("attempt_id", false),
    ("event_version", true),
    ("_ingested_at", true),
    ("_topic", true),
    ("_partition", true),
    ("_offset", true),
];

impl Lake {
    /// Partitions worth compacting whose hour ended at or before
    /// `settled_before` (µs): those with more than one live file or with a
    /// file not yet deduplicated. Oldest first.
    pub fn compaction_plans(&self, settled_before: EpochMicros) -> Vec<CompactionPlan> {
        let mut by_partition: BTreeMap<HourPartition, Vec<FileEntry>> = BTreeMap::new();
        for file in self.data_files() {
            let Some(min) = file.min_request_start else {
                continue;
            };
            by_partition
                .entry(HourPartition::of(min))
                .or_default()
                .push(file.clone());
        }
        by_partition
            .into_iter()
            .filter(|(partition, files)| {
                partition.end_micros() <= settled_before
                    && (files.len() > 1 || files.iter().any(|f| !f.deduplicated))
            })
            .map(|(partition, files)| CompactionPlan { partition, files })
            .collect()
    }

    /// Replaces the plan's files by one deduplicated file, in one Delta
    /// commit of Removes and the new Add (`dataChange` true: duplicates are
    /// gone). If another writer committed in between, the commit is tried
    /// again as long as every planned file is still live; once one is not
    /// (another compaction took it) this fails with
    /// [`LakeError::LostCommitRace`] and the lake has reloaded, so plan again.
    pub async fn compact(&mut self, plan: &CompactionPlan) -> Result<CompactionSummary, LakeError> {
        self.begin_commit();
        let mut batches = Vec::with_capacity(plan.files.len());
        let mut removes = Vec::with_capacity(plan.files.len());
        for file in &plan.files {
            let live =
                self.live_file(&file.path)
                    .cloned()
                    .ok_or_else(|| LakeError::LostCommitRace {
                        detail: format!("{} is no longer live", file.path),
                    })?;
            removes.push(remove_action(
                &live.path,
                live.size,
                partition_values(live.partition),
            ));
            let bytes = self
                .attempts_table()
                .store()
                .get(&object_path(&live.path))
                .await?
                .bytes()
                .await?;
            for batch in ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()? {
                // The lake's schema, so that every file's batches concatenate.
                batches.push(RecordBatch::try_new(
                    attempts_schema(),
                    batch?.columns().to_vec(),
                )?);
            }
        }
        let all = concat_batches(&attempts_schema(), &batches)?;
        let compacted = deduplicate(&all)?;
        let path = DataFilePath::new(plan.partition, true);
        let add = self
            .write_data_file(&compacted, &path.in_table(), Some(plan.partition))
            .await?;
        self.maybe_crash_after_data_files();
        let summary = CompactionSummary {
            partition: plan.partition,
            version: -1,
            files_replaced: plan.files.len(),
            rows_read: all.num_rows() as u64,
            rows_written: compacted.num_rows() as u64,
            bytes_before: plan.bytes(),
            bytes_after: add.size as u64,
        };
        let mut actions = vec![Action::Add(add)];
        actions.extend(removes);
        loop {
            let operation = DeltaOperation::Optimize {
                predicate: Some(format!(
                    "date = '{}' AND hour = {}",
                    plan.partition.date_value(),
                    plan.partition.hour
                )),
                target_size: 0,
            };
            match self
                .attempts_table()
                .try_commit(actions.clone(), operation, commit_metadata("compact"))
                .await?
            {
                Attempt::Committed { version } => {
                    self.read_attempt_files()?;
                    return Ok(CompactionSummary { version, ..summary });
                }
                Attempt::Conflict => {
                    self.attempts_table().refresh().await?;
                    self.read_attempt_files()?;
                    if plan.files.iter().any(|f| self.live_file(&f.path).is_none()) {
                        return Err(LakeError::LostCommitRace {
                            detail: format!(
                                "{} was compacted by another writer",
                                plan.partition.dir()
                            ),
                        });
                    }
                }
            }
        }
    }
}

/// Keeps each attempt's winning copy and orders the rows by
/// `request_start` (then `attempt_id`), the order the lake's files declare.
pub fn deduplicate(batch: &RecordBatch) -> Result<RecordBatch, LakeError> {
    let order = lexsort_to_indices(&sort_columns(batch, &WINNER_ORDER)?, None)?;
    let ids = batch
        .column_by_name("attempt_id")
        .ok_or_else(|| ArrowError::SchemaError("no column attempt_id".into()))?
        .as_string::<i32>();
    let mut winners: Vec<u32> = Vec::with_capacity(order.len());
    let mut previous: Option<&str> = None;
    for index in order.values() {
        let id = ids.value(*index as usize);
        if previous != Some(id) {
            winners.push(*index);
            previous = Some(id);
        }
    }
    let winners = take_record_batch(batch, &PrimitiveArray::<UInt32Type>::from(winners))?;
    let order = lexsort_to_indices(
        &sort_columns(&winners, &[("request_start", false), ("attempt_id", false)])?,
        None,
    )?;
    Ok(take_record_batch(&winners, &order)?)
}

fn sort_columns(batch: &RecordBatch, order: &[(&str, bool)]) -> Result<Vec<SortColumn>, LakeError> {
    order
        .iter()
        .map(|(name, descending)| {
            Ok(SortColumn {
                values: batch
                    .column_by_name(name)
                    .cloned()
                    .ok_or_else(|| ArrowError::SchemaError(format!("no column {name}")))?,
                options: Some(SortOptions {
                    descending: *descending,
                    nulls_first: false,
                }),
            })
        })
        .collect()
}
