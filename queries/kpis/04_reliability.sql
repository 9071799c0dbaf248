-- family: reliability
-- Whether callers get good answers, and whether providers serve them.
-- A valid request is one the caller did not spoil (a bad request, bad
-- credentials, no credits, forbidden, or cancelled); a good one is valid
-- and successful.

-- kpi: error_rate
-- unit: share
-- question: How many valid requests did not get a good answer?
-- formula: 1 − good requests ÷ valid requests
1.0 - CAST(rk.good_requests AS DOUBLE) / CAST(NULLIF(rk.valid_requests, 0) AS DOUBLE)

-- kpi: availability
-- unit: share
-- question: How many valid requests got a good answer?
-- formula: good requests ÷ valid requests
CAST(rk.good_requests AS DOUBLE) / CAST(NULLIF(rk.valid_requests, 0) AS DOUBLE)

-- kpi: attempt_uptime
-- unit: share
-- question: How often did a provider itself serve an attempt sent to it?
-- formula: 1 − attempts the provider failed (provider error, timeout, network, no provider) ÷ valid attempts
1.0 - CAST(ak.provider_failed_attempts AS DOUBLE) / CAST(NULLIF(ak.valid_attempts, 0) AS DOUBLE)
