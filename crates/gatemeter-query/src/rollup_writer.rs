//! Writing the stored rollups (docs/lake.md, "Rollups"): each settled
//! hour whose stamp no longer matches is computed again from its raw files,
//! in time slices when it is big, and replaces its file; then each settled
//! day whose stamp no longer matches is merged from its stored hours; then
//! every hour and day is merged again, over fewer columns, into the
//! rollups by model wherever its file there does not carry the same stamp.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use datafusion::arrow::compute::{cast, concat_batches};
use gatemeter_lake::paths::{DataFilePath, HourPartition};
use gatemeter_lake::{LakeLocation, RollupFile, RollupTable};

use crate::engine::{QueryEngine, Window};
use crate::error::QueryError;
use crate::stored_rollups::{
    basis, day_of, day_sources, hour_sources, stamp, stored_schema, MergeRule, BY_MODEL_OMITS,
    BY_MODEL_ROLLUPS, DAILY_ROLLUPS, DAY, ROLLUP_VIEWS,
};

/// What storing the rollups did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RollupTotals {
    /// Hours with a file written (of either hourly rollup).
    pub hours: usize,
    pub files: usize,
    pub bytes: u64,
    /// Days with a file written (of either daily rollup).
    pub days: usize,
    pub day_files: usize,
    pub day_bytes: u64,
    /// Files written of the rollups by model (hourly and daily).
    pub by_model_files: usize,
    pub by_model_bytes: u64,
}

/// Where the rollup writer is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupProgress<'a> {
    /// Starting `table`, with this many `periods` ("hours", "days") due.
    Started {
        table: &'a str,
        due: usize,
        periods: &'a str,
    },
    /// One more period of the current table stored.
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

