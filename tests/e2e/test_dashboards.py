"""The Grafana dashboards and the PostgreSQL endpoint, proven against live
data rather than hoped to work.

- The dashboard JSON is what scripts/build_dashboards.py writes, parses,
  has unique panel ids, templated datasource uids and a description on
  every panel.
- A live `gatemeter demo` (with budgets and SLOs configured) is scraped by a
  real Prometheus: every Prometheus expression of every panel returns
  series; every SQL panel, its Grafana macros expanded, returns rows from
  gatemeter over the PostgreSQL protocol through Debian's `psql`.
- Over an imported lake served by `gatemeter serve --pg-listen`: psql's
  spend by team equals `gatemeter kpis --group-by team`; DDL/DML is refused
  like over HTTP and leaves the data folder untouched; the query timeout
  and the row cap hold; every named query runs; a connection sees commits
  made after it connected.
"""

import datetime
import decimal
import json
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import yaml

import support
from support import ROOT, gatemeter
from test_api import FORBIDDEN, tree_digest

PRICES = ROOT / "config" / "prices.csv"
GRAFANA = ROOT / "dashboards" / "grafana"
DASHBOARDS = sorted(GRAFANA.glob("*.json"))
TIMEOUT_MS = 3000
MAX_ROWS = 5000


def psql(port, sql, check=True, timeout=60):
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-d", "gatemeter", "-U", "finance",
         "-X", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=timeout,
    )
    if check:
        assert result.returncode == 0, f"{sql}\n{result.stderr}"
    return result


def rows_of(result):
    return [line.split("\t") for line in result.stdout.splitlines() if line]


def targets(kind):
    """(dashboard, panel title, query) of every panel target of `kind`."""
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                if kind == "prometheus" and "expr" in target:
                    found.append((path.stem, panel["title"], target["expr"]))
                if kind == "sql" and "rawSql" in target:
                    found.append((path.stem, panel["title"], target["rawSql"]))
    return found


def expand_grafana_sql(sql, start, end):
    """Grafana's PostgreSQL macros as Grafana expands them."""
    text = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ")
    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", lambda m: f"{m.group(1)} BETWEEN '{text(start)}' AND '{text(end)}'", sql)
    sql = sql.replace("$__timeFrom()", f"'{text(start)}'").replace("$__timeTo()", f"'{text(end)}'")
    assert "$" not in sql, f"unexpanded macro or variable in {sql}"
    return sql


