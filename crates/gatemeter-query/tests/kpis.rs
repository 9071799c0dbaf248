//! The query layer's tests. KPI values are checked by the sqllogictest
//! files in `tests/slt/` (hand-computed expectations, the arithmetic in
//! comments) through the runner in `slt/`; this file drives them and also
//! checks the named queries and the scorecard.

mod rollup_equality;
mod slt;

use std::path::{Path, PathBuf};

use chrono::DateTime;
use gatemeter_ingest::{import_file, FlushPolicy, IngestMetrics};
use gatemeter_lake::Lake;
use gatemeter_query::{KpiQuery, KpiSettings, QueryConfig, QueryEngine, TeamScope, Window};

fn fixture(name: &str) -> PathBuf {
    slt::slt_dir().join("fixtures").join(name)
}

fn at(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .timestamp_micros()
}

async fn lake_from(jsonl: &Path, dir: &Path) {
    let (mut lake, _) = Lake::open_local(dir, None).await.expect("lake");
    let metrics = IngestMetrics::register(&prometheus::Registry::new()).expect("metrics");
    import_file(
        &mut lake,
        jsonl,
        FlushPolicy::default(),
        &test_privacy(),
        &metrics,
        |_| {},
    )
    .await
    .expect("import");
}

async fn engine(dir: &Path, prices: Option<PathBuf>) -> QueryEngine {
    QueryEngine::open(QueryConfig {
        data_dir: dir.to_path_buf(),
        prices,
        ..QueryConfig::default()
    })
    .await
    .expect("engine")
}

async fn every_sqllogictest_file_holds_with(column_cache_bytes: usize) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(slt::slt_dir())
        .expect("tests/slt")
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "slt"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 4,
        "expected the .slt files in tests/slt, found {files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        if let Err(error) = slt::run_file(file, column_cache_bytes).await {
            failures.push(format!("{}:\n{error}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sqllogictest_file_holds() {
    every_sqllogictest_file_holds_with(0).await;
}

/// The same expectations through the column cache (`serve`'s default):
/// the second and later statements of a file read kept columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sqllogictest_file_holds_through_the_column_cache() {
    every_sqllogictest_file_holds_with(64 << 20).await;
}

