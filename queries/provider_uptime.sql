-- name: provider_uptime
-- kind: report
-- unit: one row per provider: attempt and request counts, uptimes and shares 0–1
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- What did provider diversity buy? Per provider, its uptime as the
-- gateway saw it, attempt by attempt: the share of valid attempts (client
-- errors and cancellations left out) the provider did not fail itself
-- (provider_error, timeout, network, no_provider); throttling (429) is
-- the provider up but refusing, shown apart as throttled_share. Beside
-- it, the availability the application saw for the requests that tried
-- that provider (good over valid requests, as the availability KPI counts
-- them), and the requests a fallback rescued: the provider's attempts
-- failed, another attempt answered. Grouping requests by their final
-- provider hides those failures; here every attempt counts against the
-- provider it went to.
WITH tried AS (
    SELECT provider, request_id,
           count(*) FILTER (WHERE NOT (COALESCE(error_class IN ('bad_request', 'auth', 'insufficient_credits', 'forbidden'), false)
                                       OR outcome = 'cancelled')) AS valid_attempts,
           count(*) FILTER (WHERE outcome = 'error'
                            AND error_class IN ('provider_error', 'timeout', 'network', 'no_provider')) AS provider_failures,
           count(*) FILTER (WHERE error_class = 'rate_limited') AS throttled_attempts,
           count(*) FILTER (WHERE outcome = 'success') AS successful_attempts,
           count(*) FILTER (WHERE outcome = 'error') AS failed_attempts
    FROM attempts
    WHERE request_start >= {{from}} AND request_start < {{to}}
    GROUP BY provider, request_id
)
SELECT t.provider,
       sum(t.valid_attempts) AS valid_attempts,
       sum(t.provider_failures) AS provider_failures,
       1.0 - CAST(sum(t.provider_failures) AS DOUBLE) / CAST(NULLIF(sum(t.valid_attempts), 0) AS DOUBLE) AS attempt_uptime,
       CAST(sum(t.throttled_attempts) AS DOUBLE) / CAST(NULLIF(sum(t.valid_attempts), 0) AS DOUBLE) AS throttled_share,
       count(*) AS requests_tried,
       CAST(count(*) FILTER (WHERE r.good) AS DOUBLE) / CAST(NULLIF(count(*) FILTER (WHERE r.valid), 0) AS DOUBLE) AS request_availability,
       count(*) FILTER (WHERE t.failed_attempts > 0 AND t.successful_attempts = 0 AND r.successful) AS rescued_by_fallback
FROM tried t
JOIN requests r ON r.request_id = t.request_id
GROUP BY t.provider
ORDER BY attempt_uptime, t.provider
