//! Times a suite of queries on gatemeter's query engine (driven by
//! `bench/query_bench.py`, which runs DuckDB on the same files beside it).
//!
//! usage: query_bench DATA_DIR PRICES SUITE.json RUNS
//!
//! SUITE.json is a list of `{"name", "from", "to", "sql"}` (RFC 3339 window
//! ends). Each query runs once to warm up, then RUNS times; every run builds
//! its window's session, as the API does per request. Prints one JSON object
//! per query: name, rows, every timed run in milliseconds, and each run
//! split into planning (session, SQL to physical plan) and running.
//! With `QUERY_BENCH_EXPLAIN=1` it also prints each query's
//! `EXPLAIN ANALYZE` (operator times and row counts) to standard error.
//! `QUERY_BENCH_SET="SET a = b; SET c = d"` runs those statements on every
//! session first (to compare DataFusion settings on the same binary).
//! The engine keeps decoded columns as `gatemeter serve` does by default
//! (256 MiB); `QUERY_BENCH_COLUMN_CACHE_MB` sets another size, 0 none.
//! Each query's line also gives its first (cold) run, which fills that
//! cache, apart from the timed runs.

use std::sync::Arc;
use std::time::Instant;

use chrono::DateTime;
use datafusion::physical_plan::collect;
use gatemeter_query::output::table;
use gatemeter_query::{QueryConfig, QueryEngine, Window};
use serde_json::{json, Value};

fn micros(value: &Value) -> Result<Option<i64>, String> {
    match value.as_str() {
        None => Ok(None),
        Some(text) => DateTime::parse_from_rfc3339(text)
            .map(|t| Some(t.timestamp_micros()))
            .map_err(|e| format!("bad time {text}: {e}")),
    }
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, data_dir, prices, suite, runs] = args.as_slice() else {
        return Err("usage: query_bench DATA_DIR PRICES SUITE.json RUNS".into());
    };
    let runs: usize = runs
        .parse()
        .map_err(|_| format!("RUNS `{runs}` is not a number"))?;
    let suite: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(suite).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let column_cache_mb: usize = match std::env::var("QUERY_BENCH_COLUMN_CACHE_MB") {
        Ok(text) => text
            .parse()
            .map_err(|_| format!("QUERY_BENCH_COLUMN_CACHE_MB `{text}` is not a number"))?,
        Err(_) => 256,
    };
    let engine = QueryEngine::open(QueryConfig {
        data_dir: data_dir.into(),
        prices: Some(prices.into()),
        column_cache_bytes: column_cache_mb << 20,
        ..QueryConfig::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    let settings: Vec<String> = std::env::var("QUERY_BENCH_SET")
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    for query in &suite {
        let name = query["name"].as_str().unwrap_or_default();
        let sql = query["sql"]
            .as_str()
            .ok_or_else(|| format!("{name}: no sql"))?;
        let window = Window {
            from: micros(&query["from"])?,
            to: micros(&query["to"])?,
        };
        let (mut times, mut plan_times) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
        let mut first_ms = 0.0;
        let mut rows = 0;
        for run in 0..=runs {
            let started = Instant::now();
            let ctx = engine
                .session(window)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            for setting in &settings {
                ctx.sql(setting)
                    .await
                    .map_err(|e| format!("{setting}: {e}"))?;
            }
            let frame = ctx.sql(sql).await.map_err(|e| format!("{name}: {e}"))?;
            let task = frame.task_ctx();
            let plan = frame
                .create_physical_plan()
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            let planned = started.elapsed().as_secs_f64() * 1000.0;
            let batches = collect(plan, Arc::new(task))
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            let elapsed = started.elapsed().as_secs_f64() * 1000.0;
            rows = batches.iter().map(|b| b.num_rows()).sum::<usize>();
            if run > 0 {
                times.push(elapsed);
                plan_times.push(planned);
            } else {
                first_ms = elapsed;
            }
        }
        println!(
            "{}",
            json!({"name": name, "rows": rows, "ms": times, "plan_ms": plan_times,
                   "first_ms": first_ms, "column_cache_mb": column_cache_mb})
        );
        if std::env::var_os("QUERY_BENCH_EXPLAIN").is_some() {
            let ctx = engine
                .session(window)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            for setting in &settings {
                ctx.sql(setting)
                    .await
                    .map_err(|e| format!("{setting}: {e}"))?;
            }
            let explained = ctx
                .sql(&format!("EXPLAIN ANALYZE {sql}"))
                .await
                .map_err(|e| format!("{name}: {e}"))?
                .collect()
                .await
                .map_err(|e| format!("{name}: {e}"))?;
            let text = table(&explained).map_err(|e| format!("{name}: {e}"))?;
            eprintln!("{name}:\n{text}");
        }
    }
    Ok(())
}
