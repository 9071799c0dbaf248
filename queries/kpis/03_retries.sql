-- family: retries
-- How much extra upstream work a request costs: retries and fallbacks.

-- kpi: retry_amplification
-- unit: ratio
-- question: How many upstream calls does one request make?
-- formula: attempts ÷ requests
CAST(ak.attempts AS DOUBLE) / CAST(NULLIF(rk.requests, 0) AS DOUBLE)

-- kpi: retry_rate
-- unit: share
-- question: How many requests needed more than one attempt?
-- formula: requests with more than one attempt ÷ requests
CAST(rk.retried_requests AS DOUBLE) / CAST(NULLIF(rk.requests, 0) AS DOUBLE)

-- kpi: respent_token_share
-- unit: share
-- question: How many tokens went to attempts that were not the answer?
-- formula: tokens of attempts that were not final ÷ tokens of all attempts
CAST(ak.respent_tokens AS DOUBLE) / CAST(NULLIF(ak.tokens, 0) AS DOUBLE)

-- kpi: fallback_rate
-- unit: share
-- question: How many requests fell back to another model or provider?
-- formula: requests with at least one fallback attempt ÷ requests
CAST(rk.fallback_requests AS DOUBLE) / CAST(NULLIF(rk.requests, 0) AS DOUBLE)

-- kpi: fallback_success_rate
-- unit: share
-- question: When a request falls back, does it succeed?
-- formula: successful requests with a fallback ÷ requests with a fallback
CAST(rk.fallback_successes AS DOUBLE) / CAST(NULLIF(rk.fallback_requests, 0) AS DOUBLE)
