-- family: cost
-- What the traffic cost, in exact dollars, and what it bought.

-- kpi: spend_usd
-- unit: USD
-- question: What did the window's attempts cost?
-- formula: sum of every attempt's cost, failed attempts included; an unbilled attempt costs 0
CAST(COALESCE(ak.spend_usd, CAST(0 AS DECIMAL(20, 9))) AS DECIMAL(38, 9))

-- kpi: cost_per_1m_tokens_usd
-- unit: USD
-- question: What does a million tokens cost, all attempts counted?
-- formula: 1,000,000 × spend ÷ tokens of all attempts
CAST(CAST(ak.spend_usd AS DECIMAL(38, 9)) * 1000000 / NULLIF(ak.tokens, 0) AS DECIMAL(38, 9))

-- kpi: cost_per_successful_outcome_usd
-- unit: USD
-- question: What does one successful request cost, its failed attempts included?
-- formula: spend of all attempts ÷ successful requests
CAST(CAST(ak.spend_usd AS DECIMAL(38, 9)) / NULLIF(rk.successful_requests, 0) AS DECIMAL(38, 9))

-- kpi: token_efficiency
-- unit: share
-- question: How many of the tokens paid for were in answers that counted?
-- formula: tokens of successful final attempts ÷ tokens of all attempts
CAST(ak.successful_final_tokens AS DOUBLE) / CAST(NULLIF(ak.tokens, 0) AS DOUBLE)
