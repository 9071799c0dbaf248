//! The 12-KPI scorecard of the seeds: each KPI against a target, with the
//! current window's value, the previous window's value as baseline, and a
//! green / yellow / red status.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::engine::{QueryEngine, Window};
use crate::error::QueryError;
use crate::kpi::{KpiQuery, KpiSettings};
use crate::output::json_rows;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Good when the value is below the target.
    Below,
    /// Good when the value is above the target.
    Above,
    /// Good when the value is at least the target.
    AtLeast,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Green,
    Yellow,
    Red,
    /// The KPI is undefined in the window (no data, or no limit configured).
    Unknown,
}

/// One line of the scorecard: which KPI column, its target and direction.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub kpi: String,
    pub direction: Direction,
    pub target: f64,
}

/// Share of the target by which a miss is still only yellow.
pub const YELLOW_MARGIN: f64 = 0.10;

/// The seeds' defaults. `error_budget_consumed` is 1 − error_budget_remaining.
pub fn default_targets() -> Vec<Target> {
    let t = |kpi: &str, direction, target| Target {
        kpi: kpi.to_owned(),
        direction,
        target,
    };
    vec![
        t("latency_p50_ms", Direction::Below, 200.0),
        t("latency_p95_ms", Direction::Below, 400.0),
        t("latency_p99_ms", Direction::Below, 800.0),
        t("retry_rate", Direction::Below, 0.05),
        t("effective_throughput_pct", Direction::Above, 90.0),
        t("cost_per_1m_tokens_usd", Direction::Below, 0.50),
        t("error_budget_consumed", Direction::Below, 0.10),
        t("availability", Direction::Above, 0.999),
        t("fallback_success_rate", Direction::Above, 0.95),
        t("token_efficiency", Direction::Above, 0.85),
        t("cost_variance_pct", Direction::Below, 5.0),
        t("compliance_score", Direction::AtLeast, 1.0),
    ]
}

