//! The evaluator: on every tick of a fixed-rate interval (no drift: the
//! next tick does not wait for the work), read the SLO windows, budget
//! spend and threshold KPIs ([`Figures`]), judge every alert's condition
//! (`conditions.rs`), step its state machine, persist the records, notify,
//! and publish reports and gauges. An error is logged and counted, and the
//! next tick runs regardless.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use gatemeter_query::{KpiSettings, QueryEngine};
use serde_json::{json, Value};
use tokio::time::MissedTickBehavior;
use tracing::{info, warn};

use crate::conditions::Judge;
use crate::config::AlertsConfig;
use crate::error::AlertError;
use crate::figures::{Figures, LakeFigures};
use crate::metrics::AlertMetrics;
use crate::notify::{Notice, Notifier};
use crate::state::{step, AlertRecord, Phase, Transition};
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

pub struct Evaluator<F = LakeFigures> {
    config: AlertsConfig,
    figures: F,
    store: StateStore,
    records: BTreeMap<String, AlertRecord>,
    /// When each firing alert was last sent (not persisted: after a restart
    /// a firing alert is resent at once, with its original `startsAt`).
    last_sent: BTreeMap<String, DateTime<Utc>>,
    notifier: Notifier,
    metrics: AlertMetrics,
}

impl Evaluator {
    /// An evaluator reading the lake through `engine`, its threshold KPIs
    /// measured against `kpi_settings`, keeping its alert states in
    /// `data_dir`.
    pub fn new(
        config: AlertsConfig,
        engine: Arc<QueryEngine>,
        kpi_settings: KpiSettings,
        data_dir: &std::path::Path,
        registry: &prometheus::Registry,
    ) -> Result<Evaluator, AlertError> {
        Evaluator::with_figures(
            config,
            LakeFigures::new(engine, kpi_settings),
            data_dir,
            registry,
        )
    }
}

impl<F: Figures> Evaluator<F> {
    /// An evaluator judging the alerts of `config` on `figures`.
    pub fn with_figures(
        config: AlertsConfig,
        figures: F,
        data_dir: &std::path::Path,
        registry: &prometheus::Registry,
    ) -> Result<Evaluator<F>, AlertError> {
        let store = StateStore::in_data_dir(data_dir);
        let records = store.load()?;
        let notifier = Notifier::new(config.alertmanager_url.clone(), config.webhook_urls.clone())?;
        let metrics =
            AlertMetrics::register(registry).map_err(|e| AlertError::Config(e.to_string()))?;
        Ok(Evaluator {
            config,
            figures,
            store,
            records,
            last_sent: BTreeMap::new(),
            notifier,
            metrics,
        })
    }

    /// One evaluation at `now`: step, persist, notify, report.
    pub async fn evaluate(&mut self, now: DateTime<Utc>) -> Result<EvaluationReport, AlertError> {
        self.figures.refresh().await?;
        let mut report = EvaluationReport::default();
        let judge = Judge {
            config: &self.config,
            figures: &self.figures,
            metrics: &self.metrics,
        };
        let mut conditions = judge.slos(now, &mut report).await?;
        conditions.extend(judge.budgets(now, &mut report).await?);
        conditions.extend(judge.thresholds(now).await?);

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
