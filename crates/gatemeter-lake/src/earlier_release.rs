//! A lake as the release before the last schema change wrote it, for tests
//! of reading and writing such a lake (docs/lake.md, "Schema changes"):
//! its attempts table's schema and its files have the columns of
//! [`EARLIER_COLUMNS`] only.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::Utc;
use deltalake_core::kernel::Action;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use gatemeter_schema::{attempts_batch, attempts_schema, AttemptRow};
use object_store::{ObjectStoreExt, PutPayload};

use crate::actions::{add_action, partition_columns, partition_values};
use crate::error::LakeError;
use crate::lake::Lake;
use crate::location::LakeLocation;
use crate::parquet_file;
use crate::paths::{object_path, DataFilePath, HourPartition, ATTEMPTS_DIR};
use crate::stats::file_stats;
use crate::table::{Attempt, Table};

/// How many of the attempts columns the earlier release had: all but
/// `retry_after_ms` and `zero_data_retention`.
pub const EARLIER_COLUMNS: usize = 44;

/// Creates at `dir` a lake of the earlier schema holding `rows`, one file
/// an hour, in one commit.
pub async fn write_earlier_lake(dir: &Path, rows: &[AttemptRow]) -> Result<(), LakeError> {
    crate::storage::register_object_stores()?;
    let location = LakeLocation::local(dir)?;
    let options = location.storage_options();
    let earlier = attempts_schema().project(&(0..EARLIER_COLUMNS).collect::<Vec<_>>())?;
    let mut attempts = Table::open_or_create(
        ATTEMPTS_DIR,
        location.table_url(ATTEMPTS_DIR)?,
        options,
        &earlier,
        &partition_columns(),
    )
    .await?;
    Lake::create_dead_letters(&location).await?;
    let mut by_hour: BTreeMap<HourPartition, Vec<&AttemptRow>> = BTreeMap::new();
    for row in rows {
        by_hour
            .entry(HourPartition::of(row.event.request_start))
            .or_default()
            .push(row);
    }
    let mut actions = Vec::new();
    for (hour, mut rows) in by_hour {
        rows.sort_by_key(|row| row.event.request_start);
        let batch = attempts_batch(rows.iter().copied(), Utc::now().timestamp_micros())?
            .project(&(0..EARLIER_COLUMNS).collect::<Vec<_>>())?;
        let in_table = DataFilePath::new(hour, false).in_table();
        let bytes = parquet_file::encode(&batch, Some("request_start"))?;
        let size = bytes.len() as i64;
        attempts
            .store()
            .put(&object_path(&in_table), PutPayload::from(bytes))
            .await?;
        actions.push(Action::Add(add_action(
            &in_table,
            size,
            partition_values(Some(hour)),
            file_stats(&batch),
        )));
    }
    let operation = DeltaOperation::Write {
        mode: SaveMode::Append,
        partition_by: None,
        predicate: None,
    };
    match attempts
        .try_commit(actions, operation, HashMap::new())
        .await?
    {
        Attempt::Committed { .. } => Ok(()),
        Attempt::Conflict => Err(LakeError::Delta {
            table: ATTEMPTS_DIR.to_owned(),
            reason: "another writer committed to a fresh test lake".into(),
        }),
    }
}
