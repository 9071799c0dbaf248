//! Alert rules and notification targets from the `[alerts]` section of the
//! config file (TOML), checked when it is loaded.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::allowlist::Allowlist;
use crate::error::AlertError;
use crate::period::Period;

fn default_interval() -> u64 {
    30
}

fn default_resend() -> u64 {
    60
}

fn default_resolve_after() -> u64 {
    60
}

fn default_thresholds() -> Vec<f64> {
    vec![0.5, 0.8, 1.0]
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// Seconds between evaluations.
    #[serde(default = "default_interval")]
    pub interval_seconds: u64,
    /// Seconds between repeats of a firing alert to its receivers.
    #[serde(default = "default_resend")]
    pub resend_seconds: u64,
    /// A firing alert resolves once its condition has been false this long
    /// (so a flapping signal does not page again and again).
    #[serde(default = "default_resolve_after")]
    pub resolve_after_seconds: u64,
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

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            interval_seconds: default_interval(),
            resend_seconds: default_resend(),
            resolve_after_seconds: default_resolve_after(),
            allowlist: Vec::new(),
            alertmanager_url: None,
            webhook_urls: Vec::new(),
            dashboard_url: None,
            slo: Vec::new(),
            budget: Vec::new(),
            threshold: Vec::new(),
        }
    }
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
    /// A KPI name of docs/kpis.md, e.g. `latency_p99_ms`.
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

/// USD text ("3000", "12.5") as nano-dollars, exactly.
pub fn parse_usd(text: &str) -> Option<i128> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty()
        || fraction.len() > 9
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !fraction.chars().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let whole: i128 = whole.parse().ok()?;
    let fraction: i128 = if fraction.is_empty() {
        0
    } else {
        format!("{fraction:0<9}").parse().ok()?
    };
    whole.checked_mul(1_000_000_000)?.checked_add(fraction)
}

const SLO_SCOPES: &[&str] = &["team", "provider", "model"];
const BUDGET_SCOPES: &[&str] = &["team", "api_key_id", "environment", "org_id"];

fn check_scope(
    what: &str,
    scope: &BTreeMap<String, String>,
    allowed: &[&str],
) -> Result<(), AlertError> {
    match scope.keys().find(|key| !allowed.contains(&key.as_str())) {
        Some(key) => Err(AlertError::Config(format!(
            "{what}: scope `{key}` is not one of {}",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

impl AlertsConfig {
    /// Checks every rule and target; the error names the rule and field.
    pub fn validate(&self) -> Result<(), AlertError> {
        let allowlist = Allowlist::parse(&self.allowlist)?;
        if let Some(url) = &self.alertmanager_url {
            allowlist
                .check(url)
                .map_err(|e| AlertError::Allowlist(format!("alerts.alertmanager_url: {e}")))?;
        }
        for url in &self.webhook_urls {
            allowlist
                .check(url)
                .map_err(|e| AlertError::Allowlist(format!("alerts.webhook_urls: {e}")))?;
        }
        if self.interval_seconds == 0 {
            return Err(AlertError::Config(
                "interval_seconds must be at least 1".into(),
            ));
        }
        for slo in &self.slo {
            let what = format!("slo `{}`", slo.name);
            if !(slo.target > 0.0 && slo.target < 1.0) {
                return Err(AlertError::Config(format!(
                    "{what}: target {} must be between 0 and 1",
                    slo.target
                )));
            }
            if slo.kind == SloKind::Latency && slo.latency_threshold_ms.is_none_or(|ms| ms <= 0.0) {
                return Err(AlertError::Config(format!(
                    "{what}: a latency SLO needs latency_threshold_ms > 0"
                )));
            }
            check_scope(&what, &slo.scope, SLO_SCOPES)?;
        }
        for budget in &self.budget {
            let what = format!("budget `{}`", budget.name);
            if parse_usd(&budget.amount_usd).is_none_or(|amount| amount <= 0) {
                return Err(AlertError::Config(format!(
                    "{what}: amount_usd `{}` is not a positive USD amount like \"3000\" or \"1250.50\"",
                    budget.amount_usd
                )));
            }
            check_scope(&what, &budget.scope, BUDGET_SCOPES)?;
            if budget.scope.len() > 1 {
                return Err(AlertError::Config(format!(
                    "{what}: a budget has one scope dimension at most"
                )));
            }
        }
        for threshold in &self.threshold {
            if !gatemeter_query::KPI_NAMES.contains(&threshold.kpi.as_str()) {
                return Err(AlertError::Config(format!(
                    "threshold `{}`: kpi `{}` is not a KPI name (see gatemeter kpis --format json)",
                    threshold.name, threshold.kpi
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usd_amounts_parse_exactly() {
        assert_eq!(parse_usd("3000"), Some(3_000_000_000_000));
        assert_eq!(parse_usd("12.5"), Some(12_500_000_000));
        assert_eq!(parse_usd("0.000000001"), Some(1));
        assert_eq!(parse_usd("1.0000000001"), None);
        assert_eq!(parse_usd("-5"), None);
        assert_eq!(parse_usd("abc"), None);
    }

    #[test]
    fn config_errors_name_the_rule() {
        let config = AlertsConfig {
            interval_seconds: 30,
            allowlist: vec!["127.0.0.1:9093".into()],
            alertmanager_url: Some("http://127.0.0.1:9093".into()),
            ..AlertsConfig::default()
        };
        assert!(config.validate().is_ok());
        let off_list = AlertsConfig {
            webhook_urls: vec!["http://169.254.169.254/".into()],
            ..config.clone()
        };
        assert!(off_list
            .validate()
            .expect_err("refused")
            .to_string()
            .contains("webhook_urls"));
        let bad_amount = AlertsConfig {
            budget: vec![BudgetConfig {
                name: "search".into(),
                scope: BTreeMap::from([("team".to_owned(), "search".to_owned())]),
                amount_usd: "lots".into(),
                period: Period::Monthly,
                include_byok: false,
                thresholds: default_thresholds(),
                alert_on_projection: true,
                burn_factor: None,
                burn_long_minutes: 360,
                burn_short_minutes: 30,
            }],
            ..config
        };
        assert!(bad_amount
            .validate()
            .expect_err("refused")
            .to_string()
            .contains("budget `search`: amount_usd"));
    }
}
