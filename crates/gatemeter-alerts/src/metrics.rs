//! Gauges and counters of the alert evaluator on `/metrics`: burn rates,
//! error budget remaining, budget ratios, alert states, and how
//! evaluations and notifications went. Labels are configured names only.

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct AlertMetrics {
    pub slo_burn_rate: GaugeVec,
    pub slo_budget_remaining: GaugeVec,
    pub budget_consumed: GaugeVec,
    pub budget_projected: GaugeVec,
    pub budget_burn_rate: GaugeVec,
    pub alert_state: IntGaugeVec,
    pub evaluations: IntCounterVec,
    pub notifications: IntCounterVec,
}

impl AlertMetrics {
    pub fn register(registry: &Registry) -> Result<AlertMetrics, prometheus::Error> {
        let metrics = AlertMetrics {
            slo_burn_rate: GaugeVec::new(
                Opts::new(
                    "gatemeter_slo_burn_rate",
                    "Error-budget burn rate of an SLO over a window",
                ),
                &["slo", "window"],
            )?,
            slo_budget_remaining: GaugeVec::new(
                Opts::new(
                    "gatemeter_slo_error_budget_remaining_ratio",
                    "Error budget left over the 30-day SLO period",
                ),
                &["slo"],
            )?,
            budget_consumed: GaugeVec::new(
                Opts::new(
                    "gatemeter_budget_consumed_ratio",
                    "Spend so far in the period / budget amount",
                ),
                &["budget"],
            )?,
            budget_projected: GaugeVec::new(
                Opts::new(
                    "gatemeter_budget_projected_ratio",
                    "Projected spend at period end / budget amount",
                ),
                &["budget"],
            )?,
            budget_burn_rate: GaugeVec::new(
                Opts::new(
                    "gatemeter_budget_burn_rate",
                    "Spend rate / (amount / period length)",
                ),
                &["budget"],
            )?,
            alert_state: IntGaugeVec::new(
                Opts::new("gatemeter_alert_state", "1 for the state each alert is in"),
                &["alert", "state"],
            )?,
            evaluations: IntCounterVec::new(
                Opts::new(
                    "gatemeter_alert_evaluations_total",
                    "Alert evaluations by result",
                ),
                &["result"],
            )?,
            notifications: IntCounterVec::new(
                Opts::new(
                    "gatemeter_alert_notifications_total",
                    "Alert notifications by result",
                ),
                &["result"],
            )?,
        };
        registry.register(Box::new(metrics.slo_burn_rate.clone()))?;
        registry.register(Box::new(metrics.slo_budget_remaining.clone()))?;
        registry.register(Box::new(metrics.budget_consumed.clone()))?;
        registry.register(Box::new(metrics.budget_projected.clone()))?;
        registry.register(Box::new(metrics.budget_burn_rate.clone()))?;
        registry.register(Box::new(metrics.alert_state.clone()))?;
        registry.register(Box::new(metrics.evaluations.clone()))?;
        registry.register(Box::new(metrics.notifications.clone()))?;
        Ok(metrics)
    }
}
