-- name: latency_vs_throttling
-- kind: report
-- unit: one row per minute of request_start: end-to-end latency of successful requests in ms, throttled share of attempts 0–1
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- Does tail latency follow throttling? Each minute's p50 and p99
-- end-to-end latency of successful requests (from the gateway receiving
-- the request to the last byte, so retries and backoff after a 429 count)
-- beside the share of that minute's attempts the providers throttled
-- (error class rate_limited) and the share of requests that met at least
-- one throttle. When p99 rises with throttled_share while p50 stays, the
-- tail is the retries behind rate limits, not slower models.
WITH throttling AS (
    SELECT request_id,
           count(*) AS attempts,
           count(*) FILTER (WHERE error_class = 'rate_limited') AS throttled_attempts
    FROM attempts
    WHERE request_start >= {{from}} AND request_start < {{to}}
    GROUP BY request_id
)
SELECT date_trunc('minute', r.request_start) AS minute,
       count(*) AS requests,
       percentile_cont(r.e2e_latency_ms, 0.5) FILTER (WHERE r.successful) AS latency_p50_ms,
       percentile_cont(r.e2e_latency_ms, 0.99) FILTER (WHERE r.successful) AS latency_p99_ms,
       CAST(sum(t.throttled_attempts) AS DOUBLE) / CAST(sum(t.attempts) AS DOUBLE) AS throttled_share,
       CAST(count(*) FILTER (WHERE t.throttled_attempts > 0) AS DOUBLE) / CAST(count(*) AS DOUBLE) AS throttled_request_share
FROM requests r
JOIN throttling t ON t.request_id = r.request_id
WHERE r.request_start >= {{from}} AND r.request_start < {{to}}
GROUP BY date_trunc('minute', r.request_start)
ORDER BY minute
