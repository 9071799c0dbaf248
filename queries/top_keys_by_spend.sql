-- name: top_keys_by_spend
-- kind: report
-- unit: USD
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- param: limit integer 10
-- The API keys (fingerprints) that spent most in the window, with their team.
SELECT api_key_id,
       team,
       key_type,
       sum(cost_usd) AS spend_usd,
       count(DISTINCT request_id) AS requests
FROM attempts
WHERE request_start >= {{from}} AND request_start < {{to}}
GROUP BY api_key_id, team, key_type
ORDER BY spend_usd DESC NULLS LAST, api_key_id
LIMIT {{limit}}