/// Every row of a query's result, as text, in order.
async fn rows_of(engine: &QueryEngine, window: Window, sql: &str) -> Vec<String> {
    let batches = engine
        .session(window)
        .await
        .expect("session")
        .sql(sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .expect("format")
        .to_string();
    text.lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_columns_answer_as_the_parquet_files_do_and_are_read_again_from_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    lake_from(&fixture("edge.jsonl"), dir.path()).await;
    let prices = Some(fixture("prices.csv"));
    let plain = engine(dir.path(), prices.clone()).await;
    let cached = QueryEngine::open(QueryConfig {
        data_dir: dir.path().to_path_buf(),
        prices,
        column_cache_bytes: 16 << 20,
        ..QueryConfig::default()
    })
    .await
    .expect("engine");
    let window = Window {
        from: Some(at("2026-11-01T00:00:00Z")),
        to: Some(at("2026-11-03T00:00:00Z")),
    };
    let sql = "SELECT team, requested_model, count(*) AS attempts, sum(cost_usd) AS spend, \
               max(duration_ms) AS slowest, count(*) FILTER (WHERE cost_source = 'unpriced') AS unpriced \
               FROM attempts WHERE team IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2";
    let expected = rows_of(&plain, window, sql).await;
    assert!(expected.len() > 4, "the fixture has groups: {expected:?}");
    assert_eq!(plain.column_cache_stats(), None);

    assert_eq!(rows_of(&cached, window, sql).await, expected);
    let filled = cached.column_cache_stats().expect("a cache");
    assert!(filled.misses > 0 && filled.bytes > 0, "{filled:?}");
    assert_eq!(rows_of(&cached, window, sql).await, expected);
    let again = cached.column_cache_stats().expect("a cache");
    assert_eq!(again.misses, filled.misses, "nothing decoded again");
    assert!(again.hits > filled.hits, "{again:?}");

    // A window cutting through the hours filters the kept rows by
    // request_start as it does the decoded ones.
    let cut = Window {
        from: Some(at("2026-11-01T10:15:00Z")),
        to: Some(at("2026-11-01T11:15:00Z")),
    };
    let expected_cut = rows_of(&plain, cut, sql).await;
    assert_ne!(expected_cut, expected, "the cut window drops rows");
    assert_eq!(rows_of(&cached, cut, sql).await, expected_cut);
    let again = cached.column_cache_stats().expect("a cache");

    // An open window reads Parquet with its statistics, not the cache.
    let open = Window::default();
    assert_eq!(
        rows_of(&cached, open, sql).await,
        rows_of(&plain, open, sql).await
    );
    assert_eq!(cached.column_cache_stats(), Some(again));
}

/// Every KPI over `window` by `group_by`, as JSON rows.
async fn kpis_by(engine: &QueryEngine, window: Window, group_by: &str) -> Vec<serde_json::Value> {
    let query = KpiQuery {
        group_by: vec![group_by.to_owned()],
        ..KpiQuery::default()
    };
    let batches = gatemeter_query::kpis(engine, window, &query, &KpiSettings::default())
        .await
        .expect("kpis");
    gatemeter_query::output::json_rows(&batches).expect("json")
}

/// The stored rollup files a query reads go through the column cache too:
/// a dashboard refreshing the same hours decodes them once, and the kept
/// columns answer as the files do, for KPI requests over the full and the
/// by-model rollups and for the rollup views in SQL. The KPI requests read
/// each file's rows condensed, condensed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_rollup_files_are_read_again_from_memory() {
    let dir = tempfile::tempdir().expect("tempdir");
    lake_from(&fixture("edge.jsonl"), dir.path()).await;
    let prices = Some(fixture("prices.csv"));
    let plain = engine(dir.path(), prices.clone()).await;
    let location = gatemeter_lake::LakeLocation::local(dir.path()).expect("location");
    let stored = gatemeter_query::stored_rollups::store_rollups(
        &plain,
        &location,
        (i64::MAX, gatemeter_query::stored_rollups::SLICE_ROWS),
        chrono::Duration::zero(),
        &mut |_| {},
    )
    .await
    .expect("rollups");
    assert!(stored.hours >= 2, "{} hours stored", stored.hours);
    plain.refresh().await.expect("refresh");
    let cached = QueryEngine::open(QueryConfig {
        data_dir: dir.path().to_path_buf(),
        prices,
        column_cache_bytes: 16 << 20,
        ..QueryConfig::default()
    })
    .await
    .expect("engine");
    let window = Window {
        from: Some(at("2026-11-01T00:00:00Z")),
        to: Some(at("2026-11-03T00:00:00Z")),
    };
    let (_, rolled) = cached
        .rollup_session(
            window,
            &TeamScope::all(),
            gatemeter_query::RollupGrain::Hours,
        )
        .await
        .expect("session");
    assert_eq!(
        rolled.hours.len(),
        stored.hours,
        "every hour is read stored"
    );

    let sql = "SELECT team, requested_model, sum(attempts) AS attempts, sum(spend_usd) AS spend, \
               ddsketch_quantile(ddsketch_merge(duration_sketch), 0.95) AS p95 \
               FROM hourly_usage_by_model GROUP BY 1, 2 ORDER BY 1, 2";
    let mut decoded = None;
    for round in 0..2 {
        // By model (the narrower files) and by key (the full ones).
        for group_by in ["requested_model", "api_key_id"] {
            assert_eq!(
                kpis_by(&cached, window, group_by).await,
                kpis_by(&plain, window, group_by).await,
                "round {round}, by {group_by}"
            );
        }
        assert_eq!(
            rows_of(&cached, window, sql).await,
            rows_of(&plain, window, sql).await,
            "round {round}"
        );
        let stats = cached.column_cache_stats().expect("a cache");
        let condensed = cached.condensed_cache_stats().expect("a condensed cache");
        match decoded {
            None => {
                assert!(stats.misses > 0 && stats.bytes > 0, "{stats:?}");
                assert!(condensed.misses > 0 && condensed.bytes > 0, "{condensed:?}");
                decoded = Some((stats, condensed));
            }
            Some((first, first_condensed)) => {
                assert_eq!(stats.misses, first.misses, "nothing decoded again");
                assert!(stats.hits > first.hits, "{stats:?}");
                // The KPI requests read the files' condensed rows as kept.
                assert_eq!(
                    condensed.misses, first_condensed.misses,
                    "nothing condensed again"
                );
                assert!(condensed.hits > first_condensed.hits, "{condensed:?}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_named_query_runs_and_returns_rows() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().expect("tempdir");
    lake_from(&fixture("edge.jsonl"), dir.path()).await;
    let engine = engine(dir.path(), Some(fixture("prices.csv"))).await;
    let ctx = engine.session(Window::default()).await.expect("session");
    let now = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
        .expect("time")
        .with_timezone(&chrono::Utc);
    for (name, query) in gatemeter_query::named::catalog().expect("catalog") {
        // With no policy (the defaults) nothing violates one.
        let given = match name.as_str() {
            "policy_violations" => BTreeMap::from([("allowed_regions".into(), "nowhere".into())]),
            _ => BTreeMap::new(),
        };
        let sql = gatemeter_query::named::bind(&name, &given, now).expect("binds");
        let batches = ctx
            .sql(&sql)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .collect()
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert!(rows > 0, "{name} ({}) returned no rows", query.kind);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scorecard_rates_the_window_against_targets_and_the_previous_window() {
    use gatemeter_query::scorecard::{default_targets, scorecard, Status};
    let dir = tempfile::tempdir().expect("tempdir");
    lake_from(&fixture("edge.jsonl"), dir.path()).await;
    let engine = engine(dir.path(), Some(fixture("prices.csv"))).await;
    let hour = 3_600_000_000;
    // 10:00–11:00 against 09:00–10:00 (empty).
    let lines = scorecard(
        &engine,
        at("2026-11-01T11:00:00Z"),
        hour,
        &KpiSettings::default(),
        &default_targets(),
        &TeamScope::all(),
    )
    .await
    .expect("scorecard");
    assert_eq!(lines.len(), 12);
    let line = |kpi: &str| lines.iter().find(|l| l.kpi == kpi).expect(kpi).clone();
    assert_eq!(line("availability").value, Some(0.875));
    assert_eq!(line("availability").status, Status::Red);
    assert_eq!(line("availability").baseline, None);
    assert_eq!(line("retry_rate").status, Status::Red);
    assert_eq!(line("fallback_success_rate").status, Status::Green);
    assert_eq!(line("compliance_score").status, Status::Unknown);
    // 11:00–12:00 (R11 only) against 10:00–11:00.
    let next = scorecard(
        &engine,
        at("2026-11-01T12:00:00Z"),
        hour,
        &KpiSettings::default(),
        &default_targets(),
        &TeamScope::all(),
    )
    .await
    .expect("scorecard");
    let availability = next
        .iter()
        .find(|l| l.kpi == "availability")
        .expect("availability");
    assert_eq!(
        (availability.value, availability.baseline),
        (Some(1.0), Some(0.875))
    );
    assert_eq!(availability.status, Status::Green);
}

async fn count(ctx: &datafusion::prelude::SessionContext, sql: &str) -> i64 {
    use datafusion::arrow::array::{Array, Int64Array};
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let column = batches[0].column(0);
    let counts = column
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("a count");
    assert_eq!(counts.len(), 1, "{sql}");
    counts.value(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reads_its_window_and_the_files_committed_when_it_was_made() {
    let dir = tempfile::tempdir().expect("tempdir");
    lake_from(&fixture("edge.jsonl"), dir.path()).await;
    let engine = engine(dir.path(), Some(fixture("prices.csv"))).await;
    let everything = engine.session(Window::default()).await.expect("session");
    assert_eq!(
        count(&everything, "SELECT count(*) FROM attempts_raw").await,
        16
    );

    // 10:10–10:45 cuts the 10:00 hour's file: its rows are filtered, also
    // when the query reads no request_start, and a limit counts only them.
    let window = Window {
        from: Some(at("2026-11-01T10:10:00Z")),
        to: Some(at("2026-11-01T10:45:00Z")),
    };
    let inside = engine.session(window).await.expect("session");
    // Hand count of edge.jsonl: 10:10 ×2, 10:20 ×2, 10:35, 10:40, 10:42.
    assert_eq!(
        count(&inside, "SELECT count(attempt_id) FROM attempts_raw").await,
        7
    );
    assert_eq!(count(&inside, "SELECT count(*) FROM attempts_raw").await, 7);
    assert_eq!(count(&inside, "SELECT count(*) FROM attempts").await, 7);
    assert_eq!(
        count(
            &everything,
            "SELECT count(*) FROM attempts_raw WHERE request_start >= '2026-11-01T10:10:00Z' \
             AND request_start < '2026-11-01T10:45:00Z'"
        )
        .await,
        7
    );
    assert_eq!(
        count(
            &inside,
            "SELECT count(*) FROM (SELECT attempt_id FROM attempts_raw LIMIT 5)"
        )
        .await,
        5
    );
    assert_eq!(
        count(
            &inside,
            "SELECT count(*) FROM (SELECT request_start FROM attempts_raw LIMIT 20) \
             WHERE request_start >= '2026-11-01T10:10:00Z' AND request_start < '2026-11-01T10:45:00Z'"
        )
        .await,
        7
    );
    assert_eq!(
        count(&inside, "SELECT count(*) FROM requests").await,
        count(
            &everything,
            "SELECT count(*) FROM requests WHERE request_start >= '2026-11-01T10:10:00Z' \
             AND request_start < '2026-11-01T10:45:00Z'"
        )
        .await
    );

    // A table one session registers stays in it.
    inside
        .register_table(
            "baseline",
            std::sync::Arc::new(datafusion::datasource::empty::EmptyTable::new(
                gatemeter_schema::attempts_schema(),
            )),
        )
        .expect("register");
    let other = engine.session(window).await.expect("session");
    assert!(other.sql("SELECT * FROM baseline").await.is_err());

    // A commit after a session was made is seen by the sessions made after.
    lake_from(&fixture("fallbacks.jsonl"), dir.path()).await;
    engine.refresh().await.expect("refresh");
    let after = engine.session(Window::default()).await.expect("session");
    assert_eq!(
        count(&everything, "SELECT count(*) FROM attempts_raw").await,
        16
    );
    assert_eq!(count(&after, "SELECT count(*) FROM attempts_raw").await, 26);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_statistics_are_computed_once_per_engine_and_strings_arrive_as_views() {
    let dir = tempfile::tempdir().expect("tempdir");
    lake_from(&fixture("edge.jsonl"), dir.path()).await;
    let files = Lake::open_local(dir.path(), None)
        .await
        .expect("lake")
        .0
        .data_files()
        .count();
    assert!(files > 1, "the fixture spans several hour partitions");
    let engine = engine(dir.path(), Some(fixture("prices.csv"))).await;

    // The first scan reads each file's statistics from its footer and
    // keeps them in the engine's cache; a later session, with a window of
    // its own, finds them there instead of computing them again.
    let first = engine.session(Window::default()).await.expect("session");
    let cache = first
        .runtime_env()
        .cache_manager
        .get_file_statistic_cache()
        .expect("a file statistics cache");
    assert_eq!(cache.len(), 0);
    assert_eq!(count(&first, "SELECT count(*) FROM attempts_raw").await, 16);
    assert_eq!(cache.len(), files);
    let window = Window {
        from: Some(at("2026-11-01T10:10:00Z")),
        to: Some(at("2026-11-01T10:45:00Z")),
    };
    let later = engine.session(window).await.expect("session");
    assert_eq!(count(&later, "SELECT count(*) FROM attempts_raw").await, 7);
    assert_eq!(cache.len(), files);

    // Dictionary pages decode into views of the dictionary, not copies.
    let types = later
        .sql("SELECT arrow_typeof(team), arrow_typeof(provider) FROM attempts LIMIT 1")
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let text = gatemeter_query::output::table(&types).expect("table");
    assert_eq!(text.matches("Utf8View").count(), 2, "{text}");
}

/// The default policy (user ids keyed-hashed, tags kept) with a fixed key.
fn test_privacy() -> std::sync::Arc<gatemeter_schema::PrivacyPolicy> {
    std::sync::Arc::new(gatemeter_schema::PrivacyPolicy::new(
        b"gatemeter test privacy key".to_vec(),
        gatemeter_schema::FieldHandling::KeyedHash,
        gatemeter_schema::FieldHandling::Keep,
    ))
}

/// A lake of only `team`'s events of `jsonl`.
fn only_team(jsonl: &Path, team: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(jsonl).expect("fixture");
    let kept: String = text
        .lines()
        .filter(|line| line.contains(&format!("\"team\": \"{team}\"")))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(!kept.is_empty(), "the fixture has team {team}");
    let path = dir.join("only.jsonl");
    std::fs::write(&path, kept).expect("write");
    path
}

/// Rows of `sql` in `ctx` as sorted text lines, or the error's kind.
async fn sorted_rows(ctx: &datafusion::prelude::SessionContext, sql: &str) -> Vec<String> {
    let batches = match ctx.sql(sql).await {
        Ok(frame) => frame.collect().await,
        Err(e) => Err(e),
    };
    match batches {
        Ok(batches) => {
            // Where and when a row was stored differs between the two lakes;
            // what it says does not.
            let batches: Vec<_> = batches
                .iter()
                .map(|batch| {
                    let schema = batch.schema();
                    let kept: Vec<usize> = (0..schema.fields().len())
                        .filter(|&i| !schema.field(i).name().starts_with('_'))
                        .collect();
                    batch.project(&kept).expect("projection")
                })
                .collect();
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .expect("format")
                .to_string();
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| l.starts_with('|'))
                .skip(1)
                .map(str::to_owned)
                .collect();
            lines.sort();
            lines
        }
        Err(e) => vec![format!(
            "error: {}",
            e.message().lines().next().unwrap_or("")
        )],
    }
}

/// Queries from a grammar of the shapes a client can write: every table and
/// view, projections, filters, aggregates, joins, CTEs, subqueries, set
/// operations and window functions.
fn scoping_queries() -> Vec<String> {
    let sources = [
        "attempts",
        "requests",
        "attempts_raw",
        "attempts_fresh_raw",
        "attempts_compacted_raw",
        "attempts_lake_fresh",
        "attempts_lake_compacted",
        // Stored rollups where they hold, raw rows elsewhere.
        "hourly_usage",
        "hourly_requests",
    ];
    let shapes: [&dyn Fn(&str) -> String; 14] = [
        &|t| format!("SELECT * FROM {t}"),
        &|t| format!("SELECT count(*) AS n FROM {t}"),
        &|t| format!("SELECT team, count(*) FROM {t} GROUP BY team"),
        &|t| format!("SELECT * FROM {t} WHERE team <> 'a'"),
        &|t| format!("SELECT * FROM {t} WHERE team = 'b' OR true"),
        &|t| format!("WITH x AS (SELECT * FROM {t}) SELECT count(*), min(team), max(team) FROM x"),
        &|t| {
            format!("SELECT * FROM (SELECT team, request_id FROM {t}) s WHERE s.team IN ('a', 'b', 'c')")
        },
        &|t| format!("SELECT team FROM {t} UNION ALL SELECT team FROM attempts"),
        &|t| format!("SELECT team FROM {t} UNION SELECT team FROM requests"),
        &|t| {
            format!(
                "SELECT team, row_number() OVER (PARTITION BY team ORDER BY request_id) FROM {t}"
            )
        },
        &|t| {
            format!("SELECT x.request_id, y.team FROM {t} x JOIN requests y ON x.request_id = y.request_id")
        },
        &|t| {
            format!(
                "SELECT (SELECT count(*) FROM {t}) AS n, (SELECT max(team) FROM attempts_raw) AS m"
            )
        },
        // Side channels: a filter that fails on another team's value would
        // name it in its error, or fail only if such a row were read.
        &|t| format!("SELECT * FROM {t} WHERE CAST(team AS INT) = 1"),
        &|t| format!("SELECT * FROM {t} WHERE 1 / (CASE WHEN team = 'b' THEN 0 ELSE 1 END) = 1"),
    ];
    let mut queries = Vec::new();
    for (i, shape) in shapes.iter().enumerate() {
        for source in sources {
            queries.push(shape(source));
            // The same under DISTINCT and LIMIT; which rows a LIMIT keeps
            // is unordered, how many is not.
            queries.push(format!("SELECT DISTINCT * FROM ({}) q", shape(source)));
            queries.push(format!(
                "SELECT count(*) FROM (SELECT * FROM ({}) q LIMIT {}) l",
                shape(source),
                1 + i
            ));
            queries.push(format!(
                "SELECT * FROM ({}) q WHERE 1 = 1 OR 'b' = 'b'",
                shape(source)
            ));
        }
    }
    queries.push("SELECT count(*) FROM information_schema.tables".into());
    queries.push("SELECT count(*) FROM information_schema.columns".into());
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_scoped_session_sees_exactly_a_lake_of_only_that_team() {
    let full_dir = tempfile::tempdir().expect("tempdir");
    let only_dir = tempfile::tempdir().expect("tempdir");
    lake_from(&fixture("edge.jsonl"), full_dir.path()).await;
    let only = only_team(&fixture("edge.jsonl"), "a", only_dir.path());
    let only_lake = only_dir.path().join("lake");
    lake_from(&only, &only_lake).await;
    let full = engine(full_dir.path(), Some(fixture("prices.csv"))).await;
    let alone = engine(&only_lake, Some(fixture("prices.csv"))).await;
    let scope = TeamScope::only(["a".to_owned()]);
    // The full lake's hourly views read stored rollups (every team's rows
    // in one file an hour), the lone team's compute them raw.
    let location = gatemeter_lake::LakeLocation::local(full_dir.path()).expect("location");
    gatemeter_query::stored_rollups::store_rollups(
        &full,
        &location,
        (i64::MAX, gatemeter_query::stored_rollups::SLICE_ROWS),
        chrono::Duration::zero(),
        &mut |_| {},
    )
    .await
    .expect("rollups");
    full.refresh().await.expect("refresh");
    let (_, rolled) = full
        .rollup_session(
            Window::default(),
            &scope,
            gatemeter_query::RollupGrain::Hours,
        )
        .await
        .expect("session");
    assert!(!rolled.is_empty(), "no stored hour to read");

    let queries = scoping_queries();
    let windows = [
        Window::default(),
        Window {
            from: Some(at("2026-11-01T10:00:00Z")),
            to: Some(at("2026-11-01T11:00:00Z")),
        },
        Window {
            from: Some(at("2026-11-01T10:30:00Z")),
            to: None,
        },
    ];
    assert!(
        queries.len() * windows.len() >= 1000,
        "{} queries",
        queries.len()
    );
    for window in windows {
        let scoped = full.scoped_session(window, &scope).await.expect("session");
        let reference = alone.session(window).await.expect("session");
        for sql in &queries {
            let got = sorted_rows(&scoped, sql).await;
            let expected = sorted_rows(&reference, sql).await;
            // Over stored rollups a failing filter runs in another operator
            // than over raw rows, which words the same error differently:
            // both must fail, naming the same teams' values.
            let failed = |rows: &[String]| rows.iter().any(|row| row.starts_with("error: "));
            if sql.contains("hourly_") && failed(&got) && failed(&expected) {
                let named = |rows: &[String]| {
                    ["a", "b", "c"]
                        .into_iter()
                        .filter(|team| rows.iter().any(|row| row.contains(&format!("'{team}'"))))
                        .collect::<Vec<_>>()
                };
                assert_eq!(
                    named(&got),
                    named(&expected),
                    "{sql} in {window:?}: {got:?}"
                );
            } else {
                assert_eq!(got, expected, "{sql} in {window:?}");
            }
            assert!(
                got.iter()
                    .all(|row| !row.contains("| b ") && !row.contains("| c ")),
                "{sql}: {got:?}"
            );
        }
    }

    // KPIs of the scoped token equal the KPIs of team a alone, percentiles
    // exact (the full lake's stored hours give sketched ones, within 1%:
    // the rollup_equality test compares those, scoped too).
    let window = Window {
        from: Some(at("2026-11-01T00:00:00Z")),
        to: Some(at("2026-11-02T00:00:00Z")),
    };
    for group_by in [vec![], vec!["provider".to_owned()], vec!["team".to_owned()]] {
        let scoped_query = KpiQuery {
            group_by: group_by.clone(),
            scope: scope.clone(),
            exact_percentiles: true,
            ..KpiQuery::default()
        };
        let plain = KpiQuery {
            group_by,
            exact_percentiles: true,
            ..KpiQuery::default()
        };
        let settings = KpiSettings::default();
        let got = gatemeter_query::kpis(&full, window, &scoped_query, &settings)
            .await
            .expect("scoped kpis");
        let want = gatemeter_query::kpis(&alone, window, &plain, &settings)
            .await
            .expect("kpis");
        assert_eq!(
            gatemeter_query::output::json_rows(&got).expect("json"),
            gatemeter_query::output::json_rows(&want).expect("json")
        );
    }
}

/// One query counting the groups of `dimension` and those where the hourly
/// rollup `rollup` and the raw rows `raw` disagree: exact columns must be
/// equal, percentiles within 1%.
fn rollup_check(
    dimension: &str,
    rollup: &str,
    raw: &str,
    exact: &[&str],
    close: &[&str],
) -> String {
    let mismatches: Vec<String> = exact
        .iter()
        .map(|c| format!("(r.{c} IS DISTINCT FROM x.{c})"))
        .chain(close.iter().map(|c| {
            format!(
                "((r.{c} IS NULL) <> (x.{c} IS NULL)) OR (abs(r.{c} - x.{c}) > 0.01 * x.{c} + 1e-9)"
            )
        }))
        .collect();
    format!(
        "WITH r AS ({rollup} GROUP BY {dimension}), x AS ({raw} GROUP BY {dimension}) \
         SELECT count(*) AS groups, count(*) FILTER (WHERE {}) AS wrong \
         FROM r FULL JOIN x ON r.k IS NOT DISTINCT FROM x.k",
        mismatches.join(" OR ")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hourly_rollups_add_up_to_the_raw_rows() {
    for name in ["edge.jsonl", "fallbacks.jsonl"] {
        let dir = tempfile::tempdir().expect("tempdir");
        lake_from(&fixture(name), dir.path()).await;
        let engine = engine(dir.path(), Some(fixture("prices.csv"))).await;
        let ctx = engine.session(Window::default()).await.expect("session");
        for (hours, raw_window) in [
            ("true", "true"),
            // The first hour with data alone.
            (
                "hour = (SELECT min(date_trunc('hour', request_start)) FROM attempts)",
                "date_trunc('hour', request_start) = \
                 (SELECT min(date_trunc('hour', request_start)) FROM attempts)",
            ),
        ] {
            let mut groups = 0;
            for dimension in gatemeter_query::DIMENSIONS {
                let attempts = rollup_check(
                    dimension,
                    &format!(
                        "SELECT {dimension} AS k, sum(attempts) AS n, sum(spend_usd) AS spend, \
                         sum(input_tokens) AS input, sum(output_tokens) AS output, \
                         sum(cache_read_tokens) AS cached, sum(final_attempts) AS finals, \
                         ddsketch_quantile(ddsketch_merge(duration_sketch), 0.5) AS p50, \
                         ddsketch_quantile(ddsketch_merge(duration_sketch), 0.95) AS p95, \
                         ddsketch_quantile(ddsketch_merge(ttft_sketch), 0.99) AS ttft99 \
                         FROM hourly_usage WHERE {hours}"
                    ),
                    &format!(
                        "SELECT {dimension} AS k, count(*) AS n, sum(cost_usd) AS spend, \
                         sum(COALESCE(input_tokens, 0)) AS input, sum(COALESCE(output_tokens, 0)) AS output, \
                         sum(COALESCE(cache_read_tokens, 0)) AS cached, \
                         count(*) FILTER (WHERE is_final_attempt) AS finals, \
                         percentile_cont(duration_ms, 0.5) FILTER (WHERE outcome = 'success') AS p50, \
                         percentile_cont(duration_ms, 0.95) FILTER (WHERE outcome = 'success') AS p95, \
                         percentile_cont(ttft_ms, 0.99) FILTER (WHERE outcome = 'success' AND streaming) AS ttft99 \
                         FROM attempts WHERE {raw_window}"
                    ),
                    &["n", "spend", "input", "output", "cached", "finals"],
                    &["p50", "p95", "ttft99"],
                );
                let requests = rollup_check(
                    dimension,
                    &format!(
                        "SELECT {dimension} AS k, sum(requests) AS n, sum(valid_requests) AS valid, \
                         sum(good_requests) AS good, sum(successful_requests) AS ok, \
                         sum(attempts) AS attempts, sum(retries) AS retries, sum(fallbacks) AS fallbacks, \
                         sum(tokens) AS tokens, sum(spend_usd) AS spend, \
                         ddsketch_quantile(ddsketch_merge(latency_sketch), 0.95) AS p95, \
                         ddsketch_quantile(ddsketch_merge(latency_sketch), 0.99) AS p99 \
                         FROM hourly_requests WHERE {hours}"
                    ),
                    &format!(
                        "SELECT {dimension} AS k, count(*) AS n, count(*) FILTER (WHERE valid) AS valid, \
                         count(*) FILTER (WHERE good) AS good, count(*) FILTER (WHERE successful) AS ok, \
                         sum(attempts) AS attempts, sum(retries) AS retries, sum(fallbacks) AS fallbacks, \
                         sum(tokens) AS tokens, sum(cost_usd) AS spend, \
                         percentile_cont(e2e_latency_ms, 0.95) FILTER (WHERE successful) AS p95, \
                         percentile_cont(e2e_latency_ms, 0.99) FILTER (WHERE successful) AS p99 \
                         FROM requests WHERE {raw_window}"
                    ),
                    &[
                        "n", "valid", "good", "ok", "attempts", "retries", "fallbacks", "tokens",
                        "spend",
                    ],
                    &["p95", "p99"],
                );
                for sql in [attempts, requests] {
                    let rows = sorted_rows(&ctx, &sql).await;
                    let cells: Vec<&str> = rows
                        .first()
                        .map(|row| {
                            row.split('|')
                                .map(str::trim)
                                .filter(|c| !c.is_empty())
                                .collect()
                        })
                        .unwrap_or_default();
                    assert_eq!(cells.get(1), Some(&"0"), "{name} {hours}: {rows:?}\n{sql}");
                    groups += cells
                        .first()
                        .and_then(|c| c.parse::<usize>().ok())
                        .unwrap_or(0);
                }
            }
            assert!(
                groups > 2 * gatemeter_query::DIMENSIONS.len(),
                "{name}: {groups} groups"
            );
        }
    }
}

/// A lake written before `retry_after_ms` and `zero_data_retention`
/// existed answers every KPI as the same events imported now do, through
/// the column cache and without; its rows read the new columns as null,
/// and rows written into it since carry them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lake_of_the_earlier_schema_reads_as_one_of_this_release() {
    let events = fixture("edge.jsonl");
    let rows: Vec<gatemeter_schema::AttemptRow> = std::fs::read_to_string(&events)
        .expect("fixture")
        .lines()
        .enumerate()
        .filter_map(|(line, text)| {
            let event = gatemeter_schema::decode_event(text.as_bytes()).ok()?;
            Some(gatemeter_schema::AttemptRow {
                event,
                source: gatemeter_schema::SourcePosition {
                    topic: "import:edge.jsonl".into(),
                    partition: 0,
                    offset: line as i64,
                },
            })
        })
        .collect();
    assert!(rows.len() > 10);
    let earlier = tempfile::tempdir().expect("tempdir");
    gatemeter_lake::earlier_release::write_earlier_lake(earlier.path(), &rows)
        .await
        .expect("earlier lake");
    let current = tempfile::tempdir().expect("tempdir");
    lake_from(&events, current.path()).await;
    let prices = Some(fixture("prices.csv"));
    let query = KpiQuery {
        group_by: vec!["team".into(), "provider".into()],
        ..KpiQuery::default()
    };
    let kpis_of = |engine: QueryEngine| {
        let query = query.clone();
        async move {
            let batches =
                gatemeter_query::kpis(&engine, Window::default(), &query, &KpiSettings::default())
                    .await
                    .expect("kpis");
            gatemeter_query::output::json_rows(&batches).expect("rows")
        }
    };
    let expected = kpis_of(engine(current.path(), prices.clone()).await).await;
    assert!(!expected.is_empty());
    for cache in [0, 16 << 20] {
        let old = QueryEngine::open(QueryConfig {
            data_dir: earlier.path().to_path_buf(),
            prices: prices.clone(),
            column_cache_bytes: cache,
            ..QueryConfig::default()
        })
        .await
        .expect("engine");
        let new_columns = "SELECT count(*) AS rows, count(retry_after_ms) AS waits, \
                           count(zero_data_retention) AS flags FROM attempts";
        let counted = rows_of(&old, Window::default(), new_columns).await;
        assert!(counted[3].ends_with("| 0     | 0     |"), "{counted:?}");
        assert_eq!(kpis_of(old).await, expected, "column cache {cache}");
    }

    // A writer of this release adds the columns; its rows carry them.
    let later = earlier.path().join("later.jsonl");
    std::fs::write(
        &later,
        r#"{"schema_version":1,"attempt_id":"late-1","request_id":"late","attempt_index":0,"attempt_kind":"initial","is_final":true,"request_start":"2026-11-01T10:30:00Z","attempt_start":"2026-11-01T10:30:00Z","attempt_end":"2026-11-01T10:30:01Z","requested_model":"m","provider":"p","api_key_id":"k","environment":"prod","outcome":"error","http_status":429,"error_class":"rate_limited","retry_after_ms":2000,"zero_data_retention":false}
"#,
    )
    .expect("write");
    lake_from(&later, earlier.path()).await;
    let old = engine(earlier.path(), prices).await;
    let counted = rows_of(
        &old,
        Window::default(),
        "SELECT sum(retry_after_ms) AS waits, count(zero_data_retention) AS flags FROM attempts",
    )
    .await;
    assert!(counted[3].contains("| 2000.0 | 1     |"), "{counted:?}");
}
