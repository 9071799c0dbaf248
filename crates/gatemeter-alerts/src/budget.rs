//! Budget figures (README.md, "Alerts and SLOs"), pure: given the spend so far in the period,
//! where the period is and the time now — remaining, projected spend at the
//! period's end, burn rate and time to exhaustion. Money stays exact
//! (nano-dollars); only ratios are floats.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::period::Period;

/// USD in nano-dollars (the lake's DECIMAL(20, 9)).
pub type Nanos = i128;

pub fn usd_text(nanos: Nanos) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let abs = nanos.unsigned_abs();
    format!("{sign}{}.{:09}", abs / 1_000_000_000, abs % 1_000_000_000)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BudgetStatus {
    #[serde(with = "crate::time_serde")]
    pub period_start: DateTime<Utc>,
    #[serde(with = "crate::time_serde")]
    pub period_end: DateTime<Utc>,
    #[serde(serialize_with = "as_usd")]
    pub amount: Nanos,
    #[serde(serialize_with = "as_usd")]
    pub spend: Nanos,
    /// Negative once overspent.
    #[serde(serialize_with = "as_usd")]
    pub remaining: Nanos,
    /// spend ÷ amount.
    pub consumed: f64,
    /// The spend rate so far carried to the period's end.
    #[serde(serialize_with = "as_usd")]
    pub projected: Nanos,
    /// Spend rate ÷ (amount ÷ period length): 1 spends exactly the budget.
    pub burn_rate: f64,
    /// Seconds until the budget is spent at the current rate; 0 once spent,
    /// `None` with no spend yet.
    pub seconds_to_exhaustion: Option<i64>,
}

fn as_usd<S: serde::Serializer>(nanos: &Nanos, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&usd_text(*nanos))
}

/// The figures of a budget of `amount` over `period`, with `spend` spent
/// since the period began, at `now`.
pub fn status(amount: Nanos, period: Period, spend: Nanos, now: DateTime<Utc>) -> BudgetStatus {
    let (start, end) = period.bounds(now);
    let length = (end - start).num_microseconds().unwrap_or(1).max(1);
    // At least a second elapsed, so the first instant does not project infinity.
    let elapsed = (now - start).num_microseconds().unwrap_or(0).max(1_000_000);
    let projected = spend.saturating_mul(i128::from(length)) / i128::from(elapsed);
    let remaining = amount - spend;
    let consumed = if amount > 0 {
        spend as f64 / amount as f64
    } else {
        f64::INFINITY
    };
    let burn_rate = if amount > 0 {
        (spend as f64 * length as f64) / (amount as f64 * elapsed as f64)
    } else {
        f64::INFINITY
    };
    let seconds_to_exhaustion = if remaining <= 0 {
        Some(0)
    } else if spend > 0 {
        Some((remaining.saturating_mul(i128::from(elapsed)) / spend / 1_000_000) as i64)
    } else {
        None
    };
    BudgetStatus {
        period_start: start,
        period_end: end,
        amount,
        spend,
        remaining,
        consumed,
        projected,
        burn_rate,
        seconds_to_exhaustion,
    }
}

/// Burn rate of `spend` over a window of `window` against a budget of
/// `amount` per period of `period_length`.
pub fn window_burn_rate(
    amount: Nanos,
    period_length: Duration,
    spend: Nanos,
    window: Duration,
) -> f64 {
    let allowed =
        amount as f64 * window.num_seconds() as f64 / period_length.num_seconds().max(1) as f64;
    if allowed > 0.0 {
        spend as f64 / allowed
    } else {
        f64::INFINITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    const USD: Nanos = 1_000_000_000;

    #[test]
    fn a_team_at_three_times_its_monthly_pace_projects_three_times_the_budget() {
        // $3,000 a month in November (30 days); on the 11th at 00:00, ten
        // days in, it has spent $3,000: three times the pace.
        let s = status(
            3_000 * USD,
            Period::Monthly,
            3_000 * USD,
            t("2026-11-11T00:00:00Z"),
        );
        assert_eq!(s.projected, 9_000 * USD);
        assert!((s.burn_rate - 3.0).abs() < 1e-12);
        assert_eq!(s.remaining, 0);
        assert_eq!(s.seconds_to_exhaustion, Some(0));
        assert_eq!(usd_text(s.projected), "9000.000000000");
    }

    #[test]
    fn projections_and_exhaustion_across_period_lengths() {
        // February 2027 has 28 days: $280 budget, $70 spent after 7 days → on pace.
        let s = status(
            280 * USD,
            Period::Monthly,
            70 * USD,
            t("2027-02-08T00:00:00Z"),
        );
        assert_eq!(s.projected, 280 * USD);
        assert!((s.burn_rate - 1.0).abs() < 1e-12);
        // $210 left at $10/day → 21 days.
        assert_eq!(s.seconds_to_exhaustion, Some(21 * 86_400));
        // Leap February 2028 (29 days): same spend, same elapsed → 29/28 of it.
        let s = status(
            280 * USD,
            Period::Monthly,
            70 * USD,
            t("2028-02-08T00:00:00Z"),
        );
        assert_eq!(s.projected, 290 * USD);
        // A week starting Monday: Wednesday noon is 2.5 days in.
        let s = status(
            700 * USD,
            Period::Weekly,
            250 * USD,
            t("2026-11-25T12:00:00Z"),
        );
        assert_eq!(s.projected, 700 * USD);
        // A day: no spend yet → no exhaustion time, zero projection.
        let s = status(10 * USD, Period::Daily, 0, t("2026-11-22T06:00:00Z"));
        assert_eq!((s.projected, s.seconds_to_exhaustion), (0, None));
        // New Year's Eve, monthly: December has 31 days; 31 dollars by the 31st 00:00 = 30 days.
        let s = status(
            31 * USD,
            Period::Monthly,
            30 * USD,
            t("2026-12-31T00:00:00Z"),
        );
        assert_eq!(s.projected, 31 * USD);
        assert_eq!(s.period_end, t("2027-01-01T00:00:00Z"));
    }

    #[test]
    fn window_burn_rates_compare_with_the_even_pace() {
        // $720 a 30-day month is $1 an hour: $14.40 in the last hour is 14.4×.
        let month = Duration::days(30);
        let rate = window_burn_rate(720 * USD, month, 14_400_000_000, Duration::hours(1));
        assert!((rate - 14.4).abs() < 1e-9);
    }
}
