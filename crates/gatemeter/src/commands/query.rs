//! `gatemeter query "SQL"`: read-only SQL over the views.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use chrono::Utc;
use clap::{Args, ValueEnum};
use gatemeter_query::output::{csv, json_rows, parquet, table};
use gatemeter_query::{named, read_only, QueryEngine, Window};

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
    #[arg(required_unless_present_any = ["name", "list"], conflicts_with = "name")]
    pub sql: Option<String>,
    /// Run a named query of queries/ instead (see --list).
    #[arg(long, env = "GATEMETER_QUERY_NAME")]
    pub name: Option<String>,
    /// A parameter of the named query, repeatable: --param from=2026-11-01T00:00:00Z
    #[arg(long = "param", value_name = "KEY=VALUE", requires = "name")]
    pub params: Vec<String>,
    /// List the named queries with their parameters and units.
    #[arg(long)]
    pub list: bool,
    /// Print the SQL (for --name, with its parameters bound) instead of
    /// running it: ready for psql or any tool on the PostgreSQL endpoint.
    #[arg(long)]
    pub show_sql: bool,
    #[arg(long, env = "GATEMETER_QUERY_FORMAT", value_enum, default_value_t = QueryFormat::Table)]
    pub format: QueryFormat,
    /// With --format parquet: write here instead of standard output.
    #[arg(long, short = 'o', env = "GATEMETER_QUERY_OUTPUT")]
    pub output: Option<PathBuf>,
}

fn named_sql(name: &str, params: &[String]) -> Result<String, CliError> {
    let mut given = BTreeMap::new();
    for param in params {
        let (key, value) = param
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--param `{param}`: expected KEY=VALUE")))?;
        given.insert(key.trim().to_owned(), value.to_owned());
    }
    Ok(named::bind(name, &given, Utc::now())?)
}

fn list() -> Result<(), CliError> {
    for query in named::catalog()?.values() {
        let params: Vec<String> = query
            .params
            .iter()
            .map(|p| format!("{}={}", p.name, p.default))
            .collect();
        println!("{:<36} {:<7} {}", query.name, query.kind, query.unit);
        if !params.is_empty() {
            println!("{:<36} params: {}", "", params.join(" "));
        }
    }
    Ok(())
}

pub async fn run(settings: &Settings, args: &QueryArgs) -> Result<(), CliError> {
    if args.list {
        return list();
    }
    let sql = match (&args.sql, &args.name) {
        (_, Some(name)) => named_sql(name, &args.params)?,
        (Some(sql), None) => {
            // The same checks as the HTTP SQL endpoint, before planning.
            read_only::check_read_only(sql).map_err(|e| CliError::Usage(format!("query: {e}")))?;
            sql.clone()
        }
        (None, None) => {
            return Err(CliError::Usage(
                "query: give SQL, --name NAME or --list".into(),
            ))
        }
    };
    if args.show_sql {
        println!("{}", sql.trim_end());
        return Ok(());
    }
    let engine = QueryEngine::open(query_config(settings)).await?;
    let ctx = engine
        .session(Window::default())
        .await
        .map_err(CliError::from)?;
    let frame = ctx
        .sql_with_options(&sql, read_only::read_only_options())
        .await
        .map_err(|e| CliError::Usage(format!("query: {e}")))?;
    // Planned, so the statement is sound: what fails now is running it
    // (memory, a bad file), not how it was asked.
    let batches = frame
        .collect()
        .await
        .map_err(|e| CliError::Query(e.into()))?;
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
        None => std::io::stdout()
            .write_all(&bytes)
            .map_err(|e| CliError::io("stdout", e)),
    }
}