/// Applies `overrides` (KPI name → target) from config to the defaults.
pub fn targets_with(overrides: &BTreeMap<String, f64>) -> Result<Vec<Target>, QueryError> {
    let mut targets = default_targets();
    for (kpi, value) in overrides {
        let target = targets.iter_mut().find(|t| &t.kpi == kpi).ok_or_else(|| {
            QueryError::UnknownKpi(
                kpi.clone(),
                default_targets()
                    .iter()
                    .map(|t| t.kpi.clone())
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })?;
        target.target = *value;
    }
    Ok(targets)
}

/// Green when the target is met; yellow when missed by at most
/// [`YELLOW_MARGIN`] of the target (for shares, at most a quarter of what is
/// left to 1); red otherwise.
pub fn status(target: &Target, value: Option<f64>) -> Status {
    let Some(value) = value else {
        return Status::Unknown;
    };
    let met = match target.direction {
        Direction::Below => value < target.target,
        Direction::Above => value > target.target,
        Direction::AtLeast => value >= target.target,
    };
    if met {
        return Status::Green;
    }
    let margin = match target.direction {
        Direction::Below => target.target.abs() * YELLOW_MARGIN,
        // A share near 1 (availability 0.999) has little room: a quarter of
        // what is left to 1 is still yellow, more is red.
        Direction::Above | Direction::AtLeast if target.target <= 1.0 => {
            (target.target * YELLOW_MARGIN).min((1.0 - target.target) * 0.25)
        }
        Direction::Above | Direction::AtLeast => target.target.abs() * YELLOW_MARGIN,
    };
    let miss = (value - target.target).abs();
    if miss <= margin {
        Status::Yellow
    } else {
        Status::Red
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScorecardLine {
    pub kpi: String,
    pub direction: Direction,
    pub target: f64,
    pub value: Option<f64>,
    pub baseline: Option<f64>,
    pub status: Status,
}

fn value_of(row: Option<&Value>, kpi: &str) -> Option<f64> {
    let row = row?;
    if kpi == "error_budget_consumed" {
        return row["error_budget_remaining"].as_f64().map(|r| 1.0 - r);
    }
    match &row[kpi] {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `30m`, `24h`, `7d` → microseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number and m, h or d, e.g. 24h"))?;
    let unit_micros = match unit {
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return Err(format!("`{text}`: the unit must be m, h or d")),
    };
    if n <= 0 {
        return Err(format!("`{text}`: must be positive"));
    }
    // Ten thousand years is past any window, retention or period a user
    // means; a larger number would overflow the time arithmetic after it.
    const MAX_MICROS: i64 = 10_000 * 366 * 86_400_000_000;
    n.checked_mul(unit_micros)
        .filter(|micros| *micros <= MAX_MICROS)
        .ok_or_else(|| format!("`{text}`: longer than 10,000 years"))
}

/// The scorecard of the window ending at `end` (µs) of `length` (µs),
/// against the window before it, over the rows of `teams`.
pub async fn scorecard(
    engine: &QueryEngine,
    end: i64,
    length: i64,
    settings: &KpiSettings,
    targets: &[Target],
    teams: &crate::TeamScope,
) -> Result<Vec<ScorecardLine>, QueryError> {
    let query = KpiQuery {
        scope: teams.clone(),
        ..KpiQuery::default()
    };
    let query = &query;
    let row_for = |from: i64, to: i64| async move {
        let batches = crate::kpis(
            engine,
            Window {
                from: Some(from),
                to: Some(to),
            },
            query,
            settings,
        )
        .await?;
        Ok::<_, QueryError>(json_rows(&batches)?.into_iter().next())
    };
    let current = row_for(end - length, end).await?;
    let previous = row_for(end - 2 * length, end - length).await?;
    Ok(targets
        .iter()
        .map(|target| {
            let value = value_of(current.as_ref(), &target.kpi);
            ScorecardLine {
                kpi: target.kpi.clone(),
                direction: target.direction,
                target: target.target,
                value,
                baseline: value_of(previous.as_ref(), &target.kpi),
                status: status(target, value),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(kpi: &str) -> Target {
        default_targets()
            .into_iter()
            .find(|t| t.kpi == kpi)
            .expect("target")
    }

    #[test]
    fn status_table() {
        let cases = [
            ("latency_p95_ms", Some(399.0), Status::Green),
            ("latency_p95_ms", Some(400.0), Status::Yellow),
            ("latency_p95_ms", Some(440.0), Status::Yellow),
            ("latency_p95_ms", Some(441.0), Status::Red),
            ("availability", Some(0.9995), Status::Green),
            ("availability", Some(0.9990), Status::Yellow),
            ("availability", Some(0.9985), Status::Red),
            ("token_efficiency", Some(0.82), Status::Yellow),
            ("token_efficiency", Some(0.80), Status::Red),
            ("compliance_score", Some(1.0), Status::Green),
            ("compliance_score", Some(0.95), Status::Red),
            ("effective_throughput_pct", None, Status::Unknown),
        ];
        for (kpi, value, expected) in cases {
            assert_eq!(status(&target(kpi), value), expected, "{kpi} {value:?}");
        }
    }

    #[test]
    fn there_are_twelve_targets_and_overrides_apply() {
        assert_eq!(default_targets().len(), 12);
        let targets =
            targets_with(&BTreeMap::from([("retry_rate".to_owned(), 0.1)])).expect("override");
        assert_eq!(
            targets
                .iter()
                .find(|t| t.kpi == "retry_rate")
                .map(|t| t.target),
            Some(0.1)
        );
        assert!(targets_with(&BTreeMap::from([("nope".to_owned(), 1.0)])).is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30m"), Ok(1_800_000_000));
        assert_eq!(parse_duration("24h"), Ok(86_400_000_000));
        assert_eq!(parse_duration("7d"), Ok(604_800_000_000));
        assert!(parse_duration("7w").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("0h").is_err());
        // Overflows refused with a reason, never a panic (a user-given window).
        assert!(parse_duration("99999999999999d").is_err());
        assert!(parse_duration("9223372036854775807m").is_err());
        assert!(parse_duration("3660000d").is_ok());
    }
}
