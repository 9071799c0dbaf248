-- name: hourly_requests
-- kind: view
-- unit: one row per hour of request_start and request dimensions; money in USD (exact decimal), tokens, end-to-end latency and TTFT as DDSketch (ms)
-- The request-level hourly rollup (docs/lake.md, "Rollups"): what the
-- requests starting in an hour add up to, per team, key, environment,
-- app, org, requested model, key type (from the first attempt), provider,
-- served model, attempt kind, final outcome and error class (from the
-- final one). Counts, tokens and spend are exact; latencies are sketches
-- of successful requests that merge across hours and answer percentiles
-- within 1%.
SELECT date_trunc('hour', request_start) AS hour,
       team, api_key_id, environment, app, org_id, requested_model, key_type,
       provider, served_model, attempt_kind, final_outcome, error_class,
       count(*) AS requests,
       count(*) FILTER (WHERE valid) AS valid_requests,
       count(*) FILTER (WHERE successful) AS successful_requests,
       count(*) FILTER (WHERE good) AS good_requests,
       sum(attempts) AS attempts,
       sum(retries) AS retries,
       sum(fallbacks) AS fallbacks,
       sum(tokens) AS tokens,
       sum(unpriced_attempts) AS unpriced_attempts,
       sum(cost_usd) AS spend_usd,
       ddsketch(e2e_latency_ms) FILTER (WHERE successful) AS latency_sketch,
       ddsketch(e2e_ttft_ms) FILTER (WHERE successful AND streaming) AS ttft_sketch
FROM requests
GROUP BY date_trunc('hour', request_start),
         team, api_key_id, environment, app, org_id, requested_model, key_type,
         provider, served_model, attempt_kind, final_outcome, error_class
