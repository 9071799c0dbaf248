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
-- One pass over `attempts`: each request has exactly one attempt marked
-- is_final_attempt, so "the final attempt's value" is an aggregate filtered
-- on that flag, and the first attempt's is the first by attempt_index. (A
-- self-join would evaluate the deduplicating `attempts` view three times.)
WITH rollup AS (
    SELECT request_id,
           min(request_start) AS request_start,
           count(*) AS attempts,
           count(*) FILTER (WHERE attempt_kind = 'retry') AS retries,
           count(*) FILTER (WHERE attempt_kind IN ('provider_fallback', 'model_fallback', 'key_fallback')) AS fallbacks,
           max(attempt_end) AS last_attempt_end,
           sum(cost_usd) AS cost_usd,
           sum(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)) AS tokens,
           count(*) FILTER (WHERE cost_source = 'unpriced') AS unpriced_attempts,
           max(outcome) FILTER (WHERE is_final_attempt) AS final_outcome,
           max(error_class) FILTER (WHERE is_final_attempt) AS final_error_class,
           max(attempt_start) FILTER (WHERE is_final_attempt) AS final_attempt_start,
           max(ttft_ms) FILTER (WHERE is_final_attempt) AS final_ttft_ms,
           max(provider) FILTER (WHERE is_final_attempt) AS provider,
           max(served_model) FILTER (WHERE is_final_attempt) AS served_model,
           max(attempt_kind) FILTER (WHERE is_final_attempt) AS attempt_kind,
           bool_or(streaming) FILTER (WHERE is_final_attempt) AS streaming,
           first_value(team ORDER BY attempt_index) AS team,
           first_value(api_key_id ORDER BY attempt_index) AS api_key_id,
           first_value(environment ORDER BY attempt_index) AS environment,
           first_value(app ORDER BY attempt_index) AS app,
           first_value(org_id ORDER BY attempt_index) AS org_id,
           first_value(requested_model ORDER BY attempt_index) AS requested_model,
           first_value(key_type ORDER BY attempt_index) AS key_type
    FROM attempts
    GROUP BY request_id
)
SELECT request_id,
       request_start,
       attempts,
       retries,
       fallbacks,
       final_outcome,
       final_error_class,
       CAST(CAST(last_attempt_end AS BIGINT) - CAST(request_start AS BIGINT) AS DOUBLE) / 1000.0 AS e2e_latency_ms,
       CAST(CAST(final_attempt_start AS BIGINT) - CAST(request_start AS BIGINT) AS DOUBLE) / 1000.0 + final_ttft_ms AS e2e_ttft_ms,
       cost_usd,
       tokens,
       unpriced_attempts,
       final_outcome = 'success' AS successful,
       NOT (COALESCE(final_error_class IN ('bad_request', 'auth', 'insufficient_credits', 'forbidden'), false)
            OR final_outcome = 'cancelled') AS valid,
       final_outcome = 'success'
           AND NOT (COALESCE(final_error_class IN ('bad_request', 'auth', 'insufficient_credits', 'forbidden'), false)
                    OR final_outcome = 'cancelled') AS good,
       team, api_key_id, environment, app, org_id, requested_model, key_type,
       provider, served_model, attempt_kind, final_error_class AS error_class,
       streaming
FROM rollup
