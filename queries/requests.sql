-- name: requests
-- kind: view
-- params: none
-- unit: one row per logical request; money in USD, latencies in ms, tokens
-- One row per request_id. The final attempt is the one with is_final (the
-- highest attempt_index among several), else the highest attempt_index.
-- Attribution (team, key, environment, app, org, requested model, key type)
-- comes from the first attempt; provider, served model, attempt kind, outcome
-- and error class from the final one. successful: the final outcome is
-- success. valid (for SLOs): not a client error (bad_request, auth,
-- insufficient_credits, forbidden) and not cancelled. good: valid and
-- successful.
WITH ordered AS (
    SELECT *,
           row_number() OVER (PARTITION BY request_id ORDER BY attempt_index ASC) AS _from_first
    FROM attempts
),
rollup AS (
    SELECT request_id,
           min(request_start) AS request_start,
           count(*) AS attempts,
           count(*) FILTER (WHERE attempt_kind = 'retry') AS retries,
           count(*) FILTER (WHERE attempt_kind IN ('provider_fallback', 'model_fallback', 'key_fallback')) AS fallbacks,
           max(attempt_end) AS last_attempt_end,
           sum(cost_usd) AS cost_usd,
           sum(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)) AS tokens,
           count(*) FILTER (WHERE cost_source = 'unpriced') AS unpriced_attempts
    FROM attempts
    GROUP BY request_id
)
SELECT r.request_id,
       r.request_start,
       r.attempts,
       r.retries,
       r.fallbacks,
       f.outcome AS final_outcome,
       f.error_class AS final_error_class,
       CAST(CAST(r.last_attempt_end AS BIGINT) - CAST(r.request_start AS BIGINT) AS DOUBLE) / 1000.0 AS e2e_latency_ms,
       CAST(CAST(f.attempt_start AS BIGINT) - CAST(r.request_start AS BIGINT) AS DOUBLE) / 1000.0 + f.ttft_ms AS e2e_ttft_ms,
       r.cost_usd,
       r.tokens,
       r.unpriced_attempts,
       f.outcome = 'success' AS successful,
       NOT (COALESCE(f.error_class IN ('bad_request', 'auth', 'insufficient_credits', 'forbidden'), false)
            OR f.outcome = 'cancelled') AS valid,
       f.outcome = 'success'
           AND NOT (COALESCE(f.error_class IN ('bad_request', 'auth', 'insufficient_credits', 'forbidden'), false)
                    OR f.outcome = 'cancelled') AS good,
       s.team, s.api_key_id, s.environment, s.app, s.org_id, s.requested_model, s.key_type,
       f.provider, f.served_model, f.attempt_kind, f.error_class,
       f.streaming
FROM rollup r
JOIN ordered f ON f.request_id = r.request_id AND f.is_final_attempt
JOIN ordered s ON s.request_id = r.request_id AND s._from_first = 1
