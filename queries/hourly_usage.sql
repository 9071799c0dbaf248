-- name: hourly_usage
-- kind: view
-- unit: one row per hour of request_start and attempt dimensions; money in USD (exact decimal), tokens, attempt durations and TTFT as DDSketch (ms)
-- The attempt-level hourly rollup (docs/lake.md, "Rollups"): what the
-- attempts of an hour add up to, per team, key, environment, app, org,
-- requested and served model, provider, key type, attempt kind, outcome
-- and error class. Every count and sum is exact, so any window of whole
-- hours and any grouping of these dimensions sums to what the raw
-- attempts give; durations and TTFT are sketches that merge across hours
-- (ddsketch_merge) and answer percentiles within 1% (ddsketch_quantile).
-- final_tokens: input plus output tokens of final attempts (the rest were
-- spent again); first_request_start and last_attempt_end bound the time
-- the rows cover.
SELECT date_trunc('hour', request_start) AS hour,
       team, api_key_id, environment, app, org_id, requested_model, served_model,
       provider, key_type, attempt_kind, outcome, error_class,
       count(*) AS attempts,
       count(*) FILTER (WHERE is_final_attempt) AS final_attempts,
       count(*) FILTER (WHERE streaming) AS streaming_attempts,
       count(*) FILTER (WHERE cost_source = 'unpriced') AS unpriced_attempts,
       sum(COALESCE(input_tokens, 0)) AS input_tokens,
       sum(COALESCE(output_tokens, 0)) AS output_tokens,
       sum(COALESCE(cache_read_tokens, 0)) AS cache_read_tokens,
       sum(COALESCE(cache_write_tokens, 0)) AS cache_write_tokens,
       sum(COALESCE(reasoning_tokens, 0)) AS reasoning_tokens,
       sum(COALESCE(web_search_requests, 0)) AS web_search_requests,
       sum(CASE WHEN is_final_attempt THEN COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0) ELSE 0 END) AS final_tokens,
       sum(cost_usd) AS spend_usd,
       min(request_start) AS first_request_start,
       max(attempt_end) AS last_attempt_end,
       ddsketch(duration_ms) FILTER (WHERE outcome = 'success') AS duration_sketch,
       ddsketch(ttft_ms) FILTER (WHERE outcome = 'success' AND streaming) AS ttft_sketch
FROM attempts
GROUP BY date_trunc('hour', request_start),
         team, api_key_id, environment, app, org_id, requested_model, served_model,
         provider, key_type, attempt_kind, outcome, error_class
