-- family: compliance
-- Whether traffic stayed with the providers policy allows.

-- kpi: compliance_score
-- unit: share
-- question: How many requests sent every attempt to an allowed provider?
-- formula: requests whose attempts all went to allowed providers ÷ requests judged (null without an allowlist)
CAST(rk.compliant_requests AS DOUBLE) / CAST(NULLIF(rk.judged_requests, 0) AS DOUBLE)
