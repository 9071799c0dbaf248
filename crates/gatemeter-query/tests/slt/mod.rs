//! A sqllogictest runner over gatemeter's DataFusion session, the way
//! DataFusion tests itself. Each `tests/slt/*.slt` file starts with header
//! comments that say what to query:
//!
//! ```text
//! # gatemeter: fixture edge.jsonl            (JSONL under tests/slt/fixtures, imported into a fresh lake)
//! # gatemeter: generate worked_example       (or a generated fixture, see `generate`)
//! # gatemeter: prices prices.csv             (the price book, under tests/slt/fixtures)
//! # gatemeter: window 2026-11-01T10:00:00Z 2026-11-01T11:00:00Z   (or `all`)
//! # gatemeter: kpis NAME [group_by=a,b] [bucket=1h] [window=FROM,TO|all]
//! #                 [slo_target=X] [tpm_limit=X] [tpm.DIM=value:limit,…] [allowed_providers=a,b]
//! # gatemeter: report NAME QUERY [param=value …]   (a named query of queries/, its parameters bound)
//! ```
//!
//! The statements then run in the window's session, where the views
//! `attempts` and `requests` exist, every `kpis` line has registered the
//! KPI rows of `gatemeter kpis` as a table called NAME and every `report`
//! line the rows of the named query QUERY as a table called NAME. Floats print rounded
//! to 9 decimals; decimals print exactly; NULL prints as `NULL`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::DateTime;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::datasource::MemTable;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;
use gatemeter_ingest::{import_file, FlushPolicy, IngestMetrics};
use gatemeter_lake::Lake;
use gatemeter_query::{kpis_frame, named, KpiQuery, KpiSettings, QueryConfig, QueryEngine, Window};
use sqllogictest::{strict_column_validator, AsyncDB, DBOutput, DefaultColumnType};

pub fn slt_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/slt")
}

/// One `kpis` header line: a table of KPI rows to register.
struct KpiTable {
    name: String,
    query: KpiQuery,
    window: Option<Window>,
    settings: KpiSettings,
}

/// One `report` header line: a named query's rows to register.
struct ReportTable {
    name: String,
    query: String,
    params: BTreeMap<String, String>,
}

#[derive(Default)]
struct Header {
    fixture: Option<PathBuf>,
    generated: Option<String>,
    prices: Option<PathBuf>,
    window: Window,
    kpi_tables: Vec<KpiTable>,
    report_tables: Vec<ReportTable>,
}

fn parse_report_table(words: &[&str]) -> Result<ReportTable, String> {
    let [name, query, params @ ..] = words else {
        return Err("report needs a table name and a named query".into());
    };
    let params = params
        .iter()
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("report parameter `{pair}` is not key=value"))
        })
        .collect::<Result<_, _>>()?;
    Ok(ReportTable {
        name: (*name).to_owned(),
        query: (*query).to_owned(),
        params,
    })
}

fn parse_time(text: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| format!("bad time `{text}`: {e}"))
}

fn parse_window(from: &str, to: Option<&str>) -> Result<Window, String> {
    if from == "all" {
        return Ok(Window::default());
    }
    let to = to.ok_or_else(|| format!("window `{from}` needs an end"))?;
    Ok(Window {
        from: Some(parse_time(from)?),
        to: Some(parse_time(to)?),
    })
}

fn parse_number(key: &str, value: &str) -> Result<f64, String> {
    value
        .parse()
        .map_err(|_| format!("{key}={value}: not a number"))
}

fn parse_kpi_table(words: &[&str]) -> Result<KpiTable, String> {
    let (name, options) = words.split_first().ok_or("kpis needs a table name")?;
    let mut table = KpiTable {
        name: (*name).to_owned(),
        query: KpiQuery::default(),
        window: None,
        settings: KpiSettings::default(),
    };
    for option in options {
        let (key, value) = option
            .split_once('=')
            .ok_or_else(|| format!("kpis option `{option}` is not key=value"))?;
        match key {
            "group_by" => table.query.group_by = value.split(',').map(str::to_owned).collect(),
            "bucket" => table.query.bucket = Some(value.to_owned()),
            "window" => {
                let mut ends = value.splitn(2, ',');
                table.window = Some(parse_window(ends.next().unwrap_or_default(), ends.next())?);
            }
            "slo_target" => table.settings.slo_target = parse_number(key, value)?,
            "tpm_limit" => table.settings.tpm_limit = Some(parse_number(key, value)?),
            "allowed_providers" => {
                table.settings.allowed_providers =
                    Some(value.split(',').map(str::to_owned).collect())
            }
            _ if key.starts_with("tpm.") => {
                let dimension = key.trim_start_matches("tpm.").to_owned();
                let mut limits = BTreeMap::new();
                for pair in value.split(',') {
                    let (scope, limit) = pair
                        .split_once(':')
                        .ok_or_else(|| format!("{key}: `{pair}` is not value:limit"))?;
                    limits.insert(scope.to_owned(), parse_number(key, limit)?);
                }
                table.settings.scoped_tpm_limits.insert(dimension, limits);
            }
            _ => return Err(format!("unknown kpis option `{key}`")),
        }
    }
    Ok(table)
}

