//! Reading the stored hourly rollups (docs/lake.md, "Rollups"). A stored
//! hour is used in place of its raw files only while it still says what
//! they say: its stamp names the view definitions, the price book and the
//! hour's raw files it was computed from, and a query compares that with
//! what the lake and the engine hold now. A late event (a new raw file), a
//! compaction (new files), another price book or another release of the
//! views each make the hour read raw again until `compact` rewrites it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};
use gatemeter_lake::paths::{DataFilePath, HourPartition};
use gatemeter_lake::{FileEntry, LakeLocation, RollupFile, RollupTable};
use sha2::{Digest, Sha256};

use crate::engine::{Window, VIEWS};
use crate::error::QueryError;
use crate::price_book::PriceBook;
pub use crate::rollup_writer::{store_rollups, RollupProgress, RollupTotals, SLICE_ROWS};

/// The rollups `compact` stores, each the view of the same name.
pub const ROLLUP_VIEWS: [&str; 2] = ["hourly_usage", "hourly_requests"];

/// The daily rollups `compact` stores beside them, in the same order: the
/// same columns, a UTC day's hours merged, `hour` holding the day's start.
pub const DAILY_ROLLUPS: [&str; 2] = ["daily_usage", "daily_requests"];

/// Narrower copies of the rollups above, in the order of
/// [`ROLLUP_VIEWS`] then [`DAILY_ROLLUPS`]: each stored period's rows
/// merged over the columns of [`BY_MODEL_OMITS`], so a dashboard grouped
/// by team, model or provider merges a tenth of the rows. A copy carries
/// the stamp of the file it was merged from.
pub const BY_MODEL_ROLLUPS: [&str; 4] = [
    "hourly_usage_by_model",
    "hourly_requests_by_model",
    "daily_usage_by_model",
    "daily_requests_by_model",
];

/// The columns [`BY_MODEL_ROLLUPS`] leave out: the ones with the most
/// values (a row for each key, environment, app and org otherwise).
pub const BY_MODEL_OMITS: [&str; 4] = ["api_key_id", "environment", "app", "org_id"];

/// A day in µs.
pub const DAY: i64 = 24 * 3_600_000_000;

/// The day of `hour`, keyed (in the daily tables too) by its first hour.
pub fn day_of(hour: HourPartition) -> HourPartition {
    HourPartition {
        date: hour.date,
        hour: 0,
    }
}

/// Each day of `hours` (from [`hour_sources`]) with the fingerprint of its
/// hours and their sources: a day's stamp changes whenever one of its
/// hours' does.
pub fn day_sources(hours: &BTreeMap<HourPartition, String>) -> BTreeMap<HourPartition, String> {
    let mut by_day: BTreeMap<HourPartition, Sha256> = BTreeMap::new();
    for (hour, source) in hours {
        let hasher = by_day.entry(day_of(*hour)).or_default();
        hasher.update(format!("{:02}:{source}", hour.hour).as_bytes());
        hasher.update([0]);
    }
    by_day
        .into_iter()
        .map(|(day, hasher)| (day, short_hex(hasher)))
        .collect()
}

/// Which stored rollups a session reads in place of raw rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupGrain {
    /// None: every row raw (exact percentiles, sub-hour buckets).
    RawOnly,
    /// Stored hours (buckets of hours).
    Hours,
    /// Stored days where a whole day is inside the window, stored hours
    /// elsewhere (no buckets, or buckets of whole days).
    Days,
}

/// What stored rollups a session reads: of which grain, and whether the
/// narrower [`BY_MODEL_ROLLUPS`] where they are current (only for queries
/// that neither group nor filter by a column of [`BY_MODEL_OMITS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollupReads {
    pub grain: RollupGrain,
    pub by_model: bool,
}

impl From<RollupGrain> for RollupReads {
    /// The full rollups only.
    fn from(grain: RollupGrain) -> RollupReads {
        RollupReads {
            grain,
            by_model: false,
        }
    }
}

