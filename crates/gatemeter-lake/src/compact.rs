//! Compaction (docs/lake.md, "Compaction, checkpoints, vacuum"): the live files of one settled hour partition
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

use deltalake_core::kernel::Action;
use deltalake_core::protocol::DeltaOperation;
use gatemeter_schema::EpochMicros;
use object_store::ObjectStoreExt;

use crate::actions::{commit_metadata, partition_values, remove_action};
use crate::error::LakeError;
use crate::lake::Lake;
use crate::manifest::FileEntry;
use crate::merge::merge;
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
        let mut encoded = Vec::with_capacity(plan.files.len());
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
            encoded.push(
                self.attempts_table()
                    .store()
                    .get(&object_path(&live.path))
                    .await?
                    .bytes()
                    .await?,
            );
        }
        let merged = merge(&encoded)?;
        drop(encoded);
        let path = DataFilePath::new(plan.partition, true);
        let add = self
            .put_data_file(
                merged.bytes,
                &path.in_table(),
                Some(plan.partition),
                merged.stats,
            )
            .await?;
        self.maybe_crash_after_data_files();
        let summary = CompactionSummary {
            partition: plan.partition,
            version: -1,
            files_replaced: plan.files.len(),
            rows_read: merged.rows_read,
            rows_written: merged.rows_written,
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
