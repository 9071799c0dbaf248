-- name: cold_starts
-- kind: report
-- unit: one row per provider and model: attempt counts, time to first token and attempt duration in ms (medians)
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- param: idle_minutes integer 10
-- Do the first requests after an idle period pay a cold start? An attempt
-- is cold when the same provider and model (served, else requested) had
-- no attempt started in the idle_minutes before it, warm when it had;
-- the first attempt of each in the window is neither (what came before is
-- outside the window). Successful attempts only: medians of time to first
-- token (streaming) and of attempt duration, cold beside warm, and the
-- cold penalty (cold median minus warm median). A provider that scales
-- to zero shows a large penalty on few cold attempts.
WITH spaced AS (
    SELECT provider,
           COALESCE(served_model, requested_model) AS model,
           outcome, ttft_ms, duration_ms,
           CAST(CAST(attempt_start AS BIGINT) - CAST(lag(attempt_start) OVER (
               PARTITION BY provider, COALESCE(served_model, requested_model)
               ORDER BY attempt_start, attempt_id) AS BIGINT) AS DOUBLE) / 60000000.0 AS idle_before_minutes
    FROM attempts
    WHERE attempt_start >= {{from}} AND attempt_start < {{to}}
),
classified AS (
    SELECT *, idle_before_minutes >= {{idle_minutes}} AS cold
    FROM spaced
    WHERE idle_before_minutes IS NOT NULL AND outcome = 'success'
)
SELECT provider, model,
       count(*) FILTER (WHERE cold) AS cold_attempts,
       count(*) FILTER (WHERE NOT cold) AS warm_attempts,
       percentile_cont(ttft_ms, 0.5) FILTER (WHERE cold) AS cold_ttft_p50_ms,
       percentile_cont(ttft_ms, 0.5) FILTER (WHERE NOT cold) AS warm_ttft_p50_ms,
       percentile_cont(duration_ms, 0.5) FILTER (WHERE cold) AS cold_duration_p50_ms,
       percentile_cont(duration_ms, 0.5) FILTER (WHERE NOT cold) AS warm_duration_p50_ms,
       percentile_cont(duration_ms, 0.5) FILTER (WHERE cold)
           - percentile_cont(duration_ms, 0.5) FILTER (WHERE NOT cold) AS cold_penalty_ms
FROM classified
GROUP BY provider, model
ORDER BY cold_penalty_ms DESC NULLS LAST, provider, model