/// How a rollup column merges when rows of the same period and dimensions
/// are added up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MergeRule {
    /// The period and the dimensions: rows group by them.
    Group,
    /// Counts, tokens and money add up.
    Sum,
    /// The first request start: the earliest.
    Min,
    /// The last attempt end: the latest.
    Max,
    /// Sketches merge.
    Sketch,
}

impl MergeRule {
    pub(crate) fn of(field: &Field) -> MergeRule {
        match (field.name().as_str(), field.data_type()) {
            ("first_request_start", _) => MergeRule::Min,
            ("last_attempt_end", _) => MergeRule::Max,
            (_, DataType::Binary) => MergeRule::Sketch,
            (_, DataType::Int64 | DataType::Decimal128(..)) => MergeRule::Sum,
            _ => MergeRule::Group,
        }
    }
}

/// The name a query reads a stored rollup by, in the sessions that use
/// them.
pub fn stored_name(view: &str) -> String {
    format!("rollup_{view}")
}

fn short_hex(hasher: Sha256) -> String {
    hex::encode(&hasher.finalize()[..8])
}

/// What every rollup's rows follow from besides the raw rows: the views'
/// definitions (the hourly views read `attempts` and `requests`) and the
/// price book, as the first 16 hex digits of their SHA-256.
pub fn basis(book: &PriceBook) -> String {
    let mut hasher = Sha256::new();
    for (name, sql) in VIEWS {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(sql.as_bytes());
        hasher.update([0]);
    }
    for row in book.rows() {
        let line = format!(
            "{}\u{1f}{}\u{1f}{}\u{1f}{:?}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}\n",
            row.provider,
            row.model,
            row.effective_from,
            row.effective_to,
            row.input_per_1m.0,
            row.output_per_1m.0,
            row.cache_read_per_1m.0,
            row.cache_write_per_1m.0,
            row.request_fee.0,
            row.web_search_per_1k.0,
        );
        hasher.update(line.as_bytes());
    }
    short_hex(hasher)
}

/// Each hour of the lake with the fingerprint of its raw files (their
/// names, which never repeat: a file is written once).
pub fn hour_sources(files: &[FileEntry]) -> BTreeMap<HourPartition, String> {
    let mut by_hour: BTreeMap<HourPartition, Vec<&str>> = BTreeMap::new();
    for file in files {
        if let Some(parsed) = DataFilePath::parse(&file.path) {
            by_hour
                .entry(parsed.partition)
                .or_default()
                .push(&file.path);
        }
    }
    by_hour
        .into_iter()
        .map(|(hour, mut paths)| {
            paths.sort_unstable();
            let mut hasher = Sha256::new();
            for path in paths {
                hasher.update(path.as_bytes());
                hasher.update([0]);
            }
            (hour, short_hex(hasher))
        })
        .collect()
}

/// The stamp of an hour computed with `basis` from raw files whose
/// fingerprint is `source`.
pub fn stamp(basis: &str, source: &str) -> String {
    format!("{basis}-{source}")
}

/// A rollup's schema as stored: strings as plain UTF-8 (also inside
/// lists), the type every outside reader of a Delta table knows.
pub fn stored_schema(schema: &Schema) -> SchemaRef {
    fn plain(data_type: &DataType) -> DataType {
        match data_type {
            DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
            DataType::List(item) => DataType::List(Arc::new(Field::new(
                item.name(),
                plain(item.data_type()),
                item.is_nullable(),
            ))),
            other => other.clone(),
        }
    }
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|field| Field::new(field.name(), plain(field.data_type()), field.is_nullable()))
            .collect::<Vec<_>>(),
    ))
}

