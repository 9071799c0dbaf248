-- family: latency
-- How long requests, attempts and first tokens take. Percentiles
-- interpolate between the closest ranks; read from stored rollups they
-- come from merged sketches, within 1 %.

-- kpi: latency_p50_ms
-- unit: milliseconds
-- question: How long does a successful request take, end to end, at the median?
-- formula: 50th percentile of the last attempt's end − the request's start, over successful requests
rk.latency_p50_ms

-- kpi: latency_p95_ms
-- unit: milliseconds
-- question: How long do the slowest 5 % of successful requests take?
-- formula: 95th percentile of end-to-end latency over successful requests
rk.latency_p95_ms

-- kpi: latency_p99_ms
-- unit: milliseconds
-- question: How long do the slowest 1 % of successful requests take?
-- formula: 99th percentile of end-to-end latency over successful requests
rk.latency_p99_ms

-- kpi: attempt_latency_p50_ms
-- unit: milliseconds
-- question: How long does one successful upstream attempt take at the median?
-- formula: 50th percentile of attempt end − attempt start over successful attempts, each with its own provider
ak.attempt_latency_p50_ms

-- kpi: attempt_latency_p95_ms
-- unit: milliseconds
-- question: How long do the slowest 5 % of successful attempts take?
-- formula: 95th percentile of attempt duration over successful attempts
ak.attempt_latency_p95_ms

-- kpi: attempt_latency_p99_ms
-- unit: milliseconds
-- question: How long do the slowest 1 % of successful attempts take?
-- formula: 99th percentile of attempt duration over successful attempts
ak.attempt_latency_p99_ms

-- kpi: ttft_p50_ms
-- unit: milliseconds
-- question: How soon does a successful stream send its first token, at the median?
-- formula: 50th percentile of ttft_ms over successful streaming attempts
ak.ttft_p50_ms

-- kpi: ttft_p95_ms
-- unit: milliseconds
-- question: How soon do the slowest 5 % of successful streams send their first token?
-- formula: 95th percentile of ttft_ms over successful streaming attempts
ak.ttft_p95_ms

-- kpi: ttft_p99_ms
-- unit: milliseconds
-- question: How soon do the slowest 1 % of successful streams send their first token?
-- formula: 99th percentile of ttft_ms over successful streaming attempts
ak.ttft_p99_ms
