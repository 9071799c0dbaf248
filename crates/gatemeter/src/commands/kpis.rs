//! `gatemeter kpis`: every KPI of docs/kpis.md over a window, grouped and bucketed.

use chrono::{DateTime, Utc};
use clap::{Args, ValueEnum};
use gatemeter_query::output::{csv, json_rows, table};
use gatemeter_query::{kpis, KpiQuery, KpiSettings, QueryConfig, QueryEngine, Window};

use crate::error::CliError;
use crate::settings::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Clone, Args)]
pub struct KpisArgs {
    /// Window start (RFC 3339, inclusive) [default: all data].
    #[arg(long, env = "GATEMETER_KPIS_FROM")]
    pub from: Option<DateTime<Utc>>,
    /// Window end (RFC 3339, exclusive) [default: all data].
    #[arg(long, env = "GATEMETER_KPIS_TO")]
    pub to: Option<DateTime<Utc>>,
    /// Group by these dimensions (comma-separated): team, api_key_id,
    /// environment, app, org_id, requested_model, served_model, provider,
    /// key_type, attempt_kind, error_class.
    #[arg(long, env = "GATEMETER_KPIS_GROUP_BY", value_delimiter = ',')]
    pub group_by: Vec<String>,
    /// Only this dimension value, repeatable: --filter team=search
    #[arg(long = "filter", value_name = "DIMENSION=VALUE")]
    pub filters: Vec<String>,
    /// Time bucket: 1m, 5m, 15m, 1h, 6h or 1d.
    #[arg(long, env = "GATEMETER_KPIS_BUCKET")]
    pub bucket: Option<String>,
    #[arg(long, env = "GATEMETER_KPIS_FORMAT", value_enum, default_value_t = TableFormat::Table)]
    pub format: TableFormat,
    /// Compute every KPI from the raw attempts, percentiles exact, instead
    /// of reading the stored hourly rollups where they hold (their
    /// percentiles are within 1%; counts and money are exact either way).
    #[arg(long, env = "GATEMETER_KPIS_EXACT_PERCENTILES")]
    pub exact_percentiles: bool,
    /// Only these KPI columns (comma-separated, e.g. spend_usd,tokens)
    /// besides the group columns [default: all]; what none of them needs
    /// is not read.
    #[arg(long, env = "GATEMETER_KPIS_KPIS", value_delimiter = ',')]
    pub kpis: Vec<String>,
}

pub fn query_config(settings: &Settings) -> QueryConfig {
    QueryConfig {
        data_dir: settings.data_dir.clone(),
        prices: settings.prices.clone(),
        ..QueryConfig::default()
    }
}

/// The items of a comma-separated flag, trimmed, without empty ones.
fn non_empty(items: &[String]) -> Vec<String> {
    items
        .iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

pub async fn run(settings: &Settings, args: &KpisArgs) -> Result<(), CliError> {
    let kpi_settings = KpiSettings::from(settings);
    let engine = QueryEngine::open(query_config(settings)).await?;
    let window = Window {
        from: args.from.map(|t| t.timestamp_micros()),
        to: args.to.map(|t| t.timestamp_micros()),
    };
    let query = KpiQuery {
        group_by: non_empty(&args.group_by),
        bucket: args.bucket.clone(),
        window_minutes: None,
        filters: args
            .filters
            .iter()
            .map(|f| {
                f.split_once('=')
                    .map(|(d, v)| (d.trim().to_owned(), v.to_owned()))
                    .ok_or_else(|| {
                        CliError::Usage(format!(
                            "--filter `{f}`: expected DIMENSION=VALUE, e.g. team=search"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?,
        scope: gatemeter_query::TeamScope::all(),
        exact_percentiles: args.exact_percentiles,
        kpis: non_empty(&args.kpis),
    };
    let batches = kpis(&engine, window, &query, &kpi_settings).await?;
    let text = match args.format {
        TableFormat::Table => table(&batches)?,
        TableFormat::Json => {
            serde_json::to_string_pretty(&json_rows(&batches)?).unwrap_or_default()
        }
        TableFormat::Csv => csv(&batches)?,
    };
    println!("{text}");
    Ok(())
}
