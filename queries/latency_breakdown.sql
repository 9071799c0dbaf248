-- name: latency_breakdown
-- kind: report
-- unit: one row per final provider and served model: requests, latency in ms (median), time shares 0–1, output tokens per second (median), cache hit rate 0–1
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- Where does a successful request's time go? Per provider and model of
-- the final attempt, the median end-to-end latency and its total split
-- three ways: in the gateway before the first upstream call
-- (gateway_share), in upstream calls (upstream_share: every attempt's
-- duration) and waiting between attempts (waiting_share: backoff and
-- queueing before retries and fallbacks); the three add up to 1. Beside
-- them the median decode speed of the answering attempt (output tokens
-- over the time after the first token, or over the whole attempt when it
-- did not stream) and the cache hit rate (cached over all input tokens of
-- the requests' attempts).
WITH per_request AS (
    SELECT request_id,
           min(request_start) AS request_start,
           min(attempt_start) AS first_attempt_start,
           max(attempt_end) AS last_attempt_end,
           sum(duration_ms) AS upstream_ms,
           sum(COALESCE(input_tokens, 0)) AS input_tokens,
           sum(COALESCE(cache_read_tokens, 0)) AS cache_read_tokens,
           max(CASE WHEN is_final_attempt AND outcome = 'success' AND COALESCE(output_tokens, 0) > 0
                    THEN CAST(output_tokens AS DOUBLE) * 1000.0 / NULLIF(duration_ms - COALESCE(ttft_ms, 0.0), 0.0)
               END) AS output_tokens_per_s
    FROM attempts
    WHERE request_start >= {{from}} AND request_start < {{to}}
    GROUP BY request_id
),
timed AS (
    SELECT r.provider, r.served_model, r.e2e_latency_ms,
           CAST(CAST(p.first_attempt_start AS BIGINT) - CAST(p.request_start AS BIGINT) AS DOUBLE) / 1000.0 AS gateway_ms,
           p.upstream_ms,
           CAST(CAST(p.last_attempt_end AS BIGINT) - CAST(p.first_attempt_start AS BIGINT) AS DOUBLE) / 1000.0 - p.upstream_ms AS waiting_ms,
           p.input_tokens, p.cache_read_tokens, p.output_tokens_per_s
    FROM requests r
    JOIN per_request p ON p.request_id = r.request_id
    WHERE r.successful AND r.request_start >= {{from}} AND r.request_start < {{to}}
)
SELECT provider, served_model AS model,
       count(*) AS requests,
       percentile_cont(e2e_latency_ms, 0.5) AS latency_p50_ms,
       sum(gateway_ms) / sum(e2e_latency_ms) AS gateway_share,
       sum(upstream_ms) / sum(e2e_latency_ms) AS upstream_share,
       sum(waiting_ms) / sum(e2e_latency_ms) AS waiting_share,
       percentile_cont(output_tokens_per_s, 0.5) AS output_tokens_per_s_p50,
       CAST(sum(cache_read_tokens) AS DOUBLE) / CAST(NULLIF(sum(input_tokens), 0) AS DOUBLE) AS cache_hit_rate
FROM timed
GROUP BY provider, served_model
ORDER BY latency_p50_ms DESC, provider, model
