//! Times the KPI requests of the dashboards and one alert evaluation on a
//! month of stored hourly rollups standing for far more traffic than the
//! machine could store raw (BENCHMARKS.md, "Rollups at a billion attempts
//! by simulation").
//!
//! usage: rollup_bench SOURCE_LAKE TARGET_DIR PRICES HOURS COPIES RUNS
//!        rollup_bench --existing LAKE PRICES END RUNS
//!
//! SOURCE_LAKE holds the stored rollups of one measured hour (made by
//! `gatemeter compact` from real traffic). TARGET_DIR becomes a lake of
//! HOURS hours (from 2026-10-23T00:00:00Z) holding one raw attempt an
//! hour, whose stored rollups are each that measured hour's rows, COPIES
//! times over (each copy with its own API keys, so its rows stay apart):
//! HOURS × COPIES × the measured hour's attempts, as rollup rows only. The
//! stamps are those of the target's raw files and price book, so the
//! engine reads every hour from the rollups, as it would for a lake whose
//! raw files held all that traffic. The daily rollups are then merged from
//! those hours as `compact` merges them, and read where whole days are
//! asked for.
//!
//! With `--existing`, nothing is built: the same requests are timed over
//! LAKE (a real one, compacted), for the month that ends at END (RFC 3339).
//!
//! Each request runs once to warm up, then RUNS times; prints one JSON
//! line per request (median and every run in milliseconds) and a Markdown
//! table. With `ROLLUP_BENCH_ONLY=TEXT` only the requests whose name holds
//! TEXT run (to profile one), each followed by the column cache's hits
//! and misses and the condensed rollup files'; `ROLLUP_BENCH_CACHE_MB` sets the cache (256 MB, as
//! `serve`'s default); `ROLLUP_BENCH_PHASES=1` also prints where each KPI
//! request's time goes (session and logical plan, optimizing, physical
//! planning, running; medians of RUNS more runs).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, AsArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::TimestampMicrosecondType;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use gatemeter_alerts::config::AlertsConfig;
use gatemeter_alerts::evaluator::Evaluator;
use gatemeter_lake::{Lake, LakeLocation, RollupTable};
use gatemeter_query::stored_rollups::{
    basis, hour_sources, stamp, store_rollups, ROLLUP_VIEWS, SLICE_ROWS,
};
use gatemeter_query::{kpis, KpiQuery, KpiSettings, QueryConfig, QueryEngine, TeamScope, Window};
use serde_json::json;

const START: &str = "2026-10-23T00:00:00Z";
const USAGE: &str = "usage: rollup_bench SOURCE_LAKE TARGET_DIR PRICES HOURS COPIES RUNS\n       rollup_bench --existing LAKE PRICES END RUNS";
const HOUR: i64 = 3_600_000_000;

fn micros(text: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_micros())
        .map_err(|e| format!("{text}: {e}"))
}

