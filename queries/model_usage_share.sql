-- name: model_usage_share
-- kind: report
-- unit: one row per period and model: tokens, spend in USD (exact decimal), shares 0–1, rank, model count
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- param: period text day
-- Which models carry the traffic, and how is that shifting? Per period
-- (day, week from Monday, or month; UTC) and model (served, else
-- requested): tokens (input plus output, every attempt) and spend, their
-- share of the period, the model's rank by tokens (the leaderboard) and
-- how many models were active in the period. Whole UTC days: every day
-- the range touches. Read from the daily rollups by model.
WITH usage AS (
    SELECT date_trunc({{period}}, hour) AS period_start,
           COALESCE(served_model, requested_model) AS model,
           sum(input_tokens + output_tokens) AS tokens,
           sum(spend_usd) AS spend_usd
    FROM daily_usage_by_model
    WHERE hour >= date_trunc('day', to_timestamp_micros({{from}})) AND hour < {{to}}
    GROUP BY date_trunc({{period}}, hour), COALESCE(served_model, requested_model)
)
SELECT period_start, model, tokens, spend_usd,
       CAST(tokens AS DOUBLE) / CAST(NULLIF(sum(tokens) OVER (PARTITION BY period_start), 0) AS DOUBLE) AS token_share,
       CAST(spend_usd AS DOUBLE) / NULLIF(CAST(sum(spend_usd) OVER (PARTITION BY period_start) AS DOUBLE), 0) AS spend_share,
       rank() OVER (PARTITION BY period_start ORDER BY tokens DESC) AS token_rank,
       count(*) OVER (PARTITION BY period_start) AS active_models
FROM usage
ORDER BY period_start, token_rank, model
