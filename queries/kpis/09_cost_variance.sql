-- family: cost variance
-- Spend against the pace of the week before; it needs a window with both
-- ends and no buckets.
--
-- {baseline_spend} is the trailing seven days' spend before the window,
-- scaled to the window's length; null without a baseline.

-- kpi: cost_variance_pct
-- unit: percent
-- question: Is spend above or below the trailing week's pace?
-- formula: (spend − baseline) ÷ baseline × 100
CAST((CAST(ak.spend_usd AS DOUBLE) - CAST({baseline_spend} AS DOUBLE)) / NULLIF(CAST({baseline_spend} AS DOUBLE), 0) * 100.0 AS DOUBLE)