/// The hours a query reads from stored rollups, and their files (lake
/// relative, hourly and daily) in [`ROLLUP_VIEWS`] order.
#[derive(Debug, Clone, Default)]
pub struct RolledUpHours {
    pub hours: BTreeSet<HourPartition>,
    /// The days among them read from the daily rollups.
    pub days: BTreeSet<HourPartition>,
    /// Some of them may be files of [`BY_MODEL_ROLLUPS`], which lack the
    /// columns of [`BY_MODEL_OMITS`].
    pub files: [Vec<RollupFile>; 2],
    /// What each period of `files` was read from (the same for both
    /// lists): a file whose grain and width are a view's own already
    /// holds that view's rows, one per period and dimensions.
    pub kinds: Vec<RollupReads>,
    /// Set by the session: its raw tables read no file (every hour of the
    /// window with a raw file is read stored), so a statement may leave
    /// the raw rows out instead of planning the views over nothing.
    pub rollups_only: bool,
}

impl RolledUpHours {
    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    fn read(&mut self, files: [&RollupFile; 2], kind: RollupReads) {
        for (list, file) in self.files.iter_mut().zip(files) {
            list.push(file.clone());
        }
        self.kinds.push(kind);
    }

    /// The files of rollup `position` ([`ROLLUP_VIEWS`] order) split in
    /// two: those read as `kind` (rows that need no merging for a view of
    /// that grain and width), and the rest.
    pub fn split_by_kind(
        &self,
        position: usize,
        kind: RollupReads,
    ) -> (Vec<RollupFile>, Vec<RollupFile>) {
        let (mut same, mut other) = (Vec::new(), Vec::new());
        for (file, read_as) in self.files[position].iter().zip(&self.kinds) {
            if *read_as == kind {
                same.push(file.clone());
            } else {
                other.push(file.clone());
            }
        }
        (same, other)
    }
}

/// Each stored period's file of the usage and the requests rollup.
type Stored = BTreeMap<HourPartition, [Option<RollupFile>; 2]>;

/// Every stored hour and day with its file of each rollup, as of the last
/// look.
#[derive(Debug, Clone, Default)]
pub(crate) struct RollupIndex {
    hours: Stored,
    days: Stored,
    hours_by_model: Stored,
    days_by_model: Stored,
}

/// Both files of a stored period when both carry `expected`.
fn matching<'a>(
    stored: Option<&'a [Option<RollupFile>; 2]>,
    expected: &str,
) -> Option<[&'a RollupFile; 2]> {
    match stored {
        Some([Some(usage), Some(requests)])
            if usage.stamp == expected && requests.stamp == expected =>
        {
            Some([usage, requests])
        }
        _ => None,
    }
}

impl RollupIndex {
    /// With `reads.grain`, the days inside `window` whose files of both
    /// daily rollups carry `stamp(basis, the day's source in files)`, then
    /// the other hours inside it whose files of both hourly rollups carry
    /// `stamp(basis, the hour's source)`; with `reads.by_model`, a
    /// period's [`BY_MODEL_ROLLUPS`] files in place of the full ones where
    /// they carry that stamp too.
    pub(crate) fn usable(
        &self,
        window: Window,
        files: &[FileEntry],
        basis: &str,
        reads: RollupReads,
    ) -> RolledUpHours {
        let mut used = RolledUpHours::default();
        if reads.grain == RollupGrain::RawOnly {
            return used;
        }
        let inside = |start: i64, length: i64| {
            window.from.is_none_or(|from| start >= from)
                && window.to.is_none_or(|to| start + length <= to)
        };
        let current = |full: &Stored,
                       narrow: &Stored,
                       period: &HourPartition,
                       expected: &str|
         -> Option<([RollupFile; 2], bool)> {
            let narrow = reads
                .by_model
                .then(|| matching(narrow.get(period), expected))
                .flatten()
                .map(|files| (files, true));
            let full = || matching(full.get(period), expected).map(|files| (files, false));
            narrow
                .or_else(full)
                .map(|(files, by_model)| (files.map(Clone::clone), by_model))
        };
        let sources = hour_sources(files);
        if reads.grain == RollupGrain::Days {
            for (day, source) in day_sources(&sources) {
                let start = day.end_micros() - 3_600_000_000;
                if !inside(start, DAY) {
                    continue;
                }
                let expected = stamp(basis, &source);
                if let Some((stored, by_model)) =
                    current(&self.days, &self.days_by_model, &day, &expected)
                {
                    used.days.insert(day);
                    used.hours
                        .extend(sources.keys().filter(|hour| day_of(**hour) == day));
                    let kind = RollupReads {
                        grain: RollupGrain::Days,
                        by_model,
                    };
                    used.read(stored.each_ref(), kind);
                }
            }
        }
        for (hour, source) in &sources {
            let start = hour.end_micros() - 3_600_000_000;
            if used.hours.contains(hour) || !inside(start, 3_600_000_000) {
                continue;
            }
            let expected = stamp(basis, source);
            if let Some((stored, by_model)) =
                current(&self.hours, &self.hours_by_model, hour, &expected)
            {
                used.hours.insert(*hour);
                let kind = RollupReads {
                    grain: RollupGrain::Hours,
                    by_model,
                };
                used.read(stored.each_ref(), kind);
            }
        }
        used
    }
}

