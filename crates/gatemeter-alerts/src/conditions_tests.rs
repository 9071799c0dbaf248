//! The conditions judged on fixed figures, and an evaluation stepping them
//! into firing and resolved alerts.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::*;
use crate::budget::Nanos;
use crate::config::{BudgetConfig, SloConfig, ThresholdConfig};
use crate::evaluator::Evaluator;
use crate::state::Phase;
use crate::store::StateStore;

const USD: Nanos = 1_000_000_000;

/// Figures that are what the test says: (valid, bad) by SLO window
/// length, spend by the length of the asked span, one KPI value. A
/// clone shares them, so a test changes what an evaluator reads.
#[derive(Default, Clone)]
struct FixedFigures {
    slo: Arc<Mutex<BTreeMap<Duration, (u64, u64)>>>,
    spend: Arc<Mutex<BTreeMap<Duration, Nanos>>>,
    kpi: Arc<Mutex<Option<f64>>>,
}

impl Figures for FixedFigures {
    async fn refresh(&self) -> Result<(), AlertError> {
        Ok(())
    }

    async fn slo_counts(
        &self,
        _slo: &SloConfig,
        window: Duration,
        _now: DateTime<Utc>,
    ) -> Result<(u64, u64), AlertError> {
        let counts = self.slo.lock().expect("figures").get(&window).copied();
        Ok(counts.unwrap_or((0, 0)))
    }