fn parse_header(text: &str) -> Result<Header, String> {
    let fixtures = slt_dir().join("fixtures");
    let mut header = Header::default();
    for line in text.lines() {
        let Some(directive) = line.strip_prefix("# gatemeter:") else {
            continue;
        };
        let words: Vec<&str> = directive.split_whitespace().collect();
        match words.as_slice() {
            ["fixture", file] => header.fixture = Some(fixtures.join(file)),
            ["generate", name] => header.generated = Some((*name).to_owned()),
            ["prices", file] => header.prices = Some(fixtures.join(file)),
            ["window", from, rest @ ..] => {
                header.window = parse_window(from, rest.first().copied())?
            }
            ["kpis", rest @ ..] => header.kpi_tables.push(parse_kpi_table(rest)?),
            ["report", rest @ ..] => header.report_tables.push(parse_report_table(rest)?),
            _ => return Err(format!("unknown header line `{line}`")),
        }
    }
    Ok(header)
}

/// Generated fixtures: too regular to be worth a file.
fn generate(name: &str) -> Result<String, String> {
    match name {
        // The seeds' worked example: 1,000 requests of 1,000 tokens (600 in,
        // 400 out); every fifth needs one retry of the same size, billed.
        "worked_example" => {
            let mut text = String::new();
            for i in 0..1000 {
                let start = format!("2026-11-01T10:{:02}:{:02}Z", i / 60 % 60, i % 60);
                let attempt = |index: u32, kind: &str, is_final: bool, outcome: &str| {
                    format!(
                        r#"{{"schema_version":1,"attempt_id":"a{i}-{index}","request_id":"r{i}","attempt_index":{index},"attempt_kind":"{kind}","is_final":{is_final},"request_start":"{start}","attempt_start":"{start}","attempt_end":"{start}","requested_model":"m","served_model":"m","provider":"acme","api_key_id":"k","environment":"prod","outcome":"{outcome}","input_tokens":600,"output_tokens":400}}"#
                    ) + "\n"
                };
                if i % 5 == 0 {
                    text.push_str(&attempt(0, "initial", false, "error"));
                    text.push_str(&attempt(1, "retry", true, "success"));
                } else {
                    text.push_str(&attempt(0, "initial", true, "success"));
                }
            }
            Ok(text)
        }
        _ => Err(format!("no generated fixture called `{name}`")),
    }
}

/// The database under test: one DataFusion session.
pub struct Session {
    ctx: SessionContext,
}

fn column_type(data_type: &DataType) -> DefaultColumnType {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
            DefaultColumnType::Integer
        }
        DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
            DefaultColumnType::Integer
        }
        DataType::Float32
        | DataType::Float64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => DefaultColumnType::FloatingPoint,
        _ => DefaultColumnType::Text,
    }
}

