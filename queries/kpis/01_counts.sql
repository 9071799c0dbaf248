-- family: counts
-- How much traffic the window holds.
--
-- Each KPI below is one SQL expression over the grouped request figures
-- (`rk`, from the `requests` view) and attempt figures (`ak`, from the
-- `attempts` view), joined on the group keys; docs/kpis.md says how the
-- figures are made. The files are read in name order, which is the order
-- of the KPI columns.

-- kpi: requests
-- unit: requests
-- question: How many requests started in the window?
-- formula: the requests whose start is in the window
COALESCE(rk.requests, 0)

-- kpi: attempts
-- unit: attempts
-- question: How many upstream attempts did those requests make?
-- formula: the attempts of those requests, retries and fallbacks included
COALESCE(ak.attempts, 0)
