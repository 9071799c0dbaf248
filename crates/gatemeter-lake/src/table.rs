//! One Delta Lake table of the lake (`attempts` or `dead_letters`), through
//! `deltalake-core`, used for its transaction log only: gatemeter writes the
//! Parquet files itself and hands the log their Add actions.
//!
//! Every commit is tried once against the snapshot it was planned on
//! (`max_retries = 0`): when another writer committed in between, the caller
//! gets [`Attempt::Conflict`], reloads, and decides by its own rule whether
//! the commit still holds (docs/lake.md, "Many writers").

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, AsArray, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type, TimeUnit};
use arrow_schema::Schema;
use deltalake_core::kernel::engine::arrow_conversion::TryFromArrow;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties, TransactionError};
use deltalake_core::kernel::{Action, StructField, StructType};
use deltalake_core::logstore::ObjectStoreRef;
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use url::Url;

use crate::error::LakeError;
use crate::paths::HourPartition;

/// A file the table's current snapshot names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiveFile {
    /// Relative to the table folder.
    pub path: String,
    pub size: i64,
    /// `numRecords` of its stats.
    pub rows: Option<u64>,
    /// Bounds of `request_start` (µs) from its stats; `attempts` only.
    pub min_request_start: Option<i64>,
    pub max_request_start: Option<i64>,
    /// Its `date`/`hour` partition values; `attempts` only.
    pub partition: Option<HourPartition>,
}

/// How one commit try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attempt {
    Committed {
        version: i64,
    },
    /// Another writer committed first; nothing of this try is visible.
    Conflict,
}

pub(crate) struct Table {
    name: &'static str,
    inner: DeltaTable,
}

/// The folder of a local table; `None` for an object-store URL.
fn local_dir(url: &Url) -> Option<std::path::PathBuf> {
    (url.scheme() == "file")
        .then(|| url.to_file_path().ok())
        .flatten()
}

