"""`gatemeter demo` as a user starts it (no flags, a fresh folder): the
printed KPI URL answers with KPI rows within 60 s; its /metrics passes
`promtool check metrics`; and a real Prometheus started here scrapes it and
answers a histogram_quantile over the TTFT histogram."""

import json
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

import support


def fetch(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    started = time.monotonic()
    process = subprocess.Popen([support.gatemeter_bin(), "demo"], cwd=folder, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines, urls = [], {}
    ready = threading.Event()

    def read():
        for line in process.stdout:
            lines.append(line)
            match = re.match(r"\s+(kpis|metrics)\s+(http://\S+)", line)
            if match:
                urls[match.group(1)] = match.group(2)
                if len(urls) == 2:
                    ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert ready.wait(30), "".join(lines)
        yield {"started": started, "urls": urls, "lines": lines, "folder": folder}
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        reader.join(timeout=5)
        assert process.returncode == 0, "".join(lines[-30:])


def test_the_printed_kpi_url_has_rows_within_60_seconds(demo):
    while True:
        rows = json.loads(fetch(demo["urls"]["kpis"]))["rows"]
        if rows and sum(row["requests"] for row in rows) > 0:
            break
        assert time.monotonic() - demo["started"] < 60, "no KPI rows 60 s after start:\n" + "".join(demo["lines"])
        time.sleep(1)
    assert {"provider", "requests", "latency_p95_ms", "spend_usd"} <= rows[0].keys()
    assert time.monotonic() - demo["started"] < 60


def test_metrics_pass_promtool_and_prometheus_answers_a_ttft_quantile(demo, tmp_path):
    metrics_url = demo["urls"]["metrics"]
    deadline = time.monotonic() + 60
    while b"gatemeter_time_to_first_token_seconds_bucket" not in fetch(metrics_url):
        assert time.monotonic() < deadline, "no TTFT histogram on /metrics"
        time.sleep(1)
    text = fetch(metrics_url)
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    assert check.returncode == 0, check.stdout.decode() + check.stderr.decode()
    for name in ("gatemeter_requests_total", "gatemeter_attempts_total", "gatemeter_spend_usd_total",
                 "gatemeter_attempt_duration_seconds_bucket", "gatemeter_ingest_events_total"):
        assert name.encode() in text, name
    assert b'le="0.04"' in text and b'le="81.92"' in text  # OTel GenAI boundaries

    target = urllib.parse.urlparse(metrics_url).netloc
    prometheus, prometheus_url = support.start_prometheus(tmp_path, target)
    try:
        query = ("histogram_quantile(0.95, sum by (le) "
                 "(rate(gatemeter_time_to_first_token_seconds_bucket[15s])))")
        url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        deadline = time.monotonic() + 60
        answer = None
        while True:
            try:
                answer = json.loads(fetch(url))
            except urllib.error.HTTPError as error:  # 503 until its storage is up
                assert error.code == 503, error
            result = answer["data"]["result"] if answer else []
            if result and result[0]["value"][1] not in ("NaN", "+Inf"):
                break
            assert time.monotonic() < deadline, answer
            time.sleep(1)
        assert answer["status"] == "success"
        p95 = float(result[0]["value"][1])
        assert 0.001 <= p95 <= 10.0, p95
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
