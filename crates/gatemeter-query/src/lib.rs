//! The gatemeter query layer: Apache DataFusion over the committed lake,
//! the views of docs/kpis.md (`attempts`, `requests`), the price book, every KPI
//! of the docs/kpis.md table, and the named queries of `queries/`.

pub mod access;
mod attempt_cost;
pub mod audit;
pub mod bounded_aggregates;
pub mod bounded_functions;
mod cached_scan;
pub mod column_cache;
mod condensed;
pub mod engine;
mod error;
pub mod executor;
mod extreme_by;
pub mod kpi;
mod lake_files;
mod live;
mod memory_lru;
pub mod named;
pub mod output;
pub mod price_book;
pub mod read_only;
mod rollup_view;
mod rollup_writer;
pub mod scorecard;
pub mod shared_memory;
pub mod sketch;
pub mod sketch_functions;
mod stored_files;
pub mod stored_rollups;
pub mod team_scope;
mod window;
mod yielding;

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::datasource::MemTable;

pub use engine::{QueryConfig, QueryEngine, Window};
pub use error::QueryError;
pub use kpi::{KpiQuery, KpiSettings, KpiSource, DIMENSIONS, KPI_NAMES};
pub use price_book::PriceBook;
pub use stored_rollups::{RollupGrain, RollupReads};
pub use team_scope::TeamScope;

/// Seven days in microseconds: the cost-variance baseline period.
const BASELINE_MICROS: i64 = 7 * 24 * 3600 * 1_000_000;

/// What stored rollups `query` may read: none for exact percentiles or a
/// bucket shorter than an hour, whole days for no bucket or buckets of
/// whole days (they start at midnight UTC), hours otherwise.
pub fn rollup_grain(query: &KpiQuery) -> RollupGrain {
    match query.bucket_minutes() {
        _ if query.exact_percentiles => RollupGrain::RawOnly,
        Some(minutes) if minutes < 60 => RollupGrain::RawOnly,
        Some(minutes) if minutes % (24 * 60) != 0 => RollupGrain::Hours,
        _ => RollupGrain::Days,
    }
}

/// What stored rollups `query` reads: of [`rollup_grain`], and the
/// narrower ones by model (docs/lake.md, "Rollups") unless it groups or
/// filters by a column they leave out.
pub fn rollup_reads(query: &KpiQuery) -> RollupReads {
    let omitted = |dimension: &String| stored_rollups::BY_MODEL_OMITS.contains(&dimension.as_str());
    RollupReads {
        grain: rollup_grain(query),
        by_model: !query.group_by.iter().any(omitted)
            && !query
                .filters
                .iter()
                .any(|(dimension, _)| omitted(dimension)),
    }
}

/// Computes the KPI rows for `window`, grouped as `query` says.
pub async fn kpis(
    engine: &QueryEngine,
    window: Window,
    query: &KpiQuery,
    settings: &KpiSettings,
) -> Result<Vec<RecordBatch>, QueryError> {
    Ok(kpis_frame(engine, window, query, settings)
        .await?
        .collect()
        .await?)
}

/// The KPI rows as a planned DataFrame, not yet run: for callers that need
/// the schema even when there are no rows, or that register it as a table.
pub async fn kpis_frame(
    engine: &QueryEngine,
    window: Window,
    query: &KpiQuery,
    settings: &KpiSettings,
) -> Result<DataFrame, QueryError> {
    if let (Some(from), Some(to)) = (window.from, window.to) {
        if from >= to {
            return Err(QueryError::BadWindow {
                from: window::rfc3339(from),
                to: window::rfc3339(to),
            });
        }
    }
    query.validate()?;
    let mut query = query.clone();
    query.window_minutes = match (window.from, window.to) {
        (Some(from), Some(to)) => Some(((to - from) / 60_000_000).max(1) as u64),
        _ => None,
    };
    let (ctx, rolled) = engine
        .rollup_session(window, &query.scope, rollup_reads(&query))
        .await?;
    let source = if rolled.is_empty() {
        KpiSource::Raw
    } else if rolled.rollups_only {
        KpiSource::Rollups
    } else {
        KpiSource::RawAndRollups
    };
    // Cost variance compares the window with the trailing seven days before
    // it, scaled to the window's length; it needs both ends and no buckets.
    let baseline = match (window.from, window.to, &query.bucket) {
        (Some(from), Some(to), None) if query.wants("cost_variance_pct") => {
            let (before, before_rolled) = engine
                .rollup_session(
                    Window {
                        from: Some(from - BASELINE_MICROS),
                        to: Some(from),
                    },
                    &query.scope,
                    RollupReads {
                        grain: if query.exact_percentiles {
                            RollupGrain::RawOnly
                        } else {
                            RollupGrain::Days
                        },
                        ..rollup_reads(&query)
                    },
                )
                .await?;
            let keys = query.group_by.clone();
            let key_list = keys.iter().map(|k| format!("{k}, ")).collect::<String>();
            let group = if keys.is_empty() {
                String::new()
            } else {
                format!(" GROUP BY {}", keys.join(", "))
            };
            let scale = (to - from) as f64 / BASELINE_MICROS as f64;
            let filter = query.filter_clause();
            // The raw part only where raw files are left (as the statement).
            let raw = if before_rolled.rollups_only {
                String::new()
            } else {
                format!(
                    "SELECT {key_list}CAST(sum(cost_usd) AS DECIMAL(38, 9)) AS spend FROM attempts{filter}{group} UNION ALL "
                )
            };
            let batches = before
                .sql(&format!(
                    "SELECT {key_list}CAST(sum(spend) AS DOUBLE) * {scale:?} AS baseline_spend FROM (\
                     {raw}SELECT {key_list}CAST(sum(spend_usd) AS DECIMAL(38, 9)) AS spend FROM {stored}{filter}{group}){group}",
                    stored = stored_rollups::stored_name("hourly_usage"),
                ))
                .await?
                .collect()
                .await?;
            let schema = batches
                .first()
                .map(|b| b.schema())
                .unwrap_or_else(|| Arc::new(datafusion::arrow::datatypes::Schema::empty()));
            if !batches.is_empty() {
                ctx.register_table(
                    "baseline",
                    Arc::new(MemTable::try_new(schema, vec![batches])?),
                )?;
                Some("baseline")
            } else {
                None
            }
        }
        _ => None,
    };
    let sql = query.sql(settings, baseline, source)?;
    Ok(ctx.sql(&sql).await?)
}
