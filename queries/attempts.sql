-- name: attempts
-- kind: view
-- params: none
-- unit: one row per attempt; money in USD (DECIMAL(20,9)), durations in ms
-- Deduplicated attempts: per attempt_id the highest event_version wins, then
-- the latest written copy. cost_usd is the reported cost, else the price
-- book's price in force at attempt_start for (provider, served_model or
-- requested_model); billed = false costs 0. cost_source says which:
-- reported, price_book, unpriced (no book row: cost_usd is NULL) or unbilled.
-- attempt_cost and attempt_cost_source apply the book (the price_book table)
-- with the formula of SPEC 3: per-token prices are exact, and the sum over
-- tokens is rounded once, half away from zero, to 1e-9 USD before the
-- request fee is added.
-- is_final_attempt marks the attempt whose result is the request's.
-- Compaction already keeps one winning copy per attempt
-- (attempts_compacted_raw), so only attempts with a copy in a file written
-- since (attempts_fresh_raw) are ranked, the compacted copy among them.
WITH contested AS (
    SELECT * FROM attempts_fresh_raw
    UNION ALL
    SELECT c.* FROM attempts_compacted_raw c
    WHERE EXISTS (SELECT 1 FROM attempts_fresh_raw f WHERE f.attempt_id = c.attempt_id)
),
ranked AS (
    SELECT *,
           row_number() OVER (
               PARTITION BY attempt_id
               ORDER BY event_version DESC, _ingested_at DESC, _topic DESC, _partition DESC, _offset DESC
           ) AS _rank
    FROM contested
),
deduplicated AS (
    SELECT c.* FROM attempts_compacted_raw c
    WHERE NOT EXISTS (SELECT 1 FROM attempts_fresh_raw f WHERE f.attempt_id = c.attempt_id)
    UNION ALL
    SELECT * EXCLUDE (_rank) FROM ranked WHERE _rank = 1
),
final_marked AS (
    -- The final attempt of its request: is_final (the highest index among
    -- several), else the highest attempt_index; attempt_id breaks a tie.
    SELECT *,
           row_number() OVER (PARTITION BY request_id ORDER BY is_final DESC, attempt_index DESC, attempt_id DESC) = 1 AS is_final_attempt
    FROM deduplicated
)
SELECT d.* EXCLUDE (cost_usd),
       CAST(CAST(d.attempt_end AS BIGINT) - CAST(d.attempt_start AS BIGINT) AS DOUBLE) / 1000.0 AS duration_ms,
       attempt_cost(d.billed, d.cost_usd, d.provider, d.served_model, d.requested_model, d.attempt_start,
                    d.input_tokens, d.output_tokens, d.cache_read_tokens, d.cache_write_tokens,
                    d.web_search_requests) AS cost_usd,
       attempt_cost_source(d.billed, d.cost_usd, d.provider, d.served_model, d.requested_model,
                           d.attempt_start) AS cost_source
FROM final_marked d
