//! SLO burn-rate policy of the Google SRE Workbook (multi-window,
//! multi-burn-rate) for a 30-day SLO period: page when the burn rate is
//! over 14.4 in both the last hour and the last 5 minutes, or over 6 in both
//! the last 6 hours and 30 minutes; open a ticket at 3 over a day and 2
//! hours, or 1 over 3 days and 6 hours.

use chrono::Duration;
use serde::Serialize;

/// The SLO period the budget and burn rates refer to.
pub const SLO_PERIOD_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Page,
    Ticket,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

/// One window pair: fire when both burn rates are at or over `factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowPair {
    pub severity: Severity,
    pub long: Duration,
    pub short: Duration,
    pub factor: f64,
}

pub fn policy() -> [WindowPair; 4] {
    [
        WindowPair {
            severity: Severity::Page,
            long: Duration::hours(1),
            short: Duration::minutes(5),
            factor: 14.4,
        },
        WindowPair {
            severity: Severity::Page,
            long: Duration::hours(6),
            short: Duration::minutes(30),
            factor: 6.0,
        },
        WindowPair {
            severity: Severity::Ticket,
            long: Duration::days(1),
            short: Duration::hours(2),
            factor: 3.0,
        },
        WindowPair {
            severity: Severity::Ticket,
            long: Duration::days(3),
            short: Duration::hours(6),
            factor: 1.0,
        },
    ]
}

/// Every window the policy reads, longest first, without repeats.
pub fn windows() -> Vec<Duration> {
    let mut all: Vec<Duration> = policy().iter().flat_map(|p| [p.long, p.short]).collect();
    all.sort_by(|a, b| b.cmp(a));
    all.dedup();
    all
}

/// Burn rate of a window: its error ratio over the error budget.
/// `None` when the window had no valid request.
pub fn burn_rate(bad: u64, valid: u64, target: f64) -> Option<f64> {
    (valid > 0).then(|| (bad as f64 / valid as f64) / (1.0 - target))
}

/// Which severities fire, given the burn rate of each window.
pub fn firing(burn: impl Fn(Duration) -> Option<f64>) -> Vec<(WindowPair, bool)> {
    policy()
        .into_iter()
        .map(|pair| {
            let over = |window| burn(window).is_some_and(|rate| rate >= pair.factor);
            (pair, over(pair.long) && over(pair.short))
        })
        .collect()
}

/// 1 − bad ÷ ((1 − target) × valid) over the SLO period; `None` without traffic.
pub fn budget_remaining(bad: u64, valid: u64, target: f64) -> Option<f64> {
    (valid > 0).then(|| 1.0 - bad as f64 / ((1.0 - target) * valid as f64))
}

/// Human form of a window for names and annotations: 5m, 1h, 3d.
pub fn window_name(window: Duration) -> String {
    let minutes = window.num_minutes();
    if minutes % 1440 == 0 {
        format!("{}d", minutes / 1440)
    } else if minutes % 60 == 0 {
        format!("{}h", minutes / 60)
    } else {
        format!("{minutes}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Burn rates per window from a table, as the evaluator would read them.
    fn table<'a>(rates: &'a [(&'a str, f64)]) -> impl Fn(Duration) -> Option<f64> + 'a {
        move |window| {
            rates
                .iter()
                .find(|(name, _)| *name == window_name(window))
                .map(|(_, r)| *r)
        }
    }

    fn fired(rates: &[(&str, f64)]) -> Vec<(Severity, String)> {
        firing(table(rates))
            .into_iter()
            .filter(|(_, on)| *on)
            .map(|(p, _)| {
                (
                    p.severity,
                    format!("{}/{}", window_name(p.long), window_name(p.short)),
                )
            })
            .collect()
    }

    #[test]
    fn each_window_pair_fires_only_when_both_windows_burn() {
        let quiet = [
            ("5m", 0.5),
            ("30m", 0.5),
            ("1h", 0.5),
            ("2h", 0.5),
            ("6h", 0.5),
            ("1d", 0.5),
            ("3d", 0.5),
        ];
        assert!(fired(&quiet).is_empty());
        // A fresh 20% error burst at 99.9%: burn 200 over 5m and 1h.
        let burst = [
            ("5m", 200.0),
            ("30m", 200.0),
            ("1h", 200.0),
            ("2h", 100.0),
            ("6h", 33.0),
            ("1d", 8.3),
            ("3d", 2.8),
        ];
        assert_eq!(
            fired(&burst),
            vec![
                (Severity::Page, "1h/5m".to_owned()),
                (Severity::Page, "6h/30m".to_owned()),
                (Severity::Ticket, "1d/2h".to_owned()),
                (Severity::Ticket, "3d/6h".to_owned())
            ]
        );
        // Recovered: the short windows are clean, the long ones still remember.
        let recovered = [
            ("5m", 0.0),
            ("30m", 0.0),
            ("1h", 20.0),
            ("2h", 10.0),
            ("6h", 3.3),
            ("1d", 0.8),
            ("3d", 0.3),
        ];
        assert!(fired(&recovered).is_empty());
        // Just over and just under the 14.4 line.
        assert_eq!(
            fired(&[("1h", 14.4), ("5m", 14.4)]),
            vec![(Severity::Page, "1h/5m".to_owned())]
        );
        assert!(fired(&[("1h", 14.39), ("5m", 50.0)]).is_empty());
        // Slow burn: 6h/30m at 6, nothing faster.
        assert_eq!(
            fired(&[("6h", 6.5), ("30m", 7.0), ("1h", 7.0), ("5m", 7.0)]),
            vec![(Severity::Page, "6h/30m".to_owned())]
        );
        // Ticket only: 1× over 3 days and 6 hours.
        assert_eq!(
            fired(&[("3d", 1.2), ("6h", 1.1)]),
            vec![(Severity::Ticket, "3d/6h".to_owned())]
        );
        // No traffic in a window means no verdict, never a page.
        assert!(fired(&[("1h", 100.0)]).is_empty());
    }

    #[test]
    fn burn_and_budget_arithmetic() {
        assert_eq!(
            burn_rate(20, 100, 0.999).map(|r| (r * 1000.0).round()),
            Some(200_000.0)
        );
        assert_eq!(burn_rate(0, 0, 0.999), None);
        assert!(budget_remaining(1, 1000, 0.999).is_some_and(|r| r.abs() < 1e-9));
        assert!(budget_remaining(0, 1000, 0.999) == Some(1.0));
        assert_eq!(
            windows()
                .iter()
                .map(|w| window_name(*w))
                .collect::<Vec<_>>(),
            ["3d", "1d", "6h", "2h", "1h", "30m", "5m"]
        );
    }
}
