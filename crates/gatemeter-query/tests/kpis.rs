//! KPI correctness over a hand-made fixture (`fixtures/edge.jsonl`, priced by
//! `fixtures/prices.csv`) whose expected values were computed by hand; the
//! arithmetic is written next to each assertion. Also the seeds' worked
//! example, generated here.

use std::path::{Path, PathBuf};

use chrono::DateTime;
use gatemeter_ingest::{import_file, FlushPolicy, IngestMetrics};
use gatemeter_lake::Lake;
use gatemeter_query::output::json_rows;
use gatemeter_query::{kpis, KpiQuery, KpiSettings, QueryConfig, QueryEngine, Window};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn at(text: &str) -> i64 {
    DateTime::parse_from_rfc3339(text).expect("time").timestamp_micros()
}

async fn lake_from(jsonl: &Path, dir: &Path) {
    let (mut lake, _) = Lake::open_local(dir, None).await.expect("lake");
    let metrics = IngestMetrics::register(&prometheus::Registry::new()).expect("metrics");
    import_file(&mut lake, jsonl, FlushPolicy::default(), &metrics, |_| {}).await.expect("import");
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

async fn rows(engine: &QueryEngine, window: Window, group_by: &[&str]) -> Vec<Value> {
    let query = KpiQuery {
        group_by: group_by.iter().map(|s| s.to_string()).collect(),
        ..KpiQuery::default()
    };
    let batches = kpis(engine, window, &query, &KpiSettings::default()).await.expect("kpis");
    json_rows(&batches).expect("json")
}

fn float(row: &Value, name: &str) -> Option<f64> {
    match &row[name] {
        Value::Null => None,
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        other => panic!("{name} is {other}"),
    }
}

fn within(row: &Value, name: &str, expected: f64, relative: f64) {
    let got = float(row, name).unwrap_or_else(|| panic!("{name} is null"));
    assert!((got - expected).abs() <= relative * expected.abs().max(1.0), "{name}: got {got}, expected {expected}");
}

fn close(row: &Value, name: &str, expected: f64) {
    within(row, name, expected, 1e-9);
}

/// Percentiles: DataFusion's percentile_cont agrees with linear
/// interpolation between closest ranks to about 1e-6 here; SPEC 3 allows 1%.
fn percentile(row: &Value, name: &str, expected: f64) {
    within(row, name, expected, 1e-4);
}

const HOUR: Window = Window { from: None, to: None };

fn ten_to_eleven() -> Window {
    Window {
        from: Some(at("2026-11-01T10:00:00Z")),
        to: Some(at("2026-11-01T11:00:00Z")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_fixture_kpis_match_the_hand_computation() {
    let dir = tempfile::tempdir().expect("tempdir");
    lake_from(&fixture("edge.jsonl"), dir.path()).await;
    let engine = engine(dir.path(), Some(fixture("prices.csv"))).await;
    let all = rows(&engine, ten_to_eleven(), &[]).await;
    assert_eq!(all.len(), 1);
    let r = &all[0];
    // R1..R10 are in the window; R8's duplicate and correction count once.
    assert_eq!(r["requests"], 10);
    assert_eq!(r["attempts"], 13);
    close(r, "retry_amplification", 1.3);
    // R2, R3, R4 have more than one attempt.
    close(r, "retry_rate", 0.3);
    // R3 fell back and succeeded.
    close(r, "fallback_rate", 0.1);
    close(r, "fallback_success_rate", 1.0);
    // valid: all but R6 (cancelled) and R7 (auth) = 8; good: 7 (R5 is partial).
    close(r, "availability", 0.875);
    close(r, "error_rate", 0.125);
    close(r, "error_budget_burn_rate", 125.0);
    close(r, "error_budget_remaining", -124.0);
    // Spend: R1 0.01 (reported) + R2 500+500 tok × $5/M = 0.005 + R3 500 × $5/M
    // = 0.0025 and 1000 × $1/M + 1000 × $2/M = 0.003 + R4 200 × $5/M = 0.001
    // + R5 after the 10:30 change 1200 × $10/M = 0.012 + R6 100 × $10/M =
    // 0.001 + R7 0 + R8 corrected 0.0025 + R9 unbilled 0 + R10 unpriced
    // = 0.037.
    assert_eq!(r["spend_usd"], "0.037000000");
    // Tokens: 1000 + 1000 + 500 + 2000 + 200 + 1200 + 100 + 0 + 200 + 2000 + 20 = 8220.
    assert_eq!(r["tokens"], 8220);
    // 0.037 × 1e6 / 8220 = 4.50121654501…
    assert_eq!(r["cost_per_1m_tokens_usd"], "4.501216545");
    // 0.037 / 7 successful requests = 0.00528571428…
    assert_eq!(r["cost_per_successful_outcome_usd"], "0.005285714");
    // Non-final attempts' tokens: R3's billed first attempt, 500.
    close(r, "respent_token_share", 500.0 / 8220.0);
    // Successful final attempts: 1000+1000+2000+200+200+2000+20 = 6420.
    close(r, "token_efficiency", 6420.0 / 8220.0);
    // e2e latency of successful requests: 500 1000 1000 1300 2000 3000 32000.
    percentile(r, "latency_p50_ms", 1300.0);
    percentile(r, "latency_p95_ms", 3000.0 + 0.7 * 29000.0);
    percentile(r, "latency_p99_ms", 3000.0 + 0.94 * 29000.0);
    // TTFT of successful streaming attempts: 100, 250, 400.
    percentile(r, "ttft_p50_ms", 250.0);
    percentile(r, "ttft_p95_ms", 250.0 + 0.9 * 150.0);
    // One successful attempt of 7 served another model (R3 → x).
    close(r, "model_drift_rate", 1.0 / 7.0);
    // Streaming attempts: R1, R2 ×2, R5, R9; one partial.
    close(r, "stream_interruption_rate", 0.2);
    assert_eq!(r["unpriced_attempts"], 1);
    // No TPM limit and no provider policy configured: undefined, not 0.
    assert_eq!(r["effective_throughput_pct"], Value::Null);
    assert_eq!(r["compliance_score"], Value::Null);

    let by_team = rows(&engine, ten_to_eleven(), &["team"]).await;
    let spend: Vec<(String, String)> = by_team
        .iter()
        .map(|r| (r["team"].as_str().unwrap_or_default().to_owned(), r["spend_usd"].as_str().unwrap_or_default().to_owned()))
        .collect();
    assert_eq!(
        spend,
        vec![
            ("a".to_owned(), "0.028000000".to_owned()),
            ("b".to_owned(), "0.009000000".to_owned()),
            ("c".to_owned(), "0.000000000".to_owned()),
        ]
    );

    // Without a window R11 (reported $1) is in too.
    let everything = rows(&engine, HOUR, &[]).await;
    assert_eq!(everything[0]["requests"], 11);
    assert_eq!(everything[0]["spend_usd"], "1.037000000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_windows_and_groups_are_null_not_nan() {
    let dir = tempfile::tempdir().expect("tempdir");
    lake_from(&fixture("edge.jsonl"), dir.path()).await;
    let engine = engine(dir.path(), Some(fixture("prices.csv"))).await;
    let empty = Window {
        from: Some(at("2026-12-01T00:00:00Z")),
        to: Some(at("2026-12-02T00:00:00Z")),
    };
    let global = rows(&engine, empty, &[]).await;
    assert_eq!(global.len(), 1);
    assert_eq!(global[0]["requests"], 0);
    for name in ["latency_p50_ms", "retry_amplification", "availability", "cost_per_1m_tokens_usd", "token_efficiency"] {
        assert_eq!(global[0][name], Value::Null, "{name}");
    }
    assert!(rows(&engine, empty, &["team"]).await.is_empty());
    // An empty lake answers too.
    let nothing = tempfile::tempdir().expect("tempdir");
    let engine = engine_for_empty(nothing.path()).await;
    assert_eq!(rows(&engine, HOUR, &[]).await[0]["requests"], 0);
}

async fn engine_for_empty(dir: &Path) -> QueryEngine {
    engine(dir, None).await
}

/// The seeds' example: 1,000 requests of 1,000 tokens at $5 per 1M; 20% need
/// one billed retry of the same size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worked_example_holds_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let jsonl = dir.path().join("worked.jsonl");
    let mut text = String::new();
    for i in 0..1000 {
        let start = format!("2026-11-01T10:{:02}:{:02}Z", i / 60 % 60, i % 60);
        let attempt = |index: u32, kind: &str, is_final: bool, outcome: &str| {
            format!(
                r#"{{"schema_version":1,"attempt_id":"a{i}-{index}","request_id":"r{i}","attempt_index":{index},"attempt_kind":"{kind}","is_final":{is_final},"request_start":"{start}","attempt_start":"{start}","attempt_end":"{start}","requested_model":"m","served_model":"m","provider":"acme","api_key_id":"k","environment":"prod","outcome":"{outcome}","input_tokens":600,"output_tokens":400}}"#
            )
        };
        if i % 5 == 0 {
            text.push_str(&attempt(0, "initial", false, "error"));
            text.push('\n');
            text.push_str(&attempt(1, "retry", true, "success"));
        } else {
            text.push_str(&attempt(0, "initial", true, "success"));
        }
        text.push('\n');
    }
    std::fs::write(&jsonl, text).expect("write");
    let prices = dir.path().join("prices.csv");
    std::fs::write(
        &prices,
        "provider,model,effective_from,input_per_1m,output_per_1m,cache_read_per_1m,cache_write_per_1m,request_fee,web_search_per_1k\nacme,m,2026-01-01T00:00:00Z,5,5,5,5,0,0\n",
    )
    .expect("write");
    let lake_dir = dir.path().join("lake");
    lake_from(&jsonl, &lake_dir).await;
    let engine = engine(&lake_dir, Some(prices)).await;
    let r = &rows(&engine, HOUR, &[]).await[0];
    assert_eq!(r["requests"], 1000);
    assert_eq!(r["attempts"], 1200);
    close(r, "retry_amplification", 1.2);
    assert_eq!(r["spend_usd"], "6.000000000");
    assert_eq!(r["cost_per_1m_tokens_usd"], "5.000000000");
    assert_eq!(r["cost_per_successful_outcome_usd"], "0.006000000");
    close(r, "respent_token_share", 1.0 / 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_named_query_runs_and_returns_rows() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().expect("tempdir");
    lake_from(&fixture("edge.jsonl"), dir.path()).await;
    let engine = engine(dir.path(), Some(fixture("prices.csv"))).await;
    let ctx = engine.session(Window::default()).await.expect("session");
    let now = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z").expect("time").with_timezone(&chrono::Utc);
    for (name, query) in gatemeter_query::named::catalog().expect("catalog") {
        let sql = gatemeter_query::named::bind(&name, &BTreeMap::new(), now).expect("binds");
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
    let lines = scorecard(&engine, at("2026-11-01T11:00:00Z"), hour, &KpiSettings::default(), &default_targets())
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
    let next = scorecard(&engine, at("2026-11-01T12:00:00Z"), hour, &KpiSettings::default(), &default_targets())
        .await
        .expect("scorecard");
    let availability = next.iter().find(|l| l.kpi == "availability").expect("availability");
    assert_eq!((availability.value, availability.baseline), (Some(1.0), Some(0.875)));
    assert_eq!(availability.status, Status::Green);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buckets_split_by_request_start_and_cost_variance_uses_the_trailing_week() {
    let dir = tempfile::tempdir().expect("tempdir");
    lake_from(&fixture("edge.jsonl"), dir.path()).await;
    let engine = engine(dir.path(), Some(fixture("prices.csv"))).await;
    let query = KpiQuery {
        bucket: Some("1h".into()),
        ..KpiQuery::default()
    };
    let batches = kpis(&engine, HOUR, &query, &KpiSettings::default()).await.expect("kpis");
    let buckets: Vec<(String, Value, Value)> = json_rows(&batches)
        .expect("json")
        .iter()
        .map(|r| (r["bucket_start"].as_str().unwrap_or_default().to_owned(), r["requests"].clone(), r["spend_usd"].clone()))
        .collect();
    assert_eq!(
        buckets,
        vec![
            ("2026-11-01T10:00:00Z".to_owned(), Value::from(10), Value::from("0.037000000")),
            ("2026-11-01T11:00:00Z".to_owned(), Value::from(1), Value::from("1.000000000")),
        ]
    );
    // 11:00–12:00 spends $1 (R11); the seven days before it spent $0.037,
    // i.e. 0.037 / 168 per hour: variance = (1 − 0.037/168) / (0.037/168) × 100.
    let window = Window {
        from: Some(at("2026-11-01T11:00:00Z")),
        to: Some(at("2026-11-01T12:00:00Z")),
    };
    let r = &rows(&engine, window, &[]).await[0];
    let baseline = 0.037 / 168.0;
    within(r, "cost_variance_pct", (1.0 - baseline) / baseline * 100.0, 1e-9);
    // With a TPM limit: 20 tokens in 60 minutes against 1 token/min = 33.3%.
    let settings = KpiSettings {
        tpm_limit: Some(1.0),
        allowed_providers: Some(vec!["acme".into(), "beta".into()]),
        ..KpiSettings::default()
    };
    let batches = kpis(&engine, window, &KpiQuery::default(), &settings).await.expect("kpis");
    let r = &json_rows(&batches).expect("json")[0];
    within(r, "effective_throughput_pct", 20.0 / 60.0 * 100.0, 1e-9);
    close(r, "compliance_score", 1.0);
    // Over 10:00–11:00, R10 went to `gamma`, outside the allowlist: 9 of 10.
    let batches = kpis(&engine, ten_to_eleven(), &KpiQuery::default(), &settings).await.expect("kpis");
    close(&json_rows(&batches).expect("json")[0], "compliance_score", 0.9);
}
