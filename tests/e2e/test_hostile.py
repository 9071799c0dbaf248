"""Hostile SQL against the real binary over HTTP and PostgreSQL (simple
protocol through psql, extended through psycopg): statements generated from
the attack classes (writes, file and URL reads, engine SETs however quoted,
SELECT INTO, several statements, transactions and prepared statements),
nesting up to 100,000 deep, and 50 resource bombs. The process never dies,
every answer is a clean error, /healthz keeps answering fast, memory stays
bounded and the data folder does not change."""

import itertools
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

import support
from support import http
from test_api import tree_digest

MEMORY_LIMIT_MB = 128
TIMEOUT_MS = 2000

WRITES = [
    "DROP TABLE {t}", "DROP VIEW {t}", "CREATE TABLE x AS SELECT * FROM {t}",
    "CREATE VIEW {t}_v AS SELECT * FROM {t}", "CREATE OR REPLACE VIEW {t} AS SELECT 1",
    "INSERT INTO {t} SELECT * FROM {t}", "UPDATE {t} SET team = 'x'", "DELETE FROM {t}",
    "TRUNCATE {t}", "ALTER TABLE {t} ADD COLUMN x INT",
    "WITH d AS (DELETE FROM {t} RETURNING *) SELECT * FROM d",
    "EXPLAIN INSERT INTO {t} SELECT * FROM {t}", "EXPLAIN ANALYZE DELETE FROM {t}",
    "SELECT * INTO stolen FROM {t}", "COPY {t} TO '/tmp/gatemeter-stolen.csv'",
    "COPY (SELECT * FROM {t}) TO '/tmp/gatemeter-stolen.parquet'",
    "COPY {t} FROM '/etc/passwd'", "PREPARE p AS SELECT * FROM {t}",
    "SELECT 1; DROP TABLE {t}", "SELECT * FROM {t}; COPY {t} TO '/tmp/gatemeter-stolen.csv'",
    "CREATE EXTERNAL TABLE pw STORED AS CSV LOCATION '/etc/passwd'",
    "CREATE EXTERNAL TABLE s3 STORED AS PARQUET LOCATION 's3://bucket/x'",
    "SELECT * FROM '/etc/passwd'", "SELECT * FROM 'file:///etc/shadow'",
    "SELECT * FROM read_parquet('/tmp/x.parquet')", "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM \"/etc/passwd\"", "SELECT * FROM 'https://example.com/x.parquet'",
    "CREATE FUNCTION f() RETURNS INT AS 'select 1'", "DROP SCHEMA public CASCADE",
]
ENGINE_SETS = [
    "SET datafusion.execution.target_partitions = 64",
    "SET \"datafusion\".execution.target_partitions = 64",
    "SET \"datafusion\".\"runtime\".\"memory_limit\" = '100G'",
    "SET DATAFUSION.RUNTIME.MEMORY_LIMIT TO '100G'",
    "SET datafusion.sql_parser.dialect = 'mysql'",
    "SET \"datafusion.sql_parser.dialect\" = 'mysql'",
    "SET datafusion.execution.spill_compression = 'zstd'",
    "SET LOCAL datafusion.execution.batch_size = 1",
    "SET SESSION datafusion.runtime.temp_directory = '/tmp/evil'",
    "RESET datafusion.execution.target_partitions",
]
TABLES = ["attempts", "requests", "price_book", "attempts_raw", "attempts_lake_fresh"]


def obfuscations(sql, rng):
    """The same statement as a client could disguise it."""
    yield sql
    yield sql.lower()
    yield "/* x */ " + sql.replace(" ", "  \n ")
    yield "".join(c.upper() if rng.random() < 0.5 else c.lower() for c in sql)


def hostile_statements():
    rng = random.Random(7)
    statements = []
    for template, table in itertools.product(WRITES, TABLES[:3]):
        for variant in itertools.islice(obfuscations(template.format(t=table), rng), 2):
            statements.append(variant)
    for sql in ENGINE_SETS:
        statements.extend(obfuscations(sql, rng))
    return statements


def check_http_error(base, sql):
    status, content_type, body = http("POST", base + "/api/v1/sql", {"sql": sql}, timeout=60)
    assert 400 <= status < 500 or status == 504, (sql, status, body[:300])
    assert content_type.startswith("application/json") and b'"error"' in body, (sql, body[:300])


def psql(port, sql):
    return support.psql(port, sql, user="hostile")


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture(scope="module")
def target(tmp_path_factory):
    work = tmp_path_factory.mktemp("hostile")
    data_dir = support.imported_lake(work, requests=2000, seed=5)
    with support.serving(work, data_dir, "--query-timeout-ms", TIMEOUT_MS,
                         "--query-memory-limit-mb", MEMORY_LIMIT_MB, "--query-max-result-mb", 16,
                         "--query-column-cache-mb", 0) as served:
        yield {**served, "data_dir": data_dir}
        assert served["process"].poll() is None, "the server died"


