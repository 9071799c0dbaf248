-- name: throughput_ramp
-- kind: report
-- unit: one row per minute of request_start: requests per second offered and answered successfully, output tokens per second, shares 0–1
-- param: from timestamp 1970-01-01T00:00:00Z
-- param: to timestamp 2100-01-01T00:00:00Z
-- Where does throughput stop growing as load grows? Each minute's offered
-- load (requests received per second) beside what came back: successful
-- requests per second (goodput) and the output tokens per second of their
-- final attempts, with the share of attempts the providers throttled
-- (error class rate_limited). Plotted as goodput against offered load,
-- the curve bends at the providers' limits: past the knee offered load
-- keeps rising while goodput stays flat, success_share falls and
-- throttled_share climbs.
SELECT date_trunc('minute', request_start) AS minute,
       CAST(count(*) FILTER (WHERE is_final_attempt) AS DOUBLE) / 60.0 AS offered_rps,
       CAST(count(*) FILTER (WHERE is_final_attempt AND outcome = 'success') AS DOUBLE) / 60.0 AS goodput_rps,
       CAST(COALESCE(sum(output_tokens) FILTER (WHERE is_final_attempt AND outcome = 'success'), 0) AS DOUBLE) / 60.0 AS output_tokens_per_s,
       CAST(count(*) FILTER (WHERE is_final_attempt AND outcome = 'success') AS DOUBLE)
           / CAST(count(*) FILTER (WHERE is_final_attempt) AS DOUBLE) AS success_share,
       CAST(count(*) FILTER (WHERE error_class = 'rate_limited') AS DOUBLE) / CAST(count(*) AS DOUBLE) AS throttled_share
FROM attempts
WHERE request_start >= {{from}} AND request_start < {{to}}
GROUP BY date_trunc('minute', request_start)
ORDER BY minute