/// Floats rounded to 9 decimals with trailing zeros dropped, so that
/// 0.1 + 0.2 prints as 0.3 and a ratio like 1/7 as 0.142857143.
fn format_float(value: f64) -> String {
    if value.is_nan() {
        return "NaN".to_owned();
    }
    let text = format!("{value:.9}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

fn format_column(array: &dyn Array) -> Result<Vec<String>, DataFusionError> {
    if let DataType::Float64 = array.data_type() {
        let values = array.as_primitive::<Float64Type>();
        return Ok((0..values.len())
            .map(|i| {
                if values.is_null(i) {
                    "NULL".to_owned()
                } else {
                    format_float(values.value(i))
                }
            })
            .collect());
    }
    let options = FormatOptions::default().with_null("NULL");
    let formatter = ArrayFormatter::try_new(array, &options)?;
    Ok((0..array.len())
        .map(|i| {
            let text = formatter.value(i).to_string();
            if text.is_empty() {
                "(empty)".to_owned()
            } else {
                text
            }
        })
        .collect())
}

#[async_trait]
impl AsyncDB for Session {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        let frame = self.ctx.sql(sql).await?;
        let types: Vec<DefaultColumnType> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let batches = frame.collect().await?;
        if types.is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let mut rows = Vec::new();
        for batch in &batches {
            let columns = batch
                .columns()
                .iter()
                .map(|c| format_column(c.as_ref()))
                .collect::<Result<Vec<_>, _>>()?;
            for row in 0..batch.num_rows() {
                rows.push(columns.iter().map(|column| column[row].clone()).collect());
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "gatemeter"
    }
}

/// Registers the rows of `frame` as table `name`, collected into one
/// partition so that the frame's own order holds.
async fn register_rows(
    ctx: &SessionContext,
    name: &str,
    frame: datafusion::dataframe::DataFrame,
) -> Result<(), DataFusionError> {
    let schema = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await?;
    ctx.register_table(name, Arc::new(MemTable::try_new(schema, vec![batches])?))?;
    Ok(())
}

/// Builds the lake and session a file's header asks for, then runs the file
/// on an engine keeping `column_cache_bytes` of decoded columns.
pub async fn run_file(path: &Path, column_cache_bytes: usize) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let header = parse_header(&text)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let jsonl = match (&header.fixture, &header.generated) {
        (Some(file), None) => file.clone(),
        (None, Some(name)) => {
            let file = dir.path().join(format!("{name}.jsonl"));
            std::fs::write(&file, generate(name)?).map_err(|e| e.to_string())?;
            file
        }
        _ => return Err("the header needs exactly one of `fixture` and `generate`".into()),
    };
    let lake_dir = dir.path().join("lake");
    let (mut lake, _) = Lake::open_local(&lake_dir, None)
        .await
        .map_err(|e| e.to_string())?;
    let metrics =
        IngestMetrics::register(&prometheus::Registry::new()).map_err(|e| e.to_string())?;
    import_file(
        &mut lake,
        &jsonl,
        FlushPolicy::default(),
        &test_privacy(),
        &metrics,
        |_| {},
    )
    .await
    .map_err(|e| e.to_string())?;
    let engine = QueryEngine::open(QueryConfig {
        data_dir: lake_dir,
        prices: header.prices.clone(),
        column_cache_bytes,
        ..QueryConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let ctx = engine
        .session(header.window)
        .await
        .map_err(|e| e.to_string())?;
    for table in &header.kpi_tables {
        let window = table.window.unwrap_or(header.window);
        let frame = kpis_frame(&engine, window, &table.query, &table.settings)
            .await
            .map_err(|e| format!("kpis {}: {e}", table.name))?;
        register_rows(&ctx, &table.name, frame)
            .await
            .map_err(|e| format!("kpis {}: {e}", table.name))?;
    }
    for table in &header.report_tables {
        let sql = named::bind(&table.query, &table.params, chrono::Utc::now())
            .map_err(|e| format!("report {}: {e}", table.name))?;
        let frame = ctx
            .sql(&sql)
            .await
            .map_err(|e| format!("report {}: {e}", table.name))?;
        register_rows(&ctx, &table.name, frame)
            .await
            .map_err(|e| format!("report {}: {e}", table.name))?;
    }
    let mut runner = sqllogictest::Runner::new(move || {
        let ctx = ctx.clone();
        async move { Ok::<_, DataFusionError>(Session { ctx }) }
    });
    runner.with_column_validator(strict_column_validator);
    runner
        .run_file_async(path)
        .await
        .map_err(|e| e.display(true).to_string())?;
    let closed = header.window.from.is_some() && header.window.to.is_some();
    match engine.column_cache_stats() {
        Some(stats) if closed && stats.hits == 0 => Err(format!(
            "a closed window with a column cache read nothing from it: {stats:?}"
        )),
        _ => Ok(()),
    }
}

/// The default policy (user ids keyed-hashed, tags kept) with a fixed key.
fn test_privacy() -> std::sync::Arc<gatemeter_schema::PrivacyPolicy> {
    std::sync::Arc::new(gatemeter_schema::PrivacyPolicy::new(
        b"gatemeter test privacy key".to_vec(),
        gatemeter_schema::FieldHandling::KeyedHash,
        gatemeter_schema::FieldHandling::Keep,
    ))
}