def test_dashboards_are_current_and_well_formed():
    check = subprocess.run([sys.executable, ROOT / "scripts" / "build_dashboards.py", "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert [p.stem for p in DASHBOARDS] == ["gatemeter-budgets", "gatemeter-diagnostics", "gatemeter-finance", "gatemeter-sre"]
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert variables["prometheus"]["type"] == "datasource" and variables["prometheus"]["query"] == "prometheus"
        assert variables["gatemeter"]["type"] == "datasource"
        assert variables["gatemeter"]["query"] == "grafana-postgresql-datasource"
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate panel ids"
        for panel in dashboard["panels"]:
            where = f"{path.name} / {panel['title']}"
            assert len(panel["description"]) > 30, where
            assert panel["targets"], where
            for source in [panel["datasource"]] + [t["datasource"] for t in panel["targets"]]:
                assert source["uid"] in ("${prometheus}", "${gatemeter}"), f"{where}: hard-coded uid {source}"
            assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), where
    provisioning = GRAFANA / "provisioning"
    sources = yaml.safe_load((provisioning / "datasources" / "gatemeter.yaml").read_text())["datasources"]
    assert {s["uid"] for s in sources} == {"gatemeter-prometheus", "gatemeter-sql"}
    assert {s["type"] for s in sources} == {"prometheus", "grafana-postgresql-datasource"}
    # The SQL datasource logs in with a token as its password.
    sql_source = next(s for s in sources if s["uid"] == "gatemeter-sql")
    assert sql_source["user"] and sql_source["secureJsonData"]["password"].startswith("$")
    providers = yaml.safe_load((provisioning / "dashboards" / "gatemeter.yaml").read_text())["providers"]
    assert providers[0]["type"] == "file" and providers[0]["options"]["path"]
    # Every dashboard is listed, panel by panel, in dashboards/README.md.
    readme = (ROOT / "dashboards" / "README.md").read_text()
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            assert panel["title"] in readme, f"dashboards/README.md does not list {panel['title']!r}"


LIVE_CONFIG = """
[alerts]
interval_seconds = 2

[[alerts.slo]]
name = "availability"
target = 0.999

[[alerts.slo]]
name = "latency-5s"
kind = "latency"
target = 0.99
latency_threshold_ms = 5000

[[alerts.budget]]
name = "monthly"
amount_usd = "5000"
period = "monthly"

[[alerts.budget]]
name = "search-daily"
scope = { team = "search" }
amount_usd = "25"
period = "daily"
burn_factor = 2.0
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    folder = tmp_path_factory.mktemp("live")
    config = folder / "gatemeter.toml"
    config.write_text(LIVE_CONFIG)
    http_port, pg_port = support.free_port(), support.free_port()
    demo = subprocess.Popen(
        [support.gatemeter_bin(), "--config", str(config), "--http-listen", f"127.0.0.1:{http_port}",
         "--pg-listen", f"127.0.0.1:{pg_port}", "demo"],
        cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    prometheus = None
    try:
        support.wait_for_port(http_port, timeout=60)
        support.wait_for_port(pg_port, timeout=60)
        prometheus, prometheus_url = support.start_prometheus(folder, f"127.0.0.1:{http_port}")
        deadline = time.monotonic() + 90
        while int(rows_of(psql(pg_port, "SELECT count(*) FROM requests"))[0][0]) < 500:
            assert time.monotonic() < deadline, "the demo stored fewer than 500 requests in 90 s"
            time.sleep(1)
        yield {"pg": pg_port, "prometheus": prometheus_url}
    finally:
        if prometheus:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        demo.send_signal(signal.SIGINT)
        _, err = demo.communicate(timeout=60)
        assert demo.returncode == 0, err[-3000:]


def prometheus_query(base, expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        if error.code == 503:  # storage still starting
            return {"status": "starting", "data": {"result": []}}
        raise AssertionError(f"{expr}: {error.code} {error.read()[:300]}")


def test_every_prometheus_expression_returns_series(live):
    expressions = targets("prometheus")
    assert len(expressions) >= 15
    deadline = time.monotonic() + 120
    while True:
        empty = []
        for dashboard, title, expr in expressions:
            answer = prometheus_query(live["prometheus"], expr.replace("$__rate_interval", "15s"))
            assert answer["status"] in ("success", "starting"), (dashboard, title, answer)
            if not answer["data"]["result"]:
                empty.append(f"{dashboard} / {title}: {expr}")
        if not empty:
            break
        assert time.monotonic() < deadline, "no series after 120 s for:\n" + "\n".join(empty)
        time.sleep(2)


def test_every_sql_panel_returns_rows_over_postgres(live):
    queries = targets("sql")
    assert len(queries) >= 15
    end = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=1)
    start = end - datetime.timedelta(hours=1)
    for dashboard, title, sql in queries:
        result = psql(live["pg"], expand_grafana_sql(sql, start, end))
        assert rows_of(result), f"{dashboard} / {title}: no rows\n{sql}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    work = tmp_path_factory.mktemp("pg")
    events = work / "events.jsonl"
    support.generate_events(events, requests=2000, seed=47, start="2026-11-02T08:00:00Z",
                            extra=("--duplicates", 0.01, "--corrections", 0.01))
    data_dir = work / "lake"
    gatemeter("--data-dir", data_dir, "import", events)
    http_port, pg_port = support.free_port(), support.free_port()
    process = subprocess.Popen(
        [support.gatemeter_bin(), "--data-dir", str(data_dir), "--prices", str(PRICES),
         "--http-listen", f"127.0.0.1:{http_port}", "--pg-listen", f"127.0.0.1:{pg_port}",
         "--query-timeout-ms", str(TIMEOUT_MS), "--query-max-rows", str(MAX_ROWS),
         "--query-memory-limit-mb", "64", "serve", "--roles", "api"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        support.wait_for_port(pg_port)
        yield {"pg": pg_port, "data_dir": data_dir, "work": work}
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
        assert process.returncode == 0, err[-2000:]


def test_psql_spend_by_team_equals_gatemeter_kpis(served):
    over_pg = rows_of(psql(served["pg"], "SELECT team, spend_usd FROM (SELECT team, sum(cost_usd) AS spend_usd "
                                         "FROM attempts GROUP BY team) ORDER BY team"))
    cli = json.loads(gatemeter("--data-dir", served["data_dir"], "--prices", PRICES,
                               "kpis", "--group-by", "team", "--format", "json").stdout)
    assert len(cli) >= 4
    assert [(team, decimal.Decimal(spend)) for team, spend in over_pg] == \
        [(row["team"], decimal.Decimal(str(row["spend_usd"]))) for row in cli]


# Over the PostgreSQL protocol several statements in one query string are
# ordinary (psql sends them so), and `SET TIME ZONE` is a client setting
# drivers send on connect: both are answered; everything else HTTP refuses
# is refused here too.
PG_ALLOWED = {"SELECT 1; SELECT 2", "SET TIME ZONE 'UTC'"}


def test_writes_and_engine_settings_are_refused_over_postgres(served):
    before = tree_digest(served["data_dir"])
    refused = [sql for sql in FORBIDDEN if sql not in PG_ALLOWED] + [
        "SET datafusion.runtime.memory_limit = '100G'",
        "SET datafusion.execution.target_partitions TO 64",
    ]
    for sql in refused:
        result = psql(served["pg"], sql, check=False)
        assert result.returncode != 0, f"{sql} was not refused: {result.stdout}"
        assert "ERROR" in result.stderr, (sql, result.stderr)
    assert tree_digest(served["data_dir"]) == before
    for sql in PG_ALLOWED:
        psql(served["pg"], sql)
    assert int(rows_of(psql(served["pg"], "SELECT count(*) FROM requests"))[0][0]) == 2000


def test_timeout_and_row_cap_hold_over_postgres(served):
    started = time.monotonic()
    bomb = psql(served["pg"], "SELECT count(*) FROM attempts a, attempts b, attempts c", check=False)
    elapsed = time.monotonic() - started
    assert bomb.returncode != 0 and "canceling statement" in bomb.stderr, bomb.stderr
    assert elapsed < TIMEOUT_MS / 1000 + 2, f"the bomb ran {elapsed:.1f} s"
    # attempts_raw × 3 rows: more than the cap; exactly the cap is fine.
    tripled = "SELECT * FROM attempts_raw CROSS JOIN (SELECT 1 AS x UNION ALL SELECT 2 UNION ALL SELECT 3)"
    too_many = psql(served["pg"], f"{tripled} LIMIT {MAX_ROWS + 1}", check=False)
    assert too_many.returncode != 0 and f"more than {MAX_ROWS} rows" in too_many.stderr, too_many.stderr
    assert len(rows_of(psql(served["pg"], f"{tripled} LIMIT {MAX_ROWS}"))) == MAX_ROWS


def test_every_named_query_runs_over_postgres(served):
    listing = gatemeter("query", "--list").stdout
    names = [line.split()[0] for line in listing.splitlines() if line and not line.startswith(" ")]
    assert len(names) >= 9, listing
    views = {line.split()[0] for line in listing.splitlines() if len(line.split()) > 1 and line.split()[1] == "view"}
    assert views == {"attempts", "requests", "hourly_usage", "hourly_requests"}, listing
    for name in names:
        # The views are registered under their names (their bodies use
        # DataFusion's SELECT * EXCLUDE, which the PostgreSQL parser lacks).
        sql = f"SELECT * FROM {name}" if name in views else gatemeter("query", "--name", name, "--show-sql").stdout
        over_pg = rows_of(psql(served["pg"], sql))
        cli = json.loads(gatemeter("--data-dir", served["data_dir"], "--prices", PRICES,
                                   "query", "--name", name, "--format", "json").stdout)
        assert len(over_pg) == len(cli), f"{name}: {len(over_pg)} rows over pg, {len(cli)} from the CLI"


def test_a_connection_sees_commits_made_after_it_connected(served):
    # Runs last in this module: it adds data.
    more = served["work"] / "more.jsonl"
    support.generate_events(more, requests=300, seed=48, start="2026-11-02T12:00:00Z")
    script = served["work"] / "fresh.sql"
    script.write_text(
        "SELECT count(*) FROM requests;\n"
        f"\\! {support.gatemeter_bin()} --data-dir {served['data_dir']} import {more} > /dev/null\n"
        "SELECT count(*) FROM requests;\n"
    )
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(served["pg"]), "-d", "gatemeter", "-X", "-A", "-t",
         "-v", "ON_ERROR_STOP=1", "-f", str(script)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    counts = [int(line) for line in result.stdout.split()]
    assert counts == [2000, 2300], counts
