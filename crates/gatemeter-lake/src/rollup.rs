//! Rollup tables beside the lake (docs/lake.md, "Rollups"): one Delta
//! table per rollup under `rollups/<name>/`, each file holding the rows of
//! one hour of `request_start`, named `<YYYY-MM-DD>/<HH>-<basis>-<id>.parquet`
//! where `basis` fingerprints what the rows were computed with (the view's
//! definition and the price book), so a change of either is seen.
//! Writing an hour replaces that hour's file in one commit, so a reader
//! sees the old rows or the new ones, never both or neither.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use chrono::NaiveDate;
use deltalake_core::kernel::Action;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use object_store::{ObjectStoreExt, PutPayload};

use crate::error::LakeError;
use crate::lake::{add_action, commit_metadata, remove_action};
use crate::location::LakeLocation;
use crate::parquet_file;
use crate::paths::{new_file_id, object_path, HourPartition};
use crate::stats::file_stats;
use crate::table::{Attempt, LiveFile, Table};

/// The folder the rollup tables live in, inside the lake.
pub const ROLLUPS_DIR: &str = "rollups";

/// What storing one hour wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredHour {
    pub version: i64,
    pub bytes: u64,
}

/// One rollup table.
pub struct RollupTable {
    table: Table,
    /// Each stored hour's file, as the log names it, and its basis.
    hours: BTreeMap<HourPartition, (LiveFile, String)>,
}

/// The hour a rollup file holds and the basis it was computed on, from its
/// name.
fn hour_of(path: &str) -> Option<(HourPartition, String)> {
    let (date, name) = path.rsplit_once('/')?;
    let date = date.rsplit('/').next()?;
    let mut parts = name.splitn(3, '-');
    let (hour, basis) = (parts.next()?, parts.next()?);
    parts.next()?;
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let partition = HourPartition::from_values(&date.format("%Y-%m-%d").to_string(), hour)
        .filter(|_| hour.len() == 2)?;
    Some((partition, basis.to_owned()))
}

fn file_path(hour: HourPartition, basis: &str) -> String {
    format!(
        "{}/{:02}-{basis}-{}.parquet",
        hour.date_value(),
        hour.hour,
        new_file_id()
    )
}

impl RollupTable {
    /// The rollup `name` of the lake at `location`, created with `schema` if
    /// it does not exist yet.
    pub async fn open_or_create(
        location: &LakeLocation,
        name: &'static str,
        schema: &Schema,
    ) -> Result<RollupTable, LakeError> {
        crate::storage::register_object_stores()?;
        let table = Table::open_or_create(
            name,
            location.table_url(&format!("{ROLLUPS_DIR}/{name}"))?,
            location.storage_options(),
            schema,
            &[],
        )
        .await?;
        let mut rollup = RollupTable {
            table,
            hours: BTreeMap::new(),
        };
        rollup.read_hours()?;
        Ok(rollup)
    }

    fn read_hours(&mut self) -> Result<(), LakeError> {
        self.hours = self
            .table
            .live_files()?
            .into_iter()
            .filter_map(|file| {
                let (hour, basis) = hour_of(&file.path)?;
                Some((hour, (file, basis)))
            })
            .collect();
        Ok(())
    }