/// `table`'s rows merged by [`MergeRule`]: one row per period and
/// dimensions.
fn merge_sql(schema: &Schema, table: &str) -> String {
    let mut select = Vec::new();
    let mut keys = Vec::new();
    for field in schema.fields() {
        let name = field.name();
        match MergeRule::of(field) {
            MergeRule::Min => select.push(format!("min({name}) AS {name}")),
            MergeRule::Max => select.push(format!("max({name}) AS {name}")),
            MergeRule::Sketch => select.push(format!("ddsketch_merge({name}) AS {name}")),
            MergeRule::Sum => select.push(format!("sum({name}) AS {name}")),
            MergeRule::Group => {
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
/// [`SLICE_ROWS`] for a command), replacing the hour's file; then the
/// settled days whose stamp is not the one of their hours, merged from the
/// stored hours ([`DAILY_ROLLUPS`]). Each table is checkpointed and its
/// files replaced more than `retention` ago are deleted.
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
    let (mut hours_written, mut days_written) = (BTreeSet::new(), BTreeSet::new());
    for (position, (view, daily)) in ROLLUP_VIEWS.into_iter().zip(DAILY_ROLLUPS).enumerate() {
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
            table: view,
            due: due.len(),
            periods: "hours",
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
        let periods = (settled_before, retention);
        let (days, daily_table) = store_days(
            engine,
            location,
            (&table, daily, &schema),
            periods,
            &mut totals,
            progress,
        )
        .await?;
        days_written.extend(days);
        for (source, target) in [(&table, position), (&daily_table, position + 2)] {
            let target = (BY_MODEL_ROLLUPS[target], location, retention);
            let (files, bytes) =
                store_by_model(engine, (source, &schema), target, progress).await?;
            totals.by_model_files += files;
            totals.by_model_bytes += bytes;
        }
    }
    totals.hours = hours_written.len();
    totals.days = days_written.len();
    Ok(totals)
}

/// Stores `daily`, the days of the `hourly` rollup (whose stored `schema`
/// they share): every day that ends at
/// or before `settled_before` whose stored stamp is not the one its hours'
/// raw files give now, merged from the day's stored hours (each up to date:
/// the hours were stored first). Files replaced more than `retention` ago
/// are deleted. Returns the days written and the daily table.
async fn store_days(
    engine: &QueryEngine,
    location: &LakeLocation,
    (hourly, daily, schema): (&RollupTable, &'static str, &SchemaRef),
    (settled_before, retention): (i64, chrono::Duration),
    totals: &mut RollupTotals,
    progress: &mut dyn FnMut(RollupProgress<'_>),
) -> Result<(BTreeSet<HourPartition>, RollupTable), QueryError> {
    let basis = basis(engine.price_book());
    let hours = hour_sources(&engine.committed_files());
    let sources = day_sources(&hours);
    let stored_hours: BTreeMap<HourPartition, RollupFile> = hourly.files().collect();
    let mut table = RollupTable::open_or_create(location, daily, schema).await?;
    let stored: BTreeMap<HourPartition, String> =
        table.files().map(|(day, file)| (day, file.stamp)).collect();
    let due: Vec<(HourPartition, String)> = sources
        .iter()
        .filter(|(day, _)| day.end_micros() - 3_600_000_000 + DAY <= settled_before)
        .map(|(day, source)| (*day, stamp(&basis, source)))
        .filter(|(day, wanted)| stored.get(day) != Some(wanted))
        .collect();
    progress(RollupProgress::Started {
        table: daily,
        due: due.len(),
        periods: "days",
    });
    let mut written_days = BTreeSet::new();
    for (day, wanted) in due {
        // Every hour of the day with raw rows, stored with its current stamp.
        let files: Option<Vec<String>> = hours
            .iter()
            .filter(|(hour, _)| day_of(**hour) == day)
            .map(|(hour, source)| {
                stored_hours
                    .get(hour)
                    .filter(|file| file.stamp == stamp(&basis, source))
                    .map(|file| file.path.clone())
            })
            .collect();
        let Some(files) = files else {
            progress(RollupProgress::Stored);
            continue;
        };
        let rows = day_rows(engine, &files, schema).await?;
        let written = table.replace_hour(day, &wanted, &rows).await?;
        written_days.insert(day);
        totals.day_files += 1;
        totals.day_bytes += written.bytes;
        progress(RollupProgress::Stored);
    }
    progress(RollupProgress::Finished);
    table.tidy(retention).await?;
    Ok((written_days, table))
}

/// Stores `target` (one of [`BY_MODEL_ROLLUPS`]): each period of
/// `source` (stored with the schema `full`) whose file's stamp `target`
/// does not hold for it, merged over all but the columns of
/// [`BY_MODEL_OMITS`], with that stamp. Files replaced more than
/// `retention` ago are deleted. Returns the files and bytes written.
async fn store_by_model(
    engine: &QueryEngine,
    (source, full): (&RollupTable, &SchemaRef),
    (target, location, retention): (&'static str, &LakeLocation, chrono::Duration),
    progress: &mut dyn FnMut(RollupProgress<'_>),
) -> Result<(usize, u64), QueryError> {
    let schema: SchemaRef = Arc::new(Schema::new(
        full.fields()
            .iter()
            .filter(|field| !BY_MODEL_OMITS.contains(&field.name().as_str()))
            .cloned()
            .collect::<Vec<_>>(),
    ));
    let mut table = RollupTable::open_or_create(location, target, &schema).await?;
    let stored: BTreeMap<HourPartition, String> = table
        .files()
        .map(|(period, file)| (period, file.stamp))
        .collect();
    let due: Vec<(HourPartition, RollupFile)> = source
        .files()
        .filter(|(period, file)| stored.get(period) != Some(&file.stamp))
        .collect();
    progress(RollupProgress::Started {
        table: target,
        due: due.len(),
        periods: if target.starts_with("daily") {
            "days"
        } else {
            "hours"
        },
    });
    let (mut files, mut bytes) = (0, 0);
    for (period, file) in due {
        let source_file = std::slice::from_ref(&file.path);
        let session = session_over_files(engine, "period_rows", source_file, full).await?;
        let rows = stored_rows(&session, &merge_sql(&schema, "period_rows"), &schema).await?;
        let written = table.replace_hour(period, &file.stamp, &rows).await?;
        files += 1;
        bytes += written.bytes;
        progress(RollupProgress::Stored);
    }
    progress(RollupProgress::Finished);
    table.tidy(retention).await?;
    Ok((files, bytes))
}

/// A session reading no raw rows, with the stored rollup `files` (of
/// `schema`) as the table `name`.
async fn session_over_files(
    engine: &QueryEngine,
    name: &str,
    files: &[String],
    schema: &SchemaRef,
) -> Result<datafusion::prelude::SessionContext, QueryError> {
    let session = engine
        .session(Window {
            from: Some(0),
            to: Some(0),
        })
        .await?;
    let table =
        crate::stored_files::listing_table(&engine.lake_root(), files, schema.clone(), None)?;
    session.register_table(name, Arc::new(table))?;
    Ok(session)
}

/// The rows of one day: its stored hours' rows (`files`) with `hour` set
/// to the day's start, merged.
async fn day_rows(
    engine: &QueryEngine,
    files: &[String],
    schema: &SchemaRef,
) -> Result<RecordBatch, QueryError> {
    let session = session_over_files(engine, "day_hour_files", files, schema).await?;
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|field| match field.name().as_str() {
            "hour" => "date_trunc('day', hour) AS hour".to_owned(),
            name => name.to_owned(),
        })
        .collect();
    let day_hours = session
        .sql(&format!(
            "SELECT {} FROM day_hour_files",
            columns.join(", ")
        ))
        .await?
        .into_view();
    session.register_table("day_hours", day_hours)?;
    stored_rows(&session, &merge_sql(schema, "day_hours"), schema).await
}
