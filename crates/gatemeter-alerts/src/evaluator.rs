//! The evaluator: on every tick of a fixed-rate interval (no drift: the
//! next tick does not wait for the work), read the SLO windows, budget
//! spend and threshold KPIs from the lake, step every alert's state
//! machine, persist the records, notify, and publish reports and gauges.
//! An error is logged and counted, and the next tick runs regardless.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Decimal128Type, Int64Type};
use gatemeter_query::kpi::quote_literal;
use gatemeter_query::output::json_rows;
use gatemeter_query::stored_rollups::stored_name;
use gatemeter_query::stored_rollups::BY_MODEL_OMITS;
use gatemeter_query::{
    kpis, KpiQuery, KpiSettings, QueryEngine, RollupGrain, RollupReads, TeamScope, Window,
};
use serde_json::{json, Value};
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use crate::budget::{status, usd_text, window_burn_rate};
use crate::config::{parse_usd, AlertsConfig, BudgetConfig, Comparison, SloConfig, SloKind};
use crate::error::AlertError;
use crate::metrics::AlertMetrics;
use crate::notify::{Notice, Notifier};
use crate::rules_export::BURN_ALERT;
use crate::slo::{budget_remaining, burn_rate, firing, window_name, windows, SLO_PERIOD_DAYS};
use crate::state::{step, AlertRecord, Phase, Timing, Transition};
use crate::store::StateStore;
use crate::time_serde::text;

pub const BUDGET_ALERT: &str = "GatemeterBudget";
pub const THRESHOLD_ALERT: &str = "GatemeterThreshold";

/// What one evaluation found, for the API.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvaluationReport {
    pub slos: Vec<Value>,
    pub budgets: Vec<Value>,
    pub alerts: Vec<Value>,
}

/// One alert condition as evaluated now.
struct Condition {
    key: String,
    active: bool,
    timing: Timing,
    labels: BTreeMap<String, String>,
    annotations: BTreeMap<String, String>,
}

fn micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// `WHERE` clauses of a scope; `model` means the requested model.
fn scope_filter(scope: &BTreeMap<String, String>) -> Vec<String> {
    scope
        .iter()
        .map(|(key, value)| {
            let column = if key == "model" {
                "requested_model"
            } else {
                key.as_str()
            };
            format!("{column} = {}", quote_literal(value))
        })
        .collect()
}

/// Whether a scope's rows are all in the rollups by model: it names none
/// of the columns they leave out.
fn by_model(scope: &BTreeMap<String, String>) -> bool {
    scope
        .keys()
        .all(|key| !BY_MODEL_OMITS.contains(&key.as_str()))
}

fn where_clause(clauses: &[String]) -> String {
    if clauses.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", clauses.join(" AND "))
    }
}

pub struct Evaluator {
    config: AlertsConfig,
    engine: Arc<QueryEngine>,
    kpi_settings: KpiSettings,
    store: StateStore,
    records: BTreeMap<String, AlertRecord>,
    /// When each firing alert was last sent (not persisted: after a restart
    /// a firing alert is resent at once, with its original `startsAt`).
    last_sent: BTreeMap<String, DateTime<Utc>>,
    notifier: Notifier,
    metrics: AlertMetrics,
}

impl Evaluator {
    pub fn new(
        config: AlertsConfig,
        engine: Arc<QueryEngine>,
        kpi_settings: KpiSettings,
        data_dir: &std::path::Path,
        registry: &prometheus::Registry,
    ) -> Result<Evaluator, AlertError> {
        let store = StateStore::in_data_dir(data_dir);
        let records = store.load()?;
        let notifier = Notifier::new(config.alertmanager_url.clone(), config.webhook_urls.clone())?;
        let metrics =
            AlertMetrics::register(registry).map_err(|e| AlertError::Config(e.to_string()))?;
        Ok(Evaluator {
            config,
            engine,
            kpi_settings,
            store,
            records,
            last_sent: BTreeMap::new(),
            notifier,
            metrics,
        })
    }

    fn timing(&self, for_: Duration) -> Timing {
        Timing {
            for_,
            clear_for: Duration::seconds(self.config.resolve_after_seconds as i64),
        }
    }

