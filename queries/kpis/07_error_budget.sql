-- family: error budget
-- How fast the availability SLO's error budget is being spent.
--
-- {budget} is 1 − the SLO target (slo_target in the settings).

-- kpi: error_budget_burn_rate
-- unit: ratio
-- question: How fast is the error budget being spent? 1 spends it exactly over the SLO period.
-- formula: (1 − good requests ÷ valid requests) ÷ (1 − SLO target)
(1.0 - CAST(rk.good_requests AS DOUBLE) / CAST(NULLIF(rk.valid_requests, 0) AS DOUBLE)) / {budget}

-- kpi: error_budget_remaining
-- unit: share
-- question: How much of the window's error budget is left?
-- formula: 1 − bad requests ÷ ((1 − SLO target) × valid requests)
1.0 - CAST(rk.valid_requests - rk.good_requests AS DOUBLE) / ({budget} * CAST(NULLIF(rk.valid_requests, 0) AS DOUBLE))