/// The one stored hour of `view` in `lake`: its rows and its hour.
async fn measured_hour(lake: &Path, view: &'static str) -> Result<(RecordBatch, i64), String> {
    let location = LakeLocation::local(lake).map_err(|e| e.to_string())?;
    let table = RollupTable::open_existing(&location, view)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{}: no rollup {view}", lake.display()))?;
    let (hour, file) = table
        .files()
        .next()
        .ok_or_else(|| format!("{}: rollup {view} holds no hour", lake.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(lake.join(&file.path)).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?
    .build()
    .map_err(|e| e.to_string())?;
    let batches: Vec<RecordBatch> = reader
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let schema = batches.first().ok_or("an empty rollup file")?.schema();
    let rows = concat_batches(&schema, &batches).map_err(|e| e.to_string())?;
    Ok((rows, hour.end_micros() - HOUR))
}

/// `rows` moved by `shift` µs (the hour and the time bounds), with API
/// keys suffixed by `copy` (the first copy keeps its keys).
fn moved(rows: &RecordBatch, shift: i64, copy: usize) -> Result<RecordBatch, String> {
    let schema = rows.schema();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .zip(rows.columns())
        .map(|(field, column)| -> ArrayRef {
            match field.name().as_str() {
                "hour" | "first_request_start" | "last_attempt_end" => {
                    let times = column.as_primitive::<TimestampMicrosecondType>();
                    let shifted: TimestampMicrosecondArray =
                        times.iter().map(|t| t.map(|t| t + shift)).collect();
                    Arc::new(shifted.with_timezone("UTC"))
                }
                "api_key_id" if copy > 0 => {
                    let keys = column.as_string::<i32>();
                    let renamed: StringArray = keys
                        .iter()
                        .map(|k| k.map(|k| format!("{k}-{copy}")))
                        .collect();
                    Arc::new(renamed)
                }
                _ => column.clone(),
            }
        })
        .collect();
    RecordBatch::try_new(schema, columns).map_err(|e| e.to_string())
}

/// One successful attempt in each of `hours` hours: the raw files the
/// rollups stand in for.
async fn raw_lake(target: &Path, hours: i64) -> Result<(), String> {
    let start = micros(START)?;
    let jsonl = target.with_extension("jsonl");
    let mut lines = String::new();
    for hour in 0..hours {
        let at = DateTime::<Utc>::from_timestamp_micros(start + hour * HOUR + 60_000_000)
            .ok_or("time")?
            .to_rfc3339();
        lines.push_str(&json!({
            "schema_version": 1, "attempt_id": format!("sim-{hour}"), "request_id": format!("sim-{hour}"),
            "attempt_index": 0, "attempt_kind": "initial", "is_final": true,
            "request_start": at, "attempt_start": at, "attempt_end": at,
            "requested_model": "gpt-4o", "provider": "openai", "team": "search",
            "api_key_id": "sim", "environment": "prod", "outcome": "success",
        }).to_string());
        lines.push('\n');
    }
    std::fs::write(&jsonl, lines).map_err(|e| e.to_string())?;
    let (mut lake, _) = Lake::open_local(target, None)
        .await
        .map_err(|e| e.to_string())?;
    let metrics = gatemeter_ingest::IngestMetrics::register(&prometheus::Registry::new())
        .map_err(|e| e.to_string())?;
    let privacy = Arc::new(gatemeter_schema::PrivacyPolicy::new(
        b"rollup bench".to_vec(),
        gatemeter_schema::FieldHandling::KeyedHash,
        gatemeter_schema::FieldHandling::Keep,
    ));
    gatemeter_ingest::import_file(
        &mut lake,
        &jsonl,
        gatemeter_ingest::FlushPolicy::default(),
        &privacy,
        &metrics,
        |_| {},
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(())
}

/// Prints one request's JSON line and returns its Markdown table row.
fn report(name: &str, days: Option<i64>, rows: Option<usize>, timings: &[f64]) -> String {
    let median = median(timings.to_vec());
    println!(
        "{}",
        json!({"name": name, "days": days, "rows": rows, "median_ms": median, "runs_ms": timings})
    );
    let runs: Vec<String> = timings.iter().map(|t| format!("{t:.0}")).collect();
    let or_dash = |value: Option<String>| value.unwrap_or_else(|| "—".into());
    format!(
        "| {name} | {} | {} | {median:.1} | {} |\n",
        or_dash(days.map(|d| format!("{d} d"))),
        or_dash(rows.map(|r| r.to_string())),
        runs.join(", ")
    )
}

fn median(mut runs: Vec<f64>) -> f64 {
    runs.sort_by(f64::total_cmp);
    runs[runs.len() / 2]
}

/// The engine over `lake`, keeping decoded columns as `gatemeter serve`
/// does by default.
async fn open_engine(lake: &Path, prices: &str) -> Result<Arc<QueryEngine>, String> {
    let config = QueryConfig {
        data_dir: lake.into(),
        prices: Some(prices.into()),
        column_cache_bytes: std::env::var("ROLLUP_BENCH_CACHE_MB")
            .ok()
            .and_then(|mb| mb.parse::<usize>().ok())
            .unwrap_or(256)
            << 20,
        ..QueryConfig::default()
    };
    Ok(Arc::new(
        QueryEngine::open(config).await.map_err(|e| e.to_string())?,
    ))
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let number = |text: &str| {
        text.parse::<usize>()
            .map_err(|_| format!("`{text}` is not a number"))
    };
    if let [_, flag, lake, prices, end, runs] = args.as_slice() {
        if flag == "--existing" {
            let engine = open_engine(Path::new(lake), prices).await?;
            // The evaluator's state, removed when the folder is dropped.
            let state = tempfile::tempdir().map_err(|e| e.to_string())?;
            return time_requests(engine, micros(end)?, number(runs)?.max(1), state.path()).await;
        }
    }
    let [_, source, target, prices, hours, copies, runs] = args.as_slice() else {
        return Err(USAGE.into());
    };
    let (hours, copies, runs) = (number(hours)? as i64, number(copies)?, number(runs)?.max(1));
    let target = Path::new(target);
    if target.exists() {
        return Err(format!("{} exists: give a new folder", target.display()));
    }
    raw_lake(target, hours).await?;
    let engine = open_engine(target, prices).await?;
    let basis = basis(engine.price_book());
    let sources = hour_sources(&engine.committed_files());
    let location = LakeLocation::local(target).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut rollup_rows = BTreeMap::new();
    let mut measured_attempts = 0i64;
    for view in ROLLUP_VIEWS {
        let (rows, measured_start) = measured_hour(Path::new(source), view).await?;
        if view == "hourly_usage" {
            let attempts = rows
                .column_by_name("attempts")
                .ok_or("no attempts column")?;
            measured_attempts = attempts
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .iter()
                .flatten()
                .sum();
        }
        let mut table = RollupTable::open_or_create(&location, view, &rows.schema())
            .await
            .map_err(|e| e.to_string())?;
        for (hour, source) in &sources {
            let shift = hour.end_micros() - HOUR - measured_start;
            let parts = (0..copies)
                .map(|copy| moved(&rows, shift, copy))
                .collect::<Result<Vec<_>, _>>()?;
            let hour_rows = concat_batches(&rows.schema(), &parts).map_err(|e| e.to_string())?;
            *rollup_rows.entry(view).or_insert(0usize) += hour_rows.num_rows();
            table
                .replace_hour(*hour, &stamp(&basis, source), &hour_rows)
                .await
                .map_err(|e| e.to_string())?;
        }
        table
            .tidy(chrono::Duration::zero())
            .await
            .map_err(|e| e.to_string())?;
    }
    eprintln!(
        "stored {hours} hours × {copies} copies of a {measured_attempts}-attempt hour ({} attempts): {rollup_rows:?} rollup rows in {:.1} s",
        measured_attempts * hours * copies as i64,
        started.elapsed().as_secs_f64()
    );
    engine.refresh().await.map_err(|e| e.to_string())?;
    // The daily rollups, merged from the stored hours as `compact` does.
    let started = Instant::now();
    let stored = store_rollups(
        &engine,
        &location,
        (i64::MAX, SLICE_ROWS),
        chrono::Duration::zero(),
        &mut |_| {},
    )
    .await
    .map_err(|e| e.to_string())?;
    eprintln!(
        "stored {} days ({} bytes) from the stored hours, and {} files ({} bytes) by model, in {:.1} s",
        stored.days,
        stored.day_bytes,
        stored.by_model_files,
        stored.by_model_bytes,
        started.elapsed().as_secs_f64()
    );
    engine.refresh().await.map_err(|e| e.to_string())?;
    let start = micros(START)?;
    let end = start + hours * HOUR;
    let (_, rolled) = engine
        .rollup_session(
            Window {
                from: Some(start),
                to: Some(end),
            },
            &TeamScope::all(),
            gatemeter_query::RollupGrain::Hours,
        )
        .await
        .map_err(|e| e.to_string())?;
    if rolled.hours.len() as i64 != hours {
        return Err(format!(
            "only {} of {hours} hours read from rollups",
            rolled.hours.len()
        ));
    }
    time_requests(engine, end, runs, target).await
}

/// The median milliseconds of a KPI request's phases over `runs` runs:
/// its session and logical plan, optimizing, physical planning, running.
async fn phases(
    engine: &QueryEngine,
    window: Window,
    query: &KpiQuery,
    settings: &KpiSettings,
    runs: usize,
) -> Result<String, String> {
    let mut phases: [Vec<f64>; 4] = Default::default();
    for _ in 0..runs {
        let mut clock = Instant::now();
        let mut lap = |phase: usize| {
            phases[phase].push(clock.elapsed().as_secs_f64() * 1000.0);
            clock = Instant::now();
        };
        let frame = gatemeter_query::kpis_frame(engine, window, query, settings)
            .await
            .map_err(|e| e.to_string())?;
        lap(0);
        let (state, plan) = frame.into_parts();
        let optimized = state.optimize(&plan).map_err(|e| e.to_string())?;
        lap(1);
        let plan = state
            .query_planner()
            .create_physical_plan(&optimized, &state)
            .await
            .map_err(|e| e.to_string())?;
        lap(2);
        datafusion::physical_plan::collect(plan, state.task_ctx())
            .await
            .map_err(|e| e.to_string())?;
        lap(3);
    }
    let [session, optimize, physical, execute] = phases.map(median);
    Ok(format!(
        "session and logical plan {session:.1} ms, optimize {optimize:.1} ms, physical plan {physical:.1} ms, execute {execute:.1} ms"
    ))
}

/// Times the suite over the month that ends at `end` (µs); the alert
/// evaluator keeps its state in `state_dir`.
async fn time_requests(
    engine: Arc<QueryEngine>,
    end: i64,
    runs: usize,
    state_dir: &Path,
) -> Result<(), String> {
    let day = |days: i64| Window {
        from: Some(end - days * 24 * HOUR),
        to: Some(end),
    };
    let request = |group_by: &[&str], bucket: Option<&str>, filters: &[(&str, &str)]| KpiQuery {
        group_by: group_by.iter().map(|d| d.to_string()).collect(),
        bucket: bucket.map(str::to_owned),
        filters: filters
            .iter()
            .map(|(d, v)| (d.to_string(), v.to_string()))
            .collect(),
        ..KpiQuery::default()
    };
    let suite = [
        (
            "latency p50/p95/p99 by model and hour",
            day(1),
            request(&["requested_model"], Some("1h"), &[]),
        ),
        (
            "error-budget burn by team and hour",
            day(1),
            request(&["team"], Some("1h"), &[]),
        ),
        (
            "retry amplification by provider and day",
            day(7),
            request(&["provider"], Some("1d"), &[]),
        ),
        (
            "cost per successful outcome by key and day",
            day(7),
            request(&["api_key_id"], Some("1d"), &[]),
        ),
        (
            "spend by team, 30 days",
            day(30),
            request(&["team"], None, &[]),
        ),
        (
            "spend by team, 30 days, spend only (kpis=spend_usd)",
            day(30),
            KpiQuery {
                kpis: vec!["spend_usd".to_owned()],
                ..request(&["team"], None, &[])
            },
        ),
        (
            "one-day one-team drill-down",
            day(1),
            request(&["provider"], Some("1h"), &[("team", "search")]),
        ),
    ];
    let settings = KpiSettings::default();
    let mut table = String::from(
        "| request | window | rows | median ms | runs ms |\n|---|---|---:|---:|---|\n",
    );
    let only = std::env::var("ROLLUP_BENCH_ONLY").ok();
    let wanted = |name: &str| only.as_deref().is_none_or(|text| name.contains(text));
    for (name, window, query) in suite.iter().filter(|(name, _, _)| wanted(name)) {
        let mut timings = Vec::new();
        let mut rows = 0;
        for run in 0..=runs {
            let clock = Instant::now();
            let batches = kpis(&engine, *window, query, &settings)
                .await
                .map_err(|e| e.to_string())?;
            let elapsed = clock.elapsed().as_secs_f64() * 1000.0;
            rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();
            if run > 0 {
                timings.push(elapsed);
            }
        }
        if std::env::var_os("ROLLUP_BENCH_PHASES").is_some() {
            eprintln!(
                "{name}: {}",
                phases(&engine, *window, query, &settings, runs).await?
            );
        }
        if only.is_some() {
            eprintln!(
                "{name}: column cache {:?}, condensed files {:?}",
                engine.column_cache_stats(),
                engine.condensed_cache_stats()
            );
        }
        let days = (window.to.unwrap_or(end) - window.from.unwrap_or(end)) / (24 * HOUR);
        table.push_str(&report(name, Some(days), Some(rows), &timings));
    }
    // What a finance panel sends over PostgreSQL: SQL over hourly_usage.
    let month = gatemeter_query::engine::timestamp_literal(end - 30 * 24 * HOUR);
    let panels = [
        (
            "SQL: spend month to date (hourly_usage)",
            format!("SELECT sum(spend_usd) AS spend_usd FROM hourly_usage WHERE hour >= {month}"),
        ),
        (
            "SQL: spend by team and day, 30 days (hourly_usage)",
            format!(
                "SELECT date_trunc('day', hour) AS day, team, sum(spend_usd) AS spend_usd \
                 FROM hourly_usage WHERE hour >= {month} GROUP BY 1, 2"
            ),
        ),
        // The same two panels over the daily view by model.
        (
            "SQL: spend month to date (daily_usage_by_model)",
            format!(
                "SELECT sum(spend_usd) AS spend_usd FROM daily_usage_by_model WHERE hour >= {month}"
            ),
        ),
        (
            "SQL: spend by team and day, 30 days (daily_usage_by_model)",
            format!(
                "SELECT hour AS day, team, sum(spend_usd) AS spend_usd \
                 FROM daily_usage_by_model WHERE hour >= {month} GROUP BY 1, 2"
            ),
        ),
    ];
    for (name, sql) in panels.iter().filter(|(name, _)| wanted(name)) {
        let mut timings = Vec::new();
        let mut rows = 0;
        for run in 0..=runs {
            let clock = Instant::now();
            let session = engine
                .session(Window::default())
                .await
                .map_err(|e| e.to_string())?;
            let batches = session
                .sql(sql)
                .await
                .map_err(|e| e.to_string())?
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();
            if run > 0 {
                timings.push(clock.elapsed().as_secs_f64() * 1000.0);
            }
        }
        table.push_str(&report(name, Some(30), Some(rows), &timings));
    }
    const EVALUATION: &str = "alert evaluation: 3 SLOs, 10 budgets";
    if !wanted(EVALUATION) {
        print!("{table}");
        return Ok(());
    }
    // Three availability SLOs and ten monthly budgets, as an operator's
    // config would hold them.
    let mut alerts = String::from("[[slo]]\nname = \"all\"\ntarget = 0.999\n");
    for (name, team) in [("search", "search"), ("ads", "ads")] {
        alerts.push_str(&format!(
            "[[slo]]\nname = \"{name}\"\ntarget = 0.995\nscope = {{ team = \"{team}\" }}\n"
        ));
    }
    for n in 0..10 {
        let scope = match n % 3 {
            0 => format!("team = \"team-{n}\""),
            1 => format!("environment = \"env-{n}\""),
            _ => format!("api_key_id = \"key-{n}\""),
        };
        alerts.push_str(&format!(
            "[[budget]]\nname = \"b{n}\"\nscope = {{ {scope} }}\namount_usd = \"10000\"\nperiod = \"monthly\"\n"
        ));
    }
    let alerts: AlertsConfig = toml::from_str(&alerts).map_err(|e| e.to_string())?;
    let mut evaluator = Evaluator::new(
        alerts,
        engine.clone(),
        settings.clone(),
        state_dir,
        &prometheus::Registry::new(),
    )
    .map_err(|e| e.to_string())?;
    let now = DateTime::<Utc>::from_timestamp_micros(end).ok_or("time")?;
    let mut timings = Vec::new();
    for run in 0..=runs {
        let clock = Instant::now();
        evaluator.evaluate(now).await.map_err(|e| e.to_string())?;
        if run > 0 {
            timings.push(clock.elapsed().as_secs_f64() * 1000.0);
        }
    }
    table.push_str(&report(EVALUATION, Some(30), None, &timings));
    print!("{table}");
    Ok(())
}
