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
-- One pass over `attempts`: the final attempt's value is the one with the
-- greatest (is_final, attempt_index, attempt_id), the order in which the
-- `attempts` view's is_final_attempt picks it, and the first attempt's the
-- one with the least (attempt_index, attempt_id); arg_max_null /
-- arg_min_null (as in DuckDB) take the value, NULL or not, at the extreme
-- of such a key. Aggregating instead of
-- reading is_final_attempt spares request queries that view's second
-- window, and a self-join would evaluate the deduplicating view three times.
WITH ordered AS (
    SELECT *,
           struct(is_final, attempt_index, attempt_id) AS final_order,
           struct(attempt_index, attempt_id) AS first_order
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
           count(*) FILTER (WHERE cost_source = 'unpriced') AS unpriced_attempts,
           arg_max_null(outcome, final_order) AS final_outcome,
           arg_max_null(error_class, final_order) AS final_error_class,
           arg_max_null(attempt_start, final_order) AS final_attempt_start,
           arg_max_null(ttft_ms, final_order) AS final_ttft_ms,
           arg_max_null(provider, final_order) AS provider,
           arg_max_null(served_model, final_order) AS served_model,
           arg_max_null(attempt_kind, final_order) AS attempt_kind,
           arg_max_null(streaming, final_order) AS streaming,
           arg_min_null(team, first_order) AS team,
           arg_min_null(api_key_id, first_order) AS api_key_id,
           arg_min_null(environment, first_order) AS environment,
           arg_min_null(app, first_order) AS app,
           arg_min_null(org_id, first_order) AS org_id,
           arg_min_null(requested_model, first_order) AS requested_model,
           arg_min_null(key_type, first_order) AS key_type
    FROM ordered
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
