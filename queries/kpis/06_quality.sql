-- family: quality
-- Whether an answer is the one asked for: the model, and a whole stream.

-- kpi: model_drift_rate
-- unit: share
-- question: How often did the provider serve another model than the one requested?
-- formula: successful attempts whose served model differs from the requested one ÷ successful attempts
CAST(ak.drifted_attempts AS DOUBLE) / CAST(NULLIF(ak.successful_attempts, 0) AS DOUBLE)

-- kpi: stream_interruption_rate
-- unit: share
-- question: How many streams broke off before the end?
-- formula: streaming attempts that ended partial ÷ streaming attempts
CAST(ak.interrupted_streams AS DOUBLE) / CAST(NULLIF(ak.streaming_attempts, 0) AS DOUBLE)
