//! Alert rules and notification targets from the `[alerts]` section of the
//! config file (TOML), checked when it is loaded.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::period::Period;

fn default_interval() -> u64 {
    30
}

fn default_resend() -> u64 {
    60
}

fn default_thresholds() -> Vec<f64> {
    vec![0.5, 0.8, 1.0]
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Seconds between evaluations.
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
    /// Seconds between repeats of a firing alert to its receivers.
    #[serde(default = "default_resend")]
    pub resend_seconds: u64,
    /// Notification targets must be on this list: `host`, `host:port`,
    /// an IP address or a CIDR range (`10.0.0.0/8`).
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// Prometheus Alertmanager base URL (alerts go to `/api/v2/alerts`).
    pub alertmanager_url: Option<String>,
    /// Generic JSON webhooks.
    #[serde(default)]
    pub webhook_urls: Vec<String>,
    /// Link put in every alert's annotations.
    pub dashboard_url: Option<String>,
    #[serde(default)]
    pub slo: Vec<SloConfig>,
    #[serde(default)]
    pub budget: Vec<BudgetConfig>,
    #[serde(default)]
    pub threshold: Vec<ThresholdConfig>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SloKind {
    #[default]
    Availability,
    Latency,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SloConfig {
    pub name: String,
    #[serde(default)]
    pub kind: SloKind,
    /// e.g. 0.999.
    pub target: f64,
    /// Latency SLOs: a good request answers within this many ms.
    pub latency_threshold_ms: Option<f64>,
    /// `team`, `provider` and/or `model` (requested model); empty = global.
    #[serde(default)]
    pub scope: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    pub name: String,
    /// One of `team`, `api_key_id`, `environment`, `org_id`; empty = global.
    #[serde(default)]
    pub scope: BTreeMap<String, String>,
    /// USD, exact decimal text ("3000" or "1250.50").
    pub amount_usd: String,
    pub period: Period,
    /// Whether spend on customers' own keys counts against the budget.
    #[serde(default)]
    pub include_byok: bool,
    /// Consumed shares that alert (default 0.5, 0.8, 1.0).
    #[serde(default = "default_thresholds")]
    pub thresholds: Vec<f64>,
    /// Alert when the projection at period end is over the amount.
    #[serde(default = "yes")]
    pub alert_on_projection: bool,
    /// Two-window burn alert: both burn rates at or over `burn_factor`.
    pub burn_factor: Option<f64>,
    #[serde(default = "default_burn_long")]
    pub burn_long_minutes: u64,
    #[serde(default = "default_burn_short")]
    pub burn_short_minutes: u64,
}

fn yes() -> bool {
    true
}

fn default_burn_long() -> u64 {
    360
}

fn default_burn_short() -> u64 {
    30
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Comparison {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = "<")]
    Below,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    pub name: String,
    /// A KPI name of SPEC 3, e.g. `latency_p99_ms`.
    pub kpi: String,
    pub op: Comparison,
    pub value: f64,
    /// The KPI is computed over the last this many minutes.
    #[serde(default = "default_window")]
    pub window_minutes: u64,
    /// How long the bound must be crossed before the alert fires.
    #[serde(default)]
    pub for_seconds: u64,
    #[serde(default)]
    pub scope: BTreeMap<String, String>,
    #[serde(default = "default_severity")]
    pub severity: String,
}

fn default_window() -> u64 {
    5
}

fn default_severity() -> String {
    "ticket".to_owned()
}
