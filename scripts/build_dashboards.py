#!/usr/bin/env python3
"""Writes the Grafana dashboards of dashboards/grafana/ from the panel lists
below, so every panel has the same shape: a templated datasource, a
description saying what the number means, a unit, and an id unique in its
dashboard.

    python3 scripts/build_dashboards.py          # rewrite the JSON files
    python3 scripts/build_dashboards.py --check  # fail if they are stale

Two datasources, both template variables (type "datasource"), so the
dashboards import into any Grafana whatever its datasource uids are:
- ${prometheus}: a Prometheus scraping gatemeter's /metrics (live series);
- ${gatemeter}: Grafana's built-in PostgreSQL datasource pointed at
  gatemeter's PostgreSQL endpoint (`--pg-listen`), for the exact KPIs over
  the lake. SQL uses Grafana's $__timeFilter / $__timeFrom / $__timeTo
  macros and DataFusion SQL over the `attempts` and `requests` views.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "dashboards" / "grafana"

PROM = {"type": "prometheus", "uid": "${prometheus}"}
SQL = {"type": "grafana-postgresql-datasource", "uid": "${gatemeter}"}

# The SRE Workbook policy drawn on burn-rate panels: ticket at 1× and 3×,
# page at 6× and 14.4×.
BURN_THRESHOLDS = [
    {"color": "green", "value": None},
    {"color": "#EAB839", "value": 1},
    {"color": "orange", "value": 3},
    {"color": "red", "value": 6},
    {"color": "dark-red", "value": 14.4},
]
RATIO_THRESHOLDS = [
    {"color": "green", "value": None},
    {"color": "#EAB839", "value": 0.5},
    {"color": "orange", "value": 0.8},
    {"color": "red", "value": 1},
]


def prom(expr, legend="__auto"):
    return {"datasource": PROM, "expr": expr, "legendFormat": legend, "range": True}


def sql(text, fmt="time_series"):
    return {"datasource": SQL, "rawSql": " ".join(text.split()), "format": fmt, "rawQuery": True, "editorMode": "code"}


def panel(kind, title, description, targets, unit="short", width=12, height=8, thresholds=None, threshold_lines=False, options=None):
    defaults = {"unit": unit}
    if thresholds:
        defaults["thresholds"] = {"mode": "absolute", "steps": thresholds}
    if threshold_lines:
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": targets[0]["datasource"],
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options or {},
        "_size": (width, height),
    }


RATE = "$__rate_interval"

SRE = [
    panel("stat", "Request rate",
          "Logical client requests per second (final attempts), from gatemeter's live counters.",
          [prom(f"sum(rate(gatemeter_requests_total[{RATE}]))", "requests/s")], unit="reqps", width=6, height=4),
    panel("stat", "Availability (5m)",
          "Good ÷ valid requests over the last 5 minutes. Valid excludes client errors (400/401/402/403) and cancelled requests; good is valid and successful.",
          [prom('sum(rate(gatemeter_slo_requests_total{result="good"}[5m])) / sum(rate(gatemeter_slo_requests_total[5m]))', "availability")],
          unit="percentunit", width=6, height=4),
    panel("stat", "Error budget remaining",
          "Share of each SLO's 30-day error budget not yet spent: 1 − bad ÷ ((1 − target) × valid). Below 0 the SLO is broken for the period.",
          [prom("gatemeter_slo_error_budget_remaining_ratio", "{{slo}}")], unit="percentunit", width=6, height=4,
          thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 0.25}, {"color": "green", "value": 0.5}]),
    panel("stat", "Retry amplification (5m)",
          "Upstream attempts per logical request over the last 5 minutes; 1.0 means no retries or fallbacks.",
          [prom("sum(rate(gatemeter_attempts_total[5m])) / sum(rate(gatemeter_requests_total[5m]))", "attempts/request")],
          unit="none", width=6, height=4),
    panel("timeseries", "Error-budget burn rate",
          "How fast each SLO spends its error budget, per window: (1 − good ÷ valid) ÷ (1 − target). 1× spends it exactly over the period. Lines: ticket at 1× (3d+6h) and 3× (1d+2h), page at 6× (6h+30m) and 14.4× (1h+5m).",
          [prom("gatemeter_slo_burn_rate", "{{slo}} {{window}}")], unit="none", width=24,
          thresholds=BURN_THRESHOLDS, threshold_lines=True),
    panel("timeseries", "Attempt latency p50 / p95 / p99 by provider",
          "Duration of successful upstream attempts (attempt_start → attempt_end), percentiles from gatemeter_attempt_duration_seconds (OTel GenAI buckets), per provider.",
          [prom(f"histogram_quantile({q}, sum by (le, provider) (rate(gatemeter_attempt_duration_seconds_bucket[{RATE}])))", f"p{int(q * 100)} {{{{provider}}}}")
           for q in (0.5, 0.95, 0.99)], unit="s"),
    panel("timeseries", "Time to first token p50 / p95 / p99 by model",
          "Time to first token of successful streaming attempts, percentiles from gatemeter_time_to_first_token_seconds, per model.",
          [prom(f"histogram_quantile({q}, sum by (le, model) (rate(gatemeter_time_to_first_token_seconds_bucket[{RATE}])))", f"p{int(q * 100)} {{{{model}}}}")
           for q in (0.5, 0.95, 0.99)], unit="s"),
    panel("table", "End-to-end latency by provider and model",
          "Exact percentiles (linear interpolation) of e2e_latency_ms = last attempt_end − request_start over successful requests in the time range, by the final attempt's provider and model; retries and fallbacks included.",
          [sql("""SELECT provider, served_model AS model, count(*) AS requests,
                  percentile_cont(e2e_latency_ms, 0.5) AS p50_ms,
                  percentile_cont(e2e_latency_ms, 0.95) AS p95_ms,
                  percentile_cont(e2e_latency_ms, 0.99) AS p99_ms,
                  percentile_cont(e2e_ttft_ms, 0.95) AS ttft_p95_ms
                  FROM requests WHERE $__timeFilter(request_start) AND successful
                  GROUP BY provider, served_model ORDER BY requests DESC""", "table")], unit="ms", width=24),
    panel("timeseries", "Retry amplification and fallback rate",
          "Per minute: attempts ÷ requests (retry_amplification) and the share of requests with at least one provider, model or key fallback (fallback_rate), from the lake.",
          [sql("""SELECT date_trunc('minute', request_start) AS "time",
                  CAST(sum(attempts) AS DOUBLE) / count(*) AS retry_amplification,
                  CAST(count(*) FILTER (WHERE fallbacks > 0) AS DOUBLE) / count(*) AS fallback_rate
                  FROM requests WHERE $__timeFilter(request_start) GROUP BY 1 ORDER BY 1""")], unit="none"),
    panel("timeseries", "Errors by class",
          "Failed upstream attempts per minute by error class (rate_limited, provider_error, timeout, stream_interrupted, …), retried ones included.",
          [sql("""SELECT date_trunc('minute', request_start) AS "time", error_class, count(*) AS attempts
                  FROM attempts WHERE $__timeFilter(request_start) AND error_class IS NOT NULL
                  GROUP BY 1, 2 ORDER BY 1""")], unit="short"),
    panel("timeseries", "Stream interruptions",
          "Share of streaming attempts whose stream broke after data was sent (outcome partial), per minute.",
          [sql("""SELECT date_trunc('minute', request_start) AS "time",
                  CAST(count(*) FILTER (WHERE outcome = 'partial') AS DOUBLE) / count(*) AS stream_interruption_rate
                  FROM attempts WHERE $__timeFilter(request_start) AND streaming GROUP BY 1 ORDER BY 1""")], unit="percentunit"),
    panel("timeseries", "Ingest lag",
          "Messages in Kafka not yet consumed, per topic partition. Growing lag means the lake (and every SQL panel) falls behind.",
          [prom("sum by (topic, partition) (gatemeter_ingest_partition_lag_messages)", "{{topic}}/{{partition}}")], unit="short"),
    panel("timeseries", "Dead letters",
          "Events per second refused as malformed (bad JSON, missing or mistyped field) and written to the dead-letter table instead of the lake; their neighbours are stored.",
          [prom(f'sum(rate(gatemeter_ingest_events_total{{result="dead_letter"}}[{RATE}]))', "dead letters/s"),
           prom(f'sum(rate(gatemeter_ingest_events_total{{result="stored"}}[{RATE}]))', "stored/s")], unit="short"),
]

FINANCE = [
    panel("stat", "Spend this month",
          "USD spent since the first instant of the current UTC month: reported cost where the event had one, else priced by the price book; billed = false costs 0. From daily_usage_by_model: stored rollups for settled days and hours, raw attempts for the rest.",
          [sql("SELECT sum(spend_usd) AS spend_usd FROM daily_usage_by_model WHERE hour >= date_trunc('month', now())", "table")],
          unit="currencyUSD", width=6, height=4),
    panel("stat", "Cost per 1M tokens",
          "1,000,000 × spend ÷ (input + output tokens of all attempts) in the time range, failed and retried attempts included.",
          [sql("""SELECT CAST(sum(spend_usd) AS DOUBLE) * 1000000 / NULLIF(sum(input_tokens + output_tokens), 0) AS cost_per_1m_tokens_usd
                  FROM hourly_usage_by_model WHERE $__timeFilter(hour)""", "table")], unit="currencyUSD", width=6, height=4),
    panel("stat", "Cost per successful outcome",
          "Spend of all attempts of all requests (failed ones included) ÷ successful requests in the time range: what one useful answer costs.",
          [sql("""SELECT CAST(sum(spend_usd) AS DOUBLE) / NULLIF(sum(successful_requests), 0) AS cost_per_successful_outcome_usd
                  FROM hourly_requests_by_model WHERE $__timeFilter(hour)""", "table")], unit="currencyUSD", width=6, height=4),
    panel("stat", "Unpriced attempts",
          "Attempts with no reported cost and no price-book row for their provider and model: their cost is missing from every spend figure until the book covers them.",
          [sql("SELECT COALESCE(sum(unpriced_attempts), 0) AS unpriced_attempts FROM hourly_usage_by_model WHERE $__timeFilter(hour)", "table")],
          unit="short", width=6, height=4,
          thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
    panel("timeseries", "Spend by team",
          "USD per hour by team (the first attempt's attribution), all attempts of the team's requests.",
          [sql("""SELECT hour AS "time", team, sum(spend_usd) AS spend_usd
                  FROM hourly_usage_by_model WHERE $__timeFilter(hour) GROUP BY 1, 2 ORDER BY 1""")], unit="currencyUSD"),
    panel("timeseries", "Cost per 1M tokens over time",
          "Hourly 1,000,000 × spend ÷ tokens; a rise without a price change means traffic moved to dearer models or providers.",
          [sql("""SELECT hour AS "time",
                  CAST(sum(spend_usd) AS DOUBLE) * 1000000 / NULLIF(sum(input_tokens + output_tokens), 0) AS cost_per_1m_tokens_usd
                  FROM hourly_usage_by_model WHERE $__timeFilter(hour) GROUP BY 1 ORDER BY 1""")], unit="currencyUSD"),
    panel("table", "Spend by provider and model",
          "USD, attempts and tokens per provider and served model (requested model when nothing was served) in the time range.",
          [sql("""SELECT provider, COALESCE(served_model, requested_model) AS model, sum(spend_usd) AS spend_usd, sum(attempts) AS attempts,
                  sum(input_tokens + output_tokens) AS tokens
                  FROM hourly_usage_by_model WHERE $__timeFilter(hour) GROUP BY 1, 2 ORDER BY spend_usd DESC""", "table")],
          unit="short"),
    panel("piechart", "Spend by environment",
          "USD by environment (prod, staging, dev, ci, …) in the time range.",
          [sql("""SELECT environment, sum(spend_usd) AS spend_usd FROM hourly_usage WHERE $__timeFilter(hour)
                  GROUP BY environment ORDER BY spend_usd DESC""", "table")], unit="currencyUSD", width=6),
    panel("piechart", "BYOK vs platform",
          "USD on customers' own provider keys (byok) against the gateway's platform keys, by the key type of each attempt.",
          [sql("""SELECT key_type, sum(spend_usd) AS spend_usd FROM hourly_usage_by_model WHERE $__timeFilter(hour)
                  GROUP BY key_type ORDER BY key_type""", "table")], unit="currencyUSD", width=6),
    panel("table", "Cost per successful outcome by app",
          "Per app: spend of all its requests' attempts ÷ its successful requests, with both parts.",
          [sql("""SELECT app, sum(spend_usd) AS spend_usd, sum(successful_requests) AS successful_requests,
                  sum(spend_usd) / NULLIF(sum(successful_requests), 0) AS cost_per_successful_outcome_usd
                  FROM hourly_requests WHERE $__timeFilter(hour) GROUP BY app ORDER BY spend_usd DESC""", "table")],
          unit="short"),
    panel("table", "Retry waste by provider and error class",
          "Cost of attempts whose result did not go to the client (non-final attempts: retried after an error or replaced by a fallback), by provider and why they failed.",
          [sql("""SELECT provider, COALESCE(error_class, outcome) AS reason, count(*) AS wasted_attempts, sum(cost_usd) AS retry_waste_usd
                  FROM attempts WHERE $__timeFilter(request_start) AND NOT is_final_attempt
                  GROUP BY 1, 2 ORDER BY retry_waste_usd DESC""", "table")], unit="short"),
    panel("table", "Top keys by spend",
          "The 20 gateway keys (fingerprints, never the key) that spent most in the time range, with their team and request count.",
          [sql("""SELECT api_key_id, team, sum(spend_usd) AS spend_usd, sum(requests) AS requests
                  FROM hourly_requests WHERE $__timeFilter(hour) GROUP BY 1, 2 ORDER BY spend_usd DESC LIMIT 20""", "table")],
          unit="short"),
    panel("bargauge", "Month to date against budget",
          "Each configured budget's spend so far ÷ its amount (1.0 = the whole budget) and the projection at period end, from the alert evaluator.",
          [prom("gatemeter_budget_consumed_ratio", "{{budget}} spent"), prom("gatemeter_budget_projected_ratio", "{{budget}} projected")],
          unit="percentunit", width=24, thresholds=RATIO_THRESHOLDS),
]

BUDGETS = [
    panel("bargauge", "Budget consumed",
          "Spend so far in each budget's current period (daily, weekly from Monday, or monthly, UTC) ÷ its amount. Alerts fire at the configured shares (default 50%, 80%, 100%).",
          [prom("gatemeter_budget_consumed_ratio", "{{budget}}")], unit="percentunit", thresholds=RATIO_THRESHOLDS),
    panel("bargauge", "Projected at period end",
          "Spend projected at the end of the period at the pace so far ÷ the amount; over 100% the projected-overspend alert fires.",
          [prom("gatemeter_budget_projected_ratio", "{{budget}}")], unit="percentunit", thresholds=RATIO_THRESHOLDS),
    panel("timeseries", "Budget burn rate",
          "Spend rate ÷ (amount ÷ period length): 1× spends the budget exactly by period end, 2× halfway through.",
          [prom("gatemeter_budget_burn_rate", "{{budget}}")], unit="none", thresholds=BURN_THRESHOLDS[:2] + [{"color": "red", "value": 2}],
          threshold_lines=True),
    panel("timeseries", "SLO burn rates",
          "Error-budget burn rate per SLO and window. A page needs both windows of a pair over the line: 14.4× over 1h and 5m, or 6× over 6h and 30m; a ticket 3× over 1d and 2h, or 1× over 3d and 6h.",
          [prom("gatemeter_slo_burn_rate", "{{slo}} {{window}}")], unit="none", thresholds=BURN_THRESHOLDS, threshold_lines=True),
    panel("stat", "SLO error budget remaining",
          "Share of each SLO's 30-day error budget left.",
          [prom("gatemeter_slo_error_budget_remaining_ratio", "{{slo}}")], unit="percentunit",
          thresholds=[{"color": "red", "value": None}, {"color": "orange", "value": 0.25}, {"color": "green", "value": 0.5}]),
    panel("state-timeline", "Alerts pending and firing",
          "1 while an alert is pending (condition true, waiting out its for-duration) or firing (sent to Alertmanager until resolved).",
          [prom('gatemeter_alert_state{state=~"pending|firing"}', "{{alert}} {{state}}")], unit="none", width=24),
    panel("timeseries", "Alert evaluations",
          "Evaluations per second by result; errors are logged and retried on the next tick, never stop the evaluator.",
          [prom(f"sum by (result) (rate(gatemeter_alert_evaluations_total[{RATE}]))", "{{result}}")], unit="short"),
    panel("table", "Daily spend by team",
          "USD per UTC day and team, whole days, for every day the time range touches: the figures budgets scoped to a team are measured against.",
          [sql("""SELECT hour AS day, team, sum(spend_usd) AS spend_usd FROM daily_usage_by_model
                  WHERE hour >= date_trunc('day', CAST($__timeFrom() AS TIMESTAMP)) AND hour < $__timeTo()
                  GROUP BY 1, 2 ORDER BY 1, 2""", "table")], unit="short"),
]


def named_query(name):
    """The body of queries/NAME.sql for a panel: the time range for `from`
    and `to`, every other parameter at its default (docs/diagnostics.md)."""
    lines = (ROOT / "queries" / f"{name}.sql").read_text().splitlines()
    body = "\n".join(line for line in lines if not line.startswith("--"))
    # Panels hold the SQL on one line, where a comment would swallow the rest.
    assert "--" not in body, f"queries/{name}.sql: a comment inside the SQL"
    body = body.replace("{{from}}", "$__timeFrom()").replace("{{to}}", "$__timeTo()")
    for line in lines:
        if line.startswith("-- param:"):
            param, kind, default = line.removeprefix("-- param:").split()
            if param not in ("from", "to"):
                assert kind in ("integer", "text", "boolean"), f"{name}: parameter {param} needs a literal for {kind}"
                body = body.replace("{{%s}}" % param, f"'{default}'" if kind == "text" else default)
    assert "{{" not in body, f"{name}: unbound parameter"
    return body


DIAGNOSTICS = [
    panel("timeseries", "Throughput ramp: offered against answered",
          "Requests received per second against requests answered successfully per second, per minute (queries/throughput_ramp.sql). Where goodput stops following offered load, the providers' limits are reached.",
          [sql(named_query("throughput_ramp"), "table")], unit="reqps", width=24),
    panel("timeseries", "Tail latency against throttling",
          "p50 and p99 end-to-end latency of successful requests per minute beside the share of attempts throttled with 429 (queries/latency_vs_throttling.sql). A p99 that rises with throttling while p50 stays is retries behind rate limits.",
          [sql(named_query("latency_vs_throttling"), "table")], unit="ms"),
    panel("timeseries", "Retry storms",
          "Attempts per request and the share of retries sent with no backoff, per minute (queries/retry_storms.sql). The retry-storm alert is a threshold on retry_amplification.",
          [sql(named_query("retry_storms"), "table")], unit="short"),
    panel("table", "Cold starts by provider and model",
          "Median time to first token and duration of attempts after an idle period (10 minutes) against the others, per provider and model (queries/cold_starts.sql).",
          [sql(named_query("cold_starts"), "table")], unit="ms"),
    panel("table", "Billing anomalies by hour and team",
          "Spend per hour and team against the team's mean hourly spend over the 7 days before, variance in percent, largest first (queries/billing_anomalies.sql). The billing-anomaly alert is a threshold on cost_variance_pct.",
          [sql(named_query("billing_anomalies"), "table")], unit="short"),
    panel("table", "Retry-policy audit",
          "Failed attempts the gateway followed with another, by provider, error class and HTTP status: same provider or failed over, what followed cost, and the rule broken (never_retry: client errors; fail_over: 5xx retried on the same provider) (queries/retry_policy_audit.sql).",
          [sql(named_query("retry_policy_audit"), "table")], unit="short", width=24),
    panel("table", "Model usage share",
          "Tokens and spend per UTC day and model (served, else requested), each model's share of the day, its rank by tokens and how many models were active (queries/model_usage_share.sql; period=week or month through the API).",
          [sql(named_query("model_usage_share"), "table")], unit="short", width=24),
    panel("table", "Latency breakdown by provider and model",
          "Where successful requests' time goes, by final provider and model: in the gateway before the first call, upstream, waiting between attempts (shares of the total), with decode speed and cache hit rate (queries/latency_breakdown.sql).",
          [sql(named_query("latency_breakdown"), "table")], unit="short", width=24),
    panel("table", "Rate-limit telemetry by key",
          "Per API key and minute: attempts and tokens per second, the busiest second, peak attempts in flight and the throttled share (queries/rate_limit_telemetry.sql).",
          [sql(named_query("rate_limit_telemetry"), "table")], unit="short", width=24),
    panel("table", "Cost breakdown by team and provider",
          "Spend split into input tokens, cache, output tokens, request fees and web search (priced from the book) and the tools and other cost providers reported, with attempts per request (queries/cost_breakdown.sql).",
          [sql(named_query("cost_breakdown"), "table")], unit="short", width=24),
    panel("table", "Uptime per provider",
          "Each provider's uptime attempt by attempt, its throttled share, the availability the application saw for the requests that tried it, and the requests a fallback rescued (queries/provider_uptime.sql).",
          [sql(named_query("provider_uptime"), "table")], unit="percentunit", width=24),
]

DASHBOARDS = [
    ("gatemeter-sre", "gatemeter — SRE overview", "now-1h", SRE),
    ("gatemeter-finance", "gatemeter — finance and cost", "now-24h", FINANCE),
    ("gatemeter-budgets", "gatemeter — budgets and alerts", "now-24h", BUDGETS),
    ("gatemeter-diagnostics", "gatemeter — diagnostics", "now-6h", DIAGNOSTICS),
]


def datasource_variable(name, label, plugin, default_uid):
    return {
        "name": name,
        "label": label,
        "type": "datasource",
        "query": plugin,
        "current": {"text": default_uid, "value": default_uid},
        "hide": 0,
        "refresh": 1,
        "regex": "",
    }


def dashboard(uid, title, time_from, panels):
    laid_out = []
    x = y = row_height = 0
    for index, spec in enumerate(panels, start=1):
        spec = dict(spec)
        width, height = spec.pop("_size")
        if x + width > 24:
            x, y, row_height = 0, y + row_height, 0
        spec["id"] = index
        spec["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
        for ref, target in enumerate(spec["targets"]):
            target["refId"] = chr(ord("A") + ref)
        laid_out.append(spec)
        x += width
        row_height = max(row_height, height)
    return {
        "uid": uid,
        "title": title,
        "tags": ["gatemeter"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": time_from, "to": "now"},
        "templating": {
            "list": [
                datasource_variable("prometheus", "Prometheus", "prometheus", "gatemeter-prometheus"),
                datasource_variable("gatemeter", "gatemeter SQL", "grafana-postgresql-datasource", "gatemeter-sql"),
            ]
        },
        "annotations": {"list": []},
        "panels": laid_out,
    }


def rendered():
    return {
        f"{uid}.json": json.dumps(dashboard(uid, title, time_from, panels), indent=2, ensure_ascii=False) + "\n"
        for uid, title, time_from, panels in DASHBOARDS
    }


def main():
    check = "--check" in sys.argv[1:]
    stale = []
    for name, text in rendered().items():
        path = OUT / name
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path.relative_to(ROOT)))
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        print("stale dashboards (run python3 scripts/build_dashboards.py): " + ", ".join(stale), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