/// The rollup index as of the engine's last refresh, shared with the
/// tables that read it when a query scans.
#[derive(Debug, Clone, Default)]
pub(crate) struct SharedRollupIndex(Arc<std::sync::RwLock<Arc<RollupIndex>>>);

impl SharedRollupIndex {
    pub(crate) fn new(index: RollupIndex) -> SharedRollupIndex {
        SharedRollupIndex(Arc::new(std::sync::RwLock::new(Arc::new(index))))
    }

    pub(crate) fn replace(&self, index: RollupIndex) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(index);
    }

    /// [`RollupIndex::usable`] on the current index.
    pub(crate) fn usable(
        &self,
        window: Window,
        files: &[FileEntry],
        basis: &str,
        reads: RollupReads,
    ) -> RolledUpHours {
        let index = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        index.usable(window, files, basis, reads)
    }
}

/// The rollup tables of a lake, opened when they exist.
pub(crate) struct RollupTables {
    data_dir: PathBuf,
    location: Option<LakeLocation>,
    /// [`ROLLUP_VIEWS`], [`DAILY_ROLLUPS`], then [`BY_MODEL_ROLLUPS`].
    tables: [Option<RollupTable>; 8],
}

impl RollupTables {
    pub(crate) fn new(data_dir: PathBuf) -> RollupTables {
        RollupTables {
            data_dir,
            location: None,
            tables: Default::default(),
        }
    }

    /// Opens the tables not open yet and loads new commits of the others;
    /// returns the index when anything changed.
    pub(crate) async fn refresh(&mut self) -> Result<Option<RollupIndex>, QueryError> {
        if self.location.is_none() {
            self.location = crate::engine::lake_location(&self.data_dir)?;
        }
        let Some(location) = &self.location else {
            return Ok(None);
        };
        let mut changed = false;
        let names = ROLLUP_VIEWS
            .iter()
            .chain(&DAILY_ROLLUPS)
            .chain(&BY_MODEL_ROLLUPS);
        for (slot, view) in self.tables.iter_mut().zip(names) {
            match slot {
                Some(table) => changed |= table.refresh().await? > 0,
                None => {
                    *slot = RollupTable::open_existing(location, view).await?;
                    changed |= slot.is_some();
                }
            }
        }
        Ok(changed.then(|| self.index()))
    }

    fn index(&self) -> RollupIndex {
        let mut index = RollupIndex::default();
        for (position, table) in self.tables.iter().enumerate() {
            let periods = match position / 2 {
                0 => &mut index.hours,
                1 => &mut index.days,
                2 => &mut index.hours_by_model,
                _ => &mut index.days_by_model,
            };
            for (period, file) in table.iter().flat_map(|table| table.files()) {
                periods.entry(period).or_default()[position % 2] = Some(file);
            }
        }
        index
    }
}

#[cfg(test)]
#[path = "stored_rollups_tests.rs"]
mod tests;
