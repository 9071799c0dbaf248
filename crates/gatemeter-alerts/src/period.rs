//! Budget periods aligned to the UTC calendar: a day starts at 00:00 UTC, a
//! week on Monday, a month on its first day.

use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Daily,
    Weekly,
    Monthly,
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
}

impl Period {
    /// `[start, end)` of the period holding `at`.
    pub fn bounds(self, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let day = at.date_naive();
        match self {
            Period::Daily => (midnight(day), midnight(day) + Duration::days(1)),
            Period::Weekly => {
                let monday = day - Duration::days(i64::from(day.weekday().num_days_from_monday()));
                (midnight(monday), midnight(monday) + Duration::days(7))
            }
            Period::Monthly => {
                let first = day.with_day(1).unwrap_or(day);
                let next = if first.month() == 12 {
                    NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
                } else {
                    NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
                }
                .unwrap_or(first);
                (midnight(first), midnight(next))
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
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

    #[test]
    fn periods_follow_the_utc_calendar() {
        let cases = [
            // (period, at, start, end)
            (
                Period::Daily,
                "2026-11-22T23:59:59Z",
                "2026-11-22T00:00:00Z",
                "2026-11-23T00:00:00Z",
            ),
            (
                Period::Daily,
                "2026-12-31T12:00:00Z",
                "2026-12-31T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
            // 2026-11-22 is a Sunday: its week began Monday the 16th.
            (
                Period::Weekly,
                "2026-11-22T10:00:00Z",
                "2026-11-16T00:00:00Z",
                "2026-11-23T00:00:00Z",
            ),
            (
                Period::Weekly,
                "2026-11-23T00:00:00Z",
                "2026-11-23T00:00:00Z",
                "2026-11-30T00:00:00Z",
            ),
            // A week across New Year: Monday 2026-12-28 .. Monday 2027-01-04.
            (
                Period::Weekly,
                "2027-01-01T08:00:00Z",
                "2026-12-28T00:00:00Z",
                "2027-01-04T00:00:00Z",
            ),
            // Months of 28, 29, 30 and 31 days, and December into January.
            (
                Period::Monthly,
                "2027-02-14T00:00:00Z",
                "2027-02-01T00:00:00Z",
                "2027-03-01T00:00:00Z",
            ),
            (
                Period::Monthly,
                "2028-02-29T23:00:00Z",
                "2028-02-01T00:00:00Z",
                "2028-03-01T00:00:00Z",
            ),
            (
                Period::Monthly,
                "2026-11-30T23:59:59Z",
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
            ),
            (
                Period::Monthly,
                "2026-10-31T00:00:00Z",
                "2026-10-01T00:00:00Z",
                "2026-11-01T00:00:00Z",
            ),
            (
                Period::Monthly,
                "2026-12-31T23:59:59Z",
                "2026-12-01T00:00:00Z",
                "2027-01-01T00:00:00Z",
            ),
        ];
        for (period, at, start, end) in cases {
            assert_eq!(
                period.bounds(t(at)),
                (t(start), t(end)),
                "{period:?} at {at}"
            );
        }
        let (start, end) = Period::Monthly.bounds(t("2027-02-10T00:00:00Z"));
        assert_eq!((end - start).num_days(), 28);
    }
}