    async fn spend(
        &self,
        _budget: &BudgetConfig,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Nanos, AlertError> {
        let spend = self
            .spend
            .lock()
            .expect("figures")
            .get(&(to - from))
            .copied();
        Ok(spend.unwrap_or(0))
    }

    async fn kpi(
        &self,
        _rule: &ThresholdConfig,
        _now: DateTime<Utc>,
    ) -> Result<Option<f64>, AlertError> {
        Ok(*self.kpi.lock().expect("figures"))
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("time")
        .with_timezone(&Utc)
}

fn config(rules: serde_json::Value) -> AlertsConfig {
    serde_json::from_value(rules).expect("alerts config")
}

fn metrics() -> AlertMetrics {
    AlertMetrics::register(&prometheus::Registry::new()).expect("metrics")
}

fn by_key(conditions: &[Condition]) -> BTreeMap<&str, &Condition> {
    conditions.iter().map(|c| (c.key.as_str(), c)).collect()
}

/// (valid, bad) at `bad_per_mille` for every window up to `upto`, none bad
/// in the longer ones.
fn slo_figures(bad_per_mille: u64, upto: Duration) -> FixedFigures {
    let figures = FixedFigures::default();
    let mut counts = figures.slo.lock().expect("figures");
    for window in windows()
        .into_iter()
        .chain([Duration::days(SLO_PERIOD_DAYS)])
    {
        let bad = if window <= upto { bad_per_mille } else { 0 };
        counts.insert(window, (1000, bad));
    }
    drop(counts);
    figures
}

#[tokio::test]
async fn an_slo_burning_in_both_windows_of_a_pair_pages_and_a_short_burst_does_not() {
    let config =
        config(json!({"slo": [{"name": "chat", "target": 0.999, "scope": {"team": "search"}}]}));
    let metrics = metrics();
    let now = at("2026-11-20T12:00:00Z");
    // 2 % bad over the last 6 hours: a burn rate of 20, over both page
    // pairs' factors (14.4 and 6) and the ticket pairs' shorter windows
    // only (2 h, 6 h), not their 1 d and 3 d.
    let figures = slo_figures(20, Duration::hours(6));
    let judge = Judge {
        config: &config,
        figures: &figures,
        metrics: &metrics,
    };
    let mut report = EvaluationReport::default();
    let conditions = judge.slos(now, &mut report).await.expect("slos");
    let conditions = by_key(&conditions);
    let page = conditions["slo:chat:page"];
    assert!(page.active);
    assert_eq!(page.labels["severity"], "page");
    assert_eq!(page.labels["team"], "search", "the scope labels the alert");
    assert!(
        page.annotations["description"].contains("1h/5m over 14.4x; 6h/30m over 6x"),
        "{:?}",
        page.annotations
    );
    assert!(!conditions["slo:chat:ticket"].active);
    let one_hour = report.slos[0]["burn_rates"]["1h"].as_f64().expect("a rate");
    assert!((one_hour - 20.0).abs() < 1e-9, "{one_hour}");
    assert_eq!(report.slos[0]["firing"], json!(["page"]));
    // 30 days with nothing bad: the whole budget remains.
    assert_eq!(report.slos[0]["error_budget_remaining"], json!(1.0));

    // Only the last 5 minutes bad: no long window agrees, nothing fires.
    let figures = slo_figures(500, Duration::minutes(5));
    let judge = Judge {
        figures: &figures,
        ..judge
    };
    let conditions = judge
        .slos(now, &mut EvaluationReport::default())
        .await
        .expect("slos");
    assert!(conditions.iter().all(|c| !c.active), "{conditions:?}");
}

#[tokio::test]
async fn a_budget_alerts_at_each_share_consumed_and_on_its_projection() {
    let config = config(json!({"budget": [{
        "name": "search-monthly", "scope": {"team": "search"}, "amount_usd": "3000",
        "period": "monthly", "thresholds": [0.5, 0.8, 1.0]
    }]}));
    let metrics = metrics();
    // Ten days into a 30-day November, $2,000 spent: two thirds consumed,
    // projected to $6,000.
    let now = at("2026-11-11T00:00:00Z");
    let figures = FixedFigures::default();
    figures
        .spend
        .lock()
        .expect("figures")
        .insert(Duration::days(10), 2_000 * USD);
    let judge = Judge {
        config: &config,
        figures: &figures,
        metrics: &metrics,
    };
    let mut report = EvaluationReport::default();
    let conditions = judge.budgets(now, &mut report).await.expect("budgets");
    let conditions = by_key(&conditions);
    assert!(conditions["budget:search-monthly:consumed:50"].active);
    assert!(!conditions["budget:search-monthly:consumed:80"].active);
    assert!(!conditions["budget:search-monthly:consumed:100"].active);
    let projected = conditions["budget:search-monthly:projected"];
    assert!(projected.active);
    assert_eq!(projected.annotations["projected_usd"], "6000.000000000");
    assert_eq!(projected.labels["team"], "search");
    assert_eq!(report.budgets[0]["spend"], json!("2000.000000000"));
    assert_eq!(report.budgets[0]["remaining"], json!("1000.000000000"));
    assert!(
        !conditions.contains_key("budget:search-monthly:burn"),
        "no burn factor, no burn alert"
    );
}

#[tokio::test]
async fn a_burn_alert_needs_both_windows_over_the_factor() {
    let config = config(json!({"budget": [{
        "name": "daily", "amount_usd": "240", "period": "daily", "thresholds": [],
        "alert_on_projection": false, "burn_factor": 2.0,
        "burn_long_minutes": 360, "burn_short_minutes": 30
    }]}));
    let metrics = metrics();
    let now = at("2026-11-11T12:00:00Z");
    // $240 a day is $60 per 6 h and $5 per 30 min.
    let figures = FixedFigures::default();
    let burn = |long: Nanos, short: Nanos| {
        let mut spend = figures.spend.lock().expect("figures");
        spend.insert(Duration::hours(6), long);
        spend.insert(Duration::minutes(30), short);
    };
    let judge = Judge {
        config: &config,
        figures: &figures,
        metrics: &metrics,
    };
    let mut seen = Vec::new();
    for (long, short) in [(150, 12), (150, 8), (100, 12)] {
        burn(long * USD, short * USD);
        let conditions = judge
            .budgets(now, &mut EvaluationReport::default())
            .await
            .expect("budgets");
        assert_eq!(conditions.len(), 1, "{conditions:?}");
        seen.push(conditions[0].active);
    }
    // 2.5x and 2.4x fire; 2.5x with 1.6x, or 1.67x with 2.4x, do not.
    assert_eq!(seen, [true, false, false]);
}

#[tokio::test]
async fn a_threshold_rule_compares_its_kpi_and_waits_its_for_time() {
    let config = config(json!({"threshold": [{
        "name": "slow", "kpi": "latency_p99_ms", "op": ">", "value": 2000.0,
        "for_seconds": 120, "scope": {"model": "gpt-4o"}
    }]}));
    let metrics = metrics();
    let figures = FixedFigures::default();
    let judge = Judge {
        config: &config,
        figures: &figures,
        metrics: &metrics,
    };
    let now = at("2026-11-11T12:00:00Z");
    let mut judged = Vec::new();
    for value in [Some(2500.0), Some(1500.0), None] {
        *figures.kpi.lock().expect("figures") = value;
        let conditions = judge.thresholds(now).await.expect("thresholds");
        assert_eq!(conditions[0].timing.for_, Duration::seconds(120));
        assert_eq!(conditions[0].labels["model"], "gpt-4o");
        judged.push((
            conditions[0].active,
            conditions[0].annotations["value"].clone(),
        ));
    }
    assert_eq!(
        judged,
        [
            (true, "2500".to_owned()),
            (false, "1500".to_owned()),
            (false, "null".to_owned())
        ]
    );
}

#[tokio::test]
async fn an_evaluation_fires_a_held_condition_and_resolves_it_once_clear_long_enough() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(json!({
        "resolve_after_seconds": 60,
        "threshold": [{"name": "errors", "kpi": "error_rate", "op": ">", "value": 0.05, "for_seconds": 60}]
    }));
    let figures = FixedFigures::default();
    let registry = prometheus::Registry::new();
    let mut evaluator =
        Evaluator::with_figures(config, figures.clone(), dir.path(), &registry).expect("evaluator");
    let start = at("2026-11-11T12:00:00Z");
    let mut states = Vec::new();
    for (seconds, value) in [(0, 0.2), (30, 0.2), (60, 0.2), (90, 0.0), (150, 0.0)] {
        *figures.kpi.lock().expect("figures") = Some(value);
        let report = evaluator
            .evaluate(start + Duration::seconds(seconds))
            .await
            .expect("evaluation");
        states.push(report.alerts[0]["state"].clone());
    }
    assert_eq!(
        states,
        [
            json!("pending"),
            json!("pending"),
            json!("firing"),
            json!("firing"),
            json!("resolved")
        ]
    );
    // The records are kept where the next evaluator starts from.
    let records = StateStore::in_data_dir(dir.path()).load().expect("records");
    let record = &records["threshold:errors"];
    assert_eq!(record.phase, Phase::Resolved);
    assert_eq!(record.fired_at, Some(start + Duration::seconds(60)));
    assert_eq!(record.resolved_at, Some(start + Duration::seconds(150)));
}
