-- name: rate_limit_telemetry
-- kind: report
-- unit: one row per API key and minute: attempts and tokens per second, peak attempts started in one second, peak attempts in flight (counts), throttled share 0–1
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- How close does each key run to its providers' rate limits? Per API key
-- and minute of attempt_start, what the providers count: attempts per
-- second, tokens per second (input plus output), the burst (most attempts
-- started within one second), the peak concurrency (attempts in flight at
-- once, from their start and end, ends ordered before starts at the same
-- instant: one that ends as another starts is not counted twice) and the share of attempts throttled (429). A key whose
-- throttled share rises with its bursts or concurrency needs smoothing,
-- not a higher limit.
WITH keyed AS (
    SELECT api_key_id, attempt_start, attempt_end, error_class,
           COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0) AS tokens
    FROM attempts
    WHERE request_start >= {{from}} AND request_start < {{to}}
),
per_minute AS (
    SELECT api_key_id, date_trunc('minute', attempt_start) AS minute,
           count(*) AS attempts,
           sum(tokens) AS tokens,
           count(*) FILTER (WHERE error_class = 'rate_limited') AS throttled
    FROM keyed
    GROUP BY api_key_id, date_trunc('minute', attempt_start)
),
per_second AS (
    SELECT api_key_id, date_trunc('minute', attempt_start) AS minute, count(*) AS started
    FROM keyed
    GROUP BY api_key_id, date_trunc('minute', attempt_start), date_trunc('second', attempt_start)
),
edges AS (
    SELECT api_key_id, attempt_start AS at, 1 AS delta FROM keyed
    UNION ALL
    SELECT api_key_id, attempt_end AS at, -1 AS delta FROM keyed
),
in_flight AS (
    SELECT api_key_id, at, delta,
           sum(delta) OVER (PARTITION BY api_key_id ORDER BY at, delta ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS attempts_in_flight
    FROM edges
),
peaks AS (
    SELECT api_key_id, date_trunc('minute', at) AS minute, max(attempts_in_flight) AS peak_in_flight
    FROM in_flight
    WHERE delta = 1
    GROUP BY api_key_id, date_trunc('minute', at)
)
SELECT m.api_key_id, m.minute,
       CAST(m.attempts AS DOUBLE) / 60.0 AS attempts_per_s,
       CAST(m.tokens AS DOUBLE) / 60.0 AS tokens_per_s,
       (SELECT max(s.started) FROM per_second s WHERE s.api_key_id = m.api_key_id AND s.minute = m.minute) AS peak_attempts_in_one_second,
       p.peak_in_flight,
       CAST(m.throttled AS DOUBLE) / CAST(m.attempts AS DOUBLE) AS throttled_share
FROM per_minute m
LEFT JOIN peaks p ON p.api_key_id = m.api_key_id AND p.minute = m.minute
ORDER BY m.api_key_id, m.minute
