"""`gatemeter compact`: each settled hour partition becomes one deduplicated
file in one Delta commit; every view row and KPI is the same before and
after; duplicates and corrections arriving after compaction still count once
(the KPIs equal DuckDB's independent computation over the raw JSONL); a crash
between the compacted file and its commit changes nothing, and vacuum removes
what it left."""

import datetime
import json
import re
from decimal import Decimal

import pytest
from deltalake import DeltaTable

import support
from support import ROOT, gatemeter
from test_dashboards import expand_grafana_sql, targets
from test_kpis import duckdb_oracle

PRICES = ROOT / "config" / "prices.csv"
# 3,000 requests at 0.4 per second of event time: about 2 h 5 min, so three
# hour partitions, each written by several imports' flushes.
START = "2026-11-01T10:00:00Z"


def build_lake(folder, events):
    data_dir = folder / "lake"
    gatemeter("--data-dir", data_dir, "import", "--flush-rows", 700, events)
    return data_dir


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    path = tmp_path_factory.mktemp("compact-events") / "events.jsonl"
    support.generate_events(path, requests=3000, seed=5, start=START,
                            extra=("--simulated-rate", 0.4, "--duplicates", 0.03, "--corrections", 0.03))
    return path


def snapshot(data_dir):
    """Every attempt and request row, and the KPIs by team and provider per hour."""
    def run(*args):
        return gatemeter("--data-dir", data_dir, "--prices", PRICES, *args).stdout
    return {
        "attempts": run("query", "--format", "csv", "SELECT * FROM attempts ORDER BY attempt_id"),
        "requests": run("query", "--format", "csv", "SELECT * FROM requests ORDER BY request_id"),
        "kpis": json.loads(run("kpis", "--group-by", "team,provider", "--bucket", "1h", "--format", "json")),
    }


def live_rows(data_dir):
    """(rows, distinct attempt_ids) over the files the Delta log holds live."""
    files = [str(data_dir / path) for path in support.live_attempt_files(data_dir)]
    return support.query(f"SELECT count(*), count(DISTINCT attempt_id) FROM read_parquet({files!r})")[0]


def by_partition(data_dir):
    partitions = {}
    for path, entry in support.live_attempt_files(data_dir).items():
        partitions.setdefault(path.rsplit("/", 1)[0], []).append(entry)
    return partitions


def test_compaction_changes_no_number_and_leaves_one_file_per_hour(events, tmp_path):
    data_dir = build_lake(tmp_path, events)
    before = snapshot(data_dir)
    assert len(before["kpis"]) > 10
    rows, distinct = live_rows(data_dir)
    assert rows > distinct, "the fixture must hold duplicate copies"
    commits = len(support.history(data_dir))
    files_before = set(support.live_attempt_files(data_dir))
    assert sum(len(files) for files in by_partition(data_dir).values()) > 3

    dry = gatemeter("--data-dir", data_dir, "compact", "--dry-run").stdout
    assert dry.strip().endswith("3 partitions to compact"), dry
    assert len(support.history(data_dir)) == commits

    result = gatemeter("--data-dir", data_dir, "compact").stdout
    assert f"{rows} rows → {distinct} ({rows - distinct} duplicate copies dropped)" in result, result
    assert result.startswith("compacted 3 partitions"), result
    records = support.history(data_dir)
    assert len(records) == commits + 3
    assert all(r["operation"] == "OPTIMIZE" for r in records[-3:]), records[-3:]

    partitions = by_partition(data_dir)
    assert len(partitions) == 3
    assert all(len(files) == 1 and files[0]["deduplicated"] for files in partitions.values())
    assert live_rows(data_dir) == (distinct, distinct)
    assert snapshot(data_dir) == before

    # The replaced files wait for readers that listed them (a day by default).
    replaced = support.files_on_disk(data_dir) - support.committed_files(data_dir)
    assert replaced == files_before
    again = gatemeter("--data-dir", data_dir, "compact").stdout
    assert again.startswith("compacted 0 partitions"), again


def stored_rollup(data_dir, name, group_by, columns):
    """Sums of `columns` per `group_by` over a rollup table, read with the
    deltalake package as any outside reader would."""
    table = DeltaTable(str(data_dir / "rollups" / name)).to_pyarrow_table()
    sums = {}
    for row in table.to_pylist():
        key = row[group_by]
        totals = sums.setdefault(key, [0] * len(columns))
        for i, column in enumerate(columns):
            totals[i] += Decimal(row[column] or 0)
    return sorted((key, *values) for key, values in sums.items())


