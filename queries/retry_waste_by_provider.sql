-- name: retry_waste_by_provider
-- kind: report
-- unit: USD (waste_usd), tokens (wasted_tokens)
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- What attempts whose result did not reach the client cost: non-final
-- attempts by provider and error class.
SELECT provider,
       COALESCE(error_class, outcome) AS reason,
       count(*) AS attempts,
       sum(cost_usd) AS waste_usd,
       sum(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)) AS wasted_tokens
FROM attempts
WHERE NOT is_final_attempt AND request_start >= {{from}} AND request_start < {{to}}
GROUP BY provider, COALESCE(error_class, outcome)
ORDER BY waste_usd DESC NULLS LAST, attempts DESC, provider, reason
