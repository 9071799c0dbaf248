-- name: cost_breakdown
-- kind: report
-- unit: one row per team and provider: USD (exact decimal) by part, and attempts per request
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- What is the money spent on? Per team and provider, spend split into its
-- parts. Attempts priced from the price book (the book row in force at
-- attempt_start for the provider and served, else requested, model) split
-- into input tokens not read from or written to the cache, cache reads
-- and writes, output tokens, request fees and web searches, each part
-- exact (per-token prices times tokens); their sum can differ from the
-- attempt's cost_usd by the one rounding to 1e-9 USD the total gets.
-- Attempts whose provider reported the cost split into the tools and web
-- search cost the provider reported (cost_tools_usd) and the rest of it.
-- unpriced_attempts counts attempts no book row priced (their cost is
-- missing from every part). attempts_per_request shows agent loops and
-- retries: what one request of the team costs in upstream calls.
WITH priced AS (
    SELECT a.team, a.provider, a.request_id, a.is_final_attempt, a.cost_source, a.cost_usd,
           a.cost_tools_usd,
           CASE WHEN a.cost_source = 'price_book' THEN
               CAST(COALESCE(a.input_tokens, 0) - COALESCE(a.cache_read_tokens, 0) - COALESCE(a.cache_write_tokens, 0) AS DECIMAL(38, 0))
                   * p.input_per_1m / 1000000 END AS input_usd,
           CASE WHEN a.cost_source = 'price_book' THEN
               (CAST(COALESCE(a.cache_read_tokens, 0) AS DECIMAL(38, 0)) * p.cache_read_per_1m
                + CAST(COALESCE(a.cache_write_tokens, 0) AS DECIMAL(38, 0)) * p.cache_write_per_1m) / 1000000 END AS cache_usd,
           CASE WHEN a.cost_source = 'price_book' THEN
               CAST(COALESCE(a.output_tokens, 0) AS DECIMAL(38, 0)) * p.output_per_1m / 1000000 END AS output_usd,
           CASE WHEN a.cost_source = 'price_book' THEN p.request_fee END AS request_fee_usd,
           CASE WHEN a.cost_source = 'price_book' THEN
               CAST(COALESCE(a.web_search_requests, 0) AS DECIMAL(38, 0)) * p.web_search_per_1k / 1000 END AS web_search_usd
    FROM attempts a
    LEFT JOIN price_book p
      ON p.provider = a.provider
     AND p.model = COALESCE(a.served_model, a.requested_model)
     AND p.effective_from <= a.attempt_start
     AND (p.effective_to IS NULL OR a.attempt_start < p.effective_to)
    WHERE a.request_start >= {{from}} AND a.request_start < {{to}}
)
SELECT team, provider,
       CAST(sum(cost_usd) AS DECIMAL(38, 9)) AS spend_usd,
       CAST(COALESCE(sum(input_usd), 0) AS DECIMAL(38, 9)) AS input_usd,
       CAST(COALESCE(sum(cache_usd), 0) AS DECIMAL(38, 9)) AS cache_usd,
       CAST(COALESCE(sum(output_usd), 0) AS DECIMAL(38, 9)) AS output_usd,
       CAST(COALESCE(sum(request_fee_usd), 0) AS DECIMAL(38, 9)) AS request_fee_usd,
       CAST(COALESCE(sum(web_search_usd), 0) AS DECIMAL(38, 9)) AS web_search_usd,
       CAST(COALESCE(sum(cost_tools_usd) FILTER (WHERE cost_source = 'reported'), 0) AS DECIMAL(38, 9)) AS reported_tools_usd,
       CAST(COALESCE(sum(cost_usd - COALESCE(cost_tools_usd, 0)) FILTER (WHERE cost_source = 'reported'), 0) AS DECIMAL(38, 9)) AS reported_rest_usd,
       count(*) FILTER (WHERE cost_source = 'unpriced') AS unpriced_attempts,
       CAST(count(*) AS DOUBLE) / CAST(count(DISTINCT request_id) AS DOUBLE) AS attempts_per_request
FROM priced
GROUP BY team, provider
ORDER BY spend_usd DESC NULLS LAST, team, provider
