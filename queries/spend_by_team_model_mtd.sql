-- name: spend_by_team_model_mtd
-- kind: report
-- unit: USD (spend_usd), tokens, attempts
-- param: month_start timestamp month_start
-- Spend by team and requested model from the start of the month (UTC) until
-- now: what finance compares with the monthly budget.
SELECT team,
       requested_model,
       sum(cost_usd) AS spend_usd,
       sum(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)) AS tokens,
       count(*) AS attempts
FROM attempts
WHERE request_start >= {{month_start}}
GROUP BY team, requested_model
ORDER BY spend_usd DESC NULLS LAST, team, requested_model
