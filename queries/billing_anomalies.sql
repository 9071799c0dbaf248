-- name: billing_anomalies
-- kind: report
-- unit: one row per hour and team: spend and baseline in USD (exact decimal), variance in percent
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- param: baseline_hours integer 168
-- Is a team spending out of line with its own past? Each hour's spend per
-- team beside its trailing baseline: the team's mean hourly spend over
-- the baseline_hours before that hour (hours without traffic count as
-- zero; default 168, the seven days the cost_variance_pct KPI compares
-- with), and the variance in percent, as cost_variance_pct computes it.
-- NULL variance: no spend in the baseline. Read from the hourly rollups
-- by model, so a month answers in a fraction of a second. Sorted with the
-- largest variance first.
WITH spend AS (
    SELECT hour, team, sum(spend_usd) AS spend_usd
    FROM hourly_usage_by_model
    WHERE hour >= to_timestamp_micros(CAST(to_timestamp_micros({{from}}) AS BIGINT) - {{baseline_hours}} * 3600000000)
      AND hour < {{to}}
    GROUP BY hour, team
)
SELECT s.hour, s.team, s.spend_usd,
       CAST(COALESCE(sum(b.spend_usd), 0) / {{baseline_hours}} AS DECIMAL(38, 9)) AS baseline_usd,
       (CAST(s.spend_usd AS DOUBLE) - CAST(sum(b.spend_usd) AS DOUBLE) / {{baseline_hours}})
           / NULLIF(CAST(sum(b.spend_usd) AS DOUBLE) / {{baseline_hours}}, 0) * 100.0 AS variance_pct
FROM spend s
LEFT JOIN spend b
  ON b.team = s.team
 AND b.hour < s.hour
 AND b.hour >= to_timestamp_micros(CAST(s.hour AS BIGINT) - {{baseline_hours}} * 3600000000)
WHERE s.hour >= {{from}}
GROUP BY s.hour, s.team, s.spend_usd
ORDER BY variance_pct DESC NULLS LAST, s.hour, s.team
