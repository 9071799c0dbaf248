"""Alerts end to end with a real Prometheus Alertmanager on 127.0.0.1: a
traffic burst with 20% errors makes the SLO page alert fire and show in
Alertmanager; restarting gatemeter keeps the alert's startsAt; when traffic
recovers the alert resolves. A team spending at three times its monthly
pace gets the projected-overspend alert on the first evaluation, with the
projection in its annotations; a KPI threshold (error rate over 5%) fires
on the burst too."""

import datetime
import json
import shutil
import signal
import subprocess
import time
import urllib.request

import pytest

import support
from support import gatemeter

BURN_ALERT = "GatemeterErrorBudgetBurn"


def iso(moment):
    return moment.astimezone(datetime.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_requests(path, count, error_share, start, spread_seconds, team="search", cost="0.001", prefix="r"):
    """`count` single-attempt requests spread over `spread_seconds` from `start`."""
    errors = round(count * error_share)
    with open(path, "w") as f:
        for i in range(count):
            begin = start + datetime.timedelta(seconds=spread_seconds * i / count)
            failed = i < errors
            event = {
                "schema_version": 1, "attempt_id": f"{prefix}{i}-0", "request_id": f"{prefix}{i}",
                "attempt_index": 0, "attempt_kind": "initial", "is_final": True,
                "request_start": iso(begin), "attempt_start": iso(begin),
                "attempt_end": iso(begin + datetime.timedelta(milliseconds=400)),
                "requested_model": "gpt-4o", "served_model": "gpt-4o", "provider": "openai",
                "team": team, "api_key_id": "key-1", "environment": "prod",
                "outcome": "error" if failed else "success",
                "input_tokens": 100, "output_tokens": 50, "cost_usd": cost,
            }
            if failed:
                event.update(http_status=502, error_class="provider_error")
            f.write(json.dumps(event) + "\n")


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def wait_for(what, check, timeout=60, interval=0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


@pytest.fixture()
def alertmanager(tmp_path):
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    assert binary, "prometheus-alertmanager is not installed (scripts/setup.sh installs it)"
    port = support.free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: sink\nreceivers:\n  - name: sink\n")
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        support.wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=30)


class Gatemeter:
    """`gatemeter serve --roles api,alerts` over a lake, restartable."""

    def __init__(self, config, data_dir):
        self.config, self.data_dir = config, data_dir
        self.port = support.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [support.gatemeter_bin(), "--config", str(self.config), "--data-dir", str(self.data_dir),
             "--http-listen", f"127.0.0.1:{self.port}", "serve", "--roles", "api,alerts"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        support.wait_for_port(self.port)

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, err[-2000:]

    def alerts(self):
        return get(self.base + "/api/v1/alerts")["alerts"]


def am_alerts(alertmanager, alertname):
    return [a for a in get(alertmanager + "/api/v2/alerts") if a["labels"]["alertname"] == alertname]


def test_a_burst_pages_through_alertmanager_survives_a_restart_and_resolves(tmp_path, alertmanager):
    port = alertmanager.rsplit(":", 1)[1]
    config = tmp_path / "gatemeter.toml"
    config.write_text(f"""
[alerts]
interval_seconds = 1
resend_seconds = 2
resolve_after_seconds = 0
allowlist = ["127.0.0.1:{port}"]
alertmanager_url = "{alertmanager}"

[[alerts.slo]]
name = "availability"
target = 0.999

[[alerts.threshold]]
name = "error-rate"
kpi = "error_rate"
op = ">"
value = 0.05
window_minutes = 5

[[alerts.budget]]
name = "search-monthly"
scope = {{ team = "search" }}
amount_usd = "1000"
period = "monthly"
""")
    data_dir = tmp_path / "lake"
    now = datetime.datetime.now(datetime.timezone.utc)
    # The month so far: spend three times the even pace of a $1,000 budget.
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days_in_month = ((month_start + datetime.timedelta(days=32)).replace(day=1) - month_start).total_seconds() / 86400
    elapsed_days = (now - month_start).total_seconds() / 86400
    pace_spend = 3 * 1000 * elapsed_days / days_in_month
    # The spend lands in an hour that ended over an hour ago (unless the
    # month is younger), so `compact` stores its rollups and the budget
    # reads them.
    spend_start = max(month_start + datetime.timedelta(minutes=1),
                      now.replace(minute=0, second=0, microsecond=0) - datetime.timedelta(minutes=90))
    spend = tmp_path / "spend.jsonl"
    write_requests(spend, 100, 0.0, spend_start, 60, cost=f"{pace_spend / 100:.9f}", prefix="spend")
    burst = tmp_path / "burst.jsonl"
    write_requests(burst, 500, 0.2, now - datetime.timedelta(minutes=4), 180, team="research", prefix="burst")
    gatemeter("--data-dir", data_dir, "import", spend, burst)
    compacted = gatemeter("--data-dir", data_dir, "compact").stdout
    if spend_start.replace(minute=0, second=0, microsecond=0) + datetime.timedelta(hours=2) <= now:
        assert "rollups: 1 hours" in compacted, compacted

    server = Gatemeter(config, data_dir)
    server.start()
    try:
        # The first evaluation's report already has the projected overspend firing.
        first = wait_for("the first evaluation", server.alerts)
        projected = [a for a in first if a["key"] == "budget:search-monthly:projected"]
        assert projected and projected[0]["state"] == "firing", first
        annotations = projected[0]["annotations"]
        assert float(annotations["projected_usd"]) > 2900, annotations
        assert "projected" in annotations["summary"]

        page = wait_for("the page alert in Alertmanager",
                        lambda: [a for a in am_alerts(alertmanager, BURN_ALERT) if a["labels"]["severity"] == "page"])
        assert page[0]["status"]["state"] == "active"
        starts_at = page[0]["startsAt"]
        fired_at = [a for a in server.alerts() if a["key"] == "slo:availability:page"][0]["fired_at"]
        threshold = [a for a in server.alerts() if a["key"] == "threshold:error-rate"][0]
        assert threshold["state"] == "firing" and float(threshold["annotations"]["value"]) > 0.05, threshold
        budget_alerts = wait_for("the budget alert in Alertmanager", lambda: am_alerts(alertmanager, "GatemeterBudget"))
        assert any(a["labels"]["kind"] == "projected_overspend" for a in budget_alerts)

        # Restart: the alert is remembered, resent with the same startsAt.
        server.stop()
        server.start()
        again = wait_for("the page alert after the restart",
                         lambda: [a for a in server.alerts() if a["key"] == "slo:availability:page"])
        assert again[0]["state"] == "firing" and again[0]["fired_at"] == fired_at
        time.sleep(3)  # at least one resend
        page = [a for a in am_alerts(alertmanager, BURN_ALERT) if a["labels"]["severity"] == "page"]
        assert len(page) == 1 and page[0]["startsAt"] == starts_at

        # Recovery: plenty of good traffic in the last minutes clears the
        # short windows (5m, 30m); the page resolves, with endsAt.
        good = tmp_path / "good.jsonl"
        write_requests(good, 20000, 0.0, datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=2),
                       100, team="research", prefix="good")
        gatemeter("--data-dir", data_dir, "import", good)
        resolved = wait_for("the page alert to resolve", lambda: [
            a for a in server.alerts() if a["key"] == "slo:availability:page" and a["state"] == "resolved"])
        assert resolved[0]["fired_at"] == fired_at
        wait_for("Alertmanager to see it resolved", lambda: not [
            a for a in am_alerts(alertmanager, BURN_ALERT)
            if a["labels"]["severity"] == "page" and a["status"]["state"] == "active"
            and a["endsAt"] > iso(datetime.datetime.now(datetime.timezone.utc))])
        slos = get(server.base + "/api/v1/slo")["slos"]
        assert slos[0]["name"] == "availability" and "page" not in slos[0]["firing"]
        budgets = get(server.base + "/api/v1/budgets")["budgets"]
        assert budgets[0]["name"] == "search-monthly" and float(budgets[0]["projected"]) > 2900
        metrics = urllib.request.urlopen(server.base + "/metrics", timeout=10).read().decode()
        assert 'gatemeter_slo_burn_rate{slo="availability",window="1h"}' in metrics
        assert 'gatemeter_budget_projected_ratio{budget="search-monthly"}' in metrics
    finally:
        server.stop()
