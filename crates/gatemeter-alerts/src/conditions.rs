//! The alert conditions of one evaluation, judged on the [`Figures`] read
//! at that moment: each SLO's multi-window burn rates (page and ticket),
//! each budget's thresholds, projection and burn rate, each threshold
//! rule's KPI. Pure but for the figures and the gauges they set, so the
//! tests judge fixed figures.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};

use crate::budget::{status, usd_text, window_burn_rate};
use crate::config::{parse_usd, AlertsConfig, Comparison, SloKind};
use crate::error::AlertError;
use crate::evaluator::{EvaluationReport, BUDGET_ALERT, THRESHOLD_ALERT};
use crate::figures::Figures;
use crate::metrics::AlertMetrics;
use crate::rules_export::BURN_ALERT;
use crate::slo::{budget_remaining, burn_rate, firing, window_name, windows, SLO_PERIOD_DAYS};
use crate::state::Timing;
use crate::time_serde::text;

/// One alert condition as evaluated now.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Condition {
    pub(crate) key: String,
    pub(crate) active: bool,
    pub(crate) timing: Timing,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) annotations: BTreeMap<String, String>,
}

/// Judges the alerts of `config` on `figures`, setting `metrics`' gauges.
pub(crate) struct Judge<'a, F> {
    pub(crate) config: &'a AlertsConfig,
    pub(crate) figures: &'a F,
    pub(crate) metrics: &'a AlertMetrics,
}

impl<F: Figures> Judge<'_, F> {
    fn timing(&self, for_: Duration) -> Timing {
        Timing {
            for_,
            clear_for: Duration::seconds(self.config.resolve_after_seconds as i64),
        }
    }

    /// Two conditions of each SLO (page and ticket), from its burn rates;
    /// its figures go to `report` and the gauges.
    pub(crate) async fn slos(
        &self,
        now: DateTime<Utc>,
        report: &mut EvaluationReport,
    ) -> Result<Vec<Condition>, AlertError> {
        let mut conditions = Vec::new();
        for slo in &self.config.slo {
            let mut rates = BTreeMap::new();
            for window in windows() {
                let (valid, bad) = self.figures.slo_counts(slo, window, now).await?;
                rates.insert(window, burn_rate(bad, valid, slo.target));
            }
            let (valid, bad) = self
                .figures
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

    /// The conditions of each budget: a threshold consumed, a projected
    /// overspend, a burn rate; its figures go to `report` and the gauges.
    pub(crate) async fn budgets(
        &self,
        now: DateTime<Utc>,
        report: &mut EvaluationReport,
    ) -> Result<Vec<Condition>, AlertError> {
        let mut conditions = Vec::new();
        for budget in &self.config.budget {
            let amount = parse_usd(&budget.amount_usd).unwrap_or(0);
            let (start, end) = budget.period.bounds(now);
            let spend = self.figures.spend(budget, start, now).await?;
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
                    self.figures.spend(budget, now - long, now).await?,
                    long,
                );
                let short_rate = window_burn_rate(
                    amount,
                    period_length,
                    self.figures.spend(budget, now - short, now).await?,
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

    /// One condition of each threshold rule: its KPI past its bound.
    pub(crate) async fn thresholds(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<Condition>, AlertError> {
        let mut conditions = Vec::new();
        for rule in &self.config.threshold {
            let value = self.figures.kpi(rule, now).await?;
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
}

#[cfg(test)]
#[path = "conditions_tests.rs"]
mod tests;
