-- name: hourly_requests
-- kind: view
-- unit: one row per hour of request_start and request dimensions; money in USD (exact decimal), tokens, end-to-end latency and TTFT as DDSketch (ms)
-- The request-level hourly rollup (docs/lake.md, "Rollups"): what the
-- requests starting in an hour add up to, per team, key, environment,
-- app, org, requested model, key type (from the first attempt), provider,
-- served model, attempt kind, final outcome and error class (from the
-- final one). Counts, tokens and spend are exact; latencies are sketches
-- of successful requests that merge across hours and answer percentiles
-- within 1%. tried_providers: the distinct providers of the request's
-- attempts, sorted, '' standing for an attempt that named none (what a
-- provider allowlist judges).
SELECT date_trunc('hour', request_start) AS hour,
       team, api_key_id, environment, app, org_id, requested_model, key_type,
       provider, served_model, attempt_kind, final_outcome, error_class,
       tried_providers,
       count(*) AS requests,
       count(*) FILTER (WHERE valid) AS valid_requests,
       count(*) FILTER (WHERE successful) AS successful_requests,
       count(*) FILTER (WHERE good) AS good_requests,
       count(*) FILTER (WHERE attempts > 1) AS retried_requests,
       count(*) FILTER (WHERE fallbacks > 0) AS fallback_requests,
       count(*) FILTER (WHERE fallbacks > 0 AND successful) AS fallback_successes,
       sum(attempts) AS attempts,
       sum(retries) AS retries,
       sum(fallbacks) AS fallbacks,
       sum(tokens) AS tokens,
       sum(unpriced_attempts) AS unpriced_attempts,
       sum(cost_usd) AS spend_usd,
       ddsketch(e2e_latency_ms) FILTER (WHERE successful) AS latency_sketch,
       ddsketch(e2e_ttft_ms) FILTER (WHERE successful AND streaming) AS ttft_sketch
FROM requests
JOIN (SELECT request_id AS tried_request_id,
             array_sort(array_agg(DISTINCT COALESCE(provider, ''))) AS tried_providers
      FROM attempts
      GROUP BY request_id) tried ON tried.tried_request_id = request_id
GROUP BY date_trunc('hour', request_start),
         team, api_key_id, environment, app, org_id, requested_model, key_type,
         provider, served_model, attempt_kind, final_outcome, error_class,
         tried_providers
