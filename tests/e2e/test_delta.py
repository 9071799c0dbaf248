"""The lake is a Delta Lake table: imports running at the same time store
every event once; the Python `deltalake` reader (an engine gatemeter did
not write) sees exactly the committed rows at any moment, while data lands
and while compaction replaces files; DuckDB over what it returns agrees
with `gatemeter kpis` on spend by team."""

import subprocess
from decimal import Decimal

import json

import support
from support import ROOT, gatemeter
from test_kpis import duckdb_oracle

PRICES = ROOT / "config" / "prices.csv"


def line_count(path):
    return sum(1 for line in path.read_text().splitlines() if line.strip())


def import_proc(data_dir, *files, flush_rows=200):
    args = ["--data-dir", data_dir, "import", "--flush-rows", flush_rows, *files]
    return subprocess.Popen([support.gatemeter_bin(), *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc):
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-2000:]
    return out


def stored_positions(data_dir):
    return support.query(f"SELECT _topic, _offset FROM {support.parquet_source(data_dir)}")


def test_imports_at_the_same_time_store_every_event_once(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    support.generate_events(a, requests=1500, seed=11)
    support.generate_events(b, requests=1500, seed=12)
    data_dir = tmp_path / "lake"
    # Two files at once, and the first one a second time, racing both for
    # the table's creation and for every commit.
    procs = [import_proc(data_dir, a), import_proc(data_dir, b), import_proc(data_dir, a)]
    for proc in procs:
        finish(proc)
    rows = stored_positions(data_dir)
    assert len(rows) == len(set(rows)), f"{len(rows) - len(set(rows))} events stored twice"
    expected = {("import:a.jsonl", n) for n in range(line_count(a))} | \
        {("import:b.jsonl", n) for n in range(line_count(b))}
    assert set(rows) == expected
    again = gatemeter("--data-dir", data_dir, "import", a, b)
    assert "stored 0 events, 0 dead letters" in again.stdout


def read_snapshot(data_dir):
    """One version as the `deltalake` reader sees it: (version, rows read,
    rows its log says, distinct positions, distinct attempts, the table)."""
    table = support.delta_table(data_dir)
    version = table.version()
    arrow = table.to_pyarrow_table()
    said = sum(a["num_records"] for a in support.pyarrow.table(table.get_add_actions(flatten=True)).to_pylist())
    [(positions, attempts)] = support.query(
        "SELECT count(DISTINCT (_topic, _partition, _offset)), count(DISTINCT attempt_id) FROM lake",
        tables={"lake": arrow})
    return version, arrow.num_rows, said, positions, attempts, arrow


def test_delta_readers_see_exactly_the_committed_rows_while_ingest_and_compaction_run(tmp_path):
    events = tmp_path / "events.jsonl"
    support.generate_events(events, requests=4000, seed=21, start="2026-11-01T10:00:00Z",
                            extra=("--simulated-rate", 0.5, "--duplicates", 0.03, "--corrections", 0.03))
    data_dir = tmp_path / "lake"
    total = line_count(events)

    proc = import_proc(data_dir, events, flush_rows=150)
    seen = []
    while proc.poll() is None:
        if support.delta_table(data_dir) is not None:
            seen.append(read_snapshot(data_dir)[:5])
    finish(proc)
    seen.append(read_snapshot(data_dir)[:5])
    assert len({version for version, *_ in seen}) >= 3, "the reader saw ingest in progress"
    for version, rows, said, positions, _attempts in seen:
        # Every row the log names is read, once; nothing it does not name is.
        assert rows == said == positions, (version, rows, said, positions)
    counts = [rows for _v, rows, *_ in sorted(seen)]
    assert counts == sorted(counts) and counts[-1] == total

    _v, rows_before, _s, _p, attempts_before, _t = read_snapshot(data_dir)
    compact = subprocess.Popen([support.gatemeter_bin(), "--data-dir", str(data_dir), "compact"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    during = []
    while compact.poll() is None:
        during.append(read_snapshot(data_dir)[:5])
    out = finish(compact)
    assert out.startswith("compacted "), out
    version, rows, said, positions, attempts, arrow = read_snapshot(data_dir)
    during.append((version, rows, said, positions, attempts))
    for version, rows, said, positions, attempts in during:
        # A compacted hour is never counted beside the files it replaced.
        assert rows == said == positions, (version, rows, said, positions)
        assert attempts == attempts_before, version
    assert rows == attempts < rows_before, "compaction dropped the duplicate copies"

    kpis = json.loads(gatemeter("--data-dir", data_dir, "--prices", PRICES, "kpis",
                                "--group-by", "team", "--format", "json").stdout)
    ours = [(r["team"], r["requests"], r["attempts"], Decimal(r["spend_usd"])) for r in kpis]
    theirs = [(team, n, attempts, Decimal(spend)) for team, n, attempts, spend in duckdb_oracle(arrow=arrow)]
    assert ours == theirs
