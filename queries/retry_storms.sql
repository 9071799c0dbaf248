-- name: retry_storms
-- kind: report
-- unit: one row per minute of request_start: attempts, requests, retries (counts), attempts per request, backoff in ms, shares 0–1
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- Is the gateway in a retry storm? Each minute's retries (attempts of kind
-- retry) against its requests: attempts per request (retry
-- amplification; 1.0 means no retries), and how the retries waited
-- before going out: the median backoff and the share sent with no backoff
-- at all (backoff_ms absent or 0), which is what turns a provider's
-- throttling into a storm. A threshold alert on retry_amplification
-- (docs/diagnostics.md) watches the same figure over the last minutes.
SELECT date_trunc('minute', request_start) AS minute,
       count(*) AS attempts,
       count(*) FILTER (WHERE is_final_attempt) AS requests,
       count(*) FILTER (WHERE attempt_kind = 'retry') AS retries,
       CAST(count(*) AS DOUBLE) / CAST(count(*) FILTER (WHERE is_final_attempt) AS DOUBLE) AS retry_amplification,
       percentile_cont(COALESCE(backoff_ms, 0.0), 0.5) FILTER (WHERE attempt_kind = 'retry') AS retry_backoff_p50_ms,
       CAST(count(*) FILTER (WHERE attempt_kind = 'retry' AND COALESCE(backoff_ms, 0.0) = 0.0) AS DOUBLE)
           / CAST(NULLIF(count(*) FILTER (WHERE attempt_kind = 'retry'), 0) AS DOUBLE) AS unbacked_retry_share
FROM attempts
WHERE request_start >= {{from}} AND request_start < {{to}}
GROUP BY date_trunc('minute', request_start)
ORDER BY minute
