-- name: retry_policy_audit
-- kind: report
-- unit: one row per provider, error class and HTTP status of a failed attempt: attempt counts, shares 0–1, waste in USD (exact decimal)
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- Does the gateway's retry policy do what it should after each kind of
-- failure? For every failed attempt (outcome error) that the gateway
-- followed with another attempt of the same request: how many went to the
-- same provider again and how many failed over to another, and the cost
-- of the attempts that followed. The verdict names the rule broken:
-- `never_retry` — a client error (bad_request, auth, insufficient_credits,
-- forbidden: HTTP 400/401/402/403) was sent again, which cannot help;
-- `fail_over` — a provider error (5xx) or timeout was retried on the same
-- provider instead of another; `wait_retry_after` — the provider said when
-- to come back (its Retry-After, the event's retry_after_ms) and the
-- gateway tried the same provider again sooner (the time from the failed
-- attempt's end to the next one's start below it); `ok` otherwise.
-- retry_after_given counts the failures that carried a Retry-After,
-- before_retry_after those retried on the same provider too early.
WITH sequenced AS (
    SELECT request_id, provider, outcome, error_class, http_status, attempt_end, retry_after_ms,
           lead(provider) OVER (PARTITION BY request_id ORDER BY attempt_index, attempt_id) AS next_provider,
           lead(attempt_start) OVER (PARTITION BY request_id ORDER BY attempt_index, attempt_id) AS next_start,
           lead(cost_usd) OVER (PARTITION BY request_id ORDER BY attempt_index, attempt_id) AS next_cost_usd
    FROM attempts
    WHERE request_start >= {{from}} AND request_start < {{to}}
),
followed AS (
    SELECT provider, COALESCE(error_class, 'other') AS error_class, http_status,
           next_provider = provider AS same_provider,
           retry_after_ms IS NOT NULL AS retry_after_given,
           COALESCE(next_provider = provider
                    AND CAST(next_start AS BIGINT) - CAST(attempt_end AS BIGINT) < retry_after_ms * 1000.0,
                    false) AS too_early,
           next_cost_usd
    FROM sequenced
    WHERE outcome = 'error' AND next_provider IS NOT NULL
),
counted AS (
    SELECT provider, error_class, http_status,
           count(*) AS followed_attempts,
           count(*) FILTER (WHERE same_provider) AS same_provider,
           count(*) FILTER (WHERE NOT same_provider) AS failed_over,
           sum(next_cost_usd) AS follow_up_cost_usd,
           sum(next_cost_usd) FILTER (WHERE same_provider) AS same_provider_cost_usd,
           count(*) FILTER (WHERE retry_after_given) AS retry_after_given,
           count(*) FILTER (WHERE too_early) AS before_retry_after,
           sum(next_cost_usd) FILTER (WHERE too_early) AS too_early_cost_usd
    FROM followed
    GROUP BY provider, error_class, http_status
)
SELECT provider, error_class, http_status, followed_attempts, same_provider, failed_over,
       CAST(same_provider AS DOUBLE) / CAST(followed_attempts AS DOUBLE) AS same_provider_share,
       follow_up_cost_usd, retry_after_given, before_retry_after,
       CASE
           WHEN error_class IN ('bad_request', 'auth', 'insufficient_credits', 'forbidden') THEN 'never_retry'
           WHEN error_class IN ('provider_error', 'timeout') AND same_provider > 0 THEN 'fail_over'
           WHEN before_retry_after > 0 THEN 'wait_retry_after'
           ELSE 'ok'
       END AS verdict,
       CASE
           WHEN error_class IN ('bad_request', 'auth', 'insufficient_credits', 'forbidden') THEN follow_up_cost_usd
           WHEN error_class IN ('provider_error', 'timeout') THEN COALESCE(same_provider_cost_usd, 0)
           ELSE COALESCE(too_early_cost_usd, CAST(0 AS DECIMAL(20, 9)))
       END AS misdirected_cost_usd
FROM counted
ORDER BY verdict = 'ok', followed_attempts DESC, provider, error_class, http_status
