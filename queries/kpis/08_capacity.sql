-- family: capacity
-- How close traffic runs to its rate limit.
--
-- {minutes} is the bucket's or the window's length in minutes (the minutes between the first request
-- and the last attempt without either); {tpm_limit} is the configured
-- tokens-per-minute limit of the row's scope, null without one.

-- kpi: effective_throughput_pct
-- unit: percent
-- question: How much of its tokens-per-minute limit does a scope use?
-- formula: tokens of all attempts per minute ÷ the tokens-per-minute limit × 100 (null without a limit)
CAST(ak.tokens AS DOUBLE) / NULLIF({minutes}, 0) / NULLIF({tpm_limit}, 0.0) * 100.0