    /// The hours a file is stored for, each with the basis it was
    /// computed on.
    pub fn hours(&self) -> impl Iterator<Item = (HourPartition, &str)> + '_ {
        self.hours
            .iter()
            .map(|(hour, (_, basis))| (*hour, basis.as_str()))
    }

    /// The files of the stored hours, relative to the table folder.
    pub fn files(&self) -> impl Iterator<Item = (HourPartition, &str)> + '_ {
        self.hours
            .iter()
            .map(|(hour, (file, _))| (*hour, file.path.as_str()))
    }

    /// Stores `rows` as `hour`'s rollup, replacing what was stored for it.
    /// Another writer's commit in between is read and the replacement tried
    /// again: both computed the hour from the lake, and the later one holds.
    pub async fn replace_hour(
        &mut self,
        hour: HourPartition,
        basis: &str,
        rows: &RecordBatch,
    ) -> Result<StoredHour, LakeError> {
        if basis.is_empty() || !basis.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(LakeError::Delta {
                table: ROLLUPS_DIR.to_owned(),
                reason: format!("basis `{basis}`: expected letters and digits"),
            });
        }
        let path = file_path(hour, basis);
        let bytes = parquet_file::encode(rows, None)?;
        let size = bytes.len() as i64;
        self.table
            .store()
            .put(&object_path(&path), PutPayload::from(bytes))
            .await?;
        let add = add_action(&path, size, Default::default(), file_stats(rows));
        loop {
            let mut actions = vec![Action::Add(add.clone())];
            if let Some((old, _)) = self.hours.get(&hour) {
                actions.push(remove_action(&old.path, old.size, Default::default()));
            }
            let operation = DeltaOperation::Write {
                mode: SaveMode::Overwrite,
                partition_by: None,
                predicate: Some(format!("hour = '{}'", hour.dir())),
            };
            match self
                .table
                .try_commit(actions, operation, commit_metadata("compact rollup"))
                .await?
            {
                Attempt::Committed { version } => {
                    self.read_hours()?;
                    return Ok(StoredHour {
                        version,
                        bytes: size as u64,
                    });
                }
                Attempt::Conflict => {
                    self.table.refresh().await?;
                    self.read_hours()?;
                }
            }
        }
    }

    /// Checkpoints the log and deletes files no version within
    /// `retention` names (replaced hours).
    pub async fn tidy(&mut self, retention: chrono::Duration) -> Result<Vec<String>, LakeError> {
        self.table.checkpoint().await?;
        self.table.vacuum(retention).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field};

    use super::*;

    fn rows(team: &str, count: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("team", DataType::Utf8, true),
            Field::new("attempts", DataType::Int64, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![team])),
                Arc::new(Int64Array::from(vec![count])),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn file_names_carry_their_hour() {
        let hour = HourPartition::from_values("2026-11-01", "7").expect("hour");
        let path = file_path(hour, "ab12");
        assert!(path.starts_with("2026-11-01/07-ab12-"), "{path}");
        assert_eq!(hour_of(&path), Some((hour, "ab12".to_owned())));
        assert_eq!(hour_of("2026-11-01/7-ab-x.parquet"), None);
        assert_eq!(hour_of("2026-11-01/07-x.parquet"), None);
        assert_eq!(hour_of("elsewhere.parquet"), None);
    }

    #[tokio::test]
    async fn writing_an_hour_again_replaces_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let location = LakeLocation::local(dir.path()).expect("location");
        let schema = rows("a", 1).schema();
        let mut table = RollupTable::open_or_create(&location, "test_rollup", &schema)
            .await
            .expect("table");
        let ten = HourPartition::from_values("2026-11-01", "10").expect("hour");
        let eleven = HourPartition::from_values("2026-11-01", "11").expect("hour");
        for (hour, basis, count) in [(ten, "v1", 1), (eleven, "v1", 2), (ten, "v2", 3)] {
            table
                .replace_hour(hour, basis, &rows("a", count))
                .await
                .expect("stored");
        }
        assert!(table
            .replace_hour(ten, "no/path", &rows("a", 4))
            .await
            .is_err());
        assert_eq!(
            table.hours().collect::<Vec<_>>(),
            vec![(ten, "v2"), (eleven, "v1")]
        );
        let reopened = RollupTable::open_or_create(&location, "test_rollup", &schema)
            .await
            .expect("reopen");
        let files: Vec<_> = reopened.files().map(|(h, p)| (h, p.to_owned())).collect();
        assert_eq!(files.len(), 2);
        // The stored file of ten holds the last rows written for it.
        let ten_file = dir.path().join("rollups/test_rollup").join(&files[0].1);
        let bytes = bytes::Bytes::from(std::fs::read(ten_file).expect("file"));
        let batch = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .expect("parquet")
            .build()
            .expect("reader")
            .next()
            .expect("a batch")
            .expect("rows");
        let counts = batch
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("ints");
        assert_eq!(counts.value(0), 3);
    }
}
