"""The diagnostics of docs/diagnostics.md end to end: the synthetic gateway
produces traffic with one condition (a retry storm, cold starts, a provider
outage rescued by fallback, a price spike), `gatemeter import` stores it,
and the named query that diagnoses it (over HTTP, as a dashboard asks) and,
where one is configured, the alert evaluator of `gatemeter serve` see it;
the same traffic without the condition shows nothing."""

import datetime
import json
import re
import subprocess
import time
import urllib.request

import duckdb

import support
from support import gatemeter

ALERTS = """
[alerts]
interval_seconds = 1

[[alerts.threshold]]
name = "retry-storm"
kpi = "retry_amplification"
op = ">"
value = 1.5
window_minutes = 5

[[alerts.threshold]]
name = "openai-down"
kpi = "attempt_uptime"
op = "<"
value = 0.5
window_minutes = 60
scope = { provider = "openai" }

[[alerts.threshold]]
name = "billing-anomaly"
kpi = "cost_variance_pct"
op = ">"
value = 200
window_minutes = 60
"""


def get_json(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def first_evaluation(base, timeout=60):
    """The alerts once the evaluator has reported."""
    deadline = time.monotonic() + timeout
    while not (alerts := get_json(base + "/api/v1/alerts")["alerts"]):
        assert time.monotonic() < deadline, "no evaluation in time"
        time.sleep(0.5)
    return alerts


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def produce(path, scenario, count, rate, start, seed):
    gatemeter("produce", "--output", path, "--scenario", scenario, "--count", count, "--rate", 0,
              "--simulated-rate", rate, "--seed", seed, "--start", iso(start))


def lake(tmp_path, name, *batches):
    """A lake of the given (scenario, count, rate, start, seed) batches."""
    data_dir = tmp_path / name
    files = []
    for index, batch in enumerate(batches):
        path = tmp_path / f"{name}-{index}.jsonl"
        produce(path, *batch)
        files.append(path)
    gatemeter("--data-dir", data_dir, "import", *files)
    return data_dir


def diagnose(tmp_path, data_dir, query, **params):
    """The named query's rows over HTTP and the alerts of the first
    evaluation, from one `serve --roles api,alerts` over the lake."""
    config = tmp_path / f"{data_dir.name}.toml"
    config.write_text(ALERTS)
    port = support.free_port()
    log = open(tmp_path / f"{data_dir.name}-serve.log", "wb")
    process = subprocess.Popen(
        [support.gatemeter_bin(), "--config", str(config), "--data-dir", str(data_dir),
         "--http-listen", f"127.0.0.1:{port}", "serve", "--roles", "api,alerts"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        support.wait_ready(port)
        base = f"http://127.0.0.1:{port}"
        query_string = "&".join(f"{k}={v}" for k, v in params.items())
        rows = get_json(f"{base}/api/v1/queries/{query}?{query_string}")["rows"]
        alerts = first_evaluation(base)
        return rows, {a["key"]: a for a in alerts}
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def number(value):
    return None if value is None else float(value)


def test_a_retry_storm_shows_in_retry_storms_and_fires_its_alert(tmp_path):
    start = now() - datetime.timedelta(minutes=4)
    since = iso(start - datetime.timedelta(minutes=1))
    for scenario, storm in (("retry-storm", True), ("default", False)):
        data_dir = lake(tmp_path, scenario, (scenario, 900, 5, start, 11))
        rows, alerts = diagnose(tmp_path, data_dir, "retry_storms", **{"from": since})
        amplification = max(number(r["retry_amplification"]) for r in rows)
        unbacked = [number(r["unbacked_retry_share"]) for r in rows if r["unbacked_retry_share"] is not None]
        alert = alerts["threshold:retry-storm"]
        # The retry-policy audit over the CLI: the storm retried throttled
        # attempts before the Retry-After their provider sent.
        audit = json.loads(gatemeter("--data-dir", data_dir, "query", "--name", "retry_policy_audit",
                                     "--param", f"from={since}", "--format", "json").stdout)
        throttled = [r for r in audit if r["error_class"] == "rate_limited"]
        assert throttled and all(r["retry_after_given"] > 0 for r in throttled), audit
        early = sum(r["before_retry_after"] for r in throttled)
        if storm:
            assert amplification > 1.5 and min(unbacked) > 0.3, rows
            assert alert["state"] == "firing" and float(alert["annotations"]["value"]) > 1.5, alert
            assert early > 0 and {r["verdict"] for r in throttled} == {"wait_retry_after"}, throttled
        else:
            assert amplification < 1.5 and max(unbacked) == 0.0, rows
            assert alert["state"] != "firing", alert
            assert early == 0 and {r["verdict"] for r in throttled} == {"ok"}, throttled


def test_cold_starts_show_their_penalty(tmp_path):
    start = now() - datetime.timedelta(hours=3)
    for scenario, cold in (("cold-start", True), ("default", False)):
        data_dir = lake(tmp_path, scenario, (scenario, 2400, 2, start, 12))
        rows, _ = diagnose(tmp_path, data_dir, "cold_starts", **{"from": iso(start)})
        penalised = [r for r in rows
                     if r["cold_ttft_p50_ms"] is not None and r["warm_ttft_p50_ms"] is not None
                     and number(r["cold_ttft_p50_ms"]) - number(r["warm_ttft_p50_ms"]) > 2500]
        if cold:
            # Every burst after an idle gap starts the routes cold.
            assert len(penalised) >= 3, json.dumps(rows, indent=1)
            assert sum(int(r["cold_attempts"]) for r in penalised) >= 10, penalised
        else:
            assert penalised == [], penalised


def test_a_provider_outage_rescued_by_fallback_shows_in_provider_uptime(tmp_path):
    start = now() - datetime.timedelta(minutes=30)
    for scenario, outage in (("provider-outage", True), ("default", False)):
        data_dir = lake(tmp_path, scenario, (scenario, 3000, 5, start, 13))
        rows, alerts = diagnose(tmp_path, data_dir, "provider_uptime", **{"from": iso(start)})
        uptime = {r["provider"]: r for r in rows}
        alert = alerts["threshold:openai-down"]
        if outage:
            assert alert["state"] == "firing" and float(alert["annotations"]["value"]) < 0.3, alert
            openai = uptime["openai"]
            assert number(openai["attempt_uptime"]) < 0.3, openai
            # What the application saw: fallbacks answered most of them.
            assert number(openai["request_availability"]) > 0.8, openai
            assert int(openai["rescued_by_fallback"]) > 500, openai
            assert all(number(r["attempt_uptime"]) > 0.9 for p, r in uptime.items() if p != "openai"), rows
        else:
            assert all(number(r["attempt_uptime"]) > 0.9 for r in rows), rows
            assert alert["state"] != "firing", alert


def test_a_price_spike_shows_in_billing_anomalies_and_fires_its_alert(tmp_path):
    recent = now() - datetime.timedelta(minutes=55)
    week = datetime.timedelta(days=7)
    rate = 0.05
    history = ("default", int(rate * week.total_seconds()), rate, recent - week, 14)
    since = iso((recent - datetime.timedelta(hours=1)).replace(minute=0, second=0))
    for scenario, spike in (("price-spike", True), ("default", False)):
        data_dir = lake(tmp_path, scenario, history, (scenario, 150, rate, recent, 15))
        rows, alerts = diagnose(tmp_path, data_dir, "billing_anomalies", **{"from": since})
        variance = max(number(r["variance_pct"]) for r in rows if r["variance_pct"] is not None)
        alert = alerts["threshold:billing-anomaly"]
        if spike:
            # Spend per request is about 13 times the everyday traffic's;
            # the spike covers between half and all of its busiest hour.
            assert variance > 300, rows
            assert alert["state"] == "firing" and float(alert["annotations"]["value"]) > 200, alert
        else:
            assert variance < 200, rows
            assert alert["state"] != "firing", alert


def test_show_sql_binds_times_that_other_sql_tools_read_as_the_same_instants():
    sql = gatemeter("query", "--name", "retry_storms", "--param", "from=2026-11-03T10:00:00+02:00",
                    "--param", "to=2026-11-03T11:00:00Z", "--show-sql").stdout
    assert "arrow_cast" not in sql, sql
    literals = re.findall(r"TIMESTAMP WITH TIME ZONE '[^']*'", sql)
    assert len(literals) >= 2, sql
    [read] = duckdb.sql("SELECT " + ", ".join(f"epoch_us({literal})" for literal in literals)).fetchall()
    instants = {datetime.datetime.fromtimestamp(us / 1e6, datetime.timezone.utc) for us in read}
    assert instants == {
        datetime.datetime(2026, 11, 3, 8, tzinfo=datetime.timezone.utc),
        datetime.datetime(2026, 11, 3, 11, tzinfo=datetime.timezone.utc),
    }, (literals, read)
