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

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::compute::{cast, concat_batches};
use gatemeter_lake::paths::{DataFilePath, HourPartition};
use gatemeter_lake::{FileEntry, LakeLocation, RollupFile, RollupTable};
use sha2::{Digest, Sha256};

use crate::engine::{QueryEngine, Window, VIEWS};
use crate::error::QueryError;
use crate::price_book::PriceBook;

/// The rollups `compact` stores, each the view of the same name.
pub const ROLLUP_VIEWS: [&str; 2] = ["hourly_usage", "hourly_requests"];

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

/// What storing the rollups did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupTotals {
    /// Hours with a file written (of either rollup).
    pub hours: usize,
    pub files: usize,
    pub bytes: u64,
}

/// Where the rollup writer is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupProgress<'a> {
    /// Starting `view`, with this many hours due.
    Started { view: &'a str, hours: usize },
    /// One more hour of the current view stored.
    Stored,
    /// The current view is done.
    Finished,
}

/// A batch of a view as stored: `schema`'s column types.
fn to_stored(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, QueryError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// Raw rows a rollup is computed over at a time, by default: an hour with
/// more is computed in slices of its time whose rows are then merged, so
/// that a big hour (a million attempts and more) stays within a query's
/// memory.
pub const SLICE_ROWS: u64 = 200_000;

/// The batches of `sql` on `session`, as one batch of `schema`'s types.
async fn stored_rows(
    session: &datafusion::prelude::SessionContext,
    sql: &str,
    schema: &SchemaRef,
) -> Result<RecordBatch, QueryError> {
    let batches = session.sql(sql).await?.collect().await?;
    let stored = batches
        .iter()
        .map(|batch| to_stored(batch, schema))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(concat_batches(schema, &stored)?)
}

/// How a rollup column merges when rows of the same hour and dimensions
/// are added up: sketches merge, the time bounds take their extreme, every
/// other number adds up, and the rest (the hour and the dimensions) group.
fn merge_sql(schema: &Schema, table: &str) -> String {
    let mut select = Vec::new();
    let mut keys = Vec::new();
    for field in schema.fields() {
        let name = field.name();
        match (name.as_str(), field.data_type()) {
            ("first_request_start", _) => select.push(format!("min({name}) AS {name}")),
            ("last_attempt_end", _) => select.push(format!("max({name}) AS {name}")),
            (_, DataType::Binary) => select.push(format!("ddsketch_merge({name}) AS {name}")),
            (_, DataType::Int64 | DataType::Decimal128(..)) => {
                select.push(format!("sum({name}) AS {name}"))
            }
            _ => {
                select.push(name.clone());
                keys.push(name.clone());
            }
        }
    }
    format!(
        "SELECT {} FROM {table} GROUP BY {}",
        select.join(", "),
        keys.join(", ")
    )
}

/// The rows of `view` over `hour`, which holds `rows` raw rows, as stored:
/// computed at once, or slice by slice and merged.
async fn hour_rows(
    engine: &QueryEngine,
    view: &str,
    hour: HourPartition,
    (rows, slice_rows): (u64, u64),
    schema: &SchemaRef,
) -> Result<RecordBatch, QueryError> {
    let end = hour.end_micros();
    let start = end - 3_600_000_000;
    // A request's attempts share its start, so no slice splits one.
    let slices = rows.div_ceil(slice_rows.max(1)).clamp(1, 60) as i64;
    let length = (end - start) / slices;
    let mut parts = Vec::with_capacity(slices as usize);
    for slice in 0..slices {
        let from = start + slice * length;
        let to = if slice + 1 == slices {
            end
        } else {
            from + length
        };
        let window = Window {
            from: Some(from),
            to: Some(to),
        };
        let session = engine.session(window).await?;
        parts.push(stored_rows(&session, &format!("SELECT * FROM {view}"), schema).await?);
    }
    if parts.len() == 1 {
        return Ok(parts.remove(0));
    }
    let session = engine
        .session(Window {
            from: Some(0),
            to: Some(0),
        })
        .await?;
    session.register_table(
        "hour_slices",
        Arc::new(datafusion::datasource::MemTable::try_new(
            schema.clone(),
            vec![parts],
        )?),
    )?;
    stored_rows(&session, &merge_sql(schema, "hour_slices"), schema).await
}

/// Stores the rollups of every hour of `engine`'s lake that ends at or
/// before `settled_before` (µs) and whose stored stamp is not the one its
/// raw files, the views and the price book give now: each view computed
/// over that hour alone (in slices of about `slice_rows` raw rows,
/// [`SLICE_ROWS`] for a command), replacing the hour's file. Then each
/// rollup table is checkpointed and its files replaced more than
/// `retention` ago are deleted.
pub async fn store_rollups(
    engine: &QueryEngine,
    location: &LakeLocation,
    (settled_before, slice_rows): (i64, u64),
    retention: chrono::Duration,
    progress: &mut dyn FnMut(RollupProgress<'_>),
) -> Result<RollupTotals, QueryError> {
    // The engine reads the files committed when it last looked, and the
    // stamps name those.
    let files = engine.committed_files();
    let sources: BTreeMap<HourPartition, String> = hour_sources(&files)
        .into_iter()
        .filter(|(hour, _)| hour.end_micros() <= settled_before)
        .collect();
    let mut rows_of: BTreeMap<HourPartition, u64> = BTreeMap::new();
    for file in files.iter() {
        if let Some(path) = DataFilePath::parse(&file.path) {
            *rows_of.entry(path.partition).or_default() += file.rows;
        }
    }
    let basis = basis(engine.price_book());
    let mut totals = RollupTotals::default();
    let mut hours_written = BTreeSet::new();
    for view in ROLLUP_VIEWS {
        let no_rows = Window {
            from: Some(0),
            to: Some(0),
        };
        let planned = engine.session(no_rows).await?.table(view).await?;
        let schema = stored_schema(planned.schema().as_arrow());
        let mut table = RollupTable::open_or_create(location, view, &schema).await?;
        let stored: BTreeMap<HourPartition, String> = table
            .files()
            .map(|(hour, file)| (hour, file.stamp))
            .collect();
        let due: Vec<(HourPartition, String)> = sources
            .iter()
            .map(|(hour, source)| (*hour, stamp(&basis, source)))
            .filter(|(hour, wanted)| stored.get(hour) != Some(wanted))
            .collect();
        progress(RollupProgress::Started {
            view,
            hours: due.len(),
        });
        for (hour, wanted) in due {
            let raw_rows = rows_of.get(&hour).copied().unwrap_or(0);
            let rows = hour_rows(engine, view, hour, (raw_rows, slice_rows), &schema).await?;
            let written = table.replace_hour(hour, &wanted, &rows).await?;
            totals.files += 1;
            totals.bytes += written.bytes;
            hours_written.insert(hour);
            progress(RollupProgress::Stored);
        }
        progress(RollupProgress::Finished);
        table.tidy(retention).await?;
    }
    totals.hours = hours_written.len();
    Ok(totals)
}

/// The hours a query reads from stored rollups, and their files (lake
/// relative) in [`ROLLUP_VIEWS`] order.
#[derive(Debug, Clone, Default)]
pub struct RolledUpHours {
    pub hours: BTreeSet<HourPartition>,
    pub files: [Vec<String>; 2],
}

impl RolledUpHours {
    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }
}

/// Every stored hour with its file of each rollup, as of the last look.
#[derive(Debug, Clone, Default)]
pub(crate) struct RollupIndex(BTreeMap<HourPartition, [Option<RollupFile>; 2]>);

impl RollupIndex {
    /// The hours inside `window` whose files of both rollups carry
    /// `stamp(basis, source of the hour in files)`.
    pub(crate) fn usable(&self, window: Window, files: &[FileEntry], basis: &str) -> RolledUpHours {
        let sources = hour_sources(files);
        let mut used = RolledUpHours::default();
        for (hour, stored) in &self.0 {
            let end = hour.end_micros();
            let start = end - 3_600_000_000;
            let inside = window.from.is_none_or(|from| start >= from)
                && window.to.is_none_or(|to| end <= to);
            let Some(source) = sources.get(hour).filter(|_| inside) else {
                continue;
            };
            let expected = stamp(basis, source);
            if let [Some(usage), Some(requests)] = stored {
                if usage.stamp == expected && requests.stamp == expected {
                    used.hours.insert(*hour);
                    used.files[0].push(usage.path.clone());
                    used.files[1].push(requests.path.clone());
                }
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
    pub(crate) fn usable(&self, window: Window, files: &[FileEntry], basis: &str) -> RolledUpHours {
        let index = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        index.usable(window, files, basis)
    }
}

/// The rollup tables of a lake, opened when they exist.
pub(crate) struct RollupTables {
    data_dir: PathBuf,
    location: Option<LakeLocation>,
    tables: [Option<RollupTable>; 2],
}

impl RollupTables {
    pub(crate) fn new(data_dir: PathBuf) -> RollupTables {
        RollupTables {
            data_dir,
            location: None,
            tables: [None, None],
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
        for (slot, view) in self.tables.iter_mut().zip(ROLLUP_VIEWS) {
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
        let mut index: BTreeMap<HourPartition, [Option<RollupFile>; 2]> = BTreeMap::new();
        for (position, table) in self.tables.iter().enumerate() {
            for (hour, file) in table.iter().flat_map(|table| table.files()) {
                index.entry(hour).or_default()[position] = Some(file);
            }
        }
        RollupIndex(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> FileEntry {
        FileEntry {
            path: path.to_owned(),
            rows: 1,
            bytes: 1,
            min_request_start: None,
            max_request_start: None,
            deduplicated: false,
        }
    }

    const A: &str =
        "attempts/date=2026-11-01/hour=10/part-0123456789abcdef0123456789abcdef.parquet";
    const B: &str =
        "attempts/date=2026-11-01/hour=10/part-fedcba9876543210fedcba9876543210.parquet";
    const C: &str =
        "attempts/date=2026-11-01/hour=11/part-0123456789abcdef0123456789abcdef.parquet";

    #[test]
    fn an_hour_source_changes_with_its_files_only() {
        let ten = HourPartition::from_values("2026-11-01", "10").expect("hour");
        let eleven = HourPartition::from_values("2026-11-01", "11").expect("hour");
        let before = hour_sources(&[file(A), file(C)]);
        let after = hour_sources(&[file(C), file(B), file(A)]);
        assert_ne!(before[&ten], after[&ten], "a late file changes its hour");
        assert_eq!(before[&eleven], after[&eleven], "and no other");
        assert_eq!(
            hour_sources(&[file(B), file(A)]),
            hour_sources(&[file(A), file(B)]),
            "the order files are listed in does not matter"
        );
    }

    #[test]
    fn a_stored_hour_is_used_inside_the_window_with_its_stamp_only() {
        let ten = HourPartition::from_values("2026-11-01", "10").expect("hour");
        let eleven = HourPartition::from_values("2026-11-01", "11").expect("hour");
        let files = [file(A), file(C)];
        let sources = hour_sources(&files);
        let stored = |hour: HourPartition, stamp: String| {
            [0, 1].map(|i| {
                Some(RollupFile {
                    path: format!("rollups/{}/{hour:?}.parquet", ROLLUP_VIEWS[i]),
                    bytes: 1,
                    stamp: stamp.clone(),
                })
            })
        };
        let index = RollupIndex(BTreeMap::from([
            (ten, stored(ten, stamp("b1", &sources[&ten]))),
            (eleven, stored(eleven, stamp("b0", &sources[&eleven]))),
        ]));
        let all = index.usable(Window::default(), &files, "b1");
        assert_eq!(all.hours, BTreeSet::from([ten]), "eleven has another basis");
        assert_eq!(all.files[0].len(), 1);
        let start_of_ten = ten.end_micros() - 3_600_000_000;
        let part = Window {
            from: Some(start_of_ten + 1),
            to: None,
        };
        assert!(index.usable(part, &files, "b1").is_empty(), "ten is cut");
        let late = [file(A), file(B), file(C)];
        assert!(index.usable(Window::default(), &late, "b1").is_empty());
    }

    #[test]
    fn the_basis_follows_the_price_book() {
        let empty = PriceBook::default();
        let book = PriceBook::parse(
            "provider,model,effective_from,input_per_1m,output_per_1m,cache_read_per_1m,cache_write_per_1m,request_fee,web_search_per_1k\nopenai,gpt-4o,2026-01-01T00:00:00Z,2.5,10.0,1.25,3.125,0,10\n",
        )
        .expect("book");
        assert_ne!(basis(&empty), basis(&book));
        assert_eq!(basis(&book), basis(&book.clone()));
    }
}
