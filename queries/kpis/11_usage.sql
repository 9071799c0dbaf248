-- family: usage
-- What was consumed, and what could not be priced.

-- kpi: tokens
-- unit: tokens
-- question: How many tokens did the window's attempts consume?
-- formula: input + output tokens of all attempts
COALESCE(ak.tokens, 0)

-- kpi: unpriced_attempts
-- unit: attempts
-- question: How many attempts could the price book not price? Their cost is unknown, not 0.
-- formula: attempts with no reported cost and no matching price
COALESCE(ak.unpriced_attempts, 0)