def test_late_duplicates_and_corrections_count_once_before_and_after_the_next_compaction(events, tmp_path):
    data_dir = build_lake(tmp_path, events)
    # The rollups compaction stores are priced by the book it is given.
    first = gatemeter("--data-dir", data_dir, "--prices", PRICES, "compact").stdout
    assert "rollups: 3 hours, 6 files" in first, first
    # Late copies of compacted attempts: 25 plain duplicates, 25 corrections
    # with a new reported cost.
    originals = [json.loads(line) for line in events.read_text().splitlines()[:200]]
    latest = {}
    for event in originals:
        latest[event["attempt_id"]] = max(latest.get(event["attempt_id"], event), event,
                                          key=lambda e: e.get("event_version", 1))
    chosen = list(latest.values())[:50]
    late = []
    for n, event in enumerate(chosen):
        copy = dict(event)
        if n % 2:
            copy["event_version"] = event.get("event_version", 1) + 1
            copy["cost_usd"] = "1.250000000"
        late.append(copy)
    late_file = tmp_path / "late.jsonl"
    late_file.write_text("".join(json.dumps(e) + "\n" for e in late))
    gatemeter("--data-dir", data_dir, "import", late_file)
    assert any(not files[0]["deduplicated"] or len(files) > 1 for files in by_partition(data_dir).values())

    everything = tmp_path / "all.jsonl"
    everything.write_text(events.read_text() + late_file.read_text())
    oracle = [(team, n, attempts, Decimal(spend)) for team, n, attempts, spend in duckdb_oracle(everything)]

    def ours():
        rows = json.loads(gatemeter("--data-dir", data_dir, "--prices", PRICES, "kpis",
                                    "--group-by", "team", "--format", "json").stdout)
        return [(r["team"], r["requests"], r["attempts"], Decimal(r["spend_usd"])) for r in rows]

    assert ours() == oracle
    corrected = chosen[1]["attempt_id"]
    cost = gatemeter("--data-dir", data_dir, "--prices", PRICES, "query", "--format", "json",
                     f"SELECT cost_usd FROM attempts WHERE attempt_id = '{corrected}'").stdout
    assert json.loads(cost) == [{"cost_usd": "1.250000000"}]

    late_hours = {path for path, files in by_partition(data_dir).items()
                  if len(files) > 1 or not files[0]["deduplicated"]}
    again = gatemeter("--data-dir", data_dir, "--prices", PRICES, "compact").stdout
    assert all(len(files) == 1 and files[0]["deduplicated"] for files in by_partition(data_dir).values())
    assert ours() == oracle
    # The hours the late copies landed in had their rollups rewritten; the
    # stored rollups add up to the oracle exactly.
    assert f"rollups: {len(late_hours)} hours, {2 * len(late_hours)} files" in again, again
    requests = stored_rollup(data_dir, "hourly_requests", "team", ["requests", "attempts", "spend_usd"])
    assert requests == [(team, n, attempts, spend) for team, n, attempts, spend in oracle]
    usage = stored_rollup(data_dir, "hourly_usage", "team", ["attempts", "spend_usd"])
    assert usage == [(team, attempts, spend) for team, _, attempts, spend in oracle]
    # Their copies by model (without key, environment, app and org) too.
    assert stored_rollup(data_dir, "hourly_requests_by_model", "team",
                         ["requests", "attempts", "spend_usd"]) == requests
    assert stored_rollup(data_dir, "hourly_usage_by_model", "team", ["attempts", "spend_usd"]) == usage
    narrow = DeltaTable(str(data_dir / "rollups" / "hourly_usage_by_model")).to_pyarrow_table()
    assert "api_key_id" not in narrow.column_names and "team" in narrow.column_names, narrow.column_names
    # Every KPI read from the stored hours equals the raw computation:
    # counts, money and ratios exactly, percentiles within 1%.
    def kpi_rows(*flags):
        return json.loads(gatemeter("--data-dir", data_dir, "--prices", PRICES, "kpis",
                                    "--group-by", "team,provider", "--bucket", "1h",
                                    "--format", "json", *flags).stdout)
    from_rollups, exact = kpi_rows(), kpi_rows("--exact-percentiles")
    assert len(from_rollups) == len(exact) > 3
    for fast, slow in zip(from_rollups, exact):
        for column, value in slow.items():
            if column.endswith(("_p50_ms", "_p95_ms", "_p99_ms")) and value is not None:
                assert abs(fast[column] - value) <= 0.01 * abs(value), (column, fast, slow)
            else:
                assert fast[column] == value, (column, fast, slow)

    assert_sql_panels_read_stored_hours_and_answer_as_raw(data_dir)

    # Nothing changed: nothing is rewritten. A new price book: every hour is.
    unchanged = gatemeter("--data-dir", data_dir, "--prices", PRICES, "compact").stdout
    assert "rollups: 0 hours, 0 files" in unchanged, unchanged
    repriced = tmp_path / "prices.csv"
    header, *rows = PRICES.read_text().splitlines()
    repriced.write_text("\n".join([header] + [",".join(
        str(Decimal(cell) * 3) if i == 3 else cell for i, cell in enumerate(row.split(",")))
        for row in rows]) + "\n")
    rebuilt = gatemeter("--data-dir", data_dir, "--prices", repriced, "compact").stdout
    assert "rollups: 3 hours, 6 files" in rebuilt, rebuilt
    kpis = json.loads(gatemeter("--data-dir", data_dir, "--prices", repriced, "kpis",
                                "--group-by", "team", "--format", "json").stdout)
    expected = sorted((r["team"], Decimal(r["spend_usd"])) for r in kpis)
    assert expected != [(team, spend) for team, _, _, spend in oracle], "the new book changes spend"
    assert stored_rollup(data_dir, "hourly_requests", "team", ["spend_usd"]) == expected


