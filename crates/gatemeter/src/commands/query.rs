//! `gatemeter query "SQL"`: read-only SQL over the views.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use datafusion::execution::context::SQLOptions;
use gatemeter_query::output::{csv, json_rows, parquet, table};
use gatemeter_query::{QueryEngine, Window};

use crate::commands::kpis::query_config;
use crate::error::CliError;
use crate::settings::Settings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum QueryFormat {
    Table,
    Json,
    Csv,
    Parquet,
}

#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// A SELECT over `attempts`, `requests`, `price_book` or `attempts_raw`.
    pub sql: String,
    #[arg(long, env = "GATEMETER_QUERY_FORMAT", value_enum, default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
    /// With --format parquet: write here instead of standard output.
    #[arg(long, short = 'o', env = "GATEMETER_QUERY_OUTPUT")]
    pub output: Option<PathBuf>,
}

pub async fn run(settings: &Settings, args: &QueryArgs) -> Result<(), CliError> {
    let engine = QueryEngine::open(query_config(settings)).await?;
    let ctx = engine.session(Window::default()).await.map_err(CliError::from)?;
    // Read-only: DDL, DML and SET are refused before planning.
    let options = SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false);
    let frame = ctx
        .sql_with_options(&args.sql, options)
        .await
        .map_err(|e| CliError::Usage(format!("query: {e}")))?;
    let batches = frame.collect().await.map_err(|e| CliError::Usage(format!("query: {e}")))?;
    let bytes = match args.format {
        QueryFormat::Table => format!("{}\n", table(&batches)?).into_bytes(),
        QueryFormat::Json => {
            let mut text = serde_json::to_string_pretty(&json_rows(&batches)?).unwrap_or_default();
            text.push('\n');
            text.into_bytes()
        }
        QueryFormat::Csv => csv(&batches)?.into_bytes(),
        QueryFormat::Parquet => parquet(&batches)?,
    };
    match &args.output {
        Some(path) => std::fs::write(path, bytes).map_err(|e| CliError::io(path.display(), e)),
        None => std::io::stdout().write_all(&bytes).map_err(|e| CliError::io("stdout", e)),
    }
}
