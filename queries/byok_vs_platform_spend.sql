-- name: byok_vs_platform_spend
-- kind: report
-- unit: USD
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- Spend on the platform's credentials against customers' own keys (BYOK),
-- by team. BYOK attempts the gateway was not billed for cost 0.
SELECT team,
       key_type,
       count(*) AS attempts,
       count(*) FILTER (WHERE NOT billed) AS unbilled_attempts,
       sum(cost_usd) AS spend_usd
FROM attempts
WHERE request_start >= {{from}} AND request_start < {{to}}
GROUP BY team, key_type
ORDER BY team, key_type