def test_hostile_statements_are_refused_on_every_path(target):
    base, port, data_dir = target["base"], target["pg"], target["data_dir"]
    statements = hostile_statements()
    assert len(statements) >= 200, len(statements)
    before = tree_digest(data_dir)
    with psycopg.connect(host="127.0.0.1", port=port, dbname="gatemeter", user="hostile",
                         autocommit=True) as extended:
        for sql in statements:
            check_http_error(base, sql)
            simple = psql(port, sql)
            assert simple.returncode != 0 and "ERROR" in simple.stderr, (sql, simple.stdout)
            with pytest.raises(psycopg.Error) as refused:
                extended.execute(sql, prepare=True)
                pytest.fail(f"accepted over the extended protocol: {sql}")
            # A clean SQL error, not a dropped connection.
            assert refused.value.sqlstate and not extended.closed, (sql, refused.value)
        # The engine's options are the server's, whatever was tried above.
        partitions = extended.execute(
            "SHOW datafusion.execution.target_partitions", prepare=True).fetchone()[0]
        assert partitions != "64"
        assert extended.execute("SELECT count(*) FROM attempts", prepare=True).fetchone()[0] > 0
    assert tree_digest(data_dir) == before
    assert not os.path.exists("/tmp/gatemeter-stolen.csv")
    assert http("GET", base + "/healthz")[0] == 200


def test_nesting_up_to_100000_is_a_clean_error(target):
    base, port = target["base"], target["pg"]
    for depth in [300, 1_000, 10_000, 100_000]:
        for sql in ["SELECT " + "+".join(["1"] * depth),
                    "SELECT " + "(" * depth + "1" + ")" * depth,
                    " UNION ALL ".join(["SELECT 1"] * min(depth, 20_000)),
                    "SELECT " + "-" * depth + "1",
                    "SELECT " + "NOT " * depth + "true"]:
            check_http_error(base, sql)
            if depth <= 10_000:
                result = psql(port, sql)
                assert result.returncode != 0 and "ERROR" in result.stderr, (depth, result.stdout[:200])
    assert http("GET", base + "/healthz")[0] == 200


BOMBS = [
    "SELECT repeat('x', 2000000000)",
    "SELECT lpad('x', 2000000000, 'y')",
    "SELECT rpad('x', 2000000000)",
    "SELECT count(*) FROM generate_series(1, 100000000000)",
    "SELECT * FROM generate_series(1, 10000000)",
    "SELECT repeat('x', 1000000) FROM generate_series(1, 200)",
    "SELECT array_agg(a.value) FROM generate_series(1, 100000000) a",
    "SELECT a.request_id FROM attempts a, attempts b, attempts c",
    "SELECT string_agg(repeat('y', 1000000), ',') FROM generate_series(1, 1000)",
    "SELECT * FROM attempts a JOIN attempts b ON a.team = b.team",
    # Functions whose result multiplies their inputs.
    "SELECT length(replace(repeat('a', 1000000), 'a', repeat('b', 60000)))",
    "SELECT length(regexp_replace(repeat('a', 1000000), 'a', repeat('b', 60000), 'g'))",
    "SELECT cardinality(array_repeat(repeat('a', 60000), 1000000))",
    "SELECT cardinality(range(1, 10000000000))",
    "SELECT levenshtein(repeat('a', 1000000), repeat('b', 1000000))",
    # Functions that add up, nested: each step doubles.
    "WITH a AS (SELECT repeat('a', 500000) AS r), b AS (SELECT r || r AS r FROM a), "
    "c AS (SELECT r || r AS r FROM b), d AS (SELECT r || r AS r FROM c) SELECT length(r) FROM d",
    "WITH a AS (SELECT repeat('a', 500000) AS r), "
    "b AS (SELECT overlay(r PLACING r FROM 1 FOR 0) AS r FROM a), "
    "c AS (SELECT overlay(r PLACING r FROM 1 FOR 0) AS r FROM b) SELECT length(r) FROM c",
]


def test_resource_bombs_end_as_errors_while_health_answers(target):
    base, port, process = target["base"], target["pg"], target["process"]
    bombs = list(itertools.islice(itertools.cycle(BOMBS), 50))
    latencies, peak_rss, stop = [], [0.0], threading.Event()

    def watch():
        while not stop.is_set():
            started = time.perf_counter()
            status = http("GET", base + "/healthz", timeout=10)[0]
            latencies.append((time.perf_counter() - started, status))
            peak_rss[0] = max(peak_rss[0], rss_mb(process.pid))
            time.sleep(0.05)

    def fire(indexed):
        index, sql = indexed
        if index % 2:
            check_http_error(base, sql)
        else:
            result = psql(port, sql)
            assert result.returncode != 0 and "ERROR" in result.stderr, (sql, result.stdout[:200])

    watcher = threading.Thread(target=watch)
    baseline_rss = rss_mb(process.pid)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(fire, enumerate(bombs)))
    finally:
        stop.set()
        watcher.join()
    assert process.poll() is None
    assert all(status == 200 for _, status in latencies)
    times = sorted(t for t, _ in latencies)
    p99 = times[int(len(times) * 0.99) - 1] if len(times) > 1 else times[0]
    print(f"/healthz p99 {p99 * 1000:.0f} ms over {len(times)} polls; "
          f"RSS {baseline_rss:.0f} MiB before, {peak_rss[0]:.0f} MiB at most")
    assert p99 < 0.2, f"/healthz p99 {p99 * 1000:.0f} ms over {len(times)} polls"
    # What the process held before, plus the memory limit and 256 MiB.
    assert peak_rss[0] < baseline_rss + MEMORY_LIMIT_MB + 256, (baseline_rss, peak_rss[0])