def test_a_crash_before_the_commit_record_changes_nothing(events, tmp_path):
    data_dir = build_lake(tmp_path, events)
    before = snapshot(data_dir)
    live = support.live_attempt_files(data_dir)
    crashed = gatemeter("--data-dir", data_dir, "compact", env={"GATEMETER_FAIL_POINT": "after_data_files@1"},
                        check=False)
    assert crashed.returncode != 0
    assert support.live_attempt_files(data_dir) == live
    orphans = support.files_on_disk(data_dir) - support.committed_files(data_dir)
    assert len(orphans) == 1 and "/compacted-" in orphans.pop()
    assert snapshot(data_dir) == before

    # Compaction completes; vacuum past its retention removes the orphan and
    # the replaced files.
    result = gatemeter("--data-dir", data_dir, "compact", "--retention", "0m").stdout
    assert result.startswith("compacted 3 partitions"), result
    assert support.files_on_disk(data_dir) == support.committed_files(data_dir)
    assert snapshot(data_dir) == before


def assert_sql_panels_read_stored_hours_and_answer_as_raw(data_dir):
    """Every dashboard panel over `hourly_usage` / `hourly_requests` reads
    the stored rollups of the compacted hours and answers exactly what the
    same SQL over the views' own definitions (raw attempts) answers."""
    def rows(sql):
        out = gatemeter("--data-dir", data_dir, "--prices", PRICES, "query", "--format", "json", sql).stdout
        return sorted(json.dumps(row, sort_keys=True) for row in json.loads(out))

    definitions = {view: (ROOT / "queries" / f"{view}.sql").read_text()
                   for view in ("hourly_usage", "hourly_requests")}
    # A panel only adds up measures by dimensions, so over the views by day
    # and by model it answers as over the hourly rows (hours cut to their
    # day) they merge.
    for view in ("usage", "requests"):
        body = definitions[f"hourly_{view}"]
        definitions[f"hourly_{view}_by_model"] = body
        definitions[f"daily_{view}_by_model"] = \
            f"SELECT * EXCLUDE (hour), date_trunc('day', hour) AS hour FROM ({body})"
    start, end = datetime.datetime(2026, 11, 1), datetime.datetime(2026, 11, 2)
    panels = [(title, expand_grafana_sql(sql, start, end)) for _, title, sql in targets("sql")
              if "hourly_" in sql or "daily_" in sql]
    assert len(panels) >= 10, [title for title, _ in panels]
    assert sum("_by_model" in sql for _, sql in panels) >= 8, [sql for _, sql in panels]
    for title, sql in panels:
        raw = sql
        for view, body in definitions.items():
            raw = re.sub(rf"FROM {view}\b", lambda _: f"FROM ({body}\n) AS {view}", raw)
        stored = rows(sql)
        assert stored == rows(raw), title
        if "now()" not in sql:  # this month holds none of the November traffic
            assert any(value is not None for row in stored for value in json.loads(row).values()), title
    for view in definitions:
        plan = gatemeter("--data-dir", data_dir, "--prices", PRICES, "query", "--format", "json",
                         f"EXPLAIN SELECT * FROM {view}").stdout
        assert f"rollups/{view}/" in plan, (view, plan)
