//! Rollup tables beside the lake (docs/lake.md, "Rollups"): one Delta
//! table per rollup under `rollups/<name>/`, each file holding the rows of
//! one hour of `request_start`, named `<YYYY-MM-DD>/<HH>-<stamp>-<id>.parquet`
//! where `stamp` says what the rows were computed from (the view's
//! definition, the price book and the hour's raw files), so a reader knows
//! whether they still hold.
//! Writing an hour replaces that hour's file in one commit, so a reader
//! sees the old rows or the new ones, never both or neither.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;
use arrow_schema::Schema;
use chrono::NaiveDate;
use deltalake_core::kernel::Action;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use object_store::{ObjectStoreExt, PutPayload};

use crate::actions::{add_action, commit_metadata, remove_action};
use crate::error::LakeError;
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

/// The stored file of one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupFile {
    /// Relative to the lake's root (`rollups/<name>/<date>/<file>`).
    pub path: String,
    pub bytes: u64,
    /// `numRecords` of its Delta stats, when the writer recorded them.
    pub rows: Option<u64>,
    /// What the rows were computed from.
    pub stamp: String,
}

/// One rollup table.
pub struct RollupTable {
    name: &'static str,
    table: Table,
    /// Each stored hour's files as the log names them (one, unless a writer
    /// of another version left more), with their stamps.
    hours: BTreeMap<HourPartition, Vec<(LiveFile, String)>>,
}

/// The hour a rollup file holds and its stamp, from its name.
fn hour_of(path: &str) -> Option<(HourPartition, String)> {
    let (date, name) = path.rsplit_once('/')?;
    let date = date.rsplit('/').next()?;
    let (head, _id) = name.strip_suffix(".parquet")?.rsplit_once('-')?;
    let (hour, stamp) = head.split_once('-')?;
    if hour.len() != 2 || stamp.is_empty() {
        return None;
    }
    let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let partition = HourPartition::from_values(&date.format("%Y-%m-%d").to_string(), hour)?;
    Some((partition, stamp.to_owned()))
}

fn file_path(hour: HourPartition, stamp: &str) -> String {
    format!(
        "{}/{:02}-{stamp}-{}.parquet",
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
        RollupTable::of(name, table)
    }

    /// The rollup `name` of the lake at `location`, or `None` while no
    /// compaction has written it.
    pub async fn open_existing(
        location: &LakeLocation,
        name: &'static str,
    ) -> Result<Option<RollupTable>, LakeError> {
        crate::storage::register_object_stores()?;
        let url = location.table_url(&format!("{ROLLUPS_DIR}/{name}"))?;
        match Table::open(name, url, location.storage_options()).await? {
            Some(table) => Ok(Some(RollupTable::of(name, table)?)),
            None => Ok(None),
        }
    }

    fn of(name: &'static str, table: Table) -> Result<RollupTable, LakeError> {
        let mut rollup = RollupTable {
            name,
            table,
            hours: BTreeMap::new(),
        };
        rollup.read_hours()?;
        Ok(rollup)
    }

    fn read_hours(&mut self) -> Result<(), LakeError> {
        self.hours.clear();
        for file in self.table.live_files()? {
            // A file named otherwise is no hour's: left to whoever wrote it.
            if let Some((hour, stamp)) = hour_of(&file.path) {
                self.hours.entry(hour).or_default().push((file, stamp));
            }
        }
        Ok(())
    }

    /// Loads commits made since the last look; returns how many.
    pub async fn refresh(&mut self) -> Result<u64, LakeError> {
        let applied = self.table.refresh().await?;
        if applied > 0 {
            self.read_hours()?;
        }
        Ok(applied)
    }

    /// Each stored hour's file. An hour holding more than one file (left by
    /// two writers of another version) is none: its rows would count twice.
    pub fn files(&self) -> impl Iterator<Item = (HourPartition, RollupFile)> + '_ {
        self.hours
            .iter()
            .filter_map(|(hour, files)| match &files[..] {
                [(file, stamp)] => Some((
                    *hour,
                    RollupFile {
                        path: format!("{ROLLUPS_DIR}/{}/{}", self.name, file.path),
                        bytes: file.size.max(0) as u64,
                        rows: file.rows,
                        stamp: stamp.clone(),
                    },
                )),
                _ => None,
            })
    }

    /// Stores `rows` as `hour`'s rollup, replacing what was stored for it.
    /// Another writer's commit in between is read and the replacement tried
    /// again: both computed the hour from the lake, and the later one holds.
    pub async fn replace_hour(
        &mut self,
        hour: HourPartition,
        stamp: &str,
        rows: &RecordBatch,
    ) -> Result<StoredHour, LakeError> {
        if stamp.is_empty()
            || !stamp
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err(LakeError::Delta {
                table: ROLLUPS_DIR.to_owned(),
                reason: format!("stamp `{stamp}`: expected letters, digits and `-`"),
            });
        }
        let path = file_path(hour, stamp);
        let bytes = parquet_file::encode(rows, None)?;
        let size = bytes.len() as i64;
        self.table
            .store()
            .put(&object_path(&path), PutPayload::from(bytes))
            .await?;
        let add = add_action(&path, size, Default::default(), file_stats(rows));
        loop {
            let mut actions = vec![Action::Add(add.clone())];
            for (old, _) in self.hours.get(&hour).into_iter().flatten() {
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
        let path = file_path(hour, "ab12-cd34");
        assert!(path.starts_with("2026-11-01/07-ab12-cd34-"), "{path}");
        assert_eq!(hour_of(&path), Some((hour, "ab12-cd34".to_owned())));
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
        for (hour, stamp, count) in [(ten, "v1-a", 1), (eleven, "v1-b", 2), (ten, "v2-a", 3)] {
            table
                .replace_hour(hour, stamp, &rows("a", count))
                .await
                .expect("stored");
        }
        assert!(table
            .replace_hour(ten, "no/path", &rows("a", 4))
            .await
            .is_err());
        let stamps = |table: &RollupTable| -> Vec<(HourPartition, String)> {
            table
                .files()
                .map(|(hour, file)| (hour, file.stamp))
                .collect()
        };
        assert_eq!(
            stamps(&table),
            vec![(ten, "v2-a".to_owned()), (eleven, "v1-b".to_owned())]
        );
        let mut reader = RollupTable::open_existing(&location, "test_rollup")
            .await
            .expect("open")
            .expect("exists");
        assert_eq!(stamps(&reader), stamps(&table));
        table
            .replace_hour(eleven, "v3-b", &rows("a", 5))
            .await
            .expect("stored");
        assert_eq!(reader.refresh().await.expect("refresh"), 1);
        assert_eq!(stamps(&reader), stamps(&table));
        assert!(RollupTable::open_existing(&location, "no_such_rollup")
            .await
            .expect("open")
            .is_none());
        let files: Vec<_> = reader.files().collect();
        assert_eq!(files.len(), 2);
        // The stored file of ten holds the last rows written for it.
        let ten_file = dir.path().join(&files[0].1.path);
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
