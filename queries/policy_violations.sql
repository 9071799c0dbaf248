-- name: policy_violations
-- kind: report
-- unit: one row per team, provider and model with a violation: attempt counts, spend in USD (exact decimal)
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- param: allowed_models text *
-- param: blocked_providers text none
-- param: allowed_regions text *
-- param: max_output_per_1m integer 0
-- param: require_zero_retention boolean false
-- Which traffic broke the routing policy? Attempts per team, provider and
-- model (served, else requested) that went to a model not on the
-- allowlist (allowed_models: comma-separated, * for any), to a blocked
-- provider (blocked_providers: comma-separated, none for no block), to a
-- data region not on the list (allowed_regions: comma-separated, * for
-- any; an attempt that reported no region is not proven compliant and
-- counts), or to a model whose book price per 1M output tokens was above
-- max_output_per_1m USD at the time (0 for no cap), or, with
-- require_zero_retention true, without a zero-data-retention agreement
-- (an attempt that reported none is not proven to have one and counts).
-- Each column counts the attempts breaking that rule; only rows with one
-- are listed.
WITH judged AS (
    SELECT a.team, a.provider, COALESCE(a.served_model, a.requested_model) AS model, a.cost_usd,
           NOT ({{allowed_models}} = '*'
                OR array_has(string_to_array({{allowed_models}}, ','), COALESCE(a.served_model, a.requested_model))) AS model_not_allowed,
           array_has(string_to_array({{blocked_providers}}, ','), a.provider) AS provider_blocked,
           NOT ({{allowed_regions}} = '*'
                OR COALESCE(array_has(string_to_array({{allowed_regions}}, ','), a.region), false)) AS region_not_allowed,
           COALESCE({{max_output_per_1m}} > 0 AND p.output_per_1m > {{max_output_per_1m}}, false) AS over_price_limit,
           {{require_zero_retention}} AND NOT COALESCE(a.zero_data_retention, false) AS retention_not_zero
    FROM attempts a
    LEFT JOIN price_book p
      ON p.provider = a.provider
     AND p.model = COALESCE(a.served_model, a.requested_model)
     AND p.effective_from <= a.attempt_start
     AND (p.effective_to IS NULL OR a.attempt_start < p.effective_to)
    WHERE a.request_start >= {{from}} AND a.request_start < {{to}}
)
SELECT team, provider, model,
       count(*) AS attempts,
       sum(cost_usd) AS spend_usd,
       count(*) FILTER (WHERE model_not_allowed) AS model_not_allowed,
       count(*) FILTER (WHERE provider_blocked) AS provider_blocked,
       count(*) FILTER (WHERE region_not_allowed) AS region_not_allowed,
       count(*) FILTER (WHERE over_price_limit) AS over_price_limit,
       count(*) FILTER (WHERE retention_not_zero) AS retention_not_zero
FROM judged
WHERE model_not_allowed OR provider_blocked OR region_not_allowed OR over_price_limit OR retention_not_zero
GROUP BY team, provider, model
ORDER BY spend_usd DESC NULLS LAST, team, provider, model