/// A log path with its percent-escapes decoded, as the files are named on
/// storage.
fn percent_decode(path: &str) -> String {
    if !path.contains('%') {
        return path.to_owned();
    }
    url::form_urlencoded::parse(format!("p={}", path.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(|| path.to_owned(), |(_, value)| value.into_owned())
}

fn delta_error(table: &str, error: DeltaTableError) -> LakeError {
    LakeError::Delta {
        table: table.to_owned(),
        reason: error.to_string(),
    }
}

impl Table {
    /// The table at `url`, created (empty, with `schema` partitioned by
    /// `partition_columns`) if it does not exist yet.
    pub async fn open_or_create(
        name: &'static str,
        url: Url,
        storage_options: &HashMap<String, String>,
        schema: &Schema,
        partition_columns: &[(&str, deltalake_core::kernel::DataType)],
    ) -> Result<Table, LakeError> {
        if let Some(mut table) = Table::open(name, url.clone(), storage_options).await? {
            table.add_missing_columns(schema).await?;
            return Ok(table);
        }
        if let Some(dir) = local_dir(&url) {
            std::fs::create_dir_all(&dir).map_err(|e| LakeError::DataDir {
                path: dir.display().to_string(),
                reason: e.to_string(),
            })?;
        }
        let mut columns = StructType::try_from_arrow(schema)
            .map_err(|e| LakeError::Delta {
                table: name.to_owned(),
                reason: format!("schema: {e}"),
            })?
            .fields()
            .cloned()
            .collect::<Vec<_>>();
        for (column, data_type) in partition_columns {
            columns.push(deltalake_core::kernel::StructField::new(
                (*column).to_owned(),
                data_type.clone(),
                false,
            ));
        }
        let created = CreateBuilder::new()
            .with_location(url.to_string())
            .with_storage_options(storage_options.clone())
            .with_table_name(name)
            .with_columns(columns)
            .with_partition_columns(partition_columns.iter().map(|(c, _)| (*c).to_owned()))
            .with_save_mode(SaveMode::ErrorIfExists)
            .with_commit_properties(CommitProperties::default().with_max_retries(0))
            .await;
        match created {
            Ok(inner) => Ok(Table { name, inner }),
            // Another writer created it first: use theirs.
            Err(first) => match Table::open(name, url, storage_options).await? {
                Some(table) => Ok(table),
                None => Err(delta_error(name, first)),
            },
        }
    }

    /// Appends to the table's schema the columns of `schema` it lacks (a
    /// lake written by an earlier release, docs/lake.md "Schema changes"):
    /// one metadata commit, by whichever writer opens it first. Such
    /// columns are nullable, and the table's older files read them as null.
    async fn add_missing_columns(&mut self, schema: &Schema) -> Result<(), LakeError> {
        // Another writer's commit in between (ingesters commit every few
        // seconds) makes a try fail; the next one plans on its version.
        const TRIES: usize = 20;
        let mut last = String::new();
        for _ in 0..TRIES {
            let missing = self.missing_columns(schema)?;
            if missing.is_empty() {
                return Ok(());
            }
            let added = self
                .inner
                .clone()
                .add_columns()
                .with_fields(missing)
                .with_commit_properties(CommitProperties::default().with_max_retries(0))
                .await;
            match added {
                Ok(inner) => {
                    self.inner = inner;
                    return Ok(());
                }
                Err(error) => {
                    tracing::debug!(table = self.name, %error, "adding columns: trying again");
                    last = error.to_string();
                    self.refresh().await?;
                }
            }
        }
        Err(LakeError::Delta {
            table: self.name.to_owned(),
            reason: format!("adding the columns of this release failed {TRIES} times: {last}"),
        })
    }

    /// The columns of `schema` the table's schema does not have.
    fn missing_columns(&self, schema: &Schema) -> Result<Vec<StructField>, LakeError> {
        let current = self
            .inner
            .snapshot()
            .map_err(|e| delta_error(self.name, e))?
            .schema();
        let wanted = StructType::try_from_arrow(schema).map_err(|e| LakeError::Delta {
            table: self.name.to_owned(),
            reason: format!("schema: {e}"),
        })?;
        Ok(wanted
            .fields()
            .filter(|field| current.field(field.name()).is_none())
            .cloned()
            .collect())
    }

    /// The table at `url`, or `None` when no Delta log is there yet.
    pub async fn open(
        name: &'static str,
        url: Url,
        storage_options: &HashMap<String, String>,
    ) -> Result<Option<Table>, LakeError> {
        if let Some(dir) = local_dir(&url) {
            if !dir.join(crate::paths::DELTA_LOG_DIR).is_dir() {
                return Ok(None);
            }
        }
        let mut inner = DeltaTableBuilder::from_url(url)
            .map_err(|e| delta_error(name, e))?
            .with_storage_options(storage_options.clone())
            .build()
            .map_err(|e| delta_error(name, e))?;
        match inner.load().await {
            Ok(()) => Ok(Some(Table { name, inner })),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(delta_error(name, e)),
        }
    }

    /// The version of the loaded snapshot.
    pub fn version(&self) -> i64 {
        self.inner
            .version()
            .and_then(|v| i64::try_from(v).ok())
            .unwrap_or(-1)
    }

    /// Loads commits made since the loaded snapshot; returns how many.
    pub async fn refresh(&mut self) -> Result<u64, LakeError> {
        let before = self.version();
        self.inner
            .update_incremental(None)
            .await
            .map_err(|e| delta_error(self.name, e))?;
        Ok((self.version() - before).max(0) as u64)
    }

    /// The files of the loaded snapshot, read column by column from the
    /// log's Add actions.
    pub fn live_files(&self) -> Result<Vec<LiveFile>, LakeError> {
        let state = self
            .inner
            .snapshot()
            .map_err(|e| delta_error(self.name, e))?;
        if state.log_data().num_files() == 0 {
            return Ok(Vec::new());
        }
        let actions = state
            .add_actions_table(true)
            .map_err(|e| delta_error(self.name, e))?;
        let column = |name: &str| actions.column_by_name(name);
        let int64 = |name: &str| -> Result<Option<Int64Array>, LakeError> {
            column(name)
                .map(|c| {
                    Ok(cast(c, &DataType::Int64)?
                        .as_primitive::<Int64Type>()
                        .clone())
                })
                .transpose()
        };
        let micros = |name: &str| -> Result<Option<Int64Array>, LakeError> {
            column(name)
                .map(|c| {
                    let plain = cast(c, &DataType::Timestamp(TimeUnit::Microsecond, None))?;
                    Ok(cast(&plain, &DataType::Int64)?
                        .as_primitive::<Int64Type>()
                        .clone())
                })
                .transpose()
        };
        let text = |name: &str| -> Result<Option<StringArray>, LakeError> {
            column(name)
                .map(|c| Ok(cast(c, &DataType::Utf8)?.as_string::<i32>().clone()))
                .transpose()
        };
        let paths = text("path")?.ok_or_else(|| LakeError::Delta {
            table: self.name.to_owned(),
            reason: "the log's Add actions have no path".to_owned(),
        })?;
        let sizes = int64("size_bytes")?;
        let rows = int64("num_records")?;
        let (low, high) = (micros("min.request_start")?, micros("max.request_start")?);
        let (dates, hours) = (text("partition.date")?, text("partition.hour")?);
        let at = |values: &Option<Int64Array>, i: usize| {
            values
                .as_ref()
                .filter(|v| v.is_valid(i))
                .map(|v| v.value(i))
        };
        let text_at = |values: &Option<StringArray>, i: usize| {
            values
                .as_ref()
                .filter(|v| v.is_valid(i))
                .map(|v| v.value(i).to_owned())
        };
        Ok((0..actions.num_rows())
            .map(|i| LiveFile {
                path: percent_decode(paths.value(i)),
                size: at(&sizes, i).unwrap_or(0),
                rows: at(&rows, i).and_then(|n| u64::try_from(n).ok()),
                min_request_start: at(&low, i),
                max_request_start: at(&high, i),
                partition: text_at(&dates, i)
                    .zip(text_at(&hours, i))
                    .and_then(|(date, hour)| HourPartition::from_values(&date, &hour)),
            })
            .collect())
    }

    /// The version the last commit holding the app transaction `app_id`
    /// gave it, as of the loaded snapshot.
    pub async fn app_version(&self, app_id: &str) -> Result<Option<i64>, LakeError> {
        let state = self
            .inner
            .snapshot()
            .map_err(|e| delta_error(self.name, e))?;
        state
            .transaction_version(self.inner.log_store().as_ref(), app_id)
            .await
            .map_err(|e| delta_error(self.name, e))
    }

    /// The store rooted at the table folder, for its data files.
    pub fn store(&self) -> ObjectStoreRef {
        self.inner.object_store()
    }

    /// Commits `actions` as the version after the loaded snapshot, or
    /// reports that another writer took it.
    pub async fn try_commit(
        &mut self,
        actions: Vec<Action>,
        operation: DeltaOperation,
        app_metadata: HashMap<String, serde_json::Value>,
    ) -> Result<Attempt, LakeError> {
        let state = self
            .inner
            .snapshot()
            .map_err(|e| delta_error(self.name, e))?;
        let committed = CommitBuilder::default()
            .with_actions(actions)
            .with_app_metadata(app_metadata)
            .with_max_retries(0)
            .build(Some(state), self.inner.log_store(), operation)
            .await;
        match committed {
            Ok(finalized) => {
                let version = i64::try_from(finalized.version()).unwrap_or(i64::MAX);
                self.inner.state = Some(finalized.snapshot());
                Ok(Attempt::Committed { version })
            }
            Err(DeltaTableError::VersionAlreadyExists(_))
            | Err(DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_),
            }) => Ok(Attempt::Conflict),
            Err(e) => Err(delta_error(self.name, e)),
        }
    }

    /// Writes a checkpoint of the loaded snapshot and removes log files
    /// past the table's log retention (both for readers' sake: opening the
    /// table then reads one Parquet file and the commits after it).
    pub async fn checkpoint(&self) -> Result<(), LakeError> {
        deltalake_core::checkpoints::create_checkpoint(&self.inner, None)
            .await
            .map_err(|e| delta_error(self.name, e))?;
        deltalake_core::checkpoints::cleanup_metadata(&self.inner, None)
            .await
            .map_err(|e| delta_error(self.name, e))?;
        Ok(())
    }

    /// Deletes data files that no version within `retention` names any
    /// more: files compaction replaced, and files of flushes that never
    /// committed (a crash, a lost race) once they are that old.
    pub async fn vacuum(&mut self, retention: chrono::Duration) -> Result<Vec<String>, LakeError> {
        let table = self.inner.clone();
        let (table, metrics) = table
            .vacuum()
            .with_retention_period(retention)
            .with_enforce_retention_duration(false)
            .with_mode(deltalake_core::operations::vacuum::VacuumMode::Full)
            .await
            .map_err(|e| delta_error(self.name, e))?;
        self.inner = table;
        Ok(metrics.files_deleted)
    }

    /// Every object under the table folder but the log, for tests and tools.
    pub async fn list_objects(&self) -> Result<Vec<String>, LakeError> {
        let store: Arc<dyn object_store::ObjectStore> = self.store();
        let paths: Vec<String> = store
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await?;
        Ok(paths
            .into_iter()
            .filter(|p| !p.starts_with(crate::paths::DELTA_LOG_DIR))
            .collect())
    }
}
