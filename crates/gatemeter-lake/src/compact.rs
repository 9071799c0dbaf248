//! Compaction (SPEC 2.3, 2.5): the live files of one settled hour partition
//! become one file that holds a single row per `attempt_id` — the copy the
//! `attempts` view would pick: highest `event_version`, then the latest
//! written (`_ingested_at`, `_topic`, `_partition`, `_offset`). One commit
//! record adds the new file and takes out the files it replaced, so a reader
//! sees either all the old files or the new one, never both.
//!
//! Files committed to the partition later (late events, corrections) stay
//! beside the compacted file until the next compaction; the query layer
//! compares the compacted rows only with those.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use arrow::array::{AsArray, PrimitiveArray, RecordBatch};
use arrow::compute::{
    concat_batches, lexsort_to_indices, take_record_batch, SortColumn, SortOptions,
};
use arrow::datatypes::{TimestampMicrosecondType, UInt32Type};
use arrow::error::ArrowError;
use chrono::{SecondsFormat, Utc};
use gatemeter_schema::{attempts_schema, EpochMicros};
use object_store::{ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::LakeError;
use crate::lake::Lake;
use crate::manifest::{CommitRecord, FileEntry, COMMIT_FORMAT_VERSION};
use crate::parquet_file;
use crate::paths::{object_path, CompactedFilePath, HourPartition};

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
    pub sequence: u64,
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

    /// Replaces the plan's files by one deduplicated file. The plan must
    /// come from this lake's current state: if another writer committed in
    /// between, this fails with [`LakeError::LostCommitRace`] and the lake
    /// reloads, so plan again.
    pub async fn compact(&mut self, plan: &CompactionPlan) -> Result<CompactionSummary, LakeError> {
        let sequence = self.next_sequence();
        self.begin_commit();
        let mut batches = Vec::with_capacity(plan.files.len());
        for file in &plan.files {
            let bytes = self
                .store()
                .get(&object_path(&file.path))
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
        let bytes = parquet_file::encode(&compacted, Some("request_start"))?;
        let path = CompactedFilePath {
            partition: plan.partition,
            commit: sequence,
            nonce: nonce(),
        };
        let starts = compacted
            .column_by_name("request_start")
            .map(|c| c.as_primitive::<TimestampMicrosecondType>().clone());
        let entry = FileEntry {
            path: path.to_string(),
            rows: compacted.num_rows() as u64,
            bytes: bytes.len() as u64,
            min_request_start: starts.as_ref().and_then(arrow::compute::min),
            max_request_start: starts.as_ref().and_then(arrow::compute::max),
            deduplicated: true,
        };
        self.store()
            .put(&object_path(&path), PutPayload::from(bytes))
            .await?;
        self.maybe_crash_after_data_files();
        let summary = CompactionSummary {
            partition: plan.partition,
            sequence,
            files_replaced: plan.files.len(),
            rows_read: all.num_rows() as u64,
            rows_written: entry.rows,
            bytes_before: plan.bytes(),
            bytes_after: entry.bytes,
        };
        let record = CommitRecord {
            format_version: COMMIT_FORMAT_VERSION,
            sequence,
            committed_at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            writer: "compact".to_owned(),
            files: vec![entry],
            dead_letter_files: Vec::new(),
            offsets: Default::default(),
            removed: plan.files.iter().map(|f| f.path.clone()).collect(),
        };
        self.write_record(record).await?;
        Ok(summary)
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

/// A number unlikely to repeat between two compactions of one partition.
fn nonce() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}
