"""The HTTP API on the real binary: `gatemeter serve --roles api` over an
imported lake. KPIs equal the CLI's row for row, every endpoint answers with
its documented shape, forbidden SQL is refused without touching the data
folder, and query bombs are stopped while /healthz keeps answering."""

import hashlib
import io
import json
import signal
import subprocess
import threading
import time

import pyarrow.ipc
import pytest
from openapi_spec_validator import validate

import support
from support import ROOT, gatemeter, http

PRICES = ROOT / "config" / "prices.csv"
# The debug build the suite runs needs about 4 s on this 2-core machine for
# a scorecard (current window, previous window and the trailing-week
# baseline); the bombs below show the limit holds whatever its value.
TIMEOUT_MS = 8000


def get_json(url):
    status, _, body = http("GET", url)
    assert status == 200, (url, status, body[:500])
    return json.loads(body)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    work = tmp_path_factory.mktemp("api")
    events = work / "events.jsonl"
    support.generate_events(events, requests=3000, seed=31, start="2026-11-01T10:00:00Z",
                            extra=("--duplicates", 0.01, "--corrections", 0.01))
    data_dir = work / "lake"
    gatemeter("--data-dir", data_dir, "import", events)
    port = support.free_port()
    process = subprocess.Popen(
        [support.gatemeter_bin(), "--data-dir", str(data_dir), "--prices", str(PRICES),
         "--http-listen", f"127.0.0.1:{port}", "--query-timeout-ms", str(TIMEOUT_MS),
         "--query-memory-limit-mb", "64", "--query-max-rows", "20000", "serve", "--roles", "api"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        support.wait_ready(port)
        yield {"base": base, "data_dir": data_dir, "process": process}
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
        assert process.returncode == 0, err[-2000:]


def cli_kpis(data_dir, *args):
    result = gatemeter("--data-dir", data_dir, "--prices", PRICES, "kpis", "--format", "json", *args)
    return json.loads(result.stdout)


def test_kpis_over_http_equal_the_cli_row_for_row(api):
    base, data_dir = api["base"], api["data_dir"]
    assert get_json(base + "/api/v1/kpis?group_by=team")["rows"] == cli_kpis(data_dir, "--group-by", "team")
    window = "from=2026-11-01T10:00:00Z&to=2026-11-01T10:20:00Z"
    over_http = get_json(f"{base}/api/v1/kpis?{window}&group_by=provider,requested_model&bucket=5m")["rows"]
    assert over_http == cli_kpis(data_dir, "--from", "2026-11-01T10:00:00Z", "--to", "2026-11-01T10:20:00Z",
                                 "--group-by", "provider,requested_model", "--bucket", "5m")
    assert len(over_http) > 4
    filtered = get_json(f"{base}/api/v1/kpis?group_by=team&team=search")["rows"]
    assert [row["team"] for row in filtered] == ["search"]
    assert filtered == cli_kpis(data_dir, "--group-by", "team", "--filter", "team=search")

    # Some KPIs only: the same values as in the whole rows, the same over
    # the CLI; an unknown KPI is a 400 naming it.
    every = {row["team"]: row for row in get_json(base + "/api/v1/kpis?group_by=team")["rows"]}
    chosen = get_json(base + "/api/v1/kpis?group_by=team&kpis=spend_usd,availability")["rows"]
    assert chosen == cli_kpis(data_dir, "--group-by", "team", "--kpis", "spend_usd,availability")
    assert sorted(row["team"] for row in chosen) == sorted(every)
    for row in chosen:
        assert set(row) == {"team", "spend_usd", "availability"}
        assert row["spend_usd"] == every[row["team"]]["spend_usd"]
        assert row["availability"] == every[row["team"]]["availability"]
    status, _, body = http("GET", base + "/api/v1/kpis?kpis=spend")
    error = json.loads(body)["error"]
    assert status == 400 and error["code"] == "bad_parameter" and "`spend`" in error["message"]


def test_every_endpoint_answers_with_its_documented_shape(api):
    base = api["base"]
    assert get_json(base + "/healthz") == {"status": "ok"}
    assert get_json(base + "/readyz") == {"status": "ready"}
    status, content_type, body = http("GET", base + "/metrics")
    assert status == 200 and content_type.startswith("text/plain") and b"# TYPE" in body

    card = get_json(base + "/api/v1/scorecard?window=1h&at=2026-11-01T11:00:00Z")
    assert card["from"] == "2026-11-01T10:00:00Z" and card["to"] == "2026-11-01T11:00:00Z"
    assert len(card["kpis"]) == 12
    assert {line["status"] for line in card["kpis"]} <= {"green", "yellow", "red", "unknown"}
    assert all(line["value"] is not None for line in card["kpis"] if line["kpi"].startswith("latency"))
    for path, key in (("slo", "slos"), ("budgets", "budgets"), ("alerts", "alerts")):
        assert isinstance(get_json(f"{base}/api/v1/{path}")[key], list)

    sql = {"sql": "SELECT team, sum(cost_usd) AS spend_usd, count(*) AS attempts FROM attempts GROUP BY team ORDER BY team"}
    status, content_type, body = http("POST", base + "/api/v1/sql", sql)
    result = json.loads(body)
    assert status == 200 and content_type.startswith("application/json")
    assert [c["name"] for c in result["columns"]] == ["team", "spend_usd", "attempts"]
    assert len(result["rows"]) >= 3 and all(isinstance(r["spend_usd"], str) for r in result["rows"])
    status, content_type, body = http("POST", base + "/api/v1/sql", sql, accept="text/csv")
    lines = body.decode().splitlines()
    assert status == 200 and content_type.startswith("text/csv")
    assert lines[0] == "team,spend_usd,attempts" and len(lines) == len(result["rows"]) + 1
    status, content_type, body = http("POST", base + "/api/v1/sql", sql, accept="application/vnd.apache.arrow.stream")
    table = pyarrow.ipc.open_stream(io.BytesIO(body)).read_all()
    assert status == 200 and table.column_names == ["team", "spend_usd", "attempts"]
    assert [str(v) for v in table.column("spend_usd").to_pylist()] == [r["spend_usd"] for r in result["rows"]]
    assert http("POST", base + "/api/v1/sql", sql, accept="image/png")[0] == 406

    catalog = get_json(base + "/api/v1/queries")["queries"]
    names = {q["name"] for q in catalog}
    assert {"spend_by_team_model_mtd", "top_keys_by_spend", "retry_waste_by_provider"} <= names
    for query in catalog:
        if query["kind"] == "view":
            continue
        # The fixture's month, whatever today's date: `from` before it,
        # `month_start` at its start.
        starts = {"from": "2026-10-01T00:00:00Z", "month_start": "2026-11-01T00:00:00Z"}
        params = "&".join(f"{p['name']}={starts[p['name']]}" for p in query["params"] if p["name"] in starts)
        # With no policy (the defaults) nothing violates one.
        if query["name"] == "policy_violations":
            params += "&blocked_providers=openai,anthropic"
        rows = get_json(f"{base}/api/v1/queries/{query['name']}?{params}")["rows"]
        assert rows, query["name"]
    status, _, body = http("GET", base + "/api/v1/queries/top_keys_by_spend?limit=nope")
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_parameter"

    document = get_json(base + "/api/v1/openapi.json")
    validate(document)
    assert "/api/v1/sql" in document["paths"]


FORBIDDEN = [
    "DROP TABLE attempts",
    "DROP VIEW requests",
    "CREATE TABLE t (x INT)",
    "CREATE TABLE t AS SELECT * FROM attempts",
    "CREATE VIEW v AS SELECT 1",
    "CREATE OR REPLACE VIEW attempts AS SELECT 1",
    "CREATE SCHEMA s",
    "CREATE DATABASE d",
    "CREATE EXTERNAL TABLE e STORED AS PARQUET LOCATION '/etc'",
    "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION 'https://example.com/x.csv'",
    "CREATE FUNCTION f() RETURNS INT RETURN 1",
    "INSERT INTO attempts SELECT * FROM attempts",
    "INSERT INTO price_book VALUES ('a', 'b')",
    "UPDATE attempts SET cost_usd = 0",
    "DELETE FROM attempts",
    "TRUNCATE TABLE attempts",
    "MERGE INTO attempts USING requests ON true WHEN MATCHED THEN DELETE",
    "ALTER TABLE attempts ADD COLUMN x INT",
    "ALTER TABLE attempts RENAME TO y",
    "COPY attempts TO '/tmp/stolen.parquet'",
    "COPY (SELECT * FROM attempts) TO '/tmp/stolen.csv' STORED AS CSV",
    "SET datafusion.execution.target_partitions = 1",
    "SET TIME ZONE 'UTC'",
    "RESET datafusion.execution.batch_size",
    "SELECT * FROM '/etc/passwd'",
    "SELECT * FROM 'file:///etc/hosts'",
    "SELECT * FROM 'https://example.com/data.parquet'",
    "SELECT * INTO stolen FROM attempts",
    "INSERT INTO information_schema.tables VALUES ('x')",
    "DELETE FROM information_schema.columns",
    "SELECT 1; DROP TABLE attempts",
    "SELECT 1; SELECT 2",
    "PREPARE p AS SELECT 1",
    "DEALLOCATE p",
    "EXPLAIN DELETE FROM attempts",
    "WITH x AS (SELECT 1) INSERT INTO attempts SELECT * FROM x",
    "CREATE INDEX i ON attempts (team)",
]


def tree_digest(folder):
    """SHA-256 of every file under `folder` but the audit log, which records
    each request by design."""
    digest = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.relative_to(folder).parts[0] != "audit":
            digest[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


def test_forbidden_statements_are_refused_and_change_nothing(api):
    base, data_dir = api["base"], api["data_dir"]
    assert len(FORBIDDEN) >= 30
    before = tree_digest(data_dir)
    for sql in FORBIDDEN:
        status, content_type, body = http("POST", base + "/api/v1/sql", {"sql": sql})
        assert status == 400, (sql, status, body[:300])
        error = json.loads(body)["error"]
        assert error["code"] in ("forbidden_statement", "bad_query"), (sql, error)
        assert error["message"], sql
    assert tree_digest(data_dir) == before
    assert get_json(base + "/healthz") == {"status": "ok"}
    status, _, body = http("POST", base + "/api/v1/sql", {"sql": "SELECT nope FROM attempts"})
    assert status == 400 and "nope" in json.loads(body)["error"]["message"]


def test_statements_nested_too_deep_are_refused_and_the_service_lives(api):
    """A client-chosen depth once overflowed a query thread's stack and
    aborted the process, and a client-chosen string length kept a query
    thread busy past the timeout; now each is a 400 naming the limit, fast."""
    base = api["base"]
    deep = {
        "4,000-term sum": "SELECT " + "+".join(["1"] * 4000),
        "2,000 UNION ALL": " UNION ALL ".join(["SELECT 1"] * 2000),
        "100,000 parentheses": "SELECT " + "(" * 100_000 + "1" + ")" * 100_000,
        "deep CASE": "SELECT " + "CASE WHEN true THEN " * 300 + "1" + " END" * 300,
        # Results whose size the caller chooses are bounded before any work.
        "2 GB lpad": "SELECT lpad('x', 2000000000, 'y')",
        "1 GB repeat": "SELECT length(repeat('x', 1000000000))",
    }
    for name, sql in deep.items():
        started = time.perf_counter()
        status, _, body = http("POST", base + "/api/v1/sql", {"sql": sql}, timeout=60)
        assert status == 400, (name, status, body[:300])
        assert json.loads(body)["error"]["code"] == "bad_query", name
        assert time.perf_counter() - started < 10, name
        assert get_json(base + "/healthz") == {"status": "ok"}, name
    # Within the limit, the same shapes still answer.
    status, _, body = http("POST", base + "/api/v1/sql", {"sql": "SELECT " + "+".join(["1"] * 200) + " AS n"})
    assert status == 200 and json.loads(body)["rows"] == [{"n": 200}], body[:300]


def test_query_bombs_stop_within_their_limits_while_health_answers(api):
    base = api["base"]
    latencies, stop = [], threading.Event()

    def poll_health():
        while not stop.is_set():
            started = time.perf_counter()
            status, _, _ = http("GET", base + "/healthz", timeout=5)
            latencies.append((time.perf_counter() - started, status))
            time.sleep(0.05)

    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        bombs = {
            "cross join": "SELECT count(*) FROM attempts a, attempts b, attempts c",
            "sort over the memory limit": "SELECT a.*, b.* FROM attempts a, attempts b ORDER BY a.attempt_id, b.request_id DESC",
        }
        for name, sql in bombs.items():
            started = time.perf_counter()
            status, _, body = http("POST", base + "/api/v1/sql", {"sql": sql}, timeout=60)
            elapsed = time.perf_counter() - started
            error = json.loads(body)["error"]
            assert status in (413, 504), (name, status, error)
            assert error["code"] in ("timeout", "resources_exhausted", "too_many_rows"), (name, error)
            assert elapsed < TIMEOUT_MS / 1000 + 2, (name, elapsed)
    finally:
        stop.set()
        poller.join()
    assert len(latencies) > 20
    assert all(status == 200 for _, status in latencies)
    worst = max(seconds for seconds, _ in latencies)
    assert worst < 0.2, f"/healthz took {worst * 1000:.0f} ms during a query bomb"
    # The service is healthy afterwards and still answers queries.
    status, _, _ = http("POST", base + "/api/v1/sql", {"sql": "SELECT count(*) AS n FROM requests"})
    assert status == 200
