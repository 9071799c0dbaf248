//! Which committed data files a session reads, where they are, and the
//! table they make: the committed files shared with the live tables, a
//! session's scope (its files, window and rolled-up hours), the lake's
//! root, and the raw tables over a selection of files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::MemTable;
use datafusion::execution::cache::cache_manager::FileStatisticsCache;
use gatemeter_lake::paths::{DataFilePath, HourPartition};
use gatemeter_lake::{FileEntry, LakeLocation};
use gatemeter_schema::attempts_schema;

use crate::error::QueryError;
use crate::window::Window;

/// The committed data files as of the engine's last refresh, shared with
/// the live tables that read them at scan time.
#[derive(Debug, Clone, Default)]
pub(crate) struct CommittedFiles(Arc<std::sync::RwLock<Arc<Vec<FileEntry>>>>);

impl CommittedFiles {
    pub(crate) fn current(&self) -> Arc<Vec<FileEntry>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn replace(&self, files: Vec<FileEntry>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(files);
    }
}

/// What the raw tables of a session read, kept in its config: every scan of
/// the session sees the same committed files (a commit landing between two
/// scans of one query changes neither) and only the rows of its window.
#[derive(Debug)]
pub(crate) struct SessionScope {
    pub(crate) files: Arc<Vec<FileEntry>>,
    pub(crate) window: Window,
    /// Hours whose raw files the session does not read: their stored
    /// rollups stand in for them (docs/lake.md, "Rollups").
    pub(crate) rolled_up: Arc<BTreeSet<HourPartition>>,
}

impl SessionScope {
    /// Every committed file, every hour.
    pub(crate) fn everything(files: Arc<Vec<FileEntry>>) -> SessionScope {
        SessionScope {
            files,
            window: Window::default(),
            rolled_up: Arc::default(),
        }
    }

    /// Whether the raw tables read `file`: it overlaps the window and is
    /// not of a rolled-up hour.
    pub(crate) fn reads(&self, file: &FileEntry) -> bool {
        self.window.overlaps(file)
            && (self.rolled_up.is_empty()
                || DataFilePath::parse(&file.path)
                    .is_none_or(|path| !self.rolled_up.contains(&path.partition)))
    }
}

/// Where the lake at `data_dir` is, or `None` for a local folder that
/// does not exist (yet).
pub(crate) fn lake_location(data_dir: &Path) -> Result<Option<LakeLocation>, QueryError> {
    Ok(match LakeRoot::of(data_dir) {
        LakeRoot::Local(dir) if !dir.is_dir() => None,
        LakeRoot::Local(dir) => Some(LakeLocation::local(&dir)?),
        LakeRoot::Remote(url) => Some(LakeLocation::parse(url.as_str())?),
    })
}

/// Where the lake's files are read from: a local folder, or an object-store
/// URL whose store is registered with every session's runtime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LakeRoot {
    Local(PathBuf),
    Remote(url::Url),
}

impl LakeRoot {
    /// `data_dir` as `--data-dir` gives it: a path, or `s3://bucket/prefix`.
    pub(crate) fn of(data_dir: &Path) -> LakeRoot {
        match LakeLocation::object_store_root(&data_dir.to_string_lossy()) {
            Some(root) => LakeRoot::Remote(root),
            None => LakeRoot::Local(
                std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf()),
            ),
        }
    }

    /// The URL or path of a lake-relative file, as a listing table takes it.
    pub(crate) fn file(&self, path: &str) -> String {
        match self {
            LakeRoot::Local(dir) => dir.join(path).to_string_lossy().into_owned(),
            LakeRoot::Remote(root) => format!("{root}{path}"),
        }
    }

    pub(crate) fn local_dir(&self) -> Option<&Path> {
        match self {
            LakeRoot::Local(dir) => Some(dir),
            LakeRoot::Remote(_) => None,
        }
    }
}

/// Which of the committed data files a raw table reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileSelection {
    /// Written by compaction: one row per attempt.
    Compacted,
    /// Written by ingest or import since: may repeat an attempt.
    Fresh,
}

impl FileSelection {
    pub(crate) fn pick<'a>(
        self,
        files: &'a [FileEntry],
    ) -> impl Iterator<Item = &'a FileEntry> + 'a {
        files
            .iter()
            .filter(move |file| file.deduplicated == (self == FileSelection::Compacted))
    }
}

/// The stored rows as queries read them: the lake's columns with every
/// string read as a string view. Parquet's dictionary pages then decode into
/// views of the dictionary instead of a copy of every value (the team,
/// model and provider columns repeat a few values over every row), and
/// filters and group keys compare the views' inline prefixes first.
pub(crate) fn scan_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let fields: Vec<Field> = attempts_schema()
                .fields()
                .iter()
                .map(|field| match field.data_type() {
                    DataType::Utf8 => field.as_ref().clone().with_data_type(DataType::Utf8View),
                    _ => field.as_ref().clone(),
                })
                .collect();
            Arc::new(Schema::new(fields))
        })
        .clone()
}

/// The data files `files` as one table (an empty one when there are none).
/// Their statistics come from `statistics_cache` after the first scan:
/// computing them from the footers was a fifth of planning a small query.
pub(crate) fn lake_table<'a>(
    root: &LakeRoot,
    files: impl Iterator<Item = &'a FileEntry>,
    statistics_cache: Option<Arc<FileStatisticsCache>>,
) -> Result<Arc<dyn TableProvider>, QueryError> {
    let urls: Vec<ListingTableUrl> = files
        .map(|file| ListingTableUrl::parse(root.file(&file.path)))
        .collect::<Result<_, _>>()?;
    if urls.is_empty() {
        return Ok(Arc::new(MemTable::try_new(scan_schema(), vec![vec![]])?));
    }
    let listing_options =
        ListingOptions::new(Arc::new(ParquetFormat::default())).with_file_extension(".parquet");
    let table_config = ListingTableConfig::new_with_multi_paths(urls)
        .with_listing_options(listing_options)
        .with_schema(scan_schema());
    Ok(Arc::new(
        ListingTable::try_new(table_config)?.with_cache(statistics_cache),
    ))
}
