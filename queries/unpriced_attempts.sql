-- name: unpriced_attempts
-- kind: report
-- unit: attempts, tokens
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- Billed attempts with neither a reported cost nor a price-book row: the
-- (provider, model) pairs to add to the price book.
SELECT provider,
       COALESCE(served_model, requested_model) AS model,
       count(*) AS attempts,
       sum(COALESCE(input_tokens, 0) + COALESCE(output_tokens, 0)) AS tokens,
       min(attempt_start) AS first_seen,
       max(attempt_start) AS last_seen
FROM attempts
WHERE cost_source = 'unpriced' AND request_start >= {{from}} AND request_start < {{to}}
GROUP BY provider, COALESCE(served_model, requested_model)
ORDER BY attempts DESC, provider, model
