-- name: price_book_changes
-- kind: report
-- unit: USD per 1M tokens
-- Every price-book row with the prices it replaced: when list prices changed.
SELECT provider,
       model,
       effective_from,
       effective_to,
       input_per_1m,
       lag(input_per_1m) OVER (PARTITION BY provider, model ORDER BY effective_from) AS previous_input_per_1m,
       output_per_1m,
       lag(output_per_1m) OVER (PARTITION BY provider, model ORDER BY effective_from) AS previous_output_per_1m,
       request_fee,
       web_search_per_1k
FROM price_book
ORDER BY provider, model, effective_from
