//! The dead-letter side of a commit: rejected events stored once each,
//! however often their batch is replayed (docs/lake.md, "A flush is one
//! commit").

use std::collections::{BTreeMap, HashMap};

use deltalake_core::kernel::{Action, Add};
use gatemeter_schema::{dead_letters_batch, DeadLetter};

use super::{put_file, Lake, PendingCommit};
use crate::actions::{app_id, commit_metadata, txn};
use crate::error::LakeError;
use crate::parquet_file;
use crate::paths::DeadLetterPath;
use crate::stats::file_stats;
use crate::table::Attempt;

impl Lake {
    /// Commits the dead letters of `pending` that the dead-letter table
    /// does not hold yet; returns how many of each error class and their
    /// file's size. The
    /// table's app transaction of a partition is the offset below which
    /// every dead letter of it is stored, so a replay after a crash or a
    /// lost race stores none twice.
    pub(super) async fn commit_dead_letters(
        &mut self,
        pending: &PendingCommit,
        ingested_at: i64,
    ) -> Result<(BTreeMap<&'static str, u64>, u64), LakeError> {
        if pending.dead_letters.is_empty() {
            return Ok((BTreeMap::new(), 0));
        }
        loop {
            self.dead_letters.refresh().await?;
            let mut stored_below: BTreeMap<(&str, i32), i64> = BTreeMap::new();
            for letter in &pending.dead_letters {
                let key = (letter.source.topic.as_str(), letter.source.partition);
                if let std::collections::btree_map::Entry::Vacant(slot) = stored_below.entry(key) {
                    let below = self
                        .dead_letters
                        .app_version(&app_id(key.0, key.1))
                        .await?
                        .unwrap_or(i64::MIN);
                    slot.insert(below);
                }
            }
            let fresh: Vec<DeadLetter> = pending
                .dead_letters
                .iter()
                .filter(|l| {
                    l.source.offset >= stored_below[&(l.source.topic.as_str(), l.source.partition)]
                })
                .cloned()
                .collect();
            if fresh.is_empty() {
                return Ok((BTreeMap::new(), 0));
            }
            let batch = dead_letters_batch(&fresh, ingested_at)?;
            let add = self
                .write_dead_letter_file(&batch, &DeadLetterPath::new().in_table())
                .await?;
            let bytes = add.size as u64;
            let mut actions = vec![Action::Add(add)];
            for ((topic, partition), below) in &stored_below {
                let next = pending
                    .offsets
                    .get(*topic)
                    .and_then(|p| p.get(partition))
                    .copied()
                    .unwrap_or(i64::MIN);
                if next > *below {
                    actions.push(Action::Txn(txn(topic, *partition, next)));
                }
            }
            if let Attempt::Committed { .. } = self
                .dead_letters
                .try_commit(
                    actions,
                    self.streaming_update(&pending.writer),
                    commit_metadata(&pending.writer),
                )
                .await?
            {
                self.read_dead_letter_files()?;
                let mut by_class = BTreeMap::new();
                for letter in &fresh {
                    *by_class.entry(letter.error_class).or_insert(0) += 1;
                }
                return Ok((by_class, bytes));
            }
            // Another writer committed dead letters first: filter again.
        }
    }

    async fn write_dead_letter_file(
        &self,
        batch: &arrow_array::RecordBatch,
        in_table: &str,
    ) -> Result<Add, LakeError> {
        let bytes = parquet_file::encode(batch, None)?;
        put_file(
            &self.dead_letters,
            bytes,
            in_table,
            HashMap::new(),
            file_stats(batch),
        )
        .await
    }
}