    /// The first row of `sql` over `window`. Unless `grain` is raw only,
    /// the session also holds the stored rollups of the window's settled
    /// days and hours (`rollup_hourly_usage`, `rollup_hourly_requests`;
    /// docs/lake.md, "Rollups") and its raw views leave those hours out, so
    /// `sql` must add both up.
    async fn scalar_row(
        &self,
        window: Window,
        reads: RollupReads,
        sql: &str,
    ) -> Result<datafusion::arrow::record_batch::RecordBatch, AlertError> {
        let (ctx, _) = self
            .engine
            .rollup_session(window, &TeamScope::all(), reads)
            .await?;
        let batches = ctx
            .sql(sql)
            .await
            .map_err(gatemeter_query::QueryError::from)?
            .collect()
            .await
            .map_err(gatemeter_query::QueryError::from)?;
        batches
            .into_iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| AlertError::Config(format!("no row from `{sql}`")))
    }

    /// (valid, bad) requests of `slo` in `[now − window, now)`.
    async fn slo_counts(
        &self,
        slo: &SloConfig,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<(u64, u64), AlertError> {
        let filter = where_clause(&scope_filter(&slo.scope));
        // An availability SLO's counts are in the stored rollups; a latency
        // SLO's threshold is the operator's, so its requests are read raw.
        let (sql, grain) = match (slo.kind, slo.latency_threshold_ms) {
            (SloKind::Latency, Some(ms)) => (
                format!(
                    "SELECT count(*) FILTER (WHERE valid) AS valid, count(*) FILTER (WHERE valid AND NOT (good AND e2e_latency_ms <= {ms:?})) AS bad FROM requests{filter}"
                ),
                RollupGrain::RawOnly,
            ),
            _ => (
                format!(
                    "SELECT CAST(sum(valid) AS BIGINT) AS valid, CAST(sum(bad) AS BIGINT) AS bad FROM (\
                     SELECT count(*) FILTER (WHERE valid) AS valid, count(*) FILTER (WHERE valid AND NOT good) AS bad FROM requests{filter} \
                     UNION ALL SELECT sum(valid_requests), sum(valid_requests - good_requests) FROM {stored}{filter})",
                    stored = stored_name("hourly_requests"),
                ),
                RollupGrain::Days,
            ),
        };
        let reads = RollupReads {
            grain,
            by_model: by_model(&slo.scope),
        };
        let row = self
            .scalar_row(
                Window {
                    from: Some(micros(now - window)),
                    to: Some(micros(now)),
                },
                reads,
                &sql,
            )
            .await?;
        let count = |i: usize| row.column(i).as_primitive::<Int64Type>().value(0).max(0) as u64;
        Ok((count(0), count(1)))
    }

    /// Spend (nano-dollars) of `budget`'s scope in `[from, to)`.
    async fn spend(
        &self,
        budget: &BudgetConfig,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<i128, AlertError> {
        let mut clauses = scope_filter(&budget.scope);
        if !budget.include_byok {
            clauses.push("key_type <> 'byok'".to_owned());
        }
        let filter = where_clause(&clauses);
        let sql = format!(
            "SELECT CAST(sum(spend) AS DECIMAL(38, 9)) AS spend FROM (\
             SELECT CAST(sum(cost_usd) AS DECIMAL(38, 9)) AS spend FROM attempts{filter} \
             UNION ALL SELECT CAST(sum(spend_usd) AS DECIMAL(38, 9)) FROM {stored}{filter})",
            stored = stored_name("hourly_usage"),
        );
        let row = self
            .scalar_row(
                Window {
                    from: Some(micros(from)),
                    to: Some(micros(to)),
                },
                RollupReads {
                    grain: RollupGrain::Days,
                    by_model: by_model(&budget.scope),
                },
                &sql,
            )
            .await?;
        let column = row.column(0).as_primitive::<Decimal128Type>();
        Ok(if column.is_null(0) {
            0
        } else {
            column.value(0)
        })
    }

    async fn slo_conditions(
        &self,
        now: DateTime<Utc>,
        report: &mut EvaluationReport,
    ) -> Result<Vec<Condition>, AlertError> {
        let mut conditions = Vec::new();
        for slo in &self.config.slo {
            let mut rates = BTreeMap::new();
            for window in windows() {
                let (valid, bad) = self.slo_counts(slo, window, now).await?;
                rates.insert(window, burn_rate(bad, valid, slo.target));
            }
            let (valid, bad) = self
                .slo_counts(slo, Duration::days(SLO_PERIOD_DAYS), now)
                .await?;
            let remaining = budget_remaining(bad, valid, slo.target);
            for (window, rate) in &rates {
                self.metrics
                    .slo_burn_rate
                    .with_label_values(&[&slo.name, &window_name(*window)])
                    .set(rate.unwrap_or(0.0));
            }
            self.metrics
                .slo_budget_remaining
                .with_label_values(&[&slo.name])
                .set(remaining.unwrap_or(1.0));
            let verdicts = firing(|window| rates.get(&window).copied().flatten());
            let mut firing_now = Vec::new();
            for severity in [crate::slo::Severity::Page, crate::slo::Severity::Ticket] {
                let pairs: Vec<_> = verdicts
                    .iter()
                    .filter(|(p, _)| p.severity == severity)
                    .collect();
                let active = pairs.iter().any(|(_, on)| *on);
                let fired_by: Vec<String> = pairs
                    .iter()
                    .filter(|(_, on)| *on)
                    .map(|(p, _)| {
                        format!(
                            "{}/{} over {}x",
                            window_name(p.long),
                            window_name(p.short),
                            p.factor
                        )
                    })
                    .collect();
                if active {
                    firing_now.push(severity.as_str());
                }
                let rate_text: Vec<String> = pairs
                    .iter()
                    .flat_map(|(p, _)| [p.long, p.short])
                    .map(|w| {
                        format!(
                            "{}={}",
                            window_name(w),
                            rates
                                .get(&w)
                                .copied()
                                .flatten()
                                .map_or("n/a".to_owned(), |r| format!("{r:.2}"))
                        )
                    })
                    .collect();
                let mut labels = BTreeMap::from([
                    ("alertname".to_owned(), BURN_ALERT.to_owned()),
                    ("severity".to_owned(), severity.as_str().to_owned()),
                    ("slo".to_owned(), slo.name.clone()),
                ]);
                labels.extend(slo.scope.clone());
                let mut annotations = BTreeMap::from([
                    (
                        "summary".to_owned(),
                        format!(
                            "SLO {} is burning its error budget ({} level)",
                            slo.name,
                            severity.as_str()
                        ),
                    ),
                    (
                        "description".to_owned(),
                        format!(
                            "Burn rates (x budget of {:.3}%): {}. Fired by: {}.",
                            (1.0 - slo.target) * 100.0,
                            rate_text.join(", "),
                            if fired_by.is_empty() {
                                "none".to_owned()
                            } else {
                                fired_by.join("; ")
                            }
                        ),
                    ),
                ]);
                if let Some(url) = &self.config.dashboard_url {
                    annotations.insert("dashboard".to_owned(), url.clone());
                }
                conditions.push(Condition {
                    key: format!("slo:{}:{}", slo.name, severity.as_str()),
                    active,
                    timing: self.timing(Duration::zero()),
                    labels,
                    annotations,
                });
            }
            let burn: BTreeMap<String, Option<f64>> =
                rates.iter().map(|(w, r)| (window_name(*w), *r)).collect();
            report.slos.push(json!({
                "name": slo.name,
                "kind": match slo.kind { SloKind::Availability => "availability", SloKind::Latency => "latency" },
                "target": slo.target,
                "latency_threshold_ms": slo.latency_threshold_ms,
                "scope": slo.scope,
                "burn_rates": burn,
                "error_budget_remaining": remaining,
                "period_days": SLO_PERIOD_DAYS,
                "firing": firing_now,
            }));
        }
        Ok(conditions)
    }

    async fn budget_conditions(
        &self,
        now: DateTime<Utc>,
        report: &mut EvaluationReport,
    ) -> Result<Vec<Condition>, AlertError> {
        let mut conditions = Vec::new();
        for budget in &self.config.budget {
            let amount = parse_usd(&budget.amount_usd).unwrap_or(0);
            let (start, end) = budget.period.bounds(now);
            let spend = self.spend(budget, start, now).await?;
            let figures = status(amount, budget.period, spend, now);
            self.metrics
                .budget_consumed
                .with_label_values(&[&budget.name])
                .set(figures.consumed);
            self.metrics
                .budget_projected
                .with_label_values(&[&budget.name])
                .set(if amount > 0 {
                    figures.projected as f64 / amount as f64
                } else {
                    0.0
                });
            self.metrics
                .budget_burn_rate
                .with_label_values(&[&budget.name])
                .set(figures.burn_rate);
            let base_labels = |kind: &str| {
                let mut labels = BTreeMap::from([
                    ("alertname".to_owned(), BUDGET_ALERT.to_owned()),
                    ("budget".to_owned(), budget.name.clone()),
                    ("kind".to_owned(), kind.to_owned()),
                    ("severity".to_owned(), "ticket".to_owned()),
                ]);
                labels.extend(budget.scope.clone());
                labels
            };
            let figures_text = format!(
                "spent ${} of ${} in the {} period {}..{}; projected ${} at period end; burn rate {:.2}x",
                usd_text(figures.spend),
                usd_text(amount),
                budget.period.as_str(),
                text(&start),
                text(&end),
                usd_text(figures.projected),
                figures.burn_rate
            );
            let annotations = |summary: String| {
                let mut annotations = BTreeMap::from([
                    ("summary".to_owned(), summary),
                    ("description".to_owned(), figures_text.clone()),
                    ("projected_usd".to_owned(), usd_text(figures.projected)),
                    ("spend_usd".to_owned(), usd_text(figures.spend)),
                    ("amount_usd".to_owned(), usd_text(amount)),
                ]);
                if let Some(url) = &self.config.dashboard_url {
                    annotations.insert("dashboard".to_owned(), url.clone());
                }
                annotations
            };
            for threshold in &budget.thresholds {
                let percent = format!("{:.0}", threshold * 100.0);
                let mut labels = base_labels("consumed");
                labels.insert("threshold".to_owned(), format!("{percent}%"));
                conditions.push(Condition {
                    key: format!("budget:{}:consumed:{percent}", budget.name),
                    active: figures.consumed >= *threshold,
                    timing: self.timing(Duration::zero()),
                    labels,
                    annotations: annotations(format!(
                        "Budget {} is {percent}% consumed",
                        budget.name
                    )),
                });
            }
            if budget.alert_on_projection {
                conditions.push(Condition {
                    key: format!("budget:{}:projected", budget.name),
                    active: figures.projected > amount,
                    timing: self.timing(Duration::zero()),
                    labels: base_labels("projected_overspend"),
                    annotations: annotations(format!(
                        "Budget {} is projected to overspend: ${} against ${}",
                        budget.name,
                        usd_text(figures.projected),
                        usd_text(amount)
                    )),
                });
            }
            if let Some(factor) = budget.burn_factor {
                let period_length = end - start;
                let long = Duration::minutes(budget.burn_long_minutes as i64);
                let short = Duration::minutes(budget.burn_short_minutes as i64);
                let long_rate = window_burn_rate(
                    amount,
                    period_length,
                    self.spend(budget, now - long, now).await?,
                    long,
                );
                let short_rate = window_burn_rate(
                    amount,
                    period_length,
                    self.spend(budget, now - short, now).await?,
                    short,
                );
                conditions.push(Condition {
                    key: format!("budget:{}:burn", budget.name),
                    active: long_rate >= factor && short_rate >= factor,
                    timing: self.timing(Duration::zero()),
                    labels: base_labels("burn_rate"),
                    annotations: annotations(format!(
                        "Budget {} burns at {long_rate:.2}x ({}) and {short_rate:.2}x ({}), over {factor}x",
                        budget.name,
                        window_name(long),
                        window_name(short)
                    )),
                });
            }
            let mut entry = serde_json::to_value(&figures).unwrap_or(Value::Null);
            if let Value::Object(map) = &mut entry {
                map.insert("name".into(), json!(budget.name));
                map.insert("scope".into(), json!(budget.scope));
                map.insert("period".into(), json!(budget.period.as_str()));
                map.insert("include_byok".into(), json!(budget.include_byok));
            }
            report.budgets.push(entry);
        }
        Ok(conditions)
    }

    async fn threshold_conditions(&self, now: DateTime<Utc>) -> Result<Vec<Condition>, AlertError> {
        let mut conditions = Vec::new();
        for rule in &self.config.threshold {
            let window = Window {
                from: Some(micros(now - Duration::minutes(rule.window_minutes as i64))),
                to: Some(micros(now)),
            };
            let query = KpiQuery {
                filters: rule
                    .scope
                    .iter()
                    .map(|(k, v)| {
                        (
                            if k == "model" {
                                "requested_model".to_owned()
                            } else {
                                k.clone()
                            },
                            v.clone(),
                        )
                    })
                    .collect(),
                ..KpiQuery::default()
            };
            let rows = json_rows(&kpis(&self.engine, window, &query, &self.kpi_settings).await?)?;
            let value = rows.first().and_then(|row| match &row[rule.kpi.as_str()] {
                Value::Number(n) => n.as_f64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            });
            let active = value.is_some_and(|v| match rule.op {
                Comparison::Above => v > rule.value,
                Comparison::Below => v < rule.value,
            });
            let mut labels = BTreeMap::from([
                ("alertname".to_owned(), THRESHOLD_ALERT.to_owned()),
                ("rule".to_owned(), rule.name.clone()),
                ("kpi".to_owned(), rule.kpi.clone()),
                ("severity".to_owned(), rule.severity.clone()),
            ]);
            labels.extend(rule.scope.clone());
            let op = match rule.op {
                Comparison::Above => ">",
                Comparison::Below => "<",
            };
            let mut annotations = BTreeMap::from([
                (
                    "summary".to_owned(),
                    format!(
                        "{} {op} {} over the last {} min",
                        rule.kpi, rule.value, rule.window_minutes
                    ),
                ),
                (
                    "value".to_owned(),
                    value.map_or("null".to_owned(), |v| v.to_string()),
                ),
            ]);
            if let Some(url) = &self.config.dashboard_url {
                annotations.insert("dashboard".to_owned(), url.clone());
            }
            conditions.push(Condition {
                key: format!("threshold:{}", rule.name),
                active,
                timing: self.timing(Duration::seconds(rule.for_seconds as i64)),
                labels,
                annotations,
            });
        }
        Ok(conditions)
    }

    /// One evaluation at `now`: step, persist, notify, report.
    pub async fn evaluate(&mut self, now: DateTime<Utc>) -> Result<EvaluationReport, AlertError> {
        self.engine.refresh().await?;
        let mut report = EvaluationReport::default();
        let mut conditions = self.slo_conditions(now, &mut report).await?;
        conditions.extend(self.budget_conditions(now, &mut report).await?);
        conditions.extend(self.threshold_conditions(now).await?);

        let mut notices = Vec::new();
        let mut records = BTreeMap::new();
        let resend = Duration::seconds(self.config.resend_seconds as i64);
        for condition in conditions {
            let previous = self
                .records
                .get(&condition.key)
                .cloned()
                .unwrap_or_default();
            let (record, transition) = step(&previous, condition.active, condition.timing, now);
            let notice = |ends_at| Notice {
                labels: condition.labels.clone(),
                annotations: condition.annotations.clone(),
                starts_at: record.fired_at.unwrap_or(now),
                ends_at,
                generator_url: self.config.dashboard_url.clone(),
            };
            let due = match transition {
                Transition::Fired | Transition::Resolved => true,
                Transition::StillFiring => self
                    .last_sent
                    .get(&condition.key)
                    .is_none_or(|sent| now - *sent >= resend),
                Transition::Quiet | Transition::Pending => false,
            };
            if due {
                notices.push(notice(if transition == Transition::Resolved {
                    Some(now)
                } else {
                    None
                }));
                self.last_sent.insert(condition.key.clone(), now);
            }
            if transition == Transition::Fired {
                info!(alert = condition.key.as_str(), "alert firing");
            }
            for phase in [
                Phase::Inactive,
                Phase::Pending,
                Phase::Firing,
                Phase::Resolved,
            ] {
                self.metrics
                    .alert_state
                    .with_label_values(&[&condition.key, phase.as_str()])
                    .set(i64::from(record.phase == phase));
            }
            report.alerts.push(json!({
                "key": condition.key,
                "state": record.phase.as_str(),
                "labels": condition.labels,
                "annotations": condition.annotations,
                "active_since": record.active_since.as_ref().map(text),
                "fired_at": record.fired_at.as_ref().map(text),
                "resolved_at": record.resolved_at.as_ref().map(text),
            }));
            records.insert(condition.key, record);
        }
        // Persist (only when a record changed) before notifying: a crash in
        // between resends with the same startsAt, never pages anew.
        if records != self.records {
            self.store.save(&records)?;
        }
        self.records = records;
        if self.notifier.has_targets() {
            for error in self.notifier.send(&notices).await {
                warn!(%error, "alert notification failed");
                self.metrics
                    .notifications
                    .with_label_values(&["error"])
                    .inc();
                // Try again on the next evaluation.
                self.last_sent.clear();
            }
            if !notices.is_empty() {
                self.metrics
                    .notifications
                    .with_label_values(&["sent"])
                    .inc_by(notices.len() as u64);
            }
        }
        Ok(report)
    }

    /// Evaluates every `interval_seconds` until `shutdown`, handing each
    /// report to `publish`. Errors never stop the loop.
    pub async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
        publish: impl Fn(EvaluationReport),
    ) {
        let mut ticker =
            tokio::time::interval(StdDuration::from_secs(self.config.interval_seconds.max(1)));
        // Fixed rate: a slow evaluation delays the next tick, never shifts the schedule.
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                _ = ticker.tick() => {}
            }
            // Shutdown does not wait for an evaluation: one cut short only
            // loses its notifications, which the next run resends (the
            // records keep their startsAt).
            let outcome = tokio::select! {
                () = &mut shutdown => break,
                outcome = self.evaluate(Utc::now()) => outcome,
            };
            match outcome {
                Ok(report) => {
                    self.metrics.evaluations.with_label_values(&["ok"]).inc();
                    publish(report);
                }
                Err(error) => {
                    self.metrics.evaluations.with_label_values(&["error"]).inc();
                    warn!(%error, "alert evaluation failed; trying again next interval");
                }
            }
        }
    }
}
