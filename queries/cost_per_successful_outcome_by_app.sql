-- name: cost_per_successful_outcome_by_app
-- kind: report
-- unit: USD per successful request
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- Spend of all attempts of all requests (failed ones included) divided by
-- the app's successful requests, in the window [from, to).
SELECT app,
       count(*) AS requests,
       count(*) FILTER (WHERE successful) AS successful_requests,
       sum(cost_usd) AS spend_usd,
       CAST(CAST(sum(cost_usd) AS DECIMAL(38, 9)) / NULLIF(count(*) FILTER (WHERE successful), 0) AS DECIMAL(38, 9))
           AS cost_per_successful_outcome_usd
FROM requests
WHERE request_start >= {{from}} AND request_start < {{to}}
GROUP BY app
ORDER BY cost_per_successful_outcome_usd DESC NULLS LAST, app
