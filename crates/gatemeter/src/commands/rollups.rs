//! The rollup step of `gatemeter compact` (docs/lake.md, "Rollups"): for
//! each settled hour that compaction just rewrote, or that has no rollup
//! yet, the hourly views (`hourly_usage`, `hourly_requests`) are computed
//! over that hour alone and stored as the hour's file of their rollup
//! table. A late event or duplicate makes its hour compact again, and so
//! rewrites the hour's rollups; a changed price book or view definition
//! rewrites every hour.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use gatemeter_lake::paths::HourPartition;
use gatemeter_lake::{Lake, RollupTable};
use gatemeter_query::{QueryEngine, Window};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::error::CliError;
use crate::settings::Settings;

/// The rollups compaction keeps, each the view of the same name.
pub const ROLLUP_VIEWS: [&str; 2] = ["hourly_usage", "hourly_requests"];

/// What the rollup step did.
#[derive(Debug, Default)]
pub struct RollupTotals {
    pub hours: usize,
    pub files: usize,
    pub bytes: u64,
    pub seconds: f64,
}

/// Strings as plain UTF-8, the type every outside reader of a Delta table
/// knows (DataFusion hands them over as string views).
fn plain_schema(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|field| match field.data_type() {
                DataType::Utf8View | DataType::LargeUtf8 => {
                    Field::new(field.name(), DataType::Utf8, field.is_nullable())
                }
                _ => field.as_ref().clone(),
            })
            .collect::<Vec<_>>(),
    ))
}

fn to_plain(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, CliError> {
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| cast(column, field.data_type()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CliError::Usage(format!("rollups: {e}")))?;
    RecordBatch::try_new(schema.clone(), columns)
        .map_err(|e| CliError::Usage(format!("rollups: {e}")))
}

/// What a rollup's rows follow from: the view's definition and the price
/// book's contents, as the first 16 hex digits of their SHA-256.
fn basis(settings: &Settings, view: &str) -> Result<String, CliError> {
    let definition = gatemeter_query::engine::VIEWS
        .iter()
        .find(|(name, _)| *name == view)
        .map_or("", |(_, sql)| sql);
    let prices = match &settings.prices {
        Some(path) => std::fs::read(path).map_err(|e| CliError::io(path.display(), e))?,
        None => Vec::new(),
    };
    let mut hasher = Sha256::new();
    hasher.update(definition.as_bytes());
    hasher.update([0]);
    hasher.update(&prices);
    Ok(hex::encode(&hasher.finalize()[..8]))
}

async fn view_rows(
    engine: &QueryEngine,
    view: &str,
    window: Window,
) -> Result<(SchemaRef, Vec<RecordBatch>), CliError> {
    let frame = engine
        .session(window)
        .await?
        .sql(&format!("SELECT * FROM {view}"))
        .await
        .map_err(gatemeter_query::QueryError::from)?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame
        .collect()
        .await
        .map_err(gatemeter_query::QueryError::from)?;
    Ok((schema, batches))
}

/// Stores the rollups of the settled hours in `compacted`, and of every
/// settled hour of `lake` whose rollup is missing or was computed with
/// another view definition or price book, with a progress bar over them.
pub async fn write_rollups(
    settings: &Settings,
    lake: &Lake,
    compacted: &BTreeSet<HourPartition>,
    settled_before: i64,
    retention: chrono::Duration,
) -> Result<RollupTotals, CliError> {
    let started = Instant::now();
    let settled: BTreeSet<HourPartition> = lake
        .data_files()
        .filter_map(|file| file.min_request_start.map(HourPartition::of))
        .filter(|hour| hour.end_micros() <= settled_before)
        .collect();
    let engine = QueryEngine::open(crate::commands::kpis::query_config(settings)).await?;
    let location = settings.lake_location()?;
    let mut totals = RollupTotals::default();
    let mut hours_written = BTreeSet::new();
    for view in ROLLUP_VIEWS {
        let (schema, _) = view_rows(
            &engine,
            view,
            Window {
                from: Some(0),
                to: Some(0),
            },
        )
        .await?;
        let schema = plain_schema(&schema);
        let mut table = RollupTable::open_or_create(&location, view, &schema).await?;
        let basis = basis(settings, view)?;
        let stored: BTreeMap<HourPartition, String> = table
            .hours()
            .map(|(hour, stored_basis)| (hour, stored_basis.to_owned()))
            .collect();
        // Hours rewritten by compaction, hours without a rollup, and hours
        // computed with another definition or price book.
        let due: Vec<HourPartition> = settled
            .iter()
            .filter(|hour| compacted.contains(hour) || stored.get(hour).is_none_or(|b| *b != basis))
            .copied()
            .collect();
        let progress = ProgressBar::new(due.len() as u64);
        progress.set_style(
            ProgressStyle::with_template("rollup {msg} {bar:40} {pos}/{len} hours")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        progress.set_message(view);
        for hour in due {
            let window = Window {
                from: Some(hour.end_micros() - 3_600_000_000),
                to: Some(hour.end_micros()),
            };
            let (_, batches) = view_rows(&engine, view, window).await?;
            let plain = batches
                .iter()
                .map(|batch| to_plain(batch, &schema))
                .collect::<Result<Vec<_>, _>>()?;
            let rows = concat_batches(&schema, &plain)
                .map_err(|e| CliError::Usage(format!("rollups: {e}")))?;
            let written = table.replace_hour(hour, &basis, &rows).await?;
            totals.files += 1;
            totals.bytes += written.bytes;
            hours_written.insert(hour);
            progress.inc(1);
        }
        progress.finish_and_clear();
        table.tidy(retention).await?;
    }
    totals.hours = hours_written.len();
    totals.seconds = started.elapsed().as_secs_f64();
    Ok(totals)
}
